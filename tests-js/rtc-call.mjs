// A MatrixRTC call the way Element Call places it with matrix-js-sdk, against Myelin; for the
// interop test in tests-sdk/tests/rtc.rs.
//
//   NODE22 tests-js/rtc-call.mjs BASE_URL [LIVEKIT_KEY LIVEKIT_SECRET [LIVEKIT_URL]]
//
// The LiveKit values default to $MYELIN_LIVEKIT_KEY, $MYELIN_LIVEKIT_SECRET and $MYELIN_LIVEKIT_URL
// (the server's; the URL is optional and only compared with what the JWT service answers).
// Registers alice and bob (or logs them in when they exist); alice creates a room and bob joins.
// Then, as each user's client sees it:
//   1. alice joins the room's call with MatrixRTCSession (a LiveKit transport from rtc/transports,
//      a delayed leave event of DELAY_MS restarted every RESTART_MS), and bob sees her membership;
//   2. alice gets a LiveKit JWT from the service rtc/transports names, with an OpenID token, and
//      livekit-server-sdk verifies it (identity and room hashed as lk-jwt-service does), while a
//      wrong secret is refused;
//   3. alice's restarts keep her in the call past DELAY_MS; then her network dies right after a
//      restart and her client stops, and bob must see her membership end between DELAY_MS and
//      DELAY_MS + 3 s after that last restart (the server's dead man's switch).
// Prints a JSON summary line and "OK" on stdout, exits 1 with the reason on stderr on any failure
// or after 60 s. Progress goes to stderr (MYELIN_JS_LOG=debug for every request).

import { createHash } from "node:crypto";
import { AccessToken, TokenVerifier, WebhookReceiver } from "livekit-server-sdk";
import { DisconnectReason, WebhookEvent } from "@livekit/protocol";
import { start, progress, fail, succeed, describe, loggingFetch, startAndSync } from "./common.mjs";

const DEADLINE_SECS = 60;
/** The delayed leave event's delay, and how often alice's client restarts it. */
const DELAY_MS = 2000;
const RESTART_MS = 1000;
/** How late after the delay bob may see the leave (the server's timer and bob's sync). */
const LEAVE_SLACK_MS = 3000;
const CALL_MEMBER = "org.matrix.msc3401.call.member";

const args = process.argv.slice(2);
if (args.length < 1 || args.length > 4) {
    process.stderr.write("usage: rtc-call.mjs BASE_URL [LIVEKIT_KEY LIVEKIT_SECRET [LIVEKIT_URL]]\n");
    process.exit(2);
}
const baseUrl = args[0].replace(/\/$/, "");
const livekitKey = args[1] ?? process.env.MYELIN_LIVEKIT_KEY;
const livekitSecret = args[2] ?? process.env.MYELIN_LIVEKIT_SECRET;
const livekitUrl = args[3] ?? process.env.MYELIN_LIVEKIT_URL;
if (!livekitKey || !livekitSecret) {
    process.stderr.write("rtc-call.mjs: the LiveKit key and secret are needed (arguments or MYELIN_LIVEKIT_*)\n");
    process.exit(2);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` every 25 ms until it returns something truthy, which is returned. */
async function waitFor(what, timeoutMs, check) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await check();
        if (value) return value;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await sleep(25);
    }
}

function assert(condition, message) {
    if (!condition) throw new Error(`assertion failed: ${message}`);
}

/**
 * A LiveKit identity or room name as lk-jwt-service (and Myelin) derive it: SHA-256 of the parts
 * as a JSON array, written as Go writes JSON (`<`, `>`, `&`, U+2028, U+2029 escaped), in unpadded
 * standard base64.
 */
function livekitHash(parts) {
    const json = JSON.stringify(parts).replace(
        /[<>&\u2028\u2029]/g,
        (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"),
    );
    return createHash("sha256").update(json).digest("base64").replace(/=+$/, "");
}

/** POSTs JSON without a client; answers the status and the parsed body. */
async function postJson(url, body) {
    const res = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
    });
    const text = await res.text();
    let json;
    try {
        json = JSON.parse(text);
    } catch {
        json = { unparsable: text.slice(0, 500) };
    }
    return { status: res.status, body: json };
}

/**
 * Registers `username` (password `<username>-password`) through the m.login.dummy stage of
 * user-interactive auth, or logs in when the user exists already. Answers the session.
 */
async function registerOrLogin(username) {
    const password = `${username}-password`;
    const url = `${baseUrl}/_matrix/client/v3/register`;
    const first = await postJson(url, { username, password });
    if (first.status === 401 && first.body.session) {
        const auth = { type: "m.login.dummy", session: first.body.session };
        const second = await postJson(url, { username, password, auth });
        if (second.status === 200) return second.body;
        throw new Error(`registering ${username}: ${second.status} ${JSON.stringify(second.body)}`);
    }
    if (first.body.errcode !== "M_USER_IN_USE") {
        throw new Error(`registering ${username}: ${first.status} ${JSON.stringify(first.body)}`);
    }
    const login = await postJson(`${baseUrl}/_matrix/client/v3/login`, {
        type: "m.login.password",
        identifier: { type: "m.id.user", user: username },
        password,
    });
    if (login.status !== 200) throw new Error(`login as ${username}: ${login.status} ${JSON.stringify(login.body)}`);
    return login.body;
}

/**
 * alice's network: passes requests through until `cutAfterNextRestart()`; from the answer of the
 * next successful restart of her delayed leave event on, no request reaches the server any more
 * (each one hangs until its caller aborts it), as when a device loses its connection. Records
 * when each restart was sent, so the dead man's switch is timed from the last one.
 */
function makeAliceNetwork() {
    const net = {
        cut: false,
        cutRequested: null, // resolver of cutAfterNextRestart()'s promise
        delayedEventsSent: 0,
        restartsOk: 0,
        lastRestartSentAt: 0,
        cutAt: 0,
        cutAfterNextRestart() {
            return new Promise((resolve) => (net.cutRequested = resolve));
        },
        async fetchFn(resource, options) {
            if (net.cut) {
                // Black hole: the request never leaves the "device".
                return new Promise((_, reject) => {
                    const signal = options?.signal;
                    signal?.addEventListener("abort", () => reject(signal.reason ?? new Error("aborted")));
                });
            }
            const method = options?.method || "GET";
            const url = new URL(resource instanceof Request ? resource.url : String(resource));
            const isRestart = method === "POST" && /\/delayed_events\/[^/]+\/restart$/.test(url.pathname);
            const sentAt = Date.now();
            const res = await loggingFetch(resource, options);
            if (url.searchParams.has("org.matrix.msc4140.delay") && res.ok) {
                net.delayedEventsSent++;
                progress(`alice scheduled a delayed event: ${method} ${url.pathname}${url.search}`);
            }
            if (isRestart && res.ok) {
                net.restartsOk++;
                net.lastRestartSentAt = sentAt;
                if (net.cutRequested) {
                    // Cut now, before the SDK even sees this answer: this restart is the last keep-alive.
                    net.cut = true;
                    net.cutAt = Date.now();
                    net.cutRequested();
                    net.cutRequested = null;
                }
            }
            return res;
        },
    };
    return net;
}

async function main() {
    const sdk = await start("rtc-call", DEADLINE_SECS);
    const { MatrixRTCSessionEvent } = await import("matrix-js-sdk/lib/matrixrtc/index.js");

    // Two users, each with a syncing client (no crypto: this call does not encrypt its media).
    const aliceNet = makeAliceNetwork();
    const aliceSession = await registerOrLogin("alice");
    const bobSession = await registerOrLogin("bob");
    const makeClient = (session, fetchFn) =>
        sdk.createClient({
            baseUrl,
            userId: session.user_id,
            deviceId: session.device_id,
            accessToken: session.access_token,
            fetchFn,
        });
    const alice = makeClient(aliceSession, aliceNet.fetchFn);
    const bob = makeClient(bobSession, loggingFetch);
    const aliceId = alice.getUserId();
    const aliceDevice = alice.getDeviceId();
    progress(`alice is ${aliceId} (device ${aliceDevice}), bob is ${bob.getUserId()}`);
    await startAndSync(sdk, alice);
    await startAndSync(sdk, bob);

    // alice's room; the override lets any member publish a call membership (alice, its creator,
    // could anyway).
    const { room_id: roomId } = await alice.createRoom({
        name: "MatrixRTC interop",
        invite: [bob.getUserId()],
        power_level_content_override: { events: { [CALL_MEMBER]: 0 } },
    });
    progress(`alice created ${roomId}`);
    await bob.joinRoom(roomId);
    const aliceRoom = await waitFor("alice's client to see bob joined", 10_000, () => {
        const room = alice.getRoom(roomId);
        return room?.getMember(bob.getUserId())?.membership === "join" && room;
    });
    const bobRoom = await waitFor("bob's client to have the room with alice in it", 10_000, () => {
        const room = bob.getRoom(roomId);
        return room?.getMember(aliceId)?.membership === "join" && room;
    });
    progress("bob joined; both clients see each other in the room");

    // When bob's client gets alice's membership emptied ({}), i.e. she left the call.
    let leftSeenAt = 0;
    let leftContent = null;
    bob.on(sdk.RoomStateEvent.Events, (event) => {
        if (event.getRoomId() !== roomId || event.getType() !== CALL_MEMBER || event.getSender() !== aliceId) return;
        if (Object.keys(event.getContent()).length === 0 && !leftSeenAt) {
            leftSeenAt = Date.now();
            leftContent = event.getContent();
            progress(`bob's client got alice's call membership ended (state key ${event.getStateKey()})`);
        }
    });

    // 1. alice joins the call as Element Call does: the homeserver's transport, her membership
    //    under the session's slot, and a delayed leave event kept alive by restarts.
    const transports = await alice._unstable_getRTCTransports(); // GET …/org.matrix.msc4143/rtc/transports
    progress(`rtc/transports: ${JSON.stringify(transports)}`);
    const livekit = transports.find((t) => t.type === "livekit" && typeof t.livekit_service_url === "string");
    assert(livekit, `rtc/transports offers a livekit transport: ${JSON.stringify(transports)}`);
    const focus = { type: "livekit", livekit_service_url: livekit.livekit_service_url, livekit_alias: roomId };
    const aliceCall = alice.matrixRTC.getRoomSession(aliceRoom);
    const bobCall = bob.matrixRTC.getRoomSession(bobRoom);
    assert(bobCall.memberships.length === 0, "nobody is in the call before alice joins");
    aliceCall.on(MatrixRTCSessionEvent.MembershipManagerError, (err) =>
        fail(`alice's membership manager gave up: ${describe(err)}`),
    );
    const joinedAt = Date.now();
    aliceCall.joinRoomSession([focus], undefined, {
        callIntent: "video",
        manageMediaKeys: false,
        delayedLeaveEventDelayMs: DELAY_MS,
        delayedLeaveEventRestartMs: RESTART_MS,
    });
    progress("alice joined the call session (MatrixRTCSession.joinRoomSession)");

    const isAlice = (m) => m.userId === aliceId && m.deviceId === aliceDevice;
    const seenByBob = await waitFor("bob's client to see alice in the call", 10_000, () =>
        bobCall.memberships.find(isAlice),
    );
    const memberSeenAfterMs = Date.now() - joinedAt;
    progress(`bob sees alice in the call after ${memberSeenAfterMs} ms (member id ${seenByBob.memberId})`);
    const memberEvent = bobRoom.currentState.getStateEvents(CALL_MEMBER).find((e) => e.getSender() === aliceId);
    assert(memberEvent, "bob's room state has alice's call.member event");
    const content = memberEvent.getContent();
    progress(`alice's ${CALL_MEMBER} (${memberEvent.getStateKey()}) as bob sees it: ${JSON.stringify(content)}`);
    assert(
        content.application === "m.call" && content.device_id === aliceDevice,
        "the membership is alice's device's, in an m.call",
    );
    assert(
        content.foci_preferred?.[0]?.livekit_service_url === livekit.livekit_service_url,
        "the membership names the homeserver's LiveKit service",
    );
    assert(seenByBob.slotId === "m.call#ROOM", `the membership is in the room's call slot, not ${seenByBob.slotId}`);

    // 2. alice's LiveKit token, from the service rtc/transports named, as Element Call asks it.
    const own = await waitFor("alice's client to see her own membership", 10_000, () =>
        aliceCall.memberships.find(isAlice),
    );
    const openid = await alice.getOpenIdToken(); // POST /user/{alice}/openid/request_token
    const tokenRequest = {
        room_id: roomId,
        slot_id: own.slotId,
        openid_token: openid,
        member: { id: own.memberId, claimed_user_id: aliceId, claimed_device_id: aliceDevice },
    };
    const tokenUrl = `${livekit.livekit_service_url.replace(/\/$/, "")}/get_token`;
    const token = await postJson(tokenUrl, tokenRequest);
    assert(token.status === 200, `POST ${tokenUrl} answers a token: ${token.status} ${JSON.stringify(token.body)}`);
    const { url: sfuUrl, jwt } = token.body;
    assert(
        typeof jwt === "string" && typeof sfuUrl === "string",
        `the answer has url and jwt: ${JSON.stringify(token.body)}`,
    );
    if (livekitUrl) assert(sfuUrl === livekitUrl, `the SFU URL is the server's (${livekitUrl}), not ${sfuUrl}`);
    const claims = await new TokenVerifier(livekitKey, livekitSecret).verify(jwt);
    progress(`livekit-server-sdk accepted the JWT: ${JSON.stringify(claims)}`);
    const expectedIdentity = livekitHash([aliceId, aliceDevice, own.memberId]);
    const expectedRoom = livekitHash([roomId, own.slotId]);
    assert(claims.sub === expectedIdentity, `sub is ${expectedIdentity}, not ${claims.sub}`);
    assert(claims.video?.room === expectedRoom, `video.room is ${expectedRoom}, not ${claims.video?.room}`);
    assert(claims.video?.roomJoin === true, "video.roomJoin is true");
    assert(claims.iss === livekitKey, `iss is the API key, not ${claims.iss}`);
    let wrongSecretError = null;
    try {
        await new TokenVerifier(livekitKey, `${livekitSecret}-but-wrong`).verify(jwt);
    } catch (err) {
        wrongSecretError = err;
    }
    assert(wrongSecretError, "a verifier with the wrong secret rejects the JWT");
    progress(`with the wrong secret the JWT is refused: ${wrongSecretError.code ?? wrongSecretError.message}`);

    // 2b. The SFU's webhooks, built and signed by livekit-server-sdk as a LiveKit server signs
    //     them (a token whose sha256 claim hashes the body): the JWT service takes them, and
    //     refuses one signed with another secret.
    const webhookUrl = `${livekit.livekit_service_url.replace(/\/$/, "")}/sfu_webhook`;
    const joinedEvent = new WebhookEvent({
        event: "participant_joined",
        room: { name: expectedRoom },
        participant: { identity: expectedIdentity, disconnectReason: DisconnectReason.UNKNOWN_REASON },
    }).toJsonString();
    const signWebhook = async (body, secret) => {
        const at = new AccessToken(livekitKey, secret);
        at.sha256 = createHash("sha256").update(body).digest("base64");
        return at.toJwt();
    };
    const goodAuth = await signWebhook(joinedEvent, livekitSecret);
    await new WebhookReceiver(livekitKey, livekitSecret).receive(joinedEvent, goodAuth); // LiveKit's own check
    const postWebhook = async (auth) => {
        const res = await fetch(webhookUrl, {
            method: "POST",
            headers: { Authorization: auth, "Content-Type": "application/webhook+json" },
            body: joinedEvent,
        });
        return res.status;
    };
    const accepted = await postWebhook(goodAuth);
    assert(accepted === 200, `POST ${webhookUrl} takes a webhook signed as LiveKit signs them: ${accepted}`);
    const refused = await postWebhook(await signWebhook(joinedEvent, `${livekitSecret}-but-wrong`));
    assert(refused === 401, `a webhook signed with another secret is refused: ${refused}`);
    progress("the JWT service takes the SFU's webhooks signed by livekit-server-sdk and refuses forged ones");

    // 3a. The restarts keep alice in the call well past the delay of her delayed leave event.
    const aliveUntil = joinedAt + DELAY_MS + 1500;
    await waitFor("alice's membership to outlive its delayed leave", DELAY_MS + 5000, () => {
        if (leftSeenAt) {
            const after = leftSeenAt - joinedAt;
            throw new Error(`alice's membership ended ${after} ms after she joined, though her client kept restarting`);
        }
        return Date.now() >= aliveUntil && aliceNet.restartsOk >= 2;
    });
    assert(bobCall.memberships.some(isAlice), "alice is still in the call as bob sees it");
    progress(`alice is still in the call after ${Date.now() - joinedAt} ms (${aliceNet.restartsOk} restarts so far)`);

    // 3b. The device dies: no request after the next restart's answer, then the client stops.
    //     (stopClient() alone is no crash: it stops the session, which leaves gracefully at once
    //     by sending the delayed leave event; with the network cut, that goodbye is lost.) Only
    //     the server's timer can end her membership now.
    await aliceNet.cutAfterNextRestart();
    alice.stopClient();
    progress("alice's network is cut after a restart, and her client stopped");
    await waitFor("bob's client to see alice leave the call", DELAY_MS + LEAVE_SLACK_MS + 5000, () => leftSeenAt);
    await waitFor("bob's session to have nobody in the call", 5000, () => bobCall.memberships.length === 0);
    const leftAfterMs = leftSeenAt - aliceNet.lastRestartSentAt;
    const leftAfterCutMs = leftSeenAt - aliceNet.cutAt;
    progress(`bob saw alice leave ${leftAfterMs} ms after her last restart (${leftAfterCutMs} ms after the cut)`);
    assert(JSON.stringify(leftContent) === "{}", `the membership became {}, not ${JSON.stringify(leftContent)}`);
    const onServer = await bob.getStateEvent(roomId, CALL_MEMBER, memberEvent.getStateKey());
    assert(JSON.stringify(onServer) === "{}", `the server's state is {} too, not ${JSON.stringify(onServer)}`);
    assert(
        leftAfterMs >= DELAY_MS && leftAfterMs <= DELAY_MS + LEAVE_SLACK_MS,
        `alice's membership ended ${leftAfterMs} ms after her last restart, ` +
            `expected ${DELAY_MS}..${DELAY_MS + LEAVE_SLACK_MS} ms`,
    );

    bob.stopClient();
    process.stdout.write(
        JSON.stringify({
            room_id: roomId,
            delayed_leave_delay_ms: DELAY_MS,
            restart_interval_ms: RESTART_MS,
            delayed_events_scheduled: aliceNet.delayedEventsSent,
            restarts_ok: aliceNet.restartsOk,
            member_seen_after_ms: memberSeenAfterMs,
            livekit_identity: claims.sub,
            livekit_room: claims.video.room,
            left_after_last_restart_ms: leftAfterMs,
            left_after_cut_ms: leftAfterCutMs,
        }) + "\n",
    );
    succeed();
}

main().catch((err) => fail(describe(err)));
