//! Pushers and their delivery positions.

use async_trait::async_trait;
use myelin_core::types::UserId;

use crate::{
    Database, NotificationRecord, PendingPush, PusherRecord, PusherRepo, StorageResult, StreamPos, db::Row,
    store::receipts::UNREAD_AFTER_RECEIPT,
};

const COLUMNS: &str = "user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, \
                       data, device_id, created_ms, pushed_pos";

fn pusher(r: &Row<'_>) -> StorageResult<PusherRecord> {
    Ok(PusherRecord {
        user_id: r.get(0)?,
        app_id: r.get(1)?,
        pushkey: r.get(2)?,
        kind: r.get(3)?,
        app_display_name: r.get(4)?,
        device_display_name: r.get(5)?,
        profile_tag: r.get(6)?,
        lang: r.get(7)?,
        data: r.get(8)?,
        device_id: r.get(9)?,
        created_ms: r.get(10)?,
        pushed_pos: r.get(11)?,
    })
}

#[async_trait]
impl PusherRepo for Database {
    async fn put_pusher(&self, pusher: &PusherRecord, append: bool) -> StorageResult<()> {
        let p = pusher.clone();
        self.transaction(move |c| {
            Box::pin(async move {
                if !append {
                    c.execute(
                        "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
                        &[&p.app_id, &p.pushkey, &p.user_id],
                    )
                    .await?;
                }
                c.execute(
                    &format!(
                        "INSERT INTO pushers ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                         ON CONFLICT (app_id, pushkey, user_id) DO UPDATE SET kind = excluded.kind,
                           app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name,
                           profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data,
                           device_id = excluded.device_id"
                    ),
                    &[
                        &p.user_id,
                        &p.app_id,
                        &p.pushkey,
                        &p.kind,
                        &p.app_display_name,
                        &p.device_display_name,
                        &p.profile_tag,
                        &p.lang,
                        &p.data,
                        &p.device_id,
                        &p.created_ms,
                        &p.pushed_pos,
                    ],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_pusher(&self, user_id: &UserId, app_id: &str, pushkey: &str) -> StorageResult<bool> {
        let (user_id, app_id, pushkey) = (user_id.to_owned(), app_id.to_owned(), pushkey.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                let n = c
                    .execute(
                        "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3",
                        &[&user_id, &app_id, &pushkey],
                    )
                    .await?;
                Ok(n > 0)
            })
        })
        .await
    }

    async fn pushers(&self, user_id: &UserId) -> StorageResult<Vec<PusherRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    &format!("SELECT {COLUMNS} FROM pushers WHERE user_id = $1 ORDER BY created_ms, app_id, pushkey"),
                    &[&user_id],
                    pusher,
                )
                .await
            })
        })
        .await
    }

    async fn set_pusher_position(
        &self,
        user_id: &UserId,
        app_id: &str,
        pushkey: &str,
        pos: StreamPos,
    ) -> StorageResult<()> {
        let (user_id, app_id, pushkey) = (user_id.to_owned(), app_id.to_owned(), pushkey.to_owned());
        self.transaction(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE pushers SET pushed_pos = $4 WHERE user_id = $1 AND app_id = $2 AND pushkey = $3 AND pushed_pos < $4",
                    &[&user_id, &app_id, &pushkey, &pos],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn pending_pushes(
        &self,
        user_id: &UserId,
        after: StreamPos,
        limit: usize,
    ) -> StorageResult<Vec<PendingPush>> {
        let user_id = user_id.to_owned();
        let head = self.stream_head();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT a.room_id, e.event_id, a.stream_pos, a.highlight, a.actions
                     FROM event_push_actions a JOIN events e ON e.stream_pos = a.stream_pos
                     WHERE a.user_id = $1 AND a.stream_pos > $2 AND a.stream_pos <= $3
                     ORDER BY a.stream_pos LIMIT $4",
                    &[&user_id, &after, &head, &limit],
                    |r| {
                        Ok(PendingPush {
                            room_id: r.get(0)?,
                            event_id: r.get(1)?,
                            stream_pos: r.get(2)?,
                            highlight: r.get(3)?,
                            actions: r.get(4)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<StreamPos>,
        limit: usize,
        highlights_only: bool,
    ) -> StorageResult<Vec<NotificationRecord>> {
        let user_id = user_id.to_owned();
        let head = self.stream_head();
        let before = before.unwrap_or(StreamPos(i64::MAX));
        let highlights_only = i64::from(highlights_only);
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    &format!(
                        "SELECT a.room_id, e.event_id, a.stream_pos, a.highlight,
                           CAST(CASE WHEN {UNREAD_AFTER_RECEIPT} THEN 0 ELSE 1 END AS BIGINT), a.actions
                         FROM event_push_actions a JOIN events e ON e.stream_pos = a.stream_pos
                         WHERE a.user_id = $1 AND a.stream_pos < $2 AND a.stream_pos <= $3 AND ($4 = 0 OR a.highlight = 1)
                         ORDER BY a.stream_pos DESC LIMIT $5"
                    ),
                    &[&user_id, &before, &head, &highlights_only, &limit],
                    |r| {
                        Ok(NotificationRecord {
                            room_id: r.get(0)?,
                            event_id: r.get(1)?,
                            stream_pos: r.get(2)?,
                            highlight: r.get(3)?,
                            read: r.get::<i64>(4)? != 0,
                            actions: r.get(5)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn unread_notification_total(&self, user_id: &UserId) -> StorageResult<u64> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_one(
                    &format!(
                        "SELECT COUNT(*) FROM event_push_actions a WHERE a.user_id = $1 AND {UNREAD_AFTER_RECEIPT}
                           AND EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = a.room_id
                                       AND m.user_id = a.user_id AND m.membership IN ('join', 'invite'))"
                    ),
                    &[&user_id],
                    |r| r.get::<u64>(0),
                )
                .await
            })
        })
        .await
    }
}
