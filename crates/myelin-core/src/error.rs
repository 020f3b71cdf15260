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
    BadAlias,
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
            Self::BadAlias => "M_BAD_ALIAS",
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
    /// Set when the answer is a user-interactive authentication challenge (401 with flows).
    pub uia: Option<Box<UiaChallenge>>,
}

/// A user-interactive authentication challenge: the flows the client may complete, its session
/// and the stages done so far. `failed` adds the error (`errcode`, `error`) to the body: a stage
/// was attempted and refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiaChallenge {
    pub flows: Vec<Vec<String>>,
    pub session: String,
    pub completed: Vec<String>,
    pub failed: bool,
    /// What a stage needs to know (`{"m.oauth": {"url": …}}`); `{}` for most.
    pub params: serde_json::Value,
}

pub type MatrixResult<T> = Result<T, MatrixError>;

impl MatrixError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = code.default_status();
        Self { code, message: message.into(), status, extra: None, uia: None }
    }

    /// The 401 of user-interactive authentication; `cause` is the refusal of an attempted stage.
    pub fn uia(challenge: UiaChallenge, cause: Option<MatrixError>) -> Self {
        let failed = cause.is_some();
        let cause = cause.unwrap_or_else(|| Self::new(ErrorCode::Unauthorized, "Authentication required"));
        Self { status: 401, uia: Some(Box::new(UiaChallenge { failed, ..challenge })), ..cause }
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
        if let Some(uia) = &self.uia {
            let mut body = serde_json::json!({
                "flows": uia.flows.iter().map(|stages| serde_json::json!({ "stages": stages })).collect::<Vec<_>>(),
                "params": if uia.params.is_object() { uia.params.clone() } else { serde_json::json!({}) },
                "session": uia.session,
                "completed": uia.completed,
            });
            if uia.failed {
                body["errcode"] = self.code.as_str().into();
                body["error"] = self.message.clone().into();
            }
            return body;
        }
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

#[cfg(test)]
mod tests {
    use super::{ErrorCode, MatrixError, UiaChallenge};

    #[test]
    fn errors_serialise_with_their_extras() {
        let err = MatrixError::limit_exceeded(1500);
        assert_eq!(err.status, 429);
        assert_eq!(
            err.to_json(),
            serde_json::json!({"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 1500})
        );
        let soft = MatrixError::new(ErrorCode::UnknownToken { soft_logout: true }, "expired");
        assert_eq!(soft.to_json()["soft_logout"], true);
        let extra = MatrixError::not_found("x").with_field("current_version", "3".into());
        assert_eq!(extra.to_json()["current_version"], "3");
    }

    #[test]
    fn a_uia_challenge_carries_flows_and_the_refusal_only_when_a_stage_failed() {
        let challenge = UiaChallenge {
            flows: vec![vec!["m.login.password".into()]],
            session: "abc".into(),
            completed: vec![],
            failed: false,
            params: serde_json::json!({}),
        };
        let asked = MatrixError::uia(challenge.clone(), None);
        assert_eq!(asked.status, 401);
        let body = asked.to_json();
        assert_eq!(body["flows"][0]["stages"][0], "m.login.password");
        assert_eq!(body["session"], "abc");
        assert!(body.get("errcode").is_none(), "no error before an attempt");
        let refused = MatrixError::uia(challenge, Some(MatrixError::forbidden("Invalid password")));
        assert_eq!((refused.status, refused.to_json()["errcode"].as_str()), (401, Some("M_FORBIDDEN")));
    }
}
