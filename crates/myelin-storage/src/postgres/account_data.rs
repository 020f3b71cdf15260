use async_trait::async_trait;

use super::PgStore;
use crate::{AccountDataRecord, AccountDataRepo, StorageError, StorageResult, StreamPos};

#[async_trait]
impl AccountDataRepo for PgStore {
    async fn put_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: String,
    ) -> StorageResult<StreamPos> {
        let (user_id, room_id, data_type) = (user_id.to_owned(), room_id.to_owned(), data_type.to_owned());
        self.writer
            .write(move |c, positions| {
                Box::pin(async move {
                    let pos = positions.allocate();
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

    async fn get_account_data(&self, user_id: &str, room_id: &str, data_type: &str) -> StorageResult<Option<String>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
            &[&user_id, &room_id, &data_type],
        )
        .await?
        .map(|r| r.get(0)))
    }

    async fn account_data_since(
        &self,
        user_id: &str,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<AccountDataRecord>> {
        let mut c = self.pool.get().await?;
        Ok(c.query(
            "SELECT room_id, data_type, content, stream_pos FROM account_data
             WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos",
            &[&user_id, &since, &until],
        )
        .await?
        .iter()
        .map(|r| AccountDataRecord { room_id: r.get(0), data_type: r.get(1), content: r.get(2), stream_pos: r.get(3) })
        .collect())
    }

    async fn create_filter(&self, user_id: &str, json: String) -> StorageResult<i64> {
        let mut c = self.pool.get().await?;
        // Two processes may pick the same next id; the primary key makes one retry.
        for _ in 0..5 {
            match c
                .query_one(
                    "INSERT INTO filters (user_id, filter_id, json)
                     SELECT $1, COALESCE(MAX(filter_id), -1) + 1, $2 FROM filters WHERE user_id = $1
                     RETURNING filter_id",
                    &[&user_id, &json],
                )
                .await
            {
                Ok(row) => return Ok(row.get(0)),
                Err(StorageError::Conflict(_)) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(StorageError::Database("could not allocate a filter id".into()))
    }

    async fn get_filter(&self, user_id: &str, filter_id: i64) -> StorageResult<Option<String>> {
        let mut c = self.pool.get().await?;
        Ok(c.query_opt("SELECT json FROM filters WHERE user_id = $1 AND filter_id = $2", &[&user_id, &filter_id])
            .await?
            .map(|r| r.get(0)))
    }
}
