//! Email addresses on accounts, with a real SMTP server (aiosmtpd) receiving what Myelin sends:
//! validating an address by its link, binding it, logging in with it, resetting a forgotten
//! password through it, removing it; and the errors around each step.

use anyhow::{Context, Result, ensure};
use myelin_e2e::{NO_RATE_LIMITS, TestServer, errcode, smtp::MailSink};
use serde_json::{Value, json};

/// The validation link in a message.
fn link_in(message: &str) -> Result<String> {
    message
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("http") && l.contains("/_myelin/email/validate?"))
        .map(str::to_owned)
        .with_context(|| format!("no validation link in {message}"))
}

async fn follow(link: &str) -> Result<(u16, String)> {
    let response = reqwest::get(link).await?;
    Ok((response.status().as_u16(), response.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_address_is_validated_bound_used_to_log_in_and_to_reset_the_password() -> Result<()> {
    let mail = MailSink::start().await?;
    let server = TestServer::start_with(&format!("{NO_RATE_LIMITS}{}", mail.config())).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    let anon = server.anonymous();
    let (_, caps) = alice.get("/_matrix/client/v3/capabilities").await?;
    ensure!(caps["capabilities"]["m.3pid_changes"]["enabled"] == true, "{caps}");

    // Ask for a token: one email, with a link; the same attempt again sends no second one.
    let request = json!({ "client_secret": "secret-one", "email": "Alice@Example.org", "send_attempt": 1 });
    let (status, body) = alice.post("/_matrix/client/v3/account/3pid/email/requestToken", &request).await?;
    ensure!(status == 200, "{status} {body}");
    let sid = body["sid"].as_str().context("sid")?.to_owned();
    let message = mail.wait_for(1).await?;
    ensure!(
        message.contains("To: alice@example.org") && message.contains("From: Myelin <noreply@example.org>"),
        "{message}"
    );
    let link = link_in(&message)?;
    let (status, again) = alice.post("/_matrix/client/v3/account/3pid/email/requestToken", &request).await?;
    ensure!(status == 200 && again["sid"] == sid.as_str(), "{status} {again}");

    // Not validated yet: adding it fails after the password.
    let add = |auth: Value| json!({ "sid": sid, "client_secret": "secret-one", "auth": auth });
    let password_auth = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "alice-password" });
    let (status, body) = alice.post("/_matrix/client/v3/account/3pid/add", &add(Value::Null)).await?;
    ensure!(status == 401 && body["flows"].is_array(), "UIA first: {status} {body}");
    let (status, body) = alice.post("/_matrix/client/v3/account/3pid/add", &add(password_auth.clone())).await?;
    ensure!(status == 401 && errcode(&body) == "M_SESSION_NOT_VALIDATED", "{status} {body}");

    // A tampered link fails; the real one validates.
    let (status, _) = follow(&link.replace("token=", "token=x")).await?;
    ensure!(status == 400, "a wrong token: {status}");
    let (status, page) = follow(&link).await?;
    ensure!(status == 200 && page.contains("validated"), "{status} {page}");
    let (status, body) = alice.post("/_matrix/client/v3/account/3pid/add", &add(password_auth)).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, body) = alice.get("/_matrix/client/v3/account/3pid").await?;
    ensure!(status == 200 && body["threepids"][0]["address"] == "alice@example.org", "{status} {body}");
    ensure!(body["threepids"][0]["medium"] == "email" && body["threepids"][0]["validated_at"].is_u64(), "{body}");

    // Taken now; bob cannot start adding it.
    let (status, body) = bob
        .post(
            "/_matrix/client/v3/account/3pid/email/requestToken",
            &json!({ "client_secret": "b", "email": "alice@example.org", "send_attempt": 1 }),
        )
        .await?;
    ensure!(status == 400 && errcode(&body) == "M_THREEPID_IN_USE", "{status} {body}");

    // Log in with the address (any case).
    let login = |password: &str| {
        json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.thirdparty", "medium": "email", "address": "ALICE@example.org" },
            "password": password,
        })
    };
    let (status, body) = anon.post("/_matrix/client/v3/login", &login("alice-password")).await?;
    ensure!(status == 200 && body["user_id"] == alice.user_id.as_str(), "{status} {body}");
    let (status, body) = anon.post("/_matrix/client/v3/login", &login("wrong")).await?;
    ensure!(status == 403 && errcode(&body) == "M_FORBIDDEN", "{status} {body}");

    // Forgot the password: a reset email, its link, then a new password without a token.
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/account/password/email/requestToken",
            &json!({ "client_secret": "nobody", "email": "nobody@example.org", "send_attempt": 1 }),
        )
        .await?;
    ensure!(status == 400 && errcode(&body) == "M_THREEPID_NOT_FOUND", "{status} {body}");
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/account/password/email/requestToken",
            &json!({ "client_secret": "reset-secret", "email": "alice@example.org", "send_attempt": 1 }),
        )
        .await?;
    ensure!(status == 200, "{status} {body}");
    let reset_sid = body["sid"].as_str().context("sid")?.to_owned();
    let reset = |new: &str| {
        json!({
            "new_password": new,
            "auth": { "type": "m.login.email.identity", "threepid_creds": { "sid": reset_sid, "client_secret": "reset-secret" } },
        })
    };
    let (status, body) = anon.post("/_matrix/client/v3/account/password", &json!({ "new_password": "x" })).await?;
    ensure!(
        status == 401 && body["flows"][0]["stages"] == json!(["m.login.email.identity"]),
        "without auth, the email flow is offered: {status} {body}"
    );
    let (status, body) = anon.post("/_matrix/client/v3/account/password", &reset("too-early")).await?;
    ensure!(status == 401 && errcode(&body) == "M_SESSION_NOT_VALIDATED", "before the link: {status} {body}");
    let (status, _) = follow(&link_in(&mail.wait_for(2).await?)?).await?;
    ensure!(status == 200);
    let (status, body) = anon.post("/_matrix/client/v3/account/password", &reset("new-password")).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, _) = alice.get("/_matrix/client/v3/account/whoami").await?;
    ensure!(status == 401, "the reset logged out alice's devices");
    let (status, _) = anon.post("/_matrix/client/v3/login", &login("alice-password")).await?;
    ensure!(status == 403, "the old password no longer works");
    let (status, body) = anon.post("/_matrix/client/v3/login", &login("new-password")).await?;
    ensure!(status == 200, "{status} {body}");
    let alice = alice.with_token(body["access_token"].as_str());

    // Remove it; removing it again is 404.
    let delete = json!({ "medium": "email", "address": "alice@example.org" });
    let (status, body) = alice.post("/_matrix/client/v3/account/3pid/delete", &delete).await?;
    ensure!(status == 200 && body["id_server_unbind_result"] == "no-support", "{status} {body}");
    let (_, body) = alice.get("/_matrix/client/v3/account/3pid").await?;
    ensure!(body["threepids"] == json!([]), "{body}");
    let (status, body) = alice.post("/_matrix/client/v3/account/3pid/delete", &delete).await?;
    ensure!(status == 404, "{status} {body}");

    // Bad requests.
    for (request, what) in [
        (json!({ "client_secret": "s", "email": "not an address", "send_attempt": 1 }), "a bad address"),
        (json!({ "client_secret": "s p a c e", "email": "a@example.org", "send_attempt": 1 }), "a bad secret"),
    ] {
        let (status, body) = alice.post("/_matrix/client/v3/account/3pid/email/requestToken", &request).await?;
        ensure!(status == 400 && errcode(&body) == "M_INVALID_PARAM", "{what}: {status} {body}");
    }
    let (status, body) =
        alice.post("/_matrix/client/v3/account/3pid/email/requestToken", &json!({ "email": "a@example.org" })).await?;
    ensure!(status == 400 && errcode(&body) == "M_BAD_JSON", "{status} {body}");
    ensure!(mail.messages().len() == 2, "exactly two emails were sent");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_email_addresses_are_refused_and_a_dead_smtp_server_is_a_502() -> Result<()> {
    let plain = TestServer::start().await?;
    let alice = plain.register("alice").await?;
    let request = json!({ "client_secret": "s", "email": "a@example.org", "send_attempt": 1 });
    let (status, body) = alice.post("/_matrix/client/v3/account/3pid/email/requestToken", &request).await?;
    ensure!(status == 403 && errcode(&body) == "M_THREEPID_DENIED", "{status} {body}");
    let (_, caps) = alice.get("/_matrix/client/v3/capabilities").await?;
    ensure!(caps["capabilities"]["m.3pid_changes"]["enabled"] == false, "{caps}");
    let (status, body) =
        plain.anonymous().post("/_matrix/client/v3/account/password", &json!({ "new_password": "x" })).await?;
    ensure!(status == 401 && errcode(&body) == "M_MISSING_TOKEN", "{status} {body}");
    let (status, body) = alice.get("/_matrix/client/v3/account/3pid").await?;
    ensure!(status == 200 && body == json!({ "threepids": [] }), "{status} {body}");

    // An SMTP server that is not there: the request fails with 502.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dead = TestServer::start_with(&format!(
        "{NO_RATE_LIMITS}[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\ntls = \"none\"\n"
    ))
    .await?;
    let bob = dead.register("bob").await?;
    let (status, body) = bob.post("/_matrix/client/v3/account/3pid/email/requestToken", &request).await?;
    ensure!(status == 502, "{status} {body}");
    Ok(())
}

/// Binds `address` to `client`'s account through the mail sink (the `n`-th message is its link).
async fn bind_email(client: &myelin_e2e::Client, mail: &MailSink, address: &str, n: usize) -> Result<()> {
    let request = json!({ "client_secret": "bind", "email": address, "send_attempt": 1 });
    let (status, body) = client.post("/_matrix/client/v3/account/3pid/email/requestToken", &request).await?;
    ensure!(status == 200, "{status} {body}");
    let (status, _) = follow(&link_in(&mail.wait_for(n).await?)?).await?;
    ensure!(status == 200);
    let localpart = client.user_id.trim_start_matches('@').split(':').next().unwrap_or_default().to_owned();
    let auth = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": localpart }, "password": format!("{localpart}-password") });
    let add = json!({ "sid": body["sid"], "client_secret": "bind", "auth": auth });
    let (status, body) = client.post("/_matrix/client/v3/account/3pid/add", &add).await?;
    ensure!(status == 200, "{status} {body}");
    Ok(())
}

/// An email pusher: notifications still unread after the delay are emailed, read ones are not;
/// only an address of one's own account can be a pushkey.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_notifications_are_emailed_after_the_delay_and_read_ones_are_not() -> Result<()> {
    let mail = MailSink::start().await?;
    let server = TestServer::start_with(&format!("{NO_RATE_LIMITS}{}notif_delay_ms = 1500\n", mail.config())).await?;
    let alice = server.register("alice").await?;
    let bob = server.register("bob").await?;
    bind_email(&alice, &mail, "alice@example.org", 1).await?;

    let pusher = |pushkey: &str, app_id: &str| {
        json!({
            "kind": "email", "app_id": app_id, "pushkey": pushkey, "app_display_name": "Email",
            "device_display_name": "alice@example.org", "lang": "en", "data": {},
        })
    };
    for (body, code, what) in [
        (pusher("bob@example.org", "m.email"), "M_THREEPID_NOT_FOUND", "an address not alice's"),
        (pusher("alice@example.org", "com.example"), "M_INVALID_PARAM", "another app id"),
    ] {
        let (status, answer) = alice.post("/_matrix/client/v3/pushers/set", &body).await?;
        ensure!(status == 400 && errcode(&answer) == code, "{what}: {status} {answer}");
    }
    let (status, body) = alice.post("/_matrix/client/v3/pushers/set", &pusher("alice@example.org", "m.email")).await?;
    ensure!(status == 200, "{status} {body}");
    let (_, listed) = alice.get("/_matrix/client/v3/pushers").await?;
    ensure!(listed["pushers"][0]["kind"] == "email", "{listed}");

    let room = alice.create_room(json!({ "preset": "private_chat", "name": "Lunch", "invite": [bob.user_id] })).await?;
    ensure!(bob.join(&room).await?.0 == 200);
    let sent = std::time::Instant::now();
    bob.send_message(&room, "lunch at noon?").await?;
    let email = mail.wait_for(2).await?;
    ensure!(sent.elapsed() >= std::time::Duration::from_millis(1200), "emailed before the delay: {:?}", sent.elapsed());
    ensure!(email.contains("To: alice@example.org") && email.contains("Subject: 1 unread notification"), "{email}");
    ensure!(email.contains("[Lunch] bob: lunch at noon?"), "{email}");

    // Read at once: no email.
    let read = bob.send_message(&room, "never mind").await?;
    let (status, body) = alice
        .post(&myelin_e2e::room_path(&room, &format!("receipt/m.read/{}", myelin_e2e::enc(&read))), &json!({}))
        .await?;
    ensure!(status == 200, "{status} {body}");
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    ensure!(mail.messages().len() == 2, "a read message is not emailed: {:?}", mail.messages().last());
    Ok(())
}

/// With `registration.require_email`, registering needs a validated address: the flow asks for
/// `m.login.email.identity` (after the token when tokens are set), a session not yet validated
/// is refused, the link validates it, and the new account has the address (and logs in with it).
/// Addresses in use are refused at `requestToken`; without the setting that endpoint is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_can_require_a_validated_email_address() -> Result<()> {
    let mail = MailSink::start().await?;
    let server = TestServer::start_with(&format!(
        "{NO_RATE_LIMITS}{}[registration]\nrequire_email = true\ntokens = [\"invite-only\"]\n",
        mail.config()
    ))
    .await?;
    let anon = server.anonymous();
    let (status, body) =
        anon.post("/_matrix/client/v3/register", &json!({ "username": "carol", "password": "pw" })).await?;
    ensure!(status == 401, "{status} {body}");
    let flows: Vec<Value> = body["flows"].as_array().cloned().unwrap_or_default();
    ensure!(
        flows.contains(&json!({ "stages": ["m.login.email.identity"] }))
            && flows.contains(&json!({ "stages": ["m.login.registration_token", "m.login.email.identity"] })),
        "{body}"
    );
    ensure!(!flows.contains(&json!({ "stages": ["m.login.dummy"] })), "no dummy stage: {body}");
    let session = body["session"].as_str().context("session")?.to_owned();

    let request = json!({ "client_secret": "reg-secret", "email": "carol@example.org", "send_attempt": 1 });
    let (status, token) = anon.post("/_matrix/client/v3/register/email/requestToken", &request).await?;
    ensure!(status == 200, "{status} {token}");
    let sid = token["sid"].as_str().context("sid")?.to_owned();
    let link = link_in(&mail.wait_for(1).await?)?;
    let register = |auth: Value| json!({ "username": "carol", "password": "carol-pw", "auth": auth });
    let email_auth = json!({ "type": "m.login.email.identity", "session": session,
                             "threepid_creds": { "sid": sid, "client_secret": "reg-secret" } });
    let (status, body) = anon.post("/_matrix/client/v3/register", &register(email_auth.clone())).await?;
    ensure!(status == 401 && errcode(&body) == "M_SESSION_NOT_VALIDATED", "before the link: {status} {body}");
    let (status, _) = follow(&link).await?;
    ensure!(status == 200);
    let dummy = json!({ "type": "m.login.dummy", "session": session });
    let (status, body) = anon.post("/_matrix/client/v3/register", &register(dummy)).await?;
    ensure!(status == 401, "the dummy stage does not replace the address: {status} {body}");
    let (status, body) = anon.post("/_matrix/client/v3/register", &register(email_auth)).await?;
    ensure!(status == 200 && body["user_id"] == server.user_id("carol").as_str(), "{status} {body}");
    let carol = anon.with_token(body["access_token"].as_str());
    let (_, threepids) = carol.get("/_matrix/client/v3/account/3pid").await?;
    ensure!(threepids["threepids"][0]["address"] == "carol@example.org", "{threepids}");
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/login",
            &json!({ "type": "m.login.password", "password": "carol-pw",
                     "identifier": { "type": "m.id.thirdparty", "medium": "email", "address": "carol@example.org" } }),
        )
        .await?;
    ensure!(status == 200, "{status} {body}");

    // The same validated address does not register a second account, in a new session.
    let (status, body) = anon
        .post(
            "/_matrix/client/v3/register",
            &json!({ "username": "carol2", "password": "pw2", "auth": { "type": "m.login.email.identity",
                     "threepid_creds": { "sid": sid, "client_secret": "reg-secret" } } }),
        )
        .await?;
    ensure!(status == 401 && errcode(&body) == "M_THREEPID_IN_USE", "{status} {body}");
    let (status, body) = anon.get("/_matrix/client/v3/register/available?username=carol2").await?;
    ensure!(status == 200, "no account was made: {status} {body}");

    // In use now; and without the setting, the endpoint is refused.
    let again = json!({ "client_secret": "other", "email": "carol@example.org", "send_attempt": 1 });
    let (status, body) = anon.post("/_matrix/client/v3/register/email/requestToken", &again).await?;
    ensure!(status == 400 && errcode(&body) == "M_THREEPID_IN_USE", "{status} {body}");
    let plain = TestServer::start_with(&format!("{NO_RATE_LIMITS}{}", mail.config())).await?;
    let (status, body) = plain.anonymous().post("/_matrix/client/v3/register/email/requestToken", &again).await?;
    ensure!(status == 403 && errcode(&body) == "M_THREEPID_DENIED", "{status} {body}");
    Ok(())
}
