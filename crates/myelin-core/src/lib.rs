//! Plain types shared by every Myelin layer.
//!
//! Invariants: this crate does no I/O, knows no HTTP framework and no database. It holds the
//! configuration model, the Matrix error type every layer returns, the domain's small types
//! (ids, stream positions, memberships, state maps), and the clock and random source the
//! services are given.

pub mod clock;
pub mod config;
pub mod error;
pub mod json;
pub mod lru;
pub mod metrics;
pub mod proxies;
pub mod random;
pub mod types;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{ErrorCode, MatrixError, MatrixResult, UiaChallenge};
pub use random::{OsRandom, Random, SeededRandom};
pub use types::{Membership, StateGroupId, StateKey, StateMap, StreamPos};
