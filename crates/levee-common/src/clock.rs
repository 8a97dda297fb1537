//! The time seam: one [`Clock`] trait every crate reads "now" through, the
//! wall clock, and a manual clock for tests.
//!
//! Owns what "now" is for timestamps that are stored or compared with
//! stored ones (message times, admin timestamps, quota periods). Must never
//! drive real waiting — sleeps and timeouts stay on tokio's timer or
//! `Instant`, so a test can move stored time without slowing down — and
//! never read anything but the system time.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now" as Unix time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Whole seconds since the Unix epoch, rounded down.
    fn now_unix(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The wall clock. A clock set before 1970 reads as 0 rather than failing:
/// a badly set clock should not stop requests or admin operations.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; for tests here and in other crates.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `now_ms` milliseconds since the epoch.
    pub fn at_ms(now_ms: i64) -> Self {
        ManualClock(AtomicI64::new(now_ms))
    }

    /// A clock reading `now_unix` seconds since the epoch.
    pub fn at_unix(now_unix: i64) -> Self {
        Self::at_ms(now_unix.saturating_mul(1000))
    }

    pub fn set_ms(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::Relaxed);
    }

    pub fn set_unix(&self, now_unix: i64) {
        self.set_ms(now_unix.saturating_mul(1000));
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::at_ms(5_000);
        assert_eq!((c.now_ms(), c.now_unix()), (5_000, 5));
        c.advance_ms(10);
        assert_eq!((c.now_ms(), c.now_unix()), (5_010, 5));
        c.set_ms(-7);
        // Seconds round down, before the epoch too.
        assert_eq!((c.now_ms(), c.now_unix()), (-7, -1));
        c.set_unix(-7);
        assert_eq!(c.now_unix(), -7);
        assert_eq!(ManualClock::at_unix(3).now_ms(), 3_000);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
        assert!(SystemClock.now_unix() > 1_577_836_800);
    }
}
