//! Wall-clock time for quotas and usage days, with one seam: an offset in
//! seconds, which only tests set (`LEVEE_CLOCK_OFFSET_SECS`), so a quota's
//! period boundary can be reached without waiting for midnight.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time plus a fixed offset.
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
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        real.saturating_add(self.offset_secs)
    }
}
