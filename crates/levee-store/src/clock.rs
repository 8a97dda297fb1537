//! The time seam.
//!
//! Owns: the [`Clock`] trait the store reads for the timestamps it writes on
//! admin operations (`created_at`, `rotated_at`). Must never: be read on the
//! hot path — `authenticate`, `try_consume` and `record_usage` take the time
//! (or the period and day derived from it) from their caller, so tests and
//! the binary decide what "now" is.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of "now" in unix seconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_unix(&self) -> i64;
}

/// The wall clock. Times before 1970 (a badly set clock) read as 0 rather
/// than failing an admin operation.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to; for tests here and in other crates.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_unix: i64) -> Self {
        ManualClock(AtomicI64::new(now_unix))
    }

    pub fn set(&self, now_unix: i64) {
        self.0.store(now_unix, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_unix(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_reads_what_was_set() {
        let c = ManualClock::new(5);
        assert_eq!(c.now_unix(), 5);
        c.set(-7);
        assert_eq!(c.now_unix(), -7);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_unix() > 1_577_836_800);
    }
}
