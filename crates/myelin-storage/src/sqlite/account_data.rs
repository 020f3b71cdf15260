use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::{AccountDataRecord, AccountDataRepo, StorageResult, StreamPos};

#[async_trait]
impl AccountDataRepo for SqliteStore {
    async fn put_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: String,
    ) -> StorageResult<StreamPos> {
        let (user_id, room_id, data_type) = (user_id.to_owned(), room_id.to_owned(), data_type.to_owned());
        self.writer
            .write(move |conn, positions| {
                let pos = positions.allocate();
                conn.prepare_cached(
                    "INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos",
                )?
                .execute(params![user_id, room_id, data_type, content, pos])?;
                Ok(pos)
            })
            .await
    }

    async fn get_account_data(&self, user_id: &str, room_id: &str, data_type: &str) -> StorageResult<Option<String>> {
        let (user_id, room_id, data_type) = (user_id.to_owned(), room_id.to_owned(), data_type.to_owned());
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND data_type = ?3",
                    )?
                    .query_row([user_id, room_id, data_type], |r| r.get(0))
                    .optional()?)
            })
            .await
    }

    async fn account_data_since(
        &self,
        user_id: &str,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<AccountDataRecord>> {
        let user_id = user_id.to_owned();
        self.readers
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT room_id, data_type, content, stream_pos FROM account_data
                     WHERE user_id = ?1 AND stream_pos > ?2 AND stream_pos <= ?3 ORDER BY stream_pos",
                )?;
                let rows = stmt.query_map(params![user_id, since, until], |r| {
                    Ok(AccountDataRecord {
                        room_id: r.get(0)?,
                        data_type: r.get(1)?,
                        content: r.get(2)?,
                        stream_pos: r.get(3)?,
                    })
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    async fn create_filter(&self, user_id: &str, json: String) -> StorageResult<i64> {
        let user_id = user_id.to_owned();
        self.writer
            .write(move |conn, _| {
                let next: i64 = conn.query_row(
                    "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM filters WHERE user_id = ?1",
                    [&user_id],
                    |r| r.get(0),
                )?;
                conn.execute(
                    "INSERT INTO filters (user_id, filter_id, json) VALUES (?1, ?2, ?3)",
                    params![user_id, next, json],
                )?;
                Ok(next)
            })
            .await
    }

    async fn get_filter(&self, user_id: &str, filter_id: i64) -> StorageResult<Option<String>> {
        let user_id = user_id.to_owned();
        self.readers
            .read(move |conn| {
                Ok(conn
                    .prepare_cached("SELECT json FROM filters WHERE user_id = ?1 AND filter_id = ?2")?
                    .query_row(params![user_id, filter_id], |r| r.get(0))
                    .optional()?)
            })
            .await
    }
}
