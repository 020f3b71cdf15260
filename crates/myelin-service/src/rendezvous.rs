//! QR login's rendezvous sessions (MSC4108 and MSC4388): a mailbox of at most 4 KiB that two
//! devices write in turn, each write naming the version it read (ETag / sequence token), so a
//! write that crossed another one is refused. Sessions are rows, so every process serves them.

use base64::Engine as _;
use myelin_core::{ErrorCode, MatrixError, MatrixResult};
use myelin_storage::{RendezvousRecord, RendezvousWrite};

use crate::{Services, ratelimit::Limit};

/// A session lives this long after it was created.
pub const RENDEZVOUS_TTL_MS: u64 = 5 * 60 * 1000;
/// The largest body a session holds.
pub const RENDEZVOUS_MAX_BYTES: usize = 4096;
/// Live sessions at most, server-wide.
const RENDEZVOUS_MAX_LIVE: u64 = 10_000;

/// A session as read.
#[derive(Clone, Debug)]
pub struct Rendezvous {
    pub session_id: String,
    pub data: Vec<u8>,
    pub content_type: String,
    pub etag: String,
    pub modified_ms: u64,
    pub expires_ms: u64,
}

/// What a conditional write did.
pub enum RendezvousOutcome {
    Written(Rendezvous),
    Conflict,
    Missing,
}

fn engine() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn from_record(r: RendezvousRecord) -> MatrixResult<Rendezvous> {
    let data = engine().decode(&r.data).map_err(|e| MatrixError::internal(format!("stored rendezvous data: {e}")))?;
    Ok(Rendezvous {
        session_id: r.session_id,
        data,
        content_type: r.content_type,
        etag: r.etag,
        modified_ms: r.modified_ms,
        expires_ms: r.expires_ms,
    })
}

/// The content type a session is served with: text, JSON or bytes, never anything a browser
/// would render (the data comes from anyone and is served on this server's origin).
fn served_content_type(asked: &str) -> String {
    let base = asked.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match base.as_str() {
        "text/plain" | "application/json" => base,
        _ => "application/octet-stream".to_owned(),
    }
}

fn check_size(data: &[u8]) -> MatrixResult<()> {
    if data.len() > RENDEZVOUS_MAX_BYTES {
        return Err(MatrixError::new(ErrorCode::TooLarge, format!("At most {RENDEZVOUS_MAX_BYTES} bytes")));
    }
    Ok(())
}

impl Services {
    /// Opens a session holding `data`, for the client at address `client`.
    pub async fn create_rendezvous(&self, data: &[u8], content_type: &str, client: &str) -> MatrixResult<Rendezvous> {
        check_size(data)?;
        self.check_rate_limit(Limit::Login, &format!("rendezvous:{client}"))?;
        let now = self.now_ms();
        let record = RendezvousRecord {
            session_id: self.random.alphanumeric(24),
            data: engine().encode(data),
            content_type: served_content_type(content_type),
            etag: self.random.alphanumeric(16),
            modified_ms: now,
            expires_ms: now + RENDEZVOUS_TTL_MS,
        };
        if !self.store.create_rendezvous(&record, now, RENDEZVOUS_MAX_LIVE).await? {
            return Err(MatrixError::new(
                ErrorCode::LimitExceeded { retry_after_ms: 10_000 },
                "Too many sign-ins in progress",
            ));
        }
        from_record(record)
    }

    /// A live session.
    pub async fn rendezvous(&self, session_id: &str) -> MatrixResult<Option<Rendezvous>> {
        if session_id.len() > 64 {
            return Ok(None);
        }
        self.store.rendezvous(session_id, self.now_ms()).await?.map(from_record).transpose()
    }

    /// Replaces a session's data if its version is still `expected_etag`.
    pub async fn write_rendezvous(
        &self,
        session_id: &str,
        expected_etag: &str,
        data: &[u8],
        content_type: &str,
    ) -> MatrixResult<RendezvousOutcome> {
        check_size(data)?;
        let Some(current) = self.store.rendezvous(session_id, self.now_ms()).await? else {
            return Ok(RendezvousOutcome::Missing);
        };
        let now = self.now_ms();
        let new = RendezvousRecord {
            session_id: session_id.to_owned(),
            data: engine().encode(data),
            content_type: served_content_type(content_type),
            etag: self.random.alphanumeric(16),
            modified_ms: now,
            expires_ms: current.expires_ms,
        };
        Ok(match self.store.write_rendezvous(session_id, expected_etag, &new, now).await? {
            RendezvousWrite::Written => RendezvousOutcome::Written(from_record(new)?),
            RendezvousWrite::Conflict => RendezvousOutcome::Conflict,
            RendezvousWrite::Missing => RendezvousOutcome::Missing,
        })
    }

    pub async fn delete_rendezvous(&self, session_id: &str) -> MatrixResult<bool> {
        Ok(self.store.delete_rendezvous(session_id).await?)
    }
}
