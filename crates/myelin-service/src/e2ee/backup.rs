//! Server-side key backup (`/room_keys`): versions, and room keys stored opaquely, replaced only
//! by better copies (verified, then earlier first message index, then fewer forwards). Only the
//! newest version takes writes; `etag` changes exactly when the stored keys do.

use std::collections::BTreeMap;

use myelin_core::{
    ErrorCode, MatrixError, MatrixResult,
    types::{OwnedRoomId, RoomId},
};
use myelin_storage::{BackupKey, BackupVersion, BackupWrite};
use serde_json::{Map, Value, json};

use crate::{Services, accounts::Requester};

/// Which keys a `/room_keys/keys` request is about.
#[derive(Clone, Copy, Debug)]
pub enum KeyScope<'a> {
    All,
    Room(&'a RoomId),
    Session(&'a RoomId, &'a str),
}

impl KeyScope<'_> {
    fn room(&self) -> Option<&RoomId> {
        match self {
            KeyScope::All => None,
            KeyScope::Room(r) | KeyScope::Session(r, _) => Some(r),
        }
    }
    fn session(&self) -> Option<&str> {
        match self {
            KeyScope::Session(_, s) => Some(s),
            _ => None,
        }
    }
}

/// Most keys in one upload.
const MAX_KEYS_PER_UPLOAD: usize = 10_000;

fn version_json(v: &BackupVersion) -> Value {
    json!({
        "algorithm": v.algorithm,
        "auth_data": serde_json::from_str::<Value>(&v.auth_data).unwrap_or_else(|_| json!({})),
        "count": v.count,
        "etag": v.etag.to_string(),
        "version": v.version.to_string(),
    })
}

fn parse_version(version: &str) -> MatrixResult<i64> {
    version.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| MatrixError::not_found("Unknown backup version"))
}

fn no_backup() -> MatrixError {
    MatrixError::not_found("No backup version")
}

fn written(result: BackupWrite) -> MatrixResult<Value> {
    match result {
        BackupWrite::Done { etag, count } => Ok(json!({ "etag": etag.to_string(), "count": count })),
        BackupWrite::WrongVersion { current } => {
            Err(MatrixError::new(ErrorCode::Other("M_WRONG_ROOM_KEYS_VERSION"), "Wrong backup version")
                .with_status(403)
                .with_field("current_version", json!(current.map(|v| v.to_string()))))
        }
    }
}

fn key_data(room_id: &RoomId, session_id: &str, data: &Value) -> MatrixResult<BackupKey> {
    let int = |field: &str| {
        data.get(field).and_then(Value::as_i64).filter(|n| *n >= 0).ok_or_else(|| {
            MatrixError::bad_json(format!("{field} must be a non-negative integer ({room_id} / {session_id})"))
        })
    };
    let Some(session_data) = data.get("session_data").filter(|d| d.is_object()) else {
        return Err(MatrixError::bad_json("session_data must be an object"));
    };
    Ok(BackupKey {
        room_id: room_id.to_owned(),
        session_id: session_id.to_owned(),
        first_message_index: int("first_message_index")?,
        forwarded_count: int("forwarded_count")?,
        is_verified: data
            .get("is_verified")
            .and_then(Value::as_bool)
            .ok_or_else(|| MatrixError::bad_json("is_verified must be a boolean"))?,
        session_data: session_data.to_string(),
    })
}

fn key_json(k: &BackupKey) -> Value {
    json!({
        "first_message_index": k.first_message_index,
        "forwarded_count": k.forwarded_count,
        "is_verified": k.is_verified,
        "session_data": serde_json::from_str::<Value>(&k.session_data).unwrap_or_else(|_| json!({})),
    })
}

impl Services {
    pub async fn create_backup_version(&self, r: &Requester, body: &Value) -> MatrixResult<Value> {
        let algorithm = body.get("algorithm").and_then(Value::as_str).filter(|a| !a.is_empty() && a.len() <= 255);
        let (Some(algorithm), Some(auth_data)) = (algorithm, body.get("auth_data").filter(|a| a.is_object())) else {
            return Err(MatrixError::bad_json("algorithm (string) and auth_data (object) are required"));
        };
        let version = self.store.create_backup_version(&r.user_id, algorithm, auth_data.to_string()).await?;
        Ok(json!({ "version": version.to_string() }))
    }

    pub async fn backup_version(&self, r: &Requester, version: Option<&str>) -> MatrixResult<Value> {
        let version = version.map(parse_version).transpose()?;
        let found = self.store.backup_version(&r.user_id, version).await?.ok_or_else(no_backup)?;
        Ok(version_json(&found))
    }

    pub async fn update_backup_version(&self, r: &Requester, version: &str, body: &Value) -> MatrixResult<()> {
        let number = parse_version(version)?;
        let current = self.store.backup_version(&r.user_id, Some(number)).await?.ok_or_else(no_backup)?;
        if body.get("version").is_some_and(|v| v.as_str() != Some(version)) {
            return Err(MatrixError::invalid_param("The version in the body does not match the path"));
        }
        if body.get("algorithm").and_then(Value::as_str) != Some(current.algorithm.as_str()) {
            return Err(MatrixError::invalid_param("The algorithm of a backup version cannot change"));
        }
        let Some(auth_data) = body.get("auth_data").filter(|a| a.is_object()) else {
            return Err(MatrixError::bad_json("auth_data must be an object"));
        };
        if !self.store.update_backup_version(&r.user_id, number, auth_data.to_string()).await? {
            return Err(no_backup());
        }
        Ok(())
    }

    pub async fn delete_backup_version(&self, r: &Requester, version: &str) -> MatrixResult<()> {
        if !self.store.delete_backup_version(&r.user_id, parse_version(version)?).await? {
            return Err(no_backup());
        }
        Ok(())
    }

    pub async fn put_backup_keys(
        &self,
        r: &Requester,
        version: &str,
        scope: KeyScope<'_>,
        body: &Value,
    ) -> MatrixResult<Value> {
        let number = version.parse::<i64>().unwrap_or(-1);
        let mut keys = Vec::new();
        let sessions_of = |room: &RoomId, sessions: &Value, keys: &mut Vec<BackupKey>| -> MatrixResult<()> {
            let Some(sessions) = sessions.as_object() else {
                return Err(MatrixError::bad_json("sessions must be an object"));
            };
            for (session, data) in sessions {
                keys.push(key_data(room, session, data)?);
            }
            Ok(())
        };
        match scope {
            KeyScope::All => {
                let Some(rooms) = body.get("rooms").and_then(Value::as_object) else {
                    return Err(MatrixError::bad_json("rooms must be an object"));
                };
                for (room, value) in rooms {
                    let room = OwnedRoomId::try_from(room.as_str())
                        .map_err(|_| MatrixError::invalid_param(format!("Invalid room id {room:?}")))?;
                    sessions_of(&room, value.get("sessions").unwrap_or(&Value::Null), &mut keys)?;
                }
            }
            KeyScope::Room(room) => sessions_of(room, body.get("sessions").unwrap_or(&Value::Null), &mut keys)?,
            KeyScope::Session(room, session) => keys.push(key_data(room, session, body)?),
        }
        if keys.len() > MAX_KEYS_PER_UPLOAD {
            return Err(MatrixError::new(ErrorCode::TooLarge, "Too many keys in one request"));
        }
        written(self.store.put_backup_keys(&r.user_id, number, keys).await?)
    }

    pub async fn backup_keys(&self, r: &Requester, version: &str, scope: KeyScope<'_>) -> MatrixResult<Value> {
        let number = parse_version(version)?;
        self.store.backup_version(&r.user_id, Some(number)).await?.ok_or_else(no_backup)?;
        let keys = self.store.backup_keys(&r.user_id, number, scope.room(), scope.session()).await?;
        match scope {
            KeyScope::All => {
                let mut rooms: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
                for k in &keys {
                    rooms.entry(k.room_id.to_string()).or_default().insert(k.session_id.clone(), key_json(k));
                }
                let rooms: Map<String, Value> =
                    rooms.into_iter().map(|(room, sessions)| (room, json!({ "sessions": sessions }))).collect();
                Ok(json!({ "rooms": rooms }))
            }
            KeyScope::Room(_) => {
                let sessions: Map<String, Value> = keys.iter().map(|k| (k.session_id.clone(), key_json(k))).collect();
                Ok(json!({ "sessions": sessions }))
            }
            KeyScope::Session(..) => keys.first().map(key_json).ok_or_else(|| MatrixError::not_found("No such key")),
        }
    }

    pub async fn delete_backup_keys(&self, r: &Requester, version: &str, scope: KeyScope<'_>) -> MatrixResult<Value> {
        let number = version.parse::<i64>().unwrap_or(-1);
        written(self.store.delete_backup_keys(&r.user_id, number, scope.room(), scope.session()).await?)
    }
}
