// A person in headless Chromium (Debian's, driven by playwright-core) using Myelin's OAuth
// pages: sign in and consent for an application, approve another device by its code, sign a
// session out on the account page, and create an account on the registration page.
// Screenshots of each page go to the artefact directory.
//
//   node oauth-browser.mjs BASE_URL USER PASSWORD ARTEFACT_DIR CHROMIUM
// Prints one JSON line per step; exits non-zero on the first failure.
import { createHash, createHmac, randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const [base, user, password, artefacts, executablePath] = process.argv.slice(2);
mkdirSync(artefacts, { recursive: true });
const API = "urn:matrix:client:api:*";
const say = (step, extra = {}) => console.log(JSON.stringify({ step, ...extra }));
const fail = (message) => {
  throw new Error(message);
};
const b64url = (buf) => buf.toString("base64").replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

async function api(path, init = {}) {
  const res = await fetch(base + path, init);
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, body };
}

const form = (pairs) => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(pairs).toString(),
});

async function registerClient(grantTypes) {
  const { status, body } = await api("/oauth2/registration", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: "Browser test app",
      client_uri: "https://app.example.org/",
      application_type: "native",
      redirect_uris: ["http://127.0.0.1/callback"],
      grant_types: grantTypes,
      token_endpoint_auth_method: "none",
    }),
  });
  if (status !== 201) fail(`client registration: ${status} ${JSON.stringify(body)}`);
  return body.client_id;
}

const browser = await chromium.launch({
  executablePath,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const shot = (name) => page.screenshot({ path: `${artefacts}/${name}.png`, fullPage: true });

  // 1. An application sends the person to sign in; they sign in and allow it.
  const clientId = await registerClient(["authorization_code", "refresh_token"]);
  const verifier = b64url(randomBytes(48));
  const challenge = b64url(createHash("sha256").update(verifier).digest());
  const redirect = "http://127.0.0.1:47999/callback";
  const scope = `openid ${API} urn:matrix:client:device:BROWSERDEV1`;
  const authorize = `${base}/oauth2/authorize?${new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: redirect,
    scope,
    state: "browser-state",
    code_challenge: challenge,
    code_challenge_method: "S256",
  })}`;
  let landed = null;
  await page.route("http://127.0.0.1:47999/**", (route) => {
    landed = route.request().url();
    return route.fulfill({ status: 200, contentType: "text/html", body: "<p>back in the app</p>" });
  });
  await page.goto(authorize);
  if (!(await page.title()).includes("Sign in")) fail(`expected the sign-in page, got ${await page.title()}`);
  await shot("01-login");
  await page.getByLabel("Username").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.waitForSelector("text=Allow Browser test app to access your account?");
  await shot("02-consent");
  await page.getByRole("button", { name: "Allow" }).click();
  await page.waitForURL((url) => url.href.startsWith(redirect));
  if (!landed) fail("the browser did not come back to the application");
  const back = new URL(landed);
  if (back.searchParams.get("state") !== "browser-state") fail(`state: ${landed}`);
  const code = back.searchParams.get("code") ?? fail(`no code: ${landed}`);
  const tokens = await api(
    "/oauth2/token",
    form({ grant_type: "authorization_code", code, redirect_uri: redirect, client_id: clientId, code_verifier: verifier }),
  );
  if (tokens.status !== 200) fail(`token: ${tokens.status} ${JSON.stringify(tokens.body)}`);
  const me = await api("/_matrix/client/v3/account/whoami", {
    headers: { authorization: `Bearer ${tokens.body.access_token}` },
  });
  if (me.body.device_id !== "BROWSERDEV1") fail(`whoami: ${JSON.stringify(me.body)}`);
  say("code flow", { user_id: me.body.user_id });

  // 2. Another device (QR login's device grant) is approved by its code on this browser.
  const deviceClient = await registerClient(["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"]);
  const grant = await api("/oauth2/device_authorization", form({ client_id: deviceClient, scope: API }));
  if (grant.status !== 200) fail(`device authorization: ${grant.status} ${JSON.stringify(grant.body)}`);
  await page.goto(grant.body.verification_uri);
  await page.getByLabel("Code").fill(grant.body.user_code.toLowerCase());
  await page.getByRole("button", { name: "Continue" }).click();
  await page.waitForSelector("text=Another device is being signed in");
  await shot("03-device");
  await page.getByRole("button", { name: "Allow" }).click();
  await page.waitForSelector("text=Device allowed");
  const deviceTokens = await api(
    "/oauth2/token",
    form({ grant_type: "urn:ietf:params:oauth:grant-type:device_code", device_code: grant.body.device_code, client_id: deviceClient }),
  );
  if (deviceTokens.status !== 200) fail(`device token: ${deviceTokens.status} ${JSON.stringify(deviceTokens.body)}`);
  say("device grant");

  // 3. The account page lists the sessions; one is signed out from it.
  await page.goto(`${base}/account/`);
  await page.waitForSelector("text=BROWSERDEV1");
  await shot("04-account");
  await page.getByRole("button", { name: "Sign out BROWSERDEV1" }).click();
  await page.waitForSelector("text=The session was signed out.");
  const after = await api("/_matrix/client/v3/account/whoami", {
    headers: { authorization: `Bearer ${tokens.body.access_token}` },
  });
  if (after.status !== 401) fail(`the signed-out session still works: ${after.status}`);
  await page.getByLabel("Display name").fill("Alice in the browser");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForSelector("text=Your profile was saved.");
  say("account page");

  // 3b. Two-step verification: set up with an authenticator app (the test computes the codes),
// then a sign-in on another browser asks for a code after the password.
const totp = (secret, step) => {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const digest = createHmac("sha1", key).update(counter).digest();
  const offset = digest[19] & 0x0f;
  const value = digest.readUInt32BE(offset) & 0x7fffffff;
  return String(value % 1000000).padStart(6, "0");
};
const step = () => Math.floor(Date.now() / 30000);
await page.getByRole("button", { name: "Set up an authenticator app" }).click();
const secret = (await page.locator("#totp-secret").textContent()).trim();
const enrolStep = step();
await page.getByLabel("Code").fill(totp(secret, enrolStep));
await shot("04b-totp-enrol");
await page.getByRole("button", { name: "Turn on" }).click();
await page.waitForSelector("text=Two-step verification is on");
const recovery = await page.locator("#recovery-codes li").count();
if (recovery !== 10) fail(`recovery codes: ${recovery}`);
await shot("04c-recovery-codes");
const other = await browser.newContext();
const second = await other.newPage();
await second.goto(`${base}/account/`);
await second.getByLabel("Username").fill(user);
await second.getByLabel("Password").fill(password);
await second.getByRole("button", { name: "Continue" }).click();
await second.waitForSelector("text=Enter the code your authenticator app shows");
await second.screenshot({ path: `${artefacts}/04d-second-factor.png`, fullPage: true });
await second.getByLabel("Code").fill(totp(secret, Math.max(step(), enrolStep + 1)));
await second.getByRole("button", { name: "Verify" }).click();
await second.waitForSelector("text=Your account");
await other.close();
await page.goto(`${base}/account/`);
await page.locator("#totp-password").fill(password);
await page.getByRole("button", { name: "Turn off two-step verification" }).click();
await page.waitForSelector("text=Two-step verification is off.");
say("two-step verification");

// 3c. Passkeys (Chromium's virtual authenticator), on http://localhost: browsers do not take IP
// addresses as relying parties. Added on the account page, then a sign-in without a password.
const local = base.replace("127.0.0.1", "localhost");
const keyContext = await browser.newContext();
const keyPage = await keyContext.newPage();
const cdp = await keyContext.newCDPSession(keyPage);
await cdp.send("WebAuthn.enable");
await cdp.send("WebAuthn.addVirtualAuthenticator", {
  options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
});
await keyPage.goto(`${local}/account/`);
await keyPage.getByLabel("Username").fill(user);
await keyPage.getByLabel("Password").fill(password);
await keyPage.getByRole("button", { name: "Continue" }).click();
await keyPage.waitForSelector("text=Your account");
await keyPage.getByLabel("Name of the new passkey").fill("Test laptop");
await keyPage.getByRole("button", { name: "Add a passkey" }).click();
await keyPage.waitForSelector("text=The passkey was added.");
await keyPage.waitForSelector("#passkeys >> text=Test laptop");
await keyPage.screenshot({ path: `${artefacts}/04e-passkey-added.png`, fullPage: true });
await keyPage.getByRole("button", { name: "Sign out of this page" }).click();
await keyPage.waitForSelector("text=Sign in with a passkey");
await keyPage.screenshot({ path: `${artefacts}/04f-passkey-login.png`, fullPage: true });
await keyPage.getByRole("button", { name: "Sign in with a passkey" }).click();
await keyPage.waitForSelector("text=Your account");
await keyContext.close();
say("passkeys");

// 4. A new person creates an account on the registration page.
  const fresh = await browser.newContext();
  const newcomer = await fresh.newPage();
  await newcomer.goto(`${base}/auth/register`);
  await newcomer.getByLabel("Username").fill("newcomer");
  await newcomer.getByLabel("Password").fill("newcomer-password");
  await newcomer.screenshot({ path: `${artefacts}/05-register.png`, fullPage: true });
  await newcomer.getByRole("button", { name: "Create account" }).click();
  await newcomer.waitForSelector("text=Your account");
  if (!(await newcomer.content()).includes("@newcomer:")) fail("the account page names the new user");
  say("registration");
} finally {
  await browser.close();
}
say("done");
