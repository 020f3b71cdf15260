//! In-process tests of the services over a real SQLite database, with a clock the test moves
//! and a seeded random source: no spawned binary, no HTTP. What depends on time (token expiry,
//! authentication sessions, rate limits, job retries) is checked by moving the clock, not by
//! sleeping.

use std::{path::PathBuf, sync::Arc, time::Duration};

use myelin_core::{ErrorCode, ManualClock, MatrixError, SeededRandom, StreamPos, config::Config};
use myelin_service::{
    Env, Services,
    accounts::{LOGIN_TOKEN_LIFETIME_MS, LoginRequest, Requester},
    jobs::JobKind,
    keys::ServerKeys,
    rooms::{CreateRoomRequest, EventSpec, MessagesRequest},
    sync::SyncRequest,
    uia::AuthData,
};
use myelin_storage::{NewJob, Store};
use ruma::events::TimelineEventType;
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z.
const START_MS: u64 = 1_767_225_600_000;

/// Services over a fresh SQLite database in a temporary directory (removed on drop).
struct Harness {
    services: Arc<Services>,
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn harness_with(config: Config) -> Harness {
    let dir = std::env::temp_dir().join(format!("myelin-services-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let random = Arc::new(SeededRandom::new(7));
    let keys = ServerKeys::load_or_generate(&dir, random.as_ref()).expect("server key");
    let store = myelin_storage::open(&format!("sqlite:{}", dir.join("test.db").display())).await.expect("open");
    let clock = Arc::new(ManualClock::new(START_MS));
    let env = Env { clock: clock.clone(), random };
    let config = Config { data_dir: dir.clone(), ..config };
    let services = Services::with_env(config, store.clone(), keys, env).expect("services");
    Harness { services, store, clock, dir }
}

async fn harness() -> Harness {
    harness_with(Config::default()).await
}

impl Harness {
    /// A user with password `secret` and a logged-in device.
    async fn user(&self, name: &str) -> Requester {
        let user_id = self.services.create_user(name, Some("secret".into()), false).await.expect("create user");
        let session = self.services.issue_session(&user_id, None, None, false).await.expect("session");
        self.services.resolve_token(&session.access_token).await.expect("token resolves")
    }
}

fn password_auth(session: Option<&str>) -> AuthData {
    serde_json::from_value(json!({ "type": "m.login.password", "password": "secret", "session": session }))
        .expect("auth data")
}

/// The error of `result`, which must have this `errcode`.
fn assert_code(result: Result<impl std::fmt::Debug, MatrixError>, errcode: &str) -> MatrixError {
    let err = result.expect_err("an error");
    assert_eq!(err.code.as_str(), errcode, "{err}");
    err
}

#[tokio::test]
async fn a_login_token_works_once_and_only_until_it_expires() {
    let h = harness().await;
    let alice = h.user("alice").await;
    let login = |token: &str| -> LoginRequest {
        serde_json::from_value(json!({ "type": "m.login.token", "token": token })).expect("login request")
    };

    let token = h.services.create_login_token(&alice, Some(&password_auth(None))).await.expect("token");
    let session = h.services.login(login(&token), "client", None).await.expect("fresh token logs in");
    assert_eq!(session.user_id, alice.user_id);
    assert_code(h.services.login(login(&token), "client", None).await, "M_FORBIDDEN");

    let token = h.services.create_login_token(&alice, Some(&password_auth(None))).await.expect("token");
    h.clock.advance(Duration::from_millis(LOGIN_TOKEN_LIFETIME_MS + 1));
    assert_code(h.services.login(login(&token), "client", None).await, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_refreshable_access_token_expires_into_a_soft_logout() {
    let h = harness().await;
    let alice = h.user("alice").await;
    let session = h.services.issue_session(&alice.user_id, None, None, true).await.expect("refreshable session");
    let lifetime = h.services.config().limits.refreshable_access_token_lifetime_ms;
    h.services.resolve_token(&session.access_token).await.expect("valid at first");
    h.clock.advance(Duration::from_millis(lifetime));
    let expired = assert_code(h.services.resolve_token(&session.access_token).await, "M_UNKNOWN_TOKEN");
    assert_eq!(expired.code, ErrorCode::UnknownToken { soft_logout: true }, "the client may refresh");
    let refreshed =
        h.services.refresh(session.refresh_token.as_deref().expect("refresh token")).await.expect("refresh");
    h.services.resolve_token(&refreshed.access_token).await.expect("the new token is valid");
}

#[tokio::test]
async fn an_authentication_session_is_continued_until_it_expires_and_then_cleaned_up() {
    let h = harness().await;
    let alice = h.user("alice").await;
    let challenge = |err: MatrixError| err.uia.expect("a UIA challenge");

    let first = challenge(assert_code(h.services.deactivate_account(&alice, None, false).await, "M_UNAUTHORIZED"));
    assert_eq!(first.flows, vec![vec!["m.login.password".to_owned()]]);
    // A wrong stage continues the same session, and is told so.
    let other_stage: AuthData =
        serde_json::from_value(json!({ "type": "m.login.dummy", "session": first.session })).expect("auth data");
    let again = h.services.deactivate_account(&alice, Some(&other_stage), false).await;
    assert_eq!(challenge(assert_code(again, "M_UNAUTHORIZED")).session, first.session);

    h.clock.advance(myelin_service::uia::SESSION_LIFETIME + Duration::from_secs(1));
    let late = h.services.deactivate_account(&alice, Some(&other_stage), false).await;
    assert_ne!(challenge(assert_code(late, "M_UNAUTHORIZED")).session, first.session, "expired: a new one");

    // The clean-up job removes expired sessions from the database.
    h.clock.advance(myelin_service::uia::SESSION_LIFETIME + Duration::from_secs(1));
    let ran = h.services.run_due_jobs(h.services.now_ms()).await.expect("jobs");
    assert_eq!(ran, 0, "nothing queued: the runner was not spawned");
    h.services.schedule_job(JobKind::Cleanup, json!({}), h.services.now_ms()).await.expect("queue");
    assert_eq!(h.services.run_due_jobs(h.services.now_ms()).await.expect("jobs"), 1);
    assert_eq!(h.store.uia_session(&first.session, 0).await.expect("read"), None, "cleaned up");

    h.services.deactivate_account(&alice, Some(&password_auth(None)), false).await.expect("password passes");
    assert_code(h.services.resolve_token(&alice.access_token).await, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn rate_limits_refill_as_the_clock_moves() {
    let mut config = Config::default();
    config.rate_limits.login = myelin_core::config::RateLimit { per_second: 1.0, burst: 2 };
    let h = harness_with(config).await;
    h.user("alice").await;
    let login = || -> LoginRequest {
        serde_json::from_value(json!({ "type": "m.login.password", "user": "alice", "password": "secret" }))
            .expect("login request")
    };
    h.services.login(login(), "10.0.0.1", None).await.expect("first");
    h.services.login(login(), "10.0.0.1", None).await.expect("second (burst)");
    let err = assert_code(h.services.login(login(), "10.0.0.1", None).await, "M_LIMIT_EXCEEDED");
    assert_eq!(err.status, 429);
    h.services.login(login(), "10.0.0.2", None).await.expect("another client has its own bucket");
    h.clock.advance(Duration::from_secs(1));
    h.services.login(login(), "10.0.0.1", None).await.expect("refilled after a second");
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_and_kept_after_the_last_attempt() {
    let h = harness().await;
    let now = h.services.now_ms();
    let job = NewJob { kind: "no-such-kind".into(), dedupe_key: None, payload: "{}".into(), run_at_ms: now };
    h.store.schedule_job(job, now).await.expect("queue");
    let mut at = now;
    for attempt in 1..=myelin_service::jobs::MAX_ATTEMPTS {
        assert_eq!(h.services.run_due_jobs(at).await.expect("run"), 1, "attempt {attempt} is due");
        let jobs = h.store.jobs().await.expect("jobs");
        let job = &jobs[0];
        assert_eq!(job.attempts, attempt);
        assert!(job.last_error.as_deref().is_some_and(|e| e.contains("no-such-kind")), "{job:?}");
        match myelin_service::jobs::retry_at(at, attempt) {
            Some(retry) => {
                assert!(!job.failed && job.run_at_ms == retry, "{job:?}");
                assert_eq!(h.services.run_due_jobs(retry - 1).await.expect("run"), 0, "not before its time");
                at = retry;
            }
            None => assert!(job.failed, "kept as failed after the last attempt: {job:?}"),
        }
    }
    assert_eq!(h.services.run_due_jobs(at + 86_400_000).await.expect("run"), 0, "a failed job is not run again");
}

#[tokio::test]
async fn a_message_sent_is_in_the_history_and_the_next_sync() {
    let h = harness().await;
    let alice = h.user("alice").await;
    let bob = h.user("bob").await;
    let room = h.services.create_room(&alice, CreateRoomRequest::default()).await.expect("create room");
    let first = h
        .services
        .sync(&bob, SyncRequest { since: None, timeout: Duration::ZERO, full_state: false, filter: None })
        .await
        .expect("bob's first sync");
    let since = myelin_service::sync::SyncToken::parse(first["next_batch"].as_str().expect("next_batch"));

    let spec = EventSpec::message(TimelineEventType::RoomMessage, json!({ "msgtype": "m.text", "body": "hi" }));
    let sent = h.services.send_client_event(&alice, &room, spec).await.expect("send");
    let page = h
        .services
        .messages(
            &alice,
            &room,
            MessagesRequest { from: None, to: None, backward: true, limit: 1, filter: Default::default() },
        )
        .await
        .expect("messages");
    assert_eq!(page.chunk[0]["event_id"], sent.as_str());
    assert_eq!(page.chunk[0]["origin_server_ts"], START_MS, "stamped by the injected clock");
    assert!(page.start > StreamPos::ZERO);

    // Bob is not in the room: his sync stays empty and he may not read it.
    let sync = h
        .services
        .sync(&bob, SyncRequest { since, timeout: Duration::ZERO, full_state: false, filter: None })
        .await
        .expect("bob's sync");
    assert_eq!(sync["rooms"]["join"].get(room.as_str()), None, "{sync}");
    let request = MessagesRequest { from: None, to: None, backward: true, limit: 10, filter: Default::default() };
    assert_code(h.services.messages(&bob, &room, request).await, "M_FORBIDDEN");

    let sync = h
        .services
        .sync(&alice, SyncRequest { since: None, timeout: Duration::ZERO, full_state: false, filter: None })
        .await
        .expect("alice's sync");
    let timeline = &sync["rooms"]["join"][room.as_str()]["timeline"]["events"];
    let last: &Value = timeline.as_array().and_then(|events| events.last()).expect("timeline events");
    assert_eq!(last["event_id"], sent.as_str());
}

/// Incoming federation requests are accepted only with a valid signature by a key of their
/// origin, for this server; a bad header is a 401, never a 500. The origin's key is put in the
/// key cache directly; its name is a loopback address the default policy refuses, so a refetch
/// (of an expired or unknown key) fails without any network.
#[tokio::test]
async fn federation_requests_are_authenticated_by_their_origins_key() {
    use base64::Engine as _;
    use myelin_service::federation::xmatrix::sign_request;
    use myelin_storage::ServerKeyRecord;
    use ruma::{ServerName, signatures::Ed25519KeyPair};

    let h = harness().await;
    let origin = <&ServerName>::try_from("127.0.0.1:1").expect("origin");
    let key_pair = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "t1".into()).expect("key");
    let public_key = base64::engine::general_purpose::STANDARD_NO_PAD.encode(key_pair.public_key());
    let record = ServerKeyRecord {
        key_id: "ed25519:t1".into(),
        public_key,
        valid_until_ts: START_MS + 3_600_000,
        expired_ts: None,
        key_json: "{}".into(),
        fetched_ms: START_MS,
    };
    h.store.put_server_keys(origin, vec![record]).await.expect("cache the key");
    let us = h.services.server_name().to_owned();
    let uri = "/_matrix/federation/v1/query/directory?room_alias=%23a%3Alocalhost";
    let body = json!({"x": 1});
    let sign = |destination: &ServerName, method: &str, content: Option<&Value>| {
        sign_request(&key_pair, origin, destination, method, uri, content).expect("sign")
    };
    let auth = |method: &'static str, headers: Vec<String>, content: Option<Value>| {
        let services = h.services.clone();
        async move {
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            services.authenticate_federation_request(method, uri, &headers, content.as_ref()).await
        }
    };
    let unauthorized = |result: Result<ruma::OwnedServerName, MatrixError>| {
        let err = result.expect_err("refused");
        assert_eq!((err.code, err.status), (ErrorCode::Unauthorized, 401), "{}", err.message);
    };

    assert_eq!(auth("GET", vec![sign(&us, "GET", None)], None).await.expect("signed"), origin);
    assert_eq!(auth("PUT", vec![sign(&us, "PUT", Some(&body))], Some(body.clone())).await.expect("with body"), origin);
    let elsewhere = <&ServerName>::try_from("elsewhere.example").expect("name");
    unauthorized(auth("GET", vec![sign(elsewhere, "GET", None)], None).await);
    unauthorized(auth("PUT", vec![sign(&us, "PUT", Some(&body))], Some(json!({"x": 2}))).await);
    unauthorized(auth("POST", vec![sign(&us, "GET", None)], None).await);
    unauthorized(auth("GET", vec![], None).await);
    let forged = sign(&us, "GET", None).replace("sig=\"", "sig=\"AAAA");
    unauthorized(auth("GET", vec![forged], None).await);
    for garbage in ["", "X-Matrix", "Bearer abc", "X-Matrix origin=\"\u{1F600}\",key=1,sig=2", "X-Matrix ===\"\""] {
        unauthorized(auth("GET", vec![garbage.to_owned()], None).await);
    }
    // One good header among bad ones is enough.
    assert!(auth("GET", vec!["junk".into(), sign(&us, "GET", None)], None).await.is_ok());
    // Once the key has expired (and the origin cannot be asked again), nothing it signs passes.
    h.clock.advance(Duration::from_secs(3_601));
    unauthorized(auth("GET", vec![sign(&us, "GET", None)], None).await);
}

#[tokio::test]
async fn a_waiting_long_poll_holds_little_memory() {
    // Thousands of listeners wait at once: what each waiting request holds is the size of its
    // future, which must not include room for building an answer (a whole answer built inline
    // made these futures 2.9 and 3.3 KiB; boxed, they are 1.7 and 1.4 KiB).
    let h = harness().await;
    let alice = h.user("alice").await;
    let sync = h
        .services
        .sync(&alice, SyncRequest { since: None, timeout: Duration::from_secs(30), full_state: false, filter: None });
    let size = std::mem::size_of_val(&sync);
    assert!(size < 2 * 1024, "a waiting /sync holds {size} bytes");
    drop(sync);
    let request = myelin_service::sliding_sync::SlidingSyncRequest::parse(
        &json!({ "conn_id": "c" }),
        None,
        Duration::from_secs(30),
    )
    .expect("request");
    let sliding = h.services.sliding_sync(&alice, request);
    let size = std::mem::size_of_val(&sliding);
    assert!(size < 2 * 1024, "a waiting sliding sync holds {size} bytes");
}
