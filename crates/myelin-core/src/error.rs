//! The one error type that crosses layers: a Matrix error code, a human message and the HTTP status
//! the API layer will answer with. Storage and service errors convert into it; the API layer turns
//! it into `{"errcode": ..., "error": ...}` JSON.

use std::fmt;

/// Matrix error codes (`errcode`) from the client-server specification, plus `M_UNKNOWN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    Forbidden,
    UnknownToken {
        soft_logout: bool,
    },
    MissingToken,
    BadJson,
    NotJson,
    NotFound,
    LimitExceeded {
        retry_after_ms: u64,
    },
    Unrecognized,
    Unknown,
    Unauthorized,
    UserDeactivated,
    UserInUse,
    InvalidUsername,
    RoomInUse,
    InvalidRoomState,
    UnsupportedRoomVersion,
    IncompatibleRoomVersion,
    BadState,
    GuestAccessForbidden,
    MissingParam,
    InvalidParam,
    TooLarge,
    Exclusive,
    UserAlreadyJoined,
    WeakPassword,
    /// A code not listed above, e.g. an unstable `ORG_...` code.
    Other(&'static str),
}

impl ErrorCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Forbidden => "M_FORBIDDEN",
            Self::UnknownToken { .. } => "M_UNKNOWN_TOKEN",
            Self::MissingToken => "M_MISSING_TOKEN",
            Self::BadJson => "M_BAD_JSON",
            Self::NotJson => "M_NOT_JSON",
            Self::NotFound => "M_NOT_FOUND",
            Self::LimitExceeded { .. } => "M_LIMIT_EXCEEDED",
            Self::Unrecognized => "M_UNRECOGNIZED",
            Self::Unknown => "M_UNKNOWN",
            Self::Unauthorized => "M_UNAUTHORIZED",
            Self::UserDeactivated => "M_USER_DEACTIVATED",
            Self::UserInUse => "M_USER_IN_USE",
            Self::InvalidUsername => "M_INVALID_USERNAME",
            Self::RoomInUse => "M_ROOM_IN_USE",
            Self::InvalidRoomState => "M_INVALID_ROOM_STATE",
            Self::UnsupportedRoomVersion => "M_UNSUPPORTED_ROOM_VERSION",
            Self::IncompatibleRoomVersion => "M_INCOMPATIBLE_ROOM_VERSION",
            Self::BadState => "M_BAD_STATE",
            Self::GuestAccessForbidden => "M_GUEST_ACCESS_FORBIDDEN",
            Self::MissingParam => "M_MISSING_PARAM",
            Self::InvalidParam => "M_INVALID_PARAM",
            Self::TooLarge => "M_TOO_LARGE",
            Self::Exclusive => "M_EXCLUSIVE",
            Self::UserAlreadyJoined => "M_USER_ALREADY_JOINED",
            Self::WeakPassword => "M_WEAK_PASSWORD",
            Self::Other(code) => code,
        }
    }

    /// The HTTP status the specification pairs with this code.
    pub fn default_status(&self) -> u16 {
        match self {
            Self::Forbidden | Self::GuestAccessForbidden | Self::UserDeactivated => 403,
            Self::UnknownToken { .. } | Self::MissingToken | Self::Unauthorized => 401,
            Self::NotFound | Self::Unrecognized => 404,
            Self::LimitExceeded { .. } => 429,
            Self::TooLarge => 413,
            Self::Unknown => 500,
            _ => 400,
        }
    }
}

/// An error answered to a Matrix client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatrixError {
    pub code: ErrorCode,
    pub message: String,
    pub status: u16,
    /// Further fields of the error body (e.g. `current_version` of `M_WRONG_ROOM_KEYS_VERSION`).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

pub type MatrixResult<T> = Result<T, MatrixError>;

impl MatrixError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = code.default_status();
        Self { code, message: message.into(), status, extra: None }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a field to the error body.
    pub fn with_field(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extra.get_or_insert_with(Default::default).insert(key.to_owned(), value);
        self
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadJson, message)
    }
    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParam, message)
    }
    pub fn missing_param(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MissingParam, message)
    }
    pub fn unknown_token(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnknownToken { soft_logout: false }, message)
    }
    /// An internal failure: logged by the caller, answered as `M_UNKNOWN` 500 without details.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unknown, message)
    }
    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self::new(ErrorCode::LimitExceeded { retry_after_ms }, "Too many requests")
    }

    /// The JSON body of the error response.
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "errcode": self.code.as_str(),
            "error": self.message,
        });
        match &self.code {
            ErrorCode::LimitExceeded { retry_after_ms } => {
                body["retry_after_ms"] = (*retry_after_ms).into();
            }
            ErrorCode::UnknownToken { soft_logout: true } => {
                body["soft_logout"] = true.into();
            }
            _ => {}
        }
        for (key, value) in self.extra.iter().flatten() {
            body[key] = value.clone();
        }
        body
    }
}

impl fmt::Display for MatrixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code.as_str(), self.status, self.message)
    }
}

impl std::error::Error for MatrixError {}
