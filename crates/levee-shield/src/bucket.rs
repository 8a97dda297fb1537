//! Token buckets with API Gateway semantics: `rate` tokens per second refill
//! a bucket of `burst` tokens that starts full; each request takes one.
//!
//! Owns the throttle decision for one bucket ([`TokenBucket`]) and for one
//! bucket per key ([`KeyedBuckets`], e.g. per API key), and the
//! `Retry-After` wait. Must never do I/O, read a clock, allocate per key,
//! grow past `max_keys`, or panic.
//!
//! Implemented as GCRA (as in the `governor` crate): the whole bucket is one
//! "theoretical arrival time" `tat` in nanoseconds, with emission interval
//! `t = ceil(1e9 / rate)` ns and tolerance `tau = t × (burst − 1)`; a request
//! at `now` conforms iff `max(tat, now) − now <= tau`, and then
//! `tat = max(tat, now) + t`. This is exactly a token bucket: in any interval
//! of length `T` at most `burst + T / t <= burst + rate × T` requests are
//! admitted (no rounding slack; `t` is rounded up so the effective rate is
//! never above `rate`). 10k requests at t = 0 against rate 10k / burst 5k
//! admit exactly 5,000.
//!
//! [`KeyedBuckets`] keeps one 8-byte `tat` per key in the shared bounded
//! table ([`crate::rate`]): a key whose bucket has refilled completely
//! (`tat <= now`) is in the default state and its slot is reused for free.
//! At the cap, new keys use a per-shard sketch of GCRA cells (4 rows; a key
//! reads the smallest `tat` of its cells and raises all of them), which can
//! only throttle **more** than a private bucket would (colliding keys share
//! tokens), never less; so the bound above holds for every key.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::rate::table::{BoundedTable, Cell, Epoch};
use crate::rate::{check_max_keys, LimitError};

/// Slowest refill accepted: one token per day.
pub const MIN_RATE: f64 = 1.0 / 86_400.0;
/// Fastest refill accepted: one token per nanosecond.
pub const MAX_RATE: f64 = 1e9;

/// Emission interval and tolerance in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gcra {
    t: u64,
    tau: u64,
}

impl Gcra {
    fn new(rate: f64, burst: u32) -> Gcra {
        // NaN, infinities and non-positive rates clamp to the bounds.
        let rate = if rate.is_nan() {
            MIN_RATE
        } else {
            rate.clamp(MIN_RATE, MAX_RATE)
        };
        // In 1..=8.64e13: the cast is exact enough and cannot overflow.
        let t = ((1e9 / rate).ceil() as u64).max(1);
        let tau = t.saturating_mul(u64::from(burst.max(1)) - 1);
        Gcra { t, tau }
    }

    fn try_new(rate: f64, burst: u32) -> Result<Gcra, LimitError> {
        if !(MIN_RATE..=MAX_RATE).contains(&rate) {
            return Err(LimitError::Rate {
                got: rate,
                min: MIN_RATE,
                max: MAX_RATE,
            });
        }
        if burst == 0 {
            return Err(LimitError::Burst);
        }
        Ok(Gcra::new(rate, burst))
    }

    /// New `tat` if a request at `now` conforms, else the wait in ns.
    fn take(self, tat: u64, now: u64) -> Result<u64, u64> {
        let base = tat.max(now);
        if base - now > self.tau {
            Err(base - now - self.tau)
        } else {
            Ok(base.saturating_add(self.t))
        }
    }
}

/// One token bucket, lock-free (a single `AtomicU64` updated by CAS).
#[derive(Debug)]
pub struct TokenBucket {
    gcra: Gcra,
    epoch: Epoch,
    tat: AtomicU64,
}

impl TokenBucket {
    /// `rate` tokens per second (clamped to `MIN_RATE..=MAX_RATE`; NaN →
    /// `MIN_RATE`), bucket size `burst` (0 → 1). Starts full.
    pub fn new(rate: f64, burst: u32) -> TokenBucket {
        TokenBucket {
            gcra: Gcra::new(rate, burst),
            epoch: Epoch::default(),
            tat: AtomicU64::new(0),
        }
    }

    /// Like [`TokenBucket::new`] but refuses out-of-range arguments.
    pub fn try_new(rate: f64, burst: u32) -> Result<TokenBucket, LimitError> {
        Gcra::try_new(rate, burst).map(|_| TokenBucket::new(rate, burst))
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let now = self.epoch.nanos(now);
        let mut tat = self.tat.load(Ordering::Acquire);
        loop {
            let new = self.gcra.take(tat, now).map_err(Duration::from_nanos)?;
            match self
                .tat
                .compare_exchange_weak(tat, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }
}

/// A key's bucket: its theoretical arrival time in ns since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tat(u64);

impl Cell for Tat {
    // `now` is in nanoseconds.
    fn is_idle(&self, now: u64) -> bool {
        self.0 <= now
    }
    fn evict_rank(&self, now: u64) -> Option<u64> {
        // Only full buckets are dropped; live ones go to the sketch.
        self.is_idle(now).then_some(0)
    }
    fn tighter(self, other: Self, _now: u64) -> Self {
        Tat(self.0.min(other.0))
    }
    fn raise(&mut self, v: &Self, _now: u64) {
        self.0 = self.0.max(v.0);
    }
}

/// One token bucket per key, bounded at `max_keys` keys.
#[derive(Debug)]
pub struct KeyedBuckets {
    gcra: Gcra,
    epoch: Epoch,
    table: BoundedTable<Tat>,
}

impl KeyedBuckets {
    /// Per-key buckets of `rate`/`burst` (clamped as in
    /// [`TokenBucket::new`]); `max_keys` clamped to `1..=MAX_KEYS_CAP`.
    pub fn new(rate: f64, burst: u32, max_keys: usize) -> KeyedBuckets {
        KeyedBuckets {
            gcra: Gcra::new(rate, burst),
            epoch: Epoch::default(),
            table: BoundedTable::new(max_keys, true),
        }
    }

    /// Like [`KeyedBuckets::new`] but refuses out-of-range arguments.
    pub fn try_new(rate: f64, burst: u32, max_keys: usize) -> Result<KeyedBuckets, LimitError> {
        Gcra::try_new(rate, burst)?;
        check_max_keys(max_keys)?;
        Ok(KeyedBuckets::new(rate, burst, max_keys))
    }

    /// Takes one token from `key`'s bucket, or says how long until one is.
    pub fn try_take(&self, key: &[u8], now: Instant) -> Result<(), Duration> {
        let now = self.epoch.nanos(now);
        let gcra = self.gcra;
        self.table
            .update(key, now, |tat| {
                gcra.take(tat.0, now).map(|new| {
                    tat.0 = new;
                })
            })
            // Unreachable with the sketch enabled; refusing for one
            // emission interval is the safe answer.
            .unwrap_or(Err(gcra.t))
            .map_err(Duration::from_nanos)
    }

    /// Approximate heap bytes in use, computed from allocated capacities.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    /// Keys currently holding a table slot.
    pub fn tracked_keys(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn api_gateway_example_10k_rate_5k_burst() {
        let t0 = Instant::now();
        let b = TokenBucket::new(10_000.0, 5_000);
        let served = (0..10_000).filter(|_| b.try_take(t0).is_ok()).count();
        assert_eq!(served, 5_000);
        // 5k more at t = 101 ms: 101 ms × 10k/s = 1,010 tokens refilled.
        let later = (0..5_000)
            .filter(|_| b.try_take(t0 + ms(101)).is_ok())
            .count();
        assert_eq!(later, 1_010);
    }

    #[test]
    fn starts_full_and_refills() {
        let t0 = Instant::now();
        let b = TokenBucket::new(1.0, 3);
        for _ in 0..3 {
            assert_eq!(b.try_take(t0), Ok(()));
        }
        assert_eq!(b.try_take(t0), Err(Duration::from_secs(1)));
        assert_eq!(b.try_take(t0 + ms(400)), Err(ms(600)));
        assert_eq!(b.try_take(t0 + ms(1000)), Ok(()));
        // A long idle period refills to `burst`, never beyond.
        let t1 = t0 + Duration::from_secs(100);
        let n = (0..10).filter(|_| b.try_take(t1).is_ok()).count();
        assert_eq!(n, 3);
    }

    #[test]
    fn fractional_rate_refills_slowly() {
        let t0 = Instant::now();
        let b = TokenBucket::new(0.5, 1);
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0), Err(Duration::from_secs(2)));
        assert_eq!(b.try_take(t0 + ms(1999)), Err(ms(1)));
        assert_eq!(b.try_take(t0 + ms(2000)), Ok(()));
        // 0.25/s: one token per 4 s.
        let q = TokenBucket::new(0.25, 2);
        assert!(q.try_take(t0).is_ok() && q.try_take(t0).is_ok());
        assert_eq!(q.try_take(t0 + ms(1000)), Err(ms(3000)));
    }

    #[test]
    fn bad_parameters_clamp_or_are_rejected() {
        let t0 = Instant::now();
        for rate in [f64::NAN, -1.0, 0.0, f64::NEG_INFINITY] {
            let b = TokenBucket::new(rate, 0);
            assert!(b.try_take(t0).is_ok());
            assert!(b.try_take(t0).is_err());
            assert!(TokenBucket::try_new(rate, 1).is_err());
        }
        let fast = TokenBucket::new(f64::INFINITY, u32::MAX);
        assert!(fast.try_take(t0).is_ok());
        assert!(TokenBucket::try_new(1.0, 0).is_err());
        assert!(KeyedBuckets::try_new(1.0, 1, 0).is_err());
        assert!(KeyedBuckets::try_new(1.0, 1, 10).is_ok());
    }

    #[test]
    fn keyed_buckets_are_independent() {
        let t0 = Instant::now();
        let kb = KeyedBuckets::new(1.0, 2, 100);
        assert!(kb.try_take(b"a", t0).is_ok());
        assert!(kb.try_take(b"a", t0).is_ok());
        assert_eq!(kb.try_take(b"a", t0), Err(Duration::from_secs(1)));
        assert!(kb.try_take(b"b", t0).is_ok());
        assert!(kb.try_take(b"a", t0 + ms(1000)).is_ok());
    }

    #[test]
    fn keyed_buckets_at_cap_stay_bounded_and_throttle() {
        let t0 = Instant::now();
        let kb = KeyedBuckets::new(1.0, 2, 32);
        for k in 0u32..5_000 {
            let _ = kb.try_take(&k.to_le_bytes(), t0);
        }
        assert!(kb.tracked_keys() <= 32);
        // An overflow key still gets at most `burst` at once.
        let n = (0..5).filter(|_| kb.try_take(b"late", t0).is_ok()).count();
        assert!(n <= 2);
        let before = kb.memory_bytes();
        for k in 5_000u32..20_000 {
            let _ = kb.try_take(&k.to_le_bytes(), t0);
        }
        assert_eq!(kb.memory_bytes(), before);
        // Once buckets refill, their slots are free again.
        let t1 = t0 + Duration::from_secs(10);
        assert!(kb.try_take(b"late", t1).is_ok());
    }

    #[test]
    fn buckets_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TokenBucket>();
        check::<KeyedBuckets>();
    }

    /// Asserts the token-bucket bound on the admitted times (ns, sorted):
    /// any `j - i + 1` admitted within `[a_i, a_j]` is <= burst + rate × T.
    fn assert_bound(admitted: &[u64], rate: f64, burst: u32) -> Result<(), TestCaseError> {
        for i in 0..admitted.len() {
            for j in i..admitted.len() {
                let span_s = (admitted[j] - admitted[i]) as f64 / 1e9;
                let n = (j - i + 1) as f64;
                prop_assert!(
                    n <= f64::from(burst) + rate * span_s + 1e-9,
                    "{} admitted in {} s (rate {}, burst {})",
                    n,
                    span_s,
                    rate,
                    burst
                );
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn admitted_never_exceed_burst_plus_rate_times_t(
            rate in prop_oneof![0.3f64..5.0, 50.0f64..2000.0],
            burst in 1u32..8,
            gaps in proptest::collection::vec(0u64..400_000_000, 1..200),
        ) {
            let t0 = Instant::now();
            let b = TokenBucket::new(rate, burst);
            let mut t = 0u64;
            let mut admitted = Vec::new();
            for g in gaps {
                t += g;
                if b.try_take(t0 + Duration::from_nanos(t)).is_ok() {
                    admitted.push(t);
                }
            }
            assert_bound(&admitted, rate, burst)?;
        }

        /// Same bound per key for keyed buckets, including keys pushed into
        /// the overflow sketch (max_keys = 2 with up to 6 keys).
        #[test]
        fn keyed_bound_holds_per_key_even_at_cap(
            rate in 0.3f64..20.0,
            burst in 1u32..5,
            max_keys in prop_oneof![Just(2usize), Just(100usize)],
            reqs in proptest::collection::vec((0u8..6, 0u64..200_000_000), 1..200),
        ) {
            let t0 = Instant::now();
            let kb = KeyedBuckets::new(rate, burst, max_keys);
            let mut t = 0u64;
            let mut admitted: Vec<Vec<u64>> = vec![Vec::new(); 6];
            for (k, g) in reqs {
                t += g;
                if kb.try_take(&[k], t0 + Duration::from_nanos(t)).is_ok() {
                    admitted[usize::from(k)].push(t);
                }
            }
            for a in &admitted {
                assert_bound(a, rate, burst)?;
            }
        }
    }
}
