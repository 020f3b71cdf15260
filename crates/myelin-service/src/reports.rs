//! Reports to the server's admins: of an event (`/rooms/{roomId}/report/{eventId}`), a room
//! (`/rooms/{roomId}/report`) or a user (`/users/{userId}/report`). Kept as rows; the admin API
//! lists them. An event is reportable only by someone who can see it, a room only if it exists
//! here — otherwise 404, so a report reveals nothing.

use myelin_core::{
    MatrixError, MatrixResult,
    types::{EventId, RoomId, UserId},
};
use myelin_storage::ReportRecord;
use serde_json::Value;

use crate::{Services, accounts::Requester};

/// Longest reason kept.
const MAX_REASON_BYTES: usize = 4096;

/// The `reason` (optional string) and `score` (optional, -100 to 0) of a report body.
fn reason_and_score(body: &Value) -> MatrixResult<(Option<String>, Option<i64>)> {
    if !body.is_object() {
        return Err(MatrixError::bad_json("The body must be an object"));
    }
    let reason = match body.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) if r.len() <= MAX_REASON_BYTES => Some(r.clone()),
        Some(Value::String(_)) => return Err(MatrixError::invalid_param("reason is too long")),
        Some(_) => return Err(MatrixError::invalid_param("reason must be a string")),
    };
    let score = match body.get("score") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(s) if (-100..=0).contains(&s) => Some(s),
            _ => return Err(MatrixError::invalid_param("score must be an integer between -100 and 0")),
        },
    };
    Ok((reason, score))
}

impl Services {
    /// `POST /rooms/{roomId}/report/{eventId}`.
    pub async fn report_event(
        &self,
        requester: &Requester,
        room_id: &RoomId,
        event_id: &EventId,
        body: &Value,
    ) -> MatrixResult<()> {
        let (reason, score) = reason_and_score(body)?;
        let not_found = || MatrixError::not_found("Unable to report event: it does not exist or you cannot see it");
        let event = self.event(event_id).await?.filter(|e| e.room_id == room_id && !e.outlier).ok_or_else(not_found)?;
        if self.filter_visible(&requester.user_id, vec![event]).await?.is_empty() {
            return Err(not_found());
        }
        self.add_report(requester, Some(room_id), Some(event_id), None, reason, score).await
    }

    /// `POST /rooms/{roomId}/report`.
    pub async fn report_room(&self, requester: &Requester, room_id: &RoomId, body: &Value) -> MatrixResult<()> {
        let (reason, _) = reason_and_score(body)?;
        if self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::not_found("Unknown room"));
        }
        self.add_report(requester, Some(room_id), None, None, reason, None).await
    }

    /// `POST /users/{userId}/report`.
    pub async fn report_user(&self, requester: &Requester, user_id: &UserId, body: &Value) -> MatrixResult<()> {
        let (reason, _) = reason_and_score(body)?;
        if self.is_local_user(user_id) && self.store.get_user(user_id).await?.is_none() {
            return Err(MatrixError::not_found("Unknown user"));
        }
        self.add_report(requester, None, None, Some(user_id), reason, None).await
    }

    async fn add_report(
        &self,
        requester: &Requester,
        room_id: Option<&RoomId>,
        event_id: Option<&EventId>,
        user_id: Option<&UserId>,
        reason: Option<String>,
        score: Option<i64>,
    ) -> MatrixResult<()> {
        let report = ReportRecord {
            id: 0,
            reporter: requester.user_id.clone(),
            room_id: room_id.map(ToOwned::to_owned),
            event_id: event_id.map(ToOwned::to_owned),
            user_id: user_id.map(ToOwned::to_owned),
            reason,
            score,
            created_ms: self.clock.now_ms(),
        };
        let id = self.store.add_report(&report).await?;
        tracing::info!(id, reporter = %report.reporter, room = ?report.room_id, event = ?report.event_id, user = ?report.user_id, "content reported");
        Ok(())
    }
}
