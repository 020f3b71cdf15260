//! Receipts, read markers, typing, account data and tags: small writes that wake syncs.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult, Membership, StreamPos,
    types::{EventId, OwnedUserId, RoomId, UserId},
};
use myelin_storage::{ReceiptRecord, Signal};
use ruma::events::{
    GlobalAccountDataEventType, RoomAccountDataEventType,
    receipt::{ReceiptThread, ReceiptType},
};
use serde_json::{Map, Value, json};

use crate::{Services, accounts::Requester, federation::receipt_edu};

/// Longest typing timeout honoured.
const MAX_TYPING_TIMEOUT: Duration = Duration::from_secs(120);
/// Typing timeout when the client gives none.
const DEFAULT_TYPING_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest account data content accepted.
const MAX_ACCOUNT_DATA_BYTES: usize = 65_536;
/// Longest thread id of a receipt, and longest tag name.
const MAX_ID_BYTES: usize = 255;

/// The `m.fully_read` marker's type.
fn fully_read_type() -> String {
    RoomAccountDataEventType::FullyRead.to_string()
}

fn tags_type() -> String {
    RoomAccountDataEventType::Tag.to_string()
}

pub fn ignored_users_type() -> String {
    GlobalAccountDataEventType::IgnoredUserList.to_string()
}

/// Rooms with at most this many joined members have a message's unread counts read for all
/// of them at once; in a bigger room each listener reads its own (few of many members may be
/// listening).
const ROOM_WIDE_UNREAD_MEMBERS: u64 = 100;

/// Unread (notifications, highlights) of a room's joined members, by member.
pub(crate) type RoomUnread = Arc<HashMap<OwnedUserId, (u64, u64)>>;

/// A room's newest room-wide unread counts (`room_unread_newest`): at `pos`, each member's
/// count with where it starts. The next position's counts add what came after `pos` to them
/// (push actions are only ever added, at their event's position).
#[derive(Debug)]
pub(crate) struct RoomUnreadAt {
    pos: StreamPos,
    members: HashMap<OwnedUserId, (StreamPos, u64, u64)>,
}

impl Services {
    /// `user_id`'s unread notifications and highlights in `room_id` up to `until`. A message
    /// wakes every listener of its room at the same position: in a room of up to
    /// [`ROOM_WIDE_UNREAD_MEMBERS`] joined members the first of them reads every member's counts
    /// in one statement and the others take theirs from it (`shared_reads.rs`).
    pub(crate) async fn unread_counts(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        until: StreamPos,
    ) -> MatrixResult<(u64, u64)> {
        let room = room_id.to_owned();
        let summaries = self.member_summaries(std::slice::from_ref(&room)).await?;
        if summaries.get(room_id).is_some_and(|s| s.joined <= ROOM_WIDE_UNREAD_MEMBERS) {
            let room_wide = self
                .room_unread
                .get_or_read((room, until), || async {
                    let at = self.room_unread_at(room_id, until).await?;
                    let by_user: HashMap<OwnedUserId, (u64, u64)> =
                        at.members.iter().map(|(user, (_, n, h))| (user.clone(), (*n, *h))).collect();
                    Ok::<RoomUnread, MatrixError>(Arc::new(by_user))
                })
                .await?;
            if let Some(counts) = room_wide.get(user_id) {
                return Ok(*counts);
            }
        }
        // Not joined (an invite, a room left), or a big room.
        Ok(self.store.unread_counts(user_id, room_id, until).await?)
    }

    /// Every joined member's unread counts in `room_id` at `until`: what the newest counts read
    /// before (at a position at or below `until`) had, plus what came since, for each member who
    /// still counts from the same place; read whole otherwise (a receipt moved, someone joined).
    async fn room_unread_at(&self, room_id: &RoomId, until: StreamPos) -> MatrixResult<Arc<RoomUnreadAt>> {
        let limit = ROOM_WIDE_UNREAD_MEMBERS as usize;
        let room = room_id.to_owned();
        let base = self.room_unread_newest.get(&room).filter(|base| base.pos <= until);
        let epoch = self.room_unread_newest.epoch();
        let mut members = None;
        if let Some(base) = &base {
            let since = self.store.room_unread_counts(room_id, until, limit, Some(base.pos)).await?;
            members = since
                .into_iter()
                .map(|m| {
                    let counts = if m.from >= base.pos {
                        // Counted from its start: all of it is after the base.
                        (m.notifications, m.highlights)
                    } else {
                        let (from, n, h) = base.members.get(&m.user_id)?;
                        if *from != m.from {
                            return None;
                        }
                        (n + m.notifications, h + m.highlights)
                    };
                    Some((m.user_id, (m.from, counts.0, counts.1)))
                })
                .collect::<Option<HashMap<_, _>>>();
        }
        let members = match members {
            Some(members) => members,
            None => self
                .store
                .room_unread_counts(room_id, until, limit, None)
                .await?
                .into_iter()
                .map(|m| (m.user_id, (m.from, m.notifications, m.highlights)))
                .collect(),
        };
        let at = Arc::new(RoomUnreadAt { pos: until, members });
        let weight = 64 + at.members.len() * 96;
        self.room_unread_newest
            .insert_unless_newer(room, at.clone(), weight, epoch, None, |kept, new| kept.pos >= new.pos);
        Ok(at)
    }

    pub(crate) async fn joined_user_ids(&self, room_id: &RoomId) -> MatrixResult<Vec<OwnedUserId>> {
        Ok(self.store.room_members(room_id, Some(Membership::Join)).await?.into_iter().map(|m| m.user_id).collect())
    }

    pub(crate) async fn require_joined(&self, user_id: &UserId, room_id: &RoomId) -> MatrixResult<()> {
        match self.store.membership(room_id, user_id).await? {
            Some(m) if m.membership == Membership::Join => Ok(()),
            _ => Err(MatrixError::forbidden("You are not joined to this room")),
        }
    }

    /// `/receipt/{receiptType}/{eventId}`: a read receipt (public or private) or the fully-read
    /// marker.
    pub async fn send_receipt(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &EventId,
        thread_id: Option<String>,
    ) -> MatrixResult<()> {
        let fully_read = receipt_type == fully_read_type();
        let receipt_type = ReceiptType::from(receipt_type);
        if !fully_read && !matches!(receipt_type, ReceiptType::Read | ReceiptType::ReadPrivate) {
            return Err(MatrixError::invalid_param(format!("Unknown receipt type {:?}", receipt_type.as_str())));
        }
        self.require_joined(user_id, room_id).await?;
        let event = self
            .store
            .get_event(event_id)
            .await?
            .filter(|e| e.room_id == room_id)
            .ok_or_else(|| MatrixError::not_found("Event not found"))?;
        if fully_read {
            return self.set_fully_read(user_id, room_id, event_id).await;
        }
        let thread = match thread_id {
            None => ReceiptThread::Unthreaded,
            Some(t) if t.len() > MAX_ID_BYTES => return Err(MatrixError::invalid_param("thread_id is too long")),
            Some(t) => match ReceiptThread::try_from(Some(t.as_str())) {
                Ok(thread @ (ReceiptThread::Main | ReceiptThread::Thread(_))) => thread,
                _ => return Err(MatrixError::invalid_param("thread_id must be \"main\" or an event id")),
            },
        };
        let private = receipt_type == ReceiptType::ReadPrivate;
        let receipt = ReceiptRecord {
            room_id: room_id.to_owned(),
            receipt_type,
            user_id: user_id.to_owned(),
            thread,
            event_id: event_id.to_owned(),
            ts: self.clock.now_ms(),
        };
        let edu = (!private).then(|| receipt_edu(&receipt));
        let for_appservices = (!private).then(|| {
            let mut data = json!({ "ts": receipt.ts });
            if let Some(thread) = receipt.thread.as_str() {
                data["thread_id"] = thread.into();
            }
            json!({
                "type": "m.receipt",
                "room_id": room_id,
                "content": { (event_id.as_str()): { (receipt.receipt_type.as_str()): { (user_id.as_str()): data } } },
            })
        });
        if self.store.put_receipt(receipt, event.stream_pos).await?.is_some() {
            if let Some(receipt) = &for_appservices {
                let services = self.appservices_for_ephemeral(room_id).await?;
                self.queue_appservice_ephemeral(&services, receipt).await;
            }
            if private {
                self.notifier.notify_users(&[user_id.to_owned()]);
            } else {
                self.notifier.notify_users(&self.joined_user_ids(room_id).await?);
            }
            if let Some(edu) = edu {
                self.send_room_edu(room_id, &edu).await?;
            }
        }
        Ok(())
    }

    /// `/read_markers`: the fully-read marker and read receipts in one request.
    pub async fn set_read_markers(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        fully_read: Option<&EventId>,
        read: Option<&EventId>,
        read_private: Option<&EventId>,
    ) -> MatrixResult<()> {
        if let Some(event_id) = fully_read {
            self.require_joined(user_id, room_id).await?;
            self.set_fully_read(user_id, room_id, event_id).await?;
        }
        if let Some(event_id) = read {
            self.send_receipt(user_id, room_id, ReceiptType::Read.as_str(), event_id, None).await?;
        }
        if let Some(event_id) = read_private {
            self.send_receipt(user_id, room_id, ReceiptType::ReadPrivate.as_str(), event_id, None).await?;
        }
        Ok(())
    }

    async fn set_fully_read(&self, user_id: &UserId, room_id: &RoomId, event_id: &EventId) -> MatrixResult<()> {
        let content = json!({ "event_id": event_id }).to_string();
        self.store.put_account_data(user_id, Some(room_id), &fully_read_type(), content).await?;
        self.notifier.notify_users(&[user_id.to_owned()]);
        Ok(())
    }

    /// `/typing/{userId}`.
    pub async fn set_typing(
        &self,
        requester: &Requester,
        user_id: &UserId,
        room_id: &RoomId,
        typing: bool,
        timeout_ms: Option<u64>,
    ) -> MatrixResult<()> {
        requester.require_self(user_id, "send typing notifications")?;
        self.require_joined(user_id, room_id).await?;
        let timeout =
            typing.then(|| timeout_ms.map_or(DEFAULT_TYPING_TIMEOUT, Duration::from_millis).min(MAX_TYPING_TIMEOUT));
        if self.apply_typing(room_id, user_id, timeout).await? {
            self.send_typing_edu(room_id, user_id, typing).await?;
        }
        Ok(())
    }

    /// Sets a member's typing state (local or from another server); true if it changed.
    pub(crate) async fn apply_typing(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        timeout: Option<Duration>,
    ) -> MatrixResult<bool> {
        let Some(serial) = self.typing.set(room_id, user_id, timeout) else { return Ok(false) };
        self.store.broadcast(Signal::Typing {
            room_id: room_id.to_owned(),
            user_id: user_id.to_owned(),
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
            serial,
        });
        self.notifier.notify_users(&self.joined_user_ids(room_id).await?);
        let services = self.appservices_for_ephemeral(room_id).await?;
        if !services.is_empty() {
            let typing = self.typing.typing_since(room_id, 0).unwrap_or_default();
            let edu = json!({ "type": "m.typing", "room_id": room_id, "content": { "user_ids": typing } });
            self.queue_appservice_ephemeral(&services, &edu).await;
        }
        Ok(true)
    }

    /// Stores account data (global with `room_id: None`) and wakes the user's syncs.
    pub async fn put_account_data(
        &self,
        requester: &Requester,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: Value,
    ) -> MatrixResult<()> {
        requester.require_self(user_id, "set account data")?;
        if !content.is_object() {
            return Err(MatrixError::bad_json("Account data must be a JSON object"));
        }
        if data_type.is_empty() || data_type.len() > 255 {
            return Err(MatrixError::invalid_param("Invalid account data type"));
        }
        if room_id.is_none() && data_type == crate::push::push_rules_type() {
            return Err(MatrixError::bad_json("Use the push rules API to change push rules").with_status(400));
        }
        let json = content.to_string();
        if json.len() > MAX_ACCOUNT_DATA_BYTES {
            return Err(MatrixError::new(ErrorCode::TooLarge, "Account data is too large"));
        }
        if let Some(room_id) = room_id
            && self.store.get_room(room_id).await?.is_none()
        {
            return Err(MatrixError::not_found("Unknown room"));
        }
        self.store.put_account_data(user_id, room_id, data_type, json).await?;
        if room_id.is_none() && data_type == ignored_users_type() {
            self.invalidate(&self.ignored_users, &user_id.to_owned());
        }
        if room_id.is_none() && data_type == GlobalAccountDataEventType::Direct.to_string() {
            self.invalidate(&self.direct_rooms, &user_id.to_owned());
        }
        self.notifier.notify_users(&[user_id.to_owned()]);
        Ok(())
    }

    /// Account data of the requester (push rules: the server default until changed).
    pub async fn get_account_data(
        &self,
        requester: &Requester,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> MatrixResult<Value> {
        requester.require_self(user_id, "read account data")?;
        if room_id.is_none() && data_type == crate::push::push_rules_type() {
            let rules = self.push_ruleset(user_id).await?;
            return Ok(json!({ "global": *rules }));
        }
        let json = self
            .store
            .get_account_data(user_id, room_id, data_type)
            .await?
            .ok_or_else(|| MatrixError::not_found("Account data not found"))?;
        serde_json::from_str(&json).map_err(|e| MatrixError::internal(e.to_string()))
    }

    /// The users `user_id` ignores: their messages and invites are hidden from them.
    pub async fn ignored_users(&self, user_id: &UserId) -> MatrixResult<Arc<HashSet<OwnedUserId>>> {
        let key = user_id.to_owned();
        if let Some(set) = self.ignored_users.get(&key) {
            return Ok(set);
        }
        let epoch = self.ignored_users.epoch();
        let stored = self.store.get_account_data(user_id, None, &ignored_users_type()).await?;
        let set: HashSet<OwnedUserId> = stored
            .and_then(|json| serde_json::from_str::<Value>(&json).ok())
            .and_then(|v| {
                v.get("ignored_users")
                    .and_then(Value::as_object)
                    .map(|o| o.keys().filter_map(|k| OwnedUserId::try_from(k.as_str()).ok()).collect())
            })
            .unwrap_or_default();
        let set = Arc::new(set);
        self.ignored_users.insert_if_current(key, set.clone(), 1, epoch);
        Ok(set)
    }

    /// The room's tags of the requester (`m.tag` account data).
    pub async fn room_tags(&self, requester: &Requester, user_id: &UserId, room_id: &RoomId) -> MatrixResult<Value> {
        match self.get_account_data(requester, user_id, Some(room_id), &tags_type()).await {
            Ok(content) => Ok(content),
            Err(err) if err.code == ErrorCode::NotFound => Ok(json!({ "tags": {} })),
            Err(err) => Err(err),
        }
    }

    /// Adds (`Some(content)`) or removes (`None`) one tag of a room.
    pub async fn set_room_tag(
        &self,
        requester: &Requester,
        user_id: &UserId,
        room_id: &RoomId,
        tag: &str,
        content: Option<Map<String, Value>>,
    ) -> MatrixResult<()> {
        if tag.is_empty() || tag.len() > MAX_ID_BYTES {
            return Err(MatrixError::invalid_param("Invalid tag"));
        }
        let mut tags = self.room_tags(requester, user_id, room_id).await?;
        if !tags["tags"].is_object() {
            tags["tags"] = json!({});
        }
        if let Some(map) = tags["tags"].as_object_mut() {
            match content {
                Some(content) => {
                    map.insert(tag.to_owned(), Value::Object(content));
                }
                None => {
                    map.remove(tag);
                }
            }
        }
        self.put_account_data(requester, user_id, Some(room_id), &tags_type(), tags).await
    }
}
