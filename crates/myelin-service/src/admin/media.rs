//! Media as admins handle it: one media's record, quarantine (its bytes no longer served, here
//! or to other servers) and protection from it, deletion of one media, of a user's uploads or
//! of old uploads, purging other servers' media kept here, and who uploads how much.

use std::collections::{BTreeSet, HashSet};

use myelin_core::{
    MatrixError, MatrixResult,
    types::{RoomId, UserId},
};
use myelin_storage::{AdminMediaRecord, Direction, OldMediaQuery, StreamPos};
use serde_json::{Value, json};

use super::{Page, next_token};
use crate::{Services, accounts::Requester};

/// Events read at a time when a room's media are gathered.
const ROOM_EVENTS_BATCH: usize = 1000;
/// Media deleted per store call in a bulk deletion.
const DELETE_BATCH: usize = 500;

/// Which uploads `POST /_synapse/admin/v1/media/delete` takes.
#[derive(Clone, Copy, Debug)]
pub struct MediaDeletion {
    /// Last used before then (milliseconds).
    pub before_ms: u64,
    /// Larger than this many bytes.
    pub size_gt: u64,
    /// Keep media in use as a user's or a room's picture (default true).
    pub keep_profiles: bool,
}

/// A media as the admin API shows it.
fn admin_media_json(m: &AdminMediaRecord) -> Value {
    json!({
        "media_id": m.media.media_id,
        "media_type": m.media.content_type,
        "media_length": m.media.content.as_ref().map(|c| c.length),
        "upload_name": m.media.upload_name,
        "created_ts": m.media.created_ms,
        "last_access_ts": m.last_access_ms,
        "quarantined_by": m.quarantined_by,
        "safe_from_quarantine": m.protected,
        "user_id": m.media.uploader,
        "authenticated": true,
    })
}

/// Every `mxc://` URI under a `…url` key anywhere in a JSON value (`url`, encrypted files'
/// `url`, `thumbnail_url`, `avatar_url`); text that only looks like one is not a media.
fn collect_mxc(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect_mxc(v, out)),
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::String(s) if key.ends_with("url") && s.starts_with("mxc://") => {
                        out.insert(s.clone());
                    }
                    other => collect_mxc(other, out),
                }
            }
        }
        _ => {}
    }
}

/// `(origin, media id)` of an `mxc://` URI.
fn split_mxc(uri: &str) -> Option<(String, String)> {
    let (origin, media_id) = uri.strip_prefix("mxc://")?.split_once('/')?;
    (!origin.is_empty() && !media_id.is_empty() && !media_id.contains('/'))
        .then(|| (origin.to_owned(), media_id.to_owned()))
}

impl Services {
    /// `M_NOT_FOUND` for quarantined media: their bytes are not served.
    pub(crate) async fn check_not_quarantined(&self, origin: &str, media_id: &str) -> MatrixResult<()> {
        if self.store.is_quarantined(origin, media_id).await? {
            return Err(MatrixError::not_found("No such media"));
        }
        Ok(())
    }

    /// `GET /_synapse/admin/v1/media/{serverName}/{mediaId}`.
    pub async fn admin_media_info(&self, requester: &Requester, origin: &str, media_id: &str) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let media = self.store.admin_media(origin, media_id).await?;
        let media = media.ok_or_else(|| MatrixError::not_found("No such media"))?;
        Ok(json!({ "media_info": admin_media_json(&media) }))
    }

    /// `POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}` (any media, even one
    /// not fetched yet).
    pub async fn admin_quarantine_media(
        &self,
        requester: &Requester,
        origin: &str,
        media_id: &str,
    ) -> MatrixResult<()> {
        Self::require_admin(requester)?;
        self.quarantine(requester, vec![(origin.to_owned(), media_id.to_owned())]).await?;
        Ok(())
    }

    /// `POST /_synapse/admin/v1/media/unquarantine/{serverName}/{mediaId}`.
    pub async fn admin_unquarantine_media(
        &self,
        requester: &Requester,
        origin: &str,
        media_id: &str,
    ) -> MatrixResult<()> {
        Self::require_admin(requester)?;
        self.store.unquarantine_media(origin, media_id).await?;
        tracing::warn!(admin = %requester.user_id, origin, media_id, "admin API: media quarantine lifted");
        Ok(())
    }

    /// `POST /_synapse/admin/v1/room/{roomId}/media/quarantine`: every media the room's events
    /// name; answers `num_quarantined`.
    pub async fn admin_quarantine_room_media(&self, requester: &Requester, room_id: &RoomId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let media = self.room_media(room_id).await?.into_iter().filter_map(|uri| split_mxc(&uri)).collect();
        Ok(json!({ "num_quarantined": self.quarantine(requester, media).await? }))
    }

    /// `POST /_synapse/admin/v1/user/{userId}/media/quarantine`: every upload of the user.
    pub async fn admin_quarantine_user_media(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let media = self.all_uploads_of(user_id).await?;
        Ok(json!({ "num_quarantined": self.quarantine(requester, media).await? }))
    }

    async fn quarantine(&self, requester: &Requester, media: Vec<(String, String)>) -> MatrixResult<u64> {
        let count = self.store.quarantine_media(&media, &requester.user_id, self.now_ms()).await?;
        tracing::warn!(admin = %requester.user_id, media = media.len(), quarantined = count,
            "admin API: media quarantined");
        Ok(count)
    }

    /// `POST /_synapse/admin/v1/media/protect/{mediaId}` and `unprotect`: this server's media,
    /// kept safe from quarantine and bulk deletion or not.
    pub async fn admin_protect_media(&self, requester: &Requester, media_id: &str, protect: bool) -> MatrixResult<()> {
        Self::require_admin(requester)?;
        let origin = self.server_name.as_str();
        if self.store.media(origin, media_id).await?.is_none() {
            return Err(MatrixError::not_found("No such media"));
        }
        self.store.set_media_protected(origin, media_id, protect).await?;
        tracing::warn!(admin = %requester.user_id, media_id, protect, "admin API: media protection changed");
        Ok(())
    }

    /// `GET /_synapse/admin/v1/room/{roomId}/media`: the media the room's events name, this
    /// server's and others'.
    pub async fn admin_room_media(&self, requester: &Requester, room_id: &RoomId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let (local, remote): (Vec<String>, Vec<String>) = self
            .room_media(room_id)
            .await?
            .into_iter()
            .partition(|uri| split_mxc(uri).is_some_and(|(origin, _)| origin == self.server_name.as_str()));
        Ok(json!({ "local": local, "remote": remote }))
    }

    /// The `mxc://` URIs a room's events name.
    async fn room_media(&self, room_id: &RoomId) -> MatrixResult<BTreeSet<String>> {
        if self.store.get_room(room_id).await?.is_none() {
            return Err(MatrixError::not_found("Room not found"));
        }
        let mut uris = BTreeSet::new();
        let mut from = StreamPos(i64::MIN);
        loop {
            let events = self.store.room_events(room_id, from, None, Direction::Forward, ROOM_EVENTS_BATCH).await?;
            let Some(last) = events.last() else { break };
            from = last.stream_pos;
            for event in &events {
                if let Ok(json) = serde_json::from_str::<Value>(&event.json) {
                    collect_mxc(&json["content"], &mut uris);
                }
            }
            if events.len() < ROOM_EVENTS_BATCH {
                break;
            }
        }
        Ok(uris)
    }

    /// `GET /_synapse/admin/v1/users/{userId}/media`: the user's uploads, newest first.
    pub async fn admin_user_media(&self, requester: &Requester, user_id: &UserId, page: Page) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        self.local_user_for_admin(user_id)?;
        let (media, total) = self.store.uploads_of(user_id, page.from, page.size()).await?;
        let mut body = json!({ "media": media.iter().map(admin_media_json).collect::<Vec<_>>(), "total": total });
        if let Some(next) = next_token(page, media.len(), total) {
            body["next_token"] = next.into();
        }
        Ok(body)
    }

    async fn all_uploads_of(&self, user_id: &UserId) -> MatrixResult<Vec<(String, String)>> {
        let mut out = Vec::new();
        loop {
            let (media, total) = self.store.uploads_of(user_id, out.len() as u64, super::MAX_PAGE).await?;
            let done = media.is_empty();
            out.extend(media.into_iter().map(|m| (m.media.origin, m.media.media_id)));
            if done || out.len() as u64 >= total {
                return Ok(out);
            }
        }
    }

    /// `DELETE /_synapse/admin/v1/users/{userId}/media`: every upload of the user.
    pub async fn admin_delete_user_media(&self, requester: &Requester, user_id: &UserId) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        self.local_user_for_admin(user_id)?;
        let media = self.all_uploads_of(user_id).await?;
        self.delete_media_and_blobs(requester, &media).await?;
        Ok(deleted(&media))
    }

    /// `DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}`: one media of this server.
    pub async fn admin_delete_media(&self, requester: &Requester, origin: &str, media_id: &str) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        if origin != self.server_name.as_str() {
            return Err(MatrixError::invalid_param("Can only delete local media"));
        }
        if self.store.media(origin, media_id).await?.is_none() {
            return Err(MatrixError::not_found("No such media"));
        }
        let media = [(origin.to_owned(), media_id.to_owned())];
        self.delete_media_and_blobs(requester, &media).await?;
        Ok(deleted(&media))
    }

    /// `POST /_synapse/admin/v1/media/delete`: this server's uploads unused since `before_ms`
    /// and larger than `size_gt`, protected media and (with `keep_profiles`) pictures kept.
    pub async fn admin_delete_old_media(&self, requester: &Requester, query: MediaDeletion) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        if query.before_ms > self.now_ms() {
            return Err(MatrixError::invalid_param("before_ts must be in the past"));
        }
        let kept: HashSet<String> =
            if query.keep_profiles { self.store.avatar_uris().await?.into_iter().collect() } else { HashSet::new() };
        let mut all = Vec::new();
        let mut skipped = HashSet::new();
        loop {
            let batch = self
                .store
                .old_local_media(OldMediaQuery {
                    origin: self.server_name.as_str(),
                    before_ms: query.before_ms,
                    size_gt: query.size_gt,
                    limit: DELETE_BATCH + skipped.len(),
                })
                .await?;
            let doomed: Vec<(String, String)> = batch
                .iter()
                .filter(|(o, id)| !kept.contains(&format!("mxc://{o}/{id}")))
                .filter(|m| !skipped.contains(*m))
                .cloned()
                .collect();
            skipped.extend(batch.iter().filter(|(o, id)| kept.contains(&format!("mxc://{o}/{id}"))).cloned());
            if doomed.is_empty() {
                break;
            }
            self.delete_media_and_blobs(requester, &doomed).await?;
            all.extend(doomed);
        }
        Ok(deleted(&all))
    }

    /// `POST /_synapse/admin/v1/purge_media_cache`: other servers' media kept here and unused
    /// since `before_ms` (fetched again when next asked for); answers `deleted`.
    pub async fn admin_purge_media_cache(&self, requester: &Requester, before_ms: u64) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let origin = self.server_name.as_str();
        let mut count = 0;
        loop {
            let mut doomed: Vec<(String, String)> = self
                .store
                .media_unused_since(origin, true, before_ms, DELETE_BATCH)
                .await?
                .into_iter()
                .map(|m| (m.origin, m.media_id))
                .collect();
            doomed.extend(self.store.thumbnailed_remote_media_since(origin, before_ms, DELETE_BATCH).await?);
            if doomed.is_empty() {
                break;
            }
            self.delete_media_and_blobs(requester, &doomed).await?;
            count += doomed.len();
        }
        Ok(json!({ "deleted": count }))
    }

    /// Deletes media records and the blobs no record names any more, logged with the admin.
    async fn delete_media_and_blobs(&self, requester: &Requester, media: &[(String, String)]) -> MatrixResult<()> {
        for chunk in media.chunks(DELETE_BATCH) {
            let blobs = self.store.delete_media(chunk).await?;
            for sha256 in &blobs {
                if let Err(err) = self.blobs.delete(sha256).await {
                    tracing::warn!(%err, sha256, "could not delete a media blob");
                }
            }
        }
        tracing::warn!(admin = %requester.user_id, media = media.len(), "admin API: media deleted");
        Ok(())
    }

    /// `GET /_synapse/admin/v1/statistics/users/media`: uploads per user, most bytes first.
    pub async fn admin_media_statistics(&self, requester: &Requester, page: Page) -> MatrixResult<Value> {
        Self::require_admin(requester)?;
        let (usage, total) = self.store.media_usage(page.from, page.size()).await?;
        let users: Vec<Value> = usage
            .iter()
            .map(|u| {
                json!({
                    "user_id": u.user_id,
                    "displayname": u.displayname,
                    "media_count": u.media_count,
                    "media_length": u.media_length,
                })
            })
            .collect();
        let mut body = json!({ "users": users, "total": total });
        if let Some(next) = next_token(page, users.len(), total) {
            body["next_token"] = next.into();
        }
        Ok(body)
    }
}

/// Synapse's answer to a deletion: the media ids and how many.
fn deleted(media: &[(String, String)]) -> Value {
    json!({ "deleted_media": media.iter().map(|(_, id)| id).collect::<Vec<_>>(), "total": media.len() })
}

#[cfg(test)]
mod tests {
    use super::{collect_mxc, split_mxc};

    #[test]
    fn mxc_uris_are_found_anywhere_in_content_and_split() {
        let content = serde_json::json!({
            "url": "mxc://a/1",
            "info": { "thumbnail_url": "mxc://b/2", "thumbnail_file": { "url": "mxc://a/3" } },
            "body": "mxc://a/4 is text but starts like one",
            "list": [{ "avatar_url": "mxc://c/5" }, { "url": "https://x" }],
        });
        let mut out = std::collections::BTreeSet::new();
        collect_mxc(&content, &mut out);
        let expected = ["mxc://a/1", "mxc://a/3", "mxc://b/2", "mxc://c/5"];
        assert_eq!(out.iter().map(String::as_str).collect::<Vec<_>>(), expected);
        assert_eq!(split_mxc("mxc://a/1"), Some(("a".into(), "1".into())));
        assert_eq!(split_mxc("mxc://a/1/2"), None);
        assert_eq!(split_mxc("mxc:///1"), None);
        assert_eq!(split_mxc("https://a/1"), None);
    }
}
