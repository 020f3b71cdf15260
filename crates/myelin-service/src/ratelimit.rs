//! Token-bucket rate limiting keyed by user or client address.

use std::{collections::HashMap, sync::Arc, sync::Mutex, time::Instant};

use myelin_core::{
    Clock, MatrixError,
    config::{RateLimit, RateLimitsConfig},
};

/// Keys kept per bucket; past this the bucket starts over (a flood of addresses cannot grow it).
const MAX_KEYS: usize = 100_000;

pub struct Bucket {
    limit: RateLimit,
    state: Mutex<HashMap<String, (f64, Instant)>>,
    clock: Arc<dyn Clock>,
}

impl Bucket {
    pub fn new(limit: RateLimit, clock: Arc<dyn Clock>) -> Self {
        Self { limit, state: Mutex::new(HashMap::new()), clock }
    }

    /// Takes one token for `key`, or answers `M_LIMIT_EXCEEDED` with the wait in `retry_after_ms`.
    pub fn check(&self, key: &str) -> Result<(), MatrixError> {
        if self.limit.per_second <= 0.0 {
            return Ok(());
        }
        let Ok(mut state) = self.state.lock() else { return Ok(()) };
        let now = self.clock.now();
        if state.len() > MAX_KEYS {
            state.clear();
        }
        let burst = f64::from(self.limit.burst.max(1));
        let (tokens, last) = state.entry(key.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * self.limit.per_second).min(burst);
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

/// Which limit a request counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Events sent by one user.
    Messages,
    /// Login attempts per client address.
    Login,
    /// Registrations per client address.
    Registration,
}

pub struct RateLimiters {
    messages: Bucket,
    login: Bucket,
    registration: Bucket,
}

impl RateLimiters {
    pub fn new(config: &RateLimitsConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            messages: Bucket::new(config.messages, clock.clone()),
            login: Bucket::new(config.login, clock.clone()),
            registration: Bucket::new(config.registration, clock),
        }
    }

    pub fn check(&self, limit: Limit, key: &str) -> Result<(), MatrixError> {
        match limit {
            Limit::Messages => self.messages.check(key),
            Limit::Login => self.login.check(key),
            Limit::Registration => self.registration.check(key),
        }
    }
}

impl crate::Services {
    /// Takes a token of `limit` for `key` (a user id or a client address).
    pub fn check_rate_limit(&self, limit: Limit, key: &str) -> Result<(), MatrixError> {
        if self.exempt_from_rate_limits(key) {
            return Ok(());
        }
        self.limits.check(limit, key)
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use myelin_core::{ErrorCode, ManualClock, config::RateLimit};

    use super::Bucket;

    #[test]
    fn a_bucket_refills_at_its_rate() {
        let clock = Arc::new(ManualClock::new(0));
        let bucket = Bucket::new(RateLimit { per_second: 2.0, burst: 3 }, clock.clone());
        for _ in 0..3 {
            bucket.check("a").expect("within the burst");
        }
        let refused = bucket.check("a").expect_err("burst used up");
        assert_eq!(refused.code, ErrorCode::LimitExceeded { retry_after_ms: 500 });
        bucket.check("b").expect("keys are separate");
        clock.advance(Duration::from_millis(500));
        bucket.check("a").expect("one token back after half a second");
        assert!(bucket.check("a").is_err());
        let off = Bucket::new(RateLimit { per_second: 0.0, burst: 0 }, clock);
        for _ in 0..100 {
            off.check("a").expect("a limit of 0 is off");
        }
    }
}
