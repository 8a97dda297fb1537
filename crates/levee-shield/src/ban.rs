//! fail2ban-style bans: a key that collects `threshold` strikes (requests
//! that tripped a blocking rule) within `period` is banned for `ban_for`.
//!
//! Owns the strike bookkeeping and the ban decision. Must never do I/O, read
//! a clock, allocate per key, grow past `max_keys`, or panic.
//!
//! Strikes are counted the way fail2ban's `FailManager` counts failures: an
//! episode opens at a key's first strike and lasts `period`; a strike after
//! the episode has ended opens a new one at count 1. So strikes older than
//! `period` never count, and a ban always means `threshold` real strikes
//! within one `period` (no false bans). The trade-off is that a key pacing
//! its strikes across an episode boundary can land up to
//! `2 × (threshold − 1)` strikes inside one sliding `period` without a ban.
//! When the ban is imposed the strike count resets; strikes during a ban are
//! ignored (they neither extend it nor carry over).
//!
//! Each key costs one 32-byte entry in the shared bounded table
//! ([`crate::rate`]); entries with no ban and an ended episode are reused for
//! free. At the cap, the non-banned entry with the fewest live strikes near
//! the new key's slot is evicted; live bans are never evicted (losing one
//! would readmit an attacker). If every candidate is a live ban, the new
//! key's strike is dropped and `strike` returns `false`: new offenders go
//! unbanned rather than old ones being released.

use std::time::{Duration, Instant};

use crate::rate::table::{BoundedTable, Cell, Epoch};
use crate::rate::{check_max_keys, LimitError};

/// Shortest `period` and `ban_for` accepted.
pub const MIN_DURATION: Duration = Duration::from_millis(1);
/// Longest strike-counting `period` accepted (30 days).
pub const MAX_PERIOD: Duration = Duration::from_secs(30 * 86_400);
/// Longest ban accepted (365 days).
pub const MAX_BAN: Duration = Duration::from_secs(365 * 86_400);

/// One key's strikes and ban, times in ns since the list's epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Strikes {
    /// When the current strike episode stops counting.
    episode_end: u64,
    /// Banned while `now < banned_until`.
    banned_until: u64,
    strikes: u32,
}

impl Cell for Strikes {
    // `now` is in nanoseconds.
    fn is_idle(&self, now: u64) -> bool {
        self.banned_until <= now && (self.strikes == 0 || self.episode_end <= now)
    }
    fn evict_rank(&self, now: u64) -> Option<u64> {
        if self.banned_until > now {
            None
        } else if self.episode_end <= now {
            Some(0)
        } else {
            Some(u64::from(self.strikes))
        }
    }
    // The ban list runs without an overflow sketch; these keep the
    // field-wise over-estimate lattice in case one is ever enabled.
    fn tighter(self, other: Self, _now: u64) -> Self {
        Strikes {
            episode_end: self.episode_end.min(other.episode_end),
            banned_until: self.banned_until.min(other.banned_until),
            strikes: self.strikes.min(other.strikes),
        }
    }
    fn raise(&mut self, v: &Self, _now: u64) {
        self.episode_end = self.episode_end.max(v.episode_end);
        self.banned_until = self.banned_until.max(v.banned_until);
        self.strikes = self.strikes.max(v.strikes);
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Bounded set of keys with strike counts and timed bans.
#[derive(Debug)]
pub struct BanList {
    threshold: u32,
    period_ns: u64,
    ban_ns: u64,
    epoch: Epoch,
    table: BoundedTable<Strikes>,
}

impl BanList {
    /// `threshold` strikes within `period` ban a key for `ban_for`.
    /// Arguments are clamped: threshold to >= 1, period to
    /// `MIN_DURATION..=MAX_PERIOD`, ban_for to `MIN_DURATION..=MAX_BAN`,
    /// max_keys to `1..=MAX_KEYS_CAP`.
    pub fn new(threshold: u32, period: Duration, ban_for: Duration, max_keys: usize) -> BanList {
        BanList {
            threshold: threshold.max(1),
            period_ns: nanos(period.clamp(MIN_DURATION, MAX_PERIOD)),
            ban_ns: nanos(ban_for.clamp(MIN_DURATION, MAX_BAN)),
            epoch: Epoch::default(),
            table: BoundedTable::new(max_keys, false),
        }
    }

    /// Like [`BanList::new`] but refuses out-of-range arguments.
    pub fn try_new(
        threshold: u32,
        period: Duration,
        ban_for: Duration,
        max_keys: usize,
    ) -> Result<BanList, LimitError> {
        if threshold == 0 {
            return Err(LimitError::Threshold);
        }
        for (what, got, max) in [
            ("period", period, MAX_PERIOD),
            ("ban_for", ban_for, MAX_BAN),
        ] {
            if !(MIN_DURATION..=max).contains(&got) {
                return Err(LimitError::Duration {
                    what,
                    got,
                    min: MIN_DURATION,
                    max,
                });
            }
        }
        check_max_keys(max_keys)?;
        Ok(BanList::new(threshold, period, ban_for, max_keys))
    }

    /// Records a strike for `key`; true if the key is banned as of `now`
    /// (including by this very strike).
    pub fn strike(&self, key: &[u8], now: Instant) -> bool {
        let now = self.epoch.nanos(now);
        let (threshold, period, ban) = (self.threshold, self.period_ns, self.ban_ns);
        self.table
            .update(key, now, |c| {
                if c.banned_until > now {
                    return true;
                }
                if c.strikes == 0 || c.episode_end <= now {
                    c.episode_end = now.saturating_add(period);
                    c.strikes = 0;
                }
                c.strikes = c.strikes.saturating_add(1);
                if c.strikes >= threshold {
                    *c = Strikes {
                        episode_end: 0,
                        banned_until: now.saturating_add(ban),
                        strikes: 0,
                    };
                }
                c.banned_until > now
            })
            .unwrap_or(false)
    }

    /// `Some(remaining)` while `key` is banned.
    pub fn banned(&self, key: &[u8], now: Instant) -> Option<Duration> {
        let now = self.epoch.nanos(now);
        self.table
            .get(key, |c| c.banned_until.checked_sub(now))
            .flatten()
            .filter(|&left| left > 0)
            .map(Duration::from_nanos)
    }

    /// Approximate heap bytes in use, computed from allocated capacities.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn threshold_strikes_ban_and_the_ban_expires() {
        let t0 = Instant::now();
        let bl = BanList::new(3, s(60), s(600), 100);
        assert!(!bl.strike(b"ip", t0));
        assert!(!bl.strike(b"ip", t0 + s(10)));
        assert_eq!(bl.banned(b"ip", t0 + s(10)), None);
        assert!(bl.strike(b"ip", t0 + s(20)), "third strike bans");
        assert_eq!(bl.banned(b"ip", t0 + s(20)), Some(s(600)));
        assert_eq!(bl.banned(b"ip", t0 + s(320)), Some(s(300)));
        assert_eq!(bl.banned(b"ip", t0 + s(620)), None, "expired");
        // After expiry the key starts over with zero strikes.
        assert!(!bl.strike(b"ip", t0 + s(621)));
        assert_eq!(bl.banned(b"other", t0), None);
    }

    #[test]
    fn strikes_outside_the_period_do_not_count() {
        let t0 = Instant::now();
        let bl = BanList::new(3, s(60), s(600), 100);
        assert!(!bl.strike(b"ip", t0));
        assert!(!bl.strike(b"ip", t0 + s(30)));
        // The episode that began at t0 ended at t0+60: this opens a new one.
        assert!(!bl.strike(b"ip", t0 + s(60)));
        assert!(!bl.strike(b"ip", t0 + s(100)));
        assert!(bl.strike(b"ip", t0 + s(119)));
    }

    /// A list with threshold 1, already holding a ban on `k` from `t0`.
    fn banned_at_once(ban_secs: u64) -> (Instant, BanList) {
        let t0 = Instant::now();
        let bl = BanList::new(1, s(60), s(ban_secs), 10);
        assert!(bl.strike(b"k", t0), "threshold 1 bans on the first strike");
        (t0, bl)
    }

    #[test]
    fn threshold_one_bans_on_first_strike() {
        let (t0, bl) = banned_at_once(5);
        assert_eq!(bl.banned(b"k", t0 + s(4)), Some(s(1)));
        assert_eq!(bl.banned(b"k", t0 + s(5)), None);
    }

    #[test]
    fn strikes_during_a_ban_do_not_extend_it() {
        let (t0, bl) = banned_at_once(10);
        assert!(bl.strike(b"k", t0 + s(9)));
        assert_eq!(bl.banned(b"k", t0 + s(9)), Some(s(1)));
        assert_eq!(bl.banned(b"k", t0 + s(10)), None);
    }

    #[test]
    fn full_list_keeps_bans_and_never_panics() {
        let t0 = Instant::now();
        let bl = BanList::new(1, s(60), s(100), 16);
        for k in 0u32..16 {
            assert!(bl.strike(&k.to_le_bytes(), t0));
        }
        // Full of live bans: new offenders are dropped, old bans kept.
        for k in 100u32..2_000 {
            let _ = bl.strike(&k.to_le_bytes(), t0);
        }
        let kept = (0u32..16)
            .filter(|k| bl.banned(&k.to_le_bytes(), t0).is_some())
            .count();
        assert_eq!(kept, 16);
        let mem = bl.memory_bytes();
        // Once the bans expire their slots are reused.
        let t1 = t0 + s(100);
        assert!(bl.strike(b"new", t1));
        assert!(bl.banned(b"new", t1).is_some());
        assert_eq!(bl.memory_bytes(), mem);
    }

    #[test]
    fn at_cap_strike_records_are_evicted_before_bans() {
        let t0 = Instant::now();
        let bl = BanList::new(2, s(60), s(100), 4);
        assert!(bl.strike(b"a", t0) || bl.strike(b"a", t0));
        for k in 0u32..1_000 {
            let _ = bl.strike(&k.to_le_bytes(), t0);
        }
        assert!(bl.banned(b"a", t0 + s(50)).is_some());
        // A repeat offender among the flood can still get banned.
        assert!(!bl.strike(b"z", t0));
        assert!(bl.strike(b"z", t0));
    }

    #[test]
    fn bad_parameters_clamp_or_are_rejected() {
        let t0 = Instant::now();
        let bl = BanList::new(0, Duration::ZERO, Duration::MAX, 0);
        assert!(bl.strike(b"k", t0));
        assert_eq!(bl.banned(b"k", t0), Some(MAX_BAN));
        assert!(BanList::try_new(0, s(1), s(1), 1).is_err());
        assert!(BanList::try_new(1, Duration::ZERO, s(1), 1).is_err());
        assert!(BanList::try_new(1, s(1), MAX_BAN + s(1), 1).is_err());
        assert!(BanList::try_new(1, s(1), s(1), 0).is_err());
        assert!(BanList::try_new(5, s(60), s(600), 1000).is_ok());
    }

    #[test]
    fn ban_list_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<BanList>();
    }
}
