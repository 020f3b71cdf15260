use async_trait::async_trait;

use crate::{StorageResult, StreamPos};

#[derive(Clone, Debug)]
pub struct AccountDataRecord {
    /// Empty for global account data.
    pub room_id: String,
    pub data_type: String,
    pub content: String,
    pub stream_pos: StreamPos,
}

/// Global and per-room account data (tags, m.direct, push rules, ignored users, fully_read...).
#[async_trait]
pub trait AccountDataRepo {
    async fn put_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: String,
    ) -> StorageResult<StreamPos>;
    async fn get_account_data(&self, user_id: &str, room_id: &str, data_type: &str) -> StorageResult<Option<String>>;
    /// Account data of the user changed in `(since, until]` (all of it when `since` is 0).
    async fn account_data_since(
        &self,
        user_id: &str,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<AccountDataRecord>>;
    async fn create_filter(&self, user_id: &str, json: String) -> StorageResult<i64>;
    async fn get_filter(&self, user_id: &str, filter_id: i64) -> StorageResult<Option<String>>;
}
