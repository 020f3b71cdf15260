use async_trait::async_trait;
use myelin_core::{
    StreamPos,
    types::{OwnedRoomId, RoomId, UserId},
};

use crate::StorageResult;

#[derive(Clone, Debug)]
pub struct AccountDataRecord {
    /// `None` for global account data.
    pub room_id: Option<OwnedRoomId>,
    pub data_type: String,
    pub content: String,
    pub stream_pos: StreamPos,
}

/// Global and per-room account data (tags, m.direct, push rules, ignored users, fully_read...)
/// and filters.
#[async_trait]
pub trait AccountDataRepo {
    /// Stores account data (global with `room_id: None`) at a new stream position.
    async fn put_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: String,
    ) -> StorageResult<StreamPos>;
    async fn get_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> StorageResult<Option<String>>;
    /// The content and the stream position it was written at.
    async fn account_data_entry(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
    ) -> StorageResult<Option<(String, StreamPos)>>;
    /// A read-modify-write's write: stores the content only if the stored entry is still the one
    /// read (written at `expected`; `None`: there was none). Returns the new position, or `None`
    /// if another write came first (read again and retry).
    async fn put_account_data_if(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        data_type: &str,
        content: String,
        expected: Option<StreamPos>,
    ) -> StorageResult<Option<StreamPos>>;
    /// Account data of the user changed in `(since, until]` (all of it when `since` is 0).
    async fn account_data_since(
        &self,
        user_id: &UserId,
        since: StreamPos,
        until: StreamPos,
    ) -> StorageResult<Vec<AccountDataRecord>>;
    /// Stores a filter; returns its id (the user's filters are numbered from 0).
    async fn create_filter(&self, user_id: &UserId, json: String) -> StorageResult<i64>;
    async fn get_filter(&self, user_id: &UserId, filter_id: i64) -> StorageResult<Option<String>>;
}
