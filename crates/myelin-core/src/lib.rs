//! Plain types shared by every Myelin layer.
//!
//! Invariants: this crate does no I/O, knows no HTTP framework and no database. It holds the
//! configuration model, the Matrix error type every layer returns, and small helpers for time and
//! random identifiers.

pub mod config;
pub mod error;
pub mod json;
pub mod random;
pub mod time;

pub use error::{ErrorCode, MatrixError, MatrixResult};
