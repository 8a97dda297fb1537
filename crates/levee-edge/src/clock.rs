//! Wall-clock time for quotas and usage days, read through
//! `levee_common::clock` like every other crate's, with one seam of its own:
//! an offset in seconds, which only tests set (`LEVEE_CLOCK_OFFSET_SECS`), so
//! a quota's period boundary can be reached without waiting for midnight.

use levee_common::clock::{Clock as _, SystemClock};

/// Unix time plus a fixed offset. A plain `Copy` value rather than a
/// `dyn Clock`: it is read on every request, and the offset is the only
/// thing tests change.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    offset_secs: i64,
}

impl Clock {
    /// A clock `offset_secs` ahead of (or, negative, behind) real time.
    pub fn with_offset(offset_secs: i64) -> Self {
        Self { offset_secs }
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        SystemClock.now_unix().saturating_add(self.offset_secs)
    }
}
