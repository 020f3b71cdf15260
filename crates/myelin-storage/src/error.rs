use myelin_core::MatrixError;

/// What went wrong in storage. Database errors keep the driver's error as their source.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("SQLite: {0}")]
    Sqlite(#[source] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(#[source] tokio_postgres::Error),
    /// A uniqueness constraint said no (e.g. a user id already taken).
    #[error("already exists: {0}")]
    Conflict(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("configuration: {0}")]
    Config(String),
    /// The write ran, but the batch it was part of could not commit (the message of that error;
    /// the commit may still have happened if the connection was lost during it).
    #[error("the write batch failed: {0}")]
    Batch(String),
    #[error("the storage writer has stopped")]
    WriterGone,
    /// A task or pool of the storage layer failed.
    #[error("storage task: {0}")]
    Task(String),
    /// The blob store's files (or the stream handed to it) failed.
    #[error("blob store: {0}")]
    Io(#[from] std::io::Error),
}

impl StorageError {
    /// Whether a uniqueness constraint refused the write.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict(_))
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

impl From<rusqlite::Error> for StorageError {
    fn from(err: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(e, _) = &err
            && e.code == rusqlite::ErrorCode::ConstraintViolation
        {
            return Self::Conflict(Box::new(err));
        }
        Self::Sqlite(err)
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(err: tokio_postgres::Error) -> Self {
        if err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
            return Self::Conflict(Box::new(err));
        }
        Self::Postgres(err)
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(err: serde_json::Error) -> Self {
        Self::Corrupt(err.to_string())
    }
}

impl From<StorageError> for MatrixError {
    fn from(err: StorageError) -> Self {
        tracing::error!(error = %err, source = ?std::error::Error::source(&err), "storage failure");
        MatrixError::internal("Internal storage error")
    }
}
