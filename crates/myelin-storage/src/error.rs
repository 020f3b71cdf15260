use myelin_core::MatrixError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("configuration: {0}")]
    Config(String),
    /// A uniqueness constraint said no (e.g. a user id already taken).
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("the storage writer has stopped")]
    WriterGone,
}

pub type StorageResult<T> = Result<T, StorageError>;

impl From<rusqlite::Error> for StorageError {
    fn from(err: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(e, msg) = &err
            && e.code == rusqlite::ErrorCode::ConstraintViolation
        {
            return Self::Conflict(msg.clone().unwrap_or_else(|| e.to_string()));
        }
        Self::Database(err.to_string())
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(err: tokio_postgres::Error) -> Self {
        if err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            return Self::Conflict(err.to_string());
        }
        match err.as_db_error() {
            Some(db) => Self::Database(format!("{}: {}", db.code().code(), db.message())),
            None => Self::Database(err.to_string()),
        }
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(err: serde_json::Error) -> Self {
        Self::Corrupt(err.to_string())
    }
}

impl From<StorageError> for MatrixError {
    fn from(err: StorageError) -> Self {
        tracing::error!(%err, "storage failure");
        MatrixError::internal("Internal storage error")
    }
}
