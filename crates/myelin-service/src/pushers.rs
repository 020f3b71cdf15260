//! Pushers and push delivery: `/pushers` and `/pushers/set`, and the `push` job that sends a
//! user's notifications to their push gateways (the push gateway API, `/_matrix/push/v1/notify`).
//!
//! The job is queued by the event write itself (storage: a notifying push action for a user with
//! a pusher queues `push:<user>`), so a notification survives any crash after its event
//! committed. Each pusher keeps the position up to which it was sent; a run sends what is after
//! it, oldest first, and moves it on event by event. A gateway that fails is retried with
//! backoff (forever, capped at an hour, as the federation outbox is); notifications more than a
//! day old when their turn comes are dropped; a pushkey the gateway says it rejected loses its
//! pusher.
//!
//! Email pushers (with `[email]`: `kind: email`, `app_id: m.email`, the pushkey an address bound
//! to the account) have their own job, `email_push:<user>`, queued by the push job: it emails the
//! notifications still unread `email.notif_delay_ms` after they came, all waiting ones in one
//! message, and skips those the user has read meanwhile.

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult,
    types::{OwnedDeviceId, OwnedRoomId, UserId},
};
use myelin_storage::{PendingPush, PusherRecord};
use serde_json::{Map, Value, json};

use crate::{Services, accounts::Requester};

/// The kind of pushers that email (the `app_id` they must have is [`EMAIL_APP_ID`]).
const EMAIL_KIND: &str = "email";
const EMAIL_APP_ID: &str = "m.email";
/// Notifications one email lists at most.
const EMAIL_BATCH: usize = 50;
/// Longest message text quoted in an email.
const EMAIL_QUOTE_CHARS: usize = 200;

/// The path a push gateway's URL must have.
const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
/// Notifications read per pusher at a time.
const PUSH_BATCH: usize = 20;
/// A notification this old when its turn comes is not sent (its gateway was down that long).
const MAX_NOTIFICATION_AGE_MS: u64 = 24 * 3600 * 1000;
const MAX_PUSHKEY_BYTES: usize = 512;
const MAX_APP_ID_BYTES: usize = 64;
const MAX_FIELD_BYTES: usize = 512;
/// `/notifications` page size when the client gives none, and the largest.
const NOTIFICATIONS_PAGE: usize = 50;
const MAX_NOTIFICATIONS_PAGE: usize = 1000;

/// What a gateway made of one notification.
enum Delivery {
    Sent,
    /// The gateway rejected the pushkey: the pusher goes.
    Rejected,
}

fn string_field<'a>(body: &'a Value, key: &str, max: usize) -> MatrixResult<&'a str> {
    match body.get(key) {
        None | Some(Value::Null) => Err(MatrixError::missing_param(format!("{key} is required"))),
        Some(Value::String(s)) if s.len() <= max => Ok(s),
        Some(Value::String(_)) => Err(MatrixError::invalid_param(format!("{key} is too long"))),
        Some(_) => Err(MatrixError::invalid_param(format!("{key} must be a string"))),
    }
}

/// The pusher JSON clients read back.
fn pusher_json(p: &PusherRecord) -> Value {
    let mut out = json!({
        "pushkey": p.pushkey,
        "kind": p.kind,
        "app_id": p.app_id,
        "app_display_name": p.app_display_name,
        "device_display_name": p.device_display_name,
        "lang": p.lang,
        "data": serde_json::from_str::<Value>(&p.data).unwrap_or_else(|_| json!({})),
    });
    if let Some(tag) = &p.profile_tag {
        out["profile_tag"] = tag.clone().into();
    }
    out
}

/// The actions a push action recorded (those of the rule that matched when the event came); a row
/// from before they were recorded: `notify` and its highlight.
fn recorded_actions(actions: Option<&str>, highlight: bool) -> Value {
    actions
        .and_then(|a| serde_json::from_str::<Value>(a).ok())
        .filter(Value::is_array)
        .unwrap_or_else(|| json!(["notify", { "set_tweak": "highlight", "value": highlight }]))
}

/// `set_tweak` actions as the gateway's `tweaks` object (a highlight without a value is true).
fn tweaks_of(actions: &Value) -> Map<String, Value> {
    let mut tweaks = Map::new();
    for action in actions.as_array().cloned().unwrap_or_default() {
        if let Some(name) = action.get("set_tweak").and_then(Value::as_str) {
            tweaks.insert(name.to_owned(), action.get("value").cloned().unwrap_or(Value::Bool(true)));
        }
    }
    tweaks
}

impl Services {
    /// `GET /pushers`.
    pub async fn get_pushers(&self, requester: &Requester) -> MatrixResult<Value> {
        let pushers = self.store.pushers(&requester.user_id).await?;
        Ok(json!({ "pushers": pushers.iter().map(pusher_json).collect::<Vec<_>>() }))
    }

    /// `POST /pushers/set`: adds, replaces or (with `kind: null`) removes a pusher.
    pub async fn set_pusher(&self, requester: &Requester, body: &Value) -> MatrixResult<()> {
        if !body.is_object() {
            return Err(MatrixError::bad_json("The body must be an object"));
        }
        let pushkey = string_field(body, "pushkey", MAX_PUSHKEY_BYTES)?;
        let app_id = string_field(body, "app_id", MAX_APP_ID_BYTES)?;
        let kind = match body.get("kind") {
            None => return Err(MatrixError::missing_param("kind is required")),
            Some(Value::Null) => {
                self.store.delete_pusher(&requester.user_id, app_id, pushkey).await?;
                return Ok(());
            }
            Some(Value::String(kind)) if kind == "http" => kind.clone(),
            Some(Value::String(kind)) if kind == "email" => {
                return self.set_email_pusher(requester, body, app_id, pushkey).await;
            }
            Some(_) => return Err(MatrixError::invalid_param("kind must be http, email or null")),
        };
        let app_display_name = string_field(body, "app_display_name", MAX_FIELD_BYTES)?;
        let device_display_name = string_field(body, "device_display_name", MAX_FIELD_BYTES)?;
        let lang = string_field(body, "lang", MAX_FIELD_BYTES)?;
        let profile_tag = match body.get("profile_tag") {
            None | Some(Value::Null) => None,
            Some(_) => Some(string_field(body, "profile_tag", MAX_FIELD_BYTES)?.to_owned()),
        };
        let data = match body.get("data") {
            Some(data @ Value::Object(_)) => data,
            None => return Err(MatrixError::missing_param("data is required")),
            Some(_) => return Err(MatrixError::invalid_param("data must be an object")),
        };
        let url = data
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| MatrixError::missing_param("data.url is required for http pushers"))?;
        let parsed = reqwest::Url::parse(url).map_err(|_| MatrixError::invalid_param("data.url is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.path() != NOTIFY_PATH {
            return Err(MatrixError::invalid_param(format!(
                "data.url must be an http(s) URL with the path {NOTIFY_PATH}"
            )));
        }
        match data.get("format") {
            None | Some(Value::Null) => {}
            Some(Value::String(f)) if f == "event_id_only" => {}
            Some(_) => return Err(MatrixError::invalid_param("data.format may only be event_id_only")),
        }
        let append = match body.get("append") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(MatrixError::invalid_param("append must be a boolean")),
        };
        let record = PusherRecord {
            user_id: requester.user_id.clone(),
            app_id: app_id.to_owned(),
            pushkey: pushkey.to_owned(),
            kind,
            app_display_name: app_display_name.to_owned(),
            device_display_name: device_display_name.to_owned(),
            profile_tag,
            lang: lang.to_owned(),
            data: data.to_string(),
            device_id: Some(OwnedDeviceId::from(requester.device_id.as_str())),
            created_ms: self.clock.now_ms(),
            // Notifications from before the pusher are not sent to it.
            pushed_pos: self.store.stream_head(),
        };
        self.store.put_pusher(&record, append).await?;
        Ok(())
    }

    /// `GET /notifications`: the requester's notifications, newest first, `from` a token of an
    /// earlier page.
    pub async fn notifications(
        &self,
        requester: &Requester,
        from: Option<&str>,
        limit: Option<u64>,
        only: Option<&str>,
    ) -> MatrixResult<Value> {
        let before = match from {
            None => None,
            Some(token) => Some(
                token
                    .parse::<i64>()
                    .map(myelin_core::StreamPos)
                    .map_err(|_| MatrixError::invalid_param("Invalid from token"))?,
            ),
        };
        let limit = limit.map_or(NOTIFICATIONS_PAGE, |l| (l as usize).clamp(1, MAX_NOTIFICATIONS_PAGE));
        let highlights_only = only == Some("highlight");
        let found = self.store.notifications(&requester.user_id, before, limit, highlights_only).await?;
        let events = self.events(&found.iter().map(|n| n.event_id.clone()).collect::<Vec<_>>()).await?;
        let viewer = Some(crate::pdu::Viewer { user_id: &requester.user_id, device_id: &requester.device_id });
        let formatted = self.client_events(&events, crate::pdu::ClientFormat::Client, viewer).await?;
        let by_id: std::collections::HashMap<String, Value> =
            events.iter().zip(formatted).map(|(e, v)| (e.event_id.to_string(), v)).collect();
        let mut out = Vec::new();
        for n in &found {
            let Some(event) = by_id.get(n.event_id.as_str()) else { continue };
            let ts = event["origin_server_ts"].clone();
            out.push(json!({
                "actions": recorded_actions(n.actions.as_deref(), n.highlight),
                "event": event,
                "read": n.read,
                "room_id": n.room_id,
                "ts": ts,
            }));
        }
        let mut body = json!({ "notifications": out });
        if found.len() == limit
            && let Some(last) = found.last()
        {
            body["next_token"] = last.stream_pos.0.to_string().into();
        }
        Ok(body)
    }

    /// The `push` job of a user (payload: the user id): sends each pusher what it has not been
    /// sent. An error leaves the job to be retried; positions already moved stay moved.
    pub(crate) async fn run_push(&self, payload: &str) -> MatrixResult<()> {
        let user_id = UserId::parse(payload).map_err(|_| MatrixError::internal("push job without a user"))?;
        // The job may come from another process's commit this one has not heard of yet.
        self.store.refresh_stream_head().await?;
        for pusher in self.store.pushers(&user_id).await? {
            if pusher.kind == EMAIL_KIND {
                // Emailed by their own job, once unread long enough.
                if !self.store.pending_pushes(&user_id, pusher.pushed_pos, 1).await?.is_empty() {
                    self.schedule_email_push(&user_id).await?;
                }
                continue;
            }
            let mut position = pusher.pushed_pos;
            'pusher: loop {
                let pending = self.store.pending_pushes(&user_id, position, PUSH_BATCH).await?;
                if pending.is_empty() {
                    break;
                }
                for push in &pending {
                    let sent = self.push_one(&pusher, push).await;
                    match sent {
                        Ok(Delivery::Sent) => {
                            self.metrics.pushes_processed.inc();
                            position = push.stream_pos;
                        }
                        Ok(Delivery::Rejected) => {
                            self.metrics.pushes_failed.inc();
                            tracing::info!(user = %user_id, app_id = pusher.app_id, "push gateway rejected the pushkey: pusher removed");
                            self.store.delete_pusher(&user_id, &pusher.app_id, &pusher.pushkey).await?;
                            break 'pusher;
                        }
                        Err(err) => {
                            self.metrics.pushes_failed.inc();
                            self.store.set_pusher_position(&user_id, &pusher.app_id, &pusher.pushkey, position).await?;
                            return Err(err);
                        }
                    }
                }
                self.store.set_pusher_position(&user_id, &pusher.app_id, &pusher.pushkey, position).await?;
            }
        }
        Ok(())
    }

    /// After the job finished: notifications queued while it was finishing found it still there,
    /// so it is queued again if any are waiting.
    pub(crate) async fn recheck_push(&self, payload: &str) -> MatrixResult<()> {
        let Ok(user_id) = UserId::parse(payload) else { return Ok(()) };
        self.store.refresh_stream_head().await?;
        for pusher in self.store.pushers(&user_id).await? {
            if pusher.kind != EMAIL_KIND && !self.store.pending_pushes(&user_id, pusher.pushed_pos, 1).await?.is_empty()
            {
                let job = myelin_storage::NewJob {
                    kind: myelin_storage::PUSH_JOB.to_owned(),
                    dedupe_key: Some(myelin_storage::push_job_key(&user_id)),
                    payload: user_id.to_string(),
                    run_at_ms: self.clock.now_ms(),
                };
                self.store.schedule_job(job, self.clock.now_ms()).await?;
                self.jobs_queued.notify_one();
                break;
            }
        }
        Ok(())
    }

    /// Sends one notification to one pusher's gateway.
    async fn push_one(&self, pusher: &PusherRecord, push: &PendingPush) -> MatrixResult<Delivery> {
        let Some(event) = self.event(&push.event_id).await? else { return Ok(Delivery::Sent) };
        if self.clock.now_ms().saturating_sub(event.origin_server_ts) > MAX_NOTIFICATION_AGE_MS {
            return Ok(Delivery::Sent); // too late to be of use
        }
        let content = Self::event_content(&event);
        let mut data: Value = serde_json::from_str(&pusher.data).unwrap_or_else(|_| json!({}));
        let Some(url) = data.get("url").and_then(Value::as_str).map(str::to_owned) else {
            return Ok(Delivery::Rejected);
        };
        let event_id_only = data.get("format").and_then(Value::as_str) == Some("event_id_only");
        if let Some(map) = data.as_object_mut() {
            map.remove("url");
        }
        // Tweaks of the rule that matched when the event came (sound, highlight).
        let tweaks = tweaks_of(&recorded_actions(push.actions.as_deref(), push.highlight));
        let high = push.highlight || tweaks.contains_key("sound") || event.event_type.to_string() == "m.room.encrypted";
        let unread = self.store.unread_notification_total(&pusher.user_id).await?;
        let device = json!({
            "app_id": pusher.app_id,
            "pushkey": pusher.pushkey,
            "pushkey_ts": pusher.created_ms / 1000,
            "data": data,
            "tweaks": tweaks,
        });
        let mut notification = json!({
            "event_id": event.event_id,
            "room_id": event.room_id,
            "counts": { "unread": unread },
            "devices": [device],
            "prio": if high { "high" } else { "low" },
        });
        if !event_id_only {
            notification["type"] = event.event_type.to_string().into();
            notification["sender"] = event.sender.to_string().into();
            notification["content"] = content;
            if let Some(sender) = self.store.membership(&push.room_id, &event.sender).await?
                && let Some(name) = sender.displayname
            {
                notification["sender_display_name"] = name.into();
            }
            if let Some(name) =
                self.store.current_state_event(&push.room_id, &ruma::events::StateEventType::RoomName, "").await?
                && let Some(name) = Self::event_content(&name)["name"].as_str()
            {
                notification["room_name"] = name.into();
            }
            if event.state_key.as_deref() == Some(pusher.user_id.as_str()) {
                notification["user_is_target"] = true.into();
            }
        }
        let answer = self.push_gateway_post(&url, &json!({ "notification": notification })).await?;
        let rejected = answer["rejected"].as_array().is_some_and(|r| r.iter().any(|k| k == pusher.pushkey.as_str()));
        Ok(if rejected { Delivery::Rejected } else { Delivery::Sent })
    }
}

impl Services {
    /// `POST /pushers/set` with `kind: email`.
    async fn set_email_pusher(
        &self,
        requester: &Requester,
        body: &Value,
        app_id: &str,
        pushkey: &str,
    ) -> MatrixResult<()> {
        if !self.config.email.enabled() {
            return Err(MatrixError::invalid_param(
                "Email pushers need an SMTP server, which this server does not have",
            ));
        }
        if app_id != EMAIL_APP_ID {
            return Err(MatrixError::invalid_param("Email pushers have the app_id m.email"));
        }
        let address = crate::email::normalise_email(pushkey);
        let owner = match &address {
            Some(address) => self.store.threepid_owner("email", address).await?,
            None => None,
        };
        let Some(address) = address.filter(|_| owner.as_deref() == Some(&*requester.user_id)) else {
            return Err(MatrixError::new(
                ErrorCode::Other("M_THREEPID_NOT_FOUND"),
                "The pushkey must be an email address of your account",
            ));
        };
        let text = |key: &str| {
            body.get(key).and_then(Value::as_str).unwrap_or_default().chars().take(MAX_FIELD_BYTES).collect::<String>()
        };
        let append = body.get("append").and_then(Value::as_bool).unwrap_or(false);
        let data = match body.get("data") {
            Some(data @ Value::Object(_)) => data.to_string(),
            None | Some(Value::Null) => "{}".to_owned(),
            Some(_) => return Err(MatrixError::invalid_param("data must be an object")),
        };
        let record = PusherRecord {
            user_id: requester.user_id.clone(),
            app_id: app_id.to_owned(),
            pushkey: address,
            kind: EMAIL_KIND.to_owned(),
            app_display_name: text("app_display_name"),
            device_display_name: text("device_display_name"),
            profile_tag: None,
            lang: text("lang"),
            data,
            device_id: Some(OwnedDeviceId::from(requester.device_id.as_str())),
            created_ms: self.clock.now_ms(),
            pushed_pos: self.store.stream_head(),
        };
        self.store.put_pusher(&record, append).await?;
        Ok(())
    }

    /// Queues the user's email job (if none is queued) to run now: it works out when to email.
    async fn schedule_email_push(&self, user_id: &UserId) -> MatrixResult<()> {
        let now = self.clock.now_ms();
        let job = myelin_storage::NewJob {
            kind: crate::jobs::EMAIL_PUSH_JOB.to_owned(),
            dedupe_key: Some(format!("{}:{user_id}", crate::jobs::EMAIL_PUSH_JOB)),
            payload: user_id.to_string(),
            run_at_ms: now,
        };
        self.store.schedule_job(job, now).await?;
        self.jobs_queued.notify_one();
        Ok(())
    }

    /// The `email_push` job of a user: for each email pusher, the notifications after its
    /// position in rooms the user has not read are emailed together once the oldest is
    /// `notif_delay_ms` old; read ones are passed over. Answers when to look again, if a
    /// notification is still waiting for its time.
    pub(crate) async fn run_email_push(&self, payload: &str) -> MatrixResult<Option<u64>> {
        let user_id = UserId::parse(payload).map_err(|_| MatrixError::internal("email job without a user"))?;
        let head = self.store.refresh_stream_head().await?;
        let now = self.clock.now_ms();
        let delay = self.config.email.notif_delay_ms;
        let mut next: Option<u64> = None;
        for pusher in self.store.pushers(&user_id).await?.into_iter().filter(|p| p.kind == EMAIL_KIND) {
            let pending = self.store.pending_pushes(&user_id, pusher.pushed_pos, EMAIL_BATCH).await?;
            let Some(last) = pending.last().map(|p| p.stream_pos) else { continue };
            let mut unread_rooms: std::collections::HashMap<OwnedRoomId, bool> = std::collections::HashMap::new();
            let mut unread: Vec<(PendingPush, myelin_storage::StoredEvent)> = Vec::new();
            for push in pending {
                if !unread_rooms.contains_key(&push.room_id) {
                    let (count, _) = self.store.unread_counts(&user_id, &push.room_id, head).await?;
                    unread_rooms.insert(push.room_id.clone(), count > 0);
                }
                if unread_rooms.get(&push.room_id) == Some(&true)
                    && let Some(event) = self.event(&push.event_id).await?
                {
                    unread.push((push, event));
                }
            }
            if let Some(oldest) = unread.iter().map(|(_, e)| e.origin_server_ts.min(now)).min() {
                let due = oldest.saturating_add(delay);
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    continue;
                }
                let body = self.notification_email(&user_id, &unread).await?;
                let subject = format!(
                    "{} unread notification{} on {}",
                    unread.len(),
                    if unread.len() == 1 { "" } else { "s" },
                    self.server_name
                );
                self.send_email(&pusher.pushkey, &subject, body).await?;
            }
            self.store.set_pusher_position(&user_id, &pusher.app_id, &pusher.pushkey, last).await?;
        }
        Ok(next)
    }

    /// The text of a notification email: each message with its room and sender.
    async fn notification_email(
        &self,
        user_id: &UserId,
        unread: &[(PendingPush, myelin_storage::StoredEvent)],
    ) -> MatrixResult<String> {
        let mut out = format!("You have unread messages on {} ({user_id}):\n\n", self.server_name);
        for (push, event) in unread {
            let room =
                match self.store.current_state_event(&push.room_id, &ruma::events::StateEventType::RoomName, "").await?
                {
                    Some(name) => Self::event_content(&name)["name"].as_str().map(str::to_owned),
                    None => None,
                }
                .unwrap_or_else(|| push.room_id.to_string());
            let sender = match self.store.membership(&push.room_id, &event.sender).await? {
                Some(member) => member.displayname.unwrap_or_else(|| event.sender.to_string()),
                None => event.sender.to_string(),
            };
            let content = Self::event_content(event);
            let text = match event.event_type.to_string().as_str() {
                "m.room.encrypted" => "(an encrypted message)".to_owned(),
                _ => content["body"].as_str().map_or_else(
                    || format!("({})", event.event_type),
                    |b| b.chars().take(EMAIL_QUOTE_CHARS).collect::<String>().replace(['\r', '\n'], " "),
                ),
            };
            out.push_str(&format!("[{room}] {sender}: {text}\n"));
        }
        out.push_str("\nOpen your Matrix client to read and answer them.\n");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{recorded_actions, tweaks_of};

    #[test]
    fn tweaks_are_read_from_the_actions() {
        let actions = json!(["notify", { "set_tweak": "sound", "value": "default" }, { "set_tweak": "highlight" }]);
        let tweaks = tweaks_of(&actions);
        assert_eq!(tweaks.get("sound"), Some(&json!("default")));
        assert_eq!(tweaks.get("highlight"), Some(&json!(true)), "a highlight without a value is true");
        assert!(tweaks_of(&json!(["notify"])).is_empty());
    }

    #[test]
    fn rows_without_recorded_actions_keep_their_highlight() {
        assert_eq!(recorded_actions(None, true), json!(["notify", { "set_tweak": "highlight", "value": true }]));
        assert_eq!(recorded_actions(Some("not json"), false)[1]["value"], json!(false));
        assert_eq!(recorded_actions(Some(r#"["notify"]"#), true), json!(["notify"]));
    }
}
