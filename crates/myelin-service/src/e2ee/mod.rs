//! End-to-end encryption, server side: the key infrastructure clients rely on so that no message
//! is ever undecryptable because of the server. Device, one-time, fallback and cross-signing keys
//! (`keys.rs`), signature checks (`signatures.rs`), device-list tracking (`device_lists.rs`) and
//! to-device messages (`to_device.rs`). What other servers must answer goes over federation
//! (`federation/e2ee.rs`); `remote.rs` turns their failures into `failures` entries.

pub mod backup;
pub mod dehydrated;
pub mod device_lists;
pub mod keys;
pub mod remote;
pub mod signatures;
pub mod to_device;

use myelin_core::{ErrorCode, MatrixError};

/// `M_INVALID_SIGNATURE` (400).
pub fn invalid_signature(message: impl Into<String>) -> MatrixError {
    MatrixError::new(ErrorCode::Other("M_INVALID_SIGNATURE"), message).with_status(400)
}
