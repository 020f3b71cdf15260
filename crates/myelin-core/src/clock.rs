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

/// A moment in UTC, broken into the calendar's fields (for dates in protocols: SigV4, email).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UtcDateTime {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 is Monday, 6 Sunday.
    pub weekday: u32,
}

impl UtcDateTime {
    /// The date and time of a Unix time in seconds (proleptic Gregorian calendar; Howard
    /// Hinnant's civil-from-days).
    pub fn from_unix_secs(unix_secs: u64) -> Self {
        let days = (unix_secs / 86_400) as i64;
        let secs = (unix_secs % 86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        // 1970-01-01 was a Thursday (3).
        let weekday = ((days + 3).rem_euclid(7)) as u32;
        Self { year, month, day, hour: secs / 3600, minute: secs / 60 % 60, second: secs % 60, weekday }
    }
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

    use super::{Clock, ManualClock, UtcDateTime};

    #[test]
    fn unix_times_become_calendar_dates() {
        let epoch = UtcDateTime::from_unix_secs(0);
        assert_eq!((epoch.year, epoch.month, epoch.day, epoch.weekday), (1970, 1, 1, 3));
        // 2024-02-29T23:59:59Z, a Thursday.
        let leap = UtcDateTime::from_unix_secs(1_709_251_199);
        assert_eq!(
            (leap.year, leap.month, leap.day, leap.hour, leap.minute, leap.second, leap.weekday),
            (2024, 2, 29, 23, 59, 59, 3)
        );
    }

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
