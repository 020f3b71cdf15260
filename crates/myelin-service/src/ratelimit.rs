//! Token-bucket rate limiting keyed by user or client address.

use std::{collections::HashMap, sync::Mutex, time::Instant};

use myelin_core::{
    MatrixError,
    config::{RateLimit, RateLimitsConfig},
};

pub struct Bucket {
    limit: RateLimit,
    state: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Bucket {
    pub fn new(limit: RateLimit) -> Self {
        Self { limit, state: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or answers `M_LIMIT_EXCEEDED` with the wait in `retry_after_ms`.
    pub fn check(&self, key: &str) -> Result<(), MatrixError> {
        if self.limit.per_second <= 0.0 {
            return Ok(());
        }
        let Ok(mut state) = self.state.lock() else { return Ok(()) };
        let now = Instant::now();
        if state.len() > 100_000 {
            state.clear();
        }
        let burst = f64::from(self.limit.burst.max(1));
        let (tokens, last) = state.entry(key.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.limit.per_second).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.limit.per_second * 1000.0).ceil() as u64;
            Err(MatrixError::limit_exceeded(wait.max(1)))
        }
    }
}

pub struct RateLimiters {
    pub messages: Bucket,
    pub login: Bucket,
    pub registration: Bucket,
}

impl RateLimiters {
    pub fn new(config: &RateLimitsConfig) -> Self {
        Self {
            messages: Bucket::new(config.messages),
            login: Bucket::new(config.login),
            registration: Bucket::new(config.registration),
        }
    }
}
