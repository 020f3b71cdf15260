//! Global and per-room account data, and filters.

use async_trait::async_trait;

use myelin_core::types::{OwnedRoomId, RoomId, UserId};

use crate::{AccountDataRecord, AccountDataRepo, Database, StorageResult, StreamPos, db::Change};

/// Global account data is stored with this room id (the column is part of the primary key).
const GLOBAL: &str = "";

fn room_column(room_id: Option<&RoomId>) -> String {
    room_id.map_or_else(|| GLOBAL.to_owned(), |r| r.as_str().to_owned())
}

#[async_trait]
impl AccountDataRepo for Database {
    async fn put_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: String,
    ) -> StorageResult<StreamPos> {
        let (user_id, room_id, data_type) = (user_id.to_owned(), room_column(room_id), data_type.to_owned());
        self.write(move |c, positions| {
            Box::pin(async move {
                let pos = positions.next(Change::AccountData).await?;
                c.execute(
                    "INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (user_id, room_id, data_type)
                     DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos",
                    &[&user_id, &room_id, &data_type, &content, &pos],
                )
                .await?;
                Ok(pos)
            })
        })
        .await
    }

    async fn get_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> StorageResult<Option<String>> {
        let (user_id, room_id, data_type) = (user_id.to_owned(), room_column(room_id), data_type.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
                    &[&user_id, &room_id, &data_type],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn account_data_entry(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> StorageResult<Option<(String, StreamPos)>> {
        let (user_id, room_id, data_type) = (user_id.to_owned(), room_column(room_id), data_type.to_owned());
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT content, stream_pos FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
                    &[&user_id, &room_id, &data_type],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .await
            })
        })
        .await
    }

    async fn put_account_data_if(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: String,
        expected: Option<StreamPos>,
    ) -> StorageResult<Option<StreamPos>> {
        let (user_id, room_id, data_type) = (user_id.to_owned(), room_column(room_id), data_type.to_owned());
        self.write(move |c, positions| {
            Box::pin(async move {
                let pos = positions.next(Change::AccountData).await?;
                let written = match expected {
                    Some(expected) => {
                        c.execute(
                            "UPDATE account_data SET content = $4, stream_pos = $5
                             WHERE user_id = $1 AND room_id = $2 AND data_type = $3 AND stream_pos = $6",
                            &[&user_id, &room_id, &data_type, &content, &pos, &expected],
                        )
                        .await?
                    }
                    None => {
                        c.execute(
                            "INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos)
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, room_id, data_type) DO NOTHING",
                            &[&user_id, &room_id, &data_type, &content, &pos],
                        )
                        .await?
                    }
                };
                Ok((written == 1).then_some(pos))
            })
        })
        .await
    }

    async fn account_data_since(
        &self,
        user_id: &UserId,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<AccountDataRecord>> {
        if !self.may_have_changed(Change::AccountData, since) {
            return Ok(Vec::new());
        }
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query(
                    "SELECT room_id, data_type, content, stream_pos FROM account_data
                     WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos",
                    &[&user_id, &since, &until],
                    |r| {
                        let room: String = r.get(0)?;
                        let room_id = match room.as_str() {
                            GLOBAL => None,
                            _ => Some(
                                OwnedRoomId::try_from(room)
                                    .map_err(|e| crate::StorageError::Corrupt(format!("account data room id: {e}")))?,
                            ),
                        };
                        Ok(AccountDataRecord {
                            room_id,
                            data_type: r.get(1)?,
                            content: r.get(2)?,
                            stream_pos: r.get(3)?,
                        })
                    },
                )
                .await
            })
        })
        .await
    }

    async fn create_filter(&self, user_id: &UserId, json: String) -> StorageResult<i64> {
        let user_id = user_id.to_owned();
        self.transaction(move |c| {
            Box::pin(async move {
                // The user's filters are numbered in order; two processes numbering at once take
                // turns on the user's lock.
                c.lock_until_commit(&format!("filters\u{0}{user_id}")).await?;
                c.query_one(
                    "INSERT INTO filters (user_id, filter_id, json)
                     SELECT $1, COALESCE(MAX(filter_id), -1) + 1, $2 FROM filters WHERE user_id = $1
                     RETURNING filter_id",
                    &[&user_id, &json],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }

    async fn get_filter(&self, user_id: &UserId, filter_id: i64) -> StorageResult<Option<String>> {
        let user_id = user_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                c.query_opt(
                    "SELECT json FROM filters WHERE user_id = $1 AND filter_id = $2",
                    &[&user_id, &filter_id],
                    |r| r.get(0),
                )
                .await
            })
        })
        .await
    }
}
