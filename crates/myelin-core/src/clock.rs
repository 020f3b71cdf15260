//! Time, as a value the services are given: the system's clock in the server, a clock the test
//! moves by hand in tests.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// A source of time.
pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time in the unit Matrix uses: milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Monotonic time, for durations and deadlines.
    fn now(&self) -> Instant;
}

/// The machine's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]); both of its times move
/// together.
#[derive(Debug)]
pub struct ManualClock {
    start_ms: u64,
    start: Instant,
    elapsed_ms: AtomicU64,
}

impl ManualClock {
    /// A clock that reads `start_ms` (milliseconds since the epoch) until advanced.
    pub fn new(start_ms: u64) -> Self {
        Self { start_ms, start: Instant::now(), elapsed_ms: AtomicU64::new(0) }
    }

    pub fn advance(&self, by: Duration) {
        self.elapsed_ms.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::AcqRel);
    }

    fn elapsed(&self) -> u64 {
        self.elapsed_ms.load(Ordering::Acquire)
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.start_ms + self.elapsed()
    }

    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Clock, ManualClock};

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::new(1_000);
        let (ms, instant) = (clock.now_ms(), clock.now());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!((clock.now_ms(), clock.now()), (ms, instant));
        clock.advance(Duration::from_millis(250));
        assert_eq!(clock.now_ms(), 1_250);
        assert_eq!(clock.now() - instant, Duration::from_millis(250));
    }
}
