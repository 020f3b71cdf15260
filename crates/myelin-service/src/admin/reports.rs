//! Reports of events users made, as admins read them.

use myelin_core::types::StateEventType;
use myelin_core::{
    MatrixError, MatrixResult,
    types::{OwnedRoomId, OwnedUserId},
};
use myelin_storage::{ReportFilter, ReportRecord};
use serde_json::{Value, json};

use super::{Page, next_token};
use crate::{Services, accounts::Requester};

/// `GET /_synapse/admin/v1/event_reports`'s query.
#[derive(Clone, Debug, Default)]
pub struct ReportQuery {
    pub page: Page,
    /// `dir=f`: oldest first (newest first by default).
    pub oldest_first: bool,
    /// Only reports this user made.
    pub reporter: Option<OwnedUserId>,
    pub room_id: Option<OwnedRoomId>,
}

impl Services {
    /// A report in Synapse's shape, with the room's name and alias and the event's sender.
    async fn report_json(&self, report: &ReportRecord, with_event: bool) -> MatrixResult<Value> {
        let mut name = Value::Null;
        let mut alias = Value::Null;
        if let Some(room) = &report.room_id {
            if let Some(ev) = self.store.current_state_event(room, &StateEventType::RoomName, "").await? {
                name = Self::event_content(&ev)["name"].clone();
            }
            if let Some(ev) = self.store.current_state_event(room, &StateEventType::RoomCanonicalAlias, "").await? {
                alias = Self::event_content(&ev)["alias"].clone();
            }
        }
        let event = match &report.event_id {
            Some(id) => self.store.get_event(id).await?,
            None => None,
        };
        let mut out = json!({
            "id": report.id,
            "received_ts": report.created_ms,
            "room_id": report.room_id,
            "name": name,
            "canonical_alias": alias,
            "event_id": report.event_id,
            "user_id": report.reporter,
            "reason": report.reason,
            "score": report.score,
            "sender": event.as_ref().map(|e| e.sender.clone()),
        });
        if with_event {
            out["event_json"] = event.and_then(|e| serde_json::from_str::<Value>(&e.json).ok()).unwrap_or(Value::Null);
        }
        Ok(out)
    }

    /// `GET /_synapse/admin/v1/event_reports`: a page of reports, `total` and `next_token`.
    pub async fn admin_event_reports(&self, requester: &Requester, query: ReportQuery) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let filter =
            ReportFilter { reporter: query.reporter, room_id: query.room_id, newest_first: !query.oldest_first };
        let (reports, total) = self.store.event_reports(&filter, query.page.from, query.page.size()).await?;
        let mut listed = Vec::with_capacity(reports.len());
        for report in &reports {
            listed.push(self.report_json(report, false).await?);
        }
        let mut body = json!({ "event_reports": listed, "total": total });
        if let Some(next) = next_token(query.page, reports.len(), total) {
            body["next_token"] = next.parse::<u64>().unwrap_or_default().into();
        }
        Ok(body)
    }

    /// `GET /_synapse/admin/v1/event_reports/{reportId}`, with the reported event.
    pub async fn admin_event_report(&self, requester: &Requester, id: i64) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let report = self.store.report(id).await?.filter(|r| r.event_id.is_some()).ok_or_else(no_report)?;
        self.report_json(&report, true).await
    }

    /// `DELETE /_synapse/admin/v1/event_reports/{reportId}`.
    pub async fn admin_delete_event_report(&self, requester: &Requester, id: i64) -> MatrixResult<()> {
        Self::require_admin(requester)?;
        if !self.store.delete_report(id).await? {
            return Err(no_report());
        }
        tracing::warn!(admin = %requester.user_id, report = id, "admin API: event report deleted");
        Ok(())
    }
}

fn no_report() -> MatrixError {
    MatrixError::not_found("Event report not found")
}
