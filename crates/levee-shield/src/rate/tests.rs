use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

const MIB: usize = 1 << 20;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn limited_for(s: f64) -> RateDecision {
    RateDecision::Limited {
        retry_after: secs(s),
    }
}

fn allowed(d: RateDecision) -> bool {
    matches!(d, RateDecision::Allowed { .. })
}

#[test]
fn crossing_request_is_limited_and_stays_limited() {
    let t0 = Instant::now();
    let rc = RateCounter::new(10, secs(60.0), 100);
    for i in 1..=10 {
        assert_eq!(rc.hit(b"k", t0), RateDecision::Allowed { count: i });
    }
    assert!(!allowed(rc.hit(b"k", t0)), "11th must be refused");
    // Blocked requests count, so the key stays refused all window long.
    for s in [1.0, 30.0, 59.9] {
        assert!(!allowed(rc.hit(b"k", t0 + secs(s))));
    }
    // Other keys are unaffected.
    assert_eq!(rc.hit(b"other", t0), RateDecision::Allowed { count: 1 });
}

#[test]
fn window_rollover_resets_the_count() {
    let t0 = Instant::now();
    let rc = RateCounter::new(2, secs(10.0), 100);
    assert!(allowed(rc.hit(b"k", t0)));
    assert!(allowed(rc.hit(b"k", t0 + secs(9.0))));
    assert!(!allowed(rc.hit(b"k", t0 + secs(9.9))));
    assert_eq!(
        rc.hit(b"k", t0 + secs(10.0)),
        RateDecision::Allowed { count: 1 }
    );
    // Skipping several windows also starts fresh.
    assert_eq!(
        rc.hit(b"k", t0 + secs(95.0)),
        RateDecision::Allowed { count: 1 }
    );
}

#[test]
fn retry_after_is_the_rest_of_the_window() {
    let t0 = Instant::now();
    let rc = RateCounter::new(1, secs(60.0), 100);
    assert!(allowed(rc.hit(b"k", t0)));
    assert_eq!(rc.hit(b"k", t0 + secs(15.0)), limited_for(45.0));
    // Waiting exactly retry_after is enough.
    assert!(allowed(rc.hit(b"k", t0 + secs(60.0))));
}

#[test]
fn limit_one_allows_exactly_one_per_window() {
    let t0 = Instant::now();
    let rc = RateCounter::new(1, secs(1.0), 10);
    assert!(allowed(rc.hit(b"a", t0)));
    assert!(!allowed(rc.hit(b"a", t0 + secs(0.5))));
    assert!(allowed(rc.hit(b"a", t0 + secs(1.0))));
    assert!(!allowed(rc.hit(b"a", t0 + secs(1.999))));
}

#[test]
fn one_second_and_ten_minute_windows() {
    let t0 = Instant::now();
    let short = RateCounter::new(3, secs(1.0), 10);
    let long = RateCounter::new(3, secs(600.0), 10);
    for rc in [&short, &long] {
        for _ in 0..3 {
            assert!(allowed(rc.hit(b"k", t0)));
        }
        assert!(!allowed(rc.hit(b"k", t0)));
    }
    assert!(allowed(short.hit(b"k", t0 + secs(1.0))));
    assert!(!allowed(long.hit(b"k", t0 + secs(599.0))));
    assert_eq!(long.hit(b"k", t0 + secs(300.0)), limited_for(300.0));
    assert!(allowed(long.hit(b"k", t0 + secs(600.0))));
}

#[test]
fn out_of_range_arguments_are_clamped_or_rejected() {
    let rc = RateCounter::new(0, Duration::ZERO, 0);
    assert_eq!(rc.limit(), 1);
    assert_eq!(rc.window(), MIN_WINDOW);
    let rc = RateCounter::new(u64::MAX, Duration::from_secs(86_400), usize::MAX);
    assert_eq!(rc.limit(), MAX_LIMIT);
    assert_eq!(rc.window(), MAX_WINDOW);
    assert!(RateCounter::try_new(0, secs(60.0), 10).is_err());
    assert!(RateCounter::try_new(10, secs(0.5), 10).is_err());
    assert!(RateCounter::try_new(10, secs(601.0), 10).is_err());
    assert!(RateCounter::try_new(10, secs(60.0), 0).is_err());
    assert!(RateCounter::try_new(10, secs(60.0), 10).is_ok());
}

#[test]
fn time_going_backwards_neither_panics_nor_resets() {
    let t0 = Instant::now();
    let rc = RateCounter::new(2, secs(10.0), 10);
    let later = t0 + secs(25.0);
    assert!(allowed(rc.hit(b"k", later)));
    // An older `now` from a racing thread (even before the epoch).
    assert!(allowed(rc.hit(b"k", t0)));
    assert!(!allowed(rc.hit(b"k", later)));
}

#[test]
fn huge_limit_saturates_without_panicking() {
    let t0 = Instant::now();
    let rc = RateCounter::new(MAX_LIMIT, secs(60.0), 10);
    assert_eq!(rc.hit(b"k", t0), RateDecision::Allowed { count: 1 });
}

#[test]
fn eviction_at_cap_never_panics_and_keeps_limits() {
    let t0 = Instant::now();
    let rc = RateCounter::new(3, secs(60.0), 64);
    // A flooder gets tracked first, then 10k distinct keys overflow the cap.
    for _ in 0..5 {
        rc.hit(b"flooder", t0);
    }
    for k in 0u32..10_000 {
        rc.hit(&k.to_le_bytes(), t0);
    }
    assert!(rc.tracked_keys() <= 64);
    // The flood did not reset the flooder (live entries are pinned).
    assert!(!allowed(rc.hit(b"flooder", t0)));
    // An overflow key is still limited after `limit` hits (sketch path).
    let mut admitted = 0;
    for _ in 0..10 {
        admitted += usize::from(allowed(rc.hit(b"late-key", t0)));
    }
    assert!(admitted <= 3);
    // Next window: the old window's counts (table and sketch) no longer
    // apply, so a key refused during the overflow is admitted again.
    let t1 = t0 + secs(60.0);
    flood(&rc, 0, 64, t1);
    assert!(allowed(rc.hit(b"late-key", t1)));
    assert!(rc.tracked_keys() <= 64);
}

/// Hits `n` distinct keys starting at `first`.
fn flood(rc: &RateCounter, first: u64, n: u64, now: Instant) {
    for k in first..first + n {
        rc.hit(&k.to_le_bytes(), now);
    }
}

fn check_memory(max_keys: usize, inserted: u64) {
    let t0 = Instant::now();
    let rc = RateCounter::new(100, secs(60.0), max_keys);
    flood(&rc, 0, max_keys as u64, t0);
    let at_cap = rc.memory_bytes();
    assert!(rc.tracked_keys() <= max_keys);
    // Nearly all keys got an exact slot (a shard may fill slightly early).
    assert!(
        rc.tracked_keys() * 100 >= max_keys * 98,
        "{}",
        rc.tracked_keys()
    );
    // Honest: at least the live entries' bytes, at most the 5/4 slack bound.
    let entry = std::mem::size_of::<u64>() + std::mem::size_of::<WindowCount>();
    assert!(at_cap >= rc.tracked_keys() * entry);
    assert!(at_cap <= rc.table.max_memory_bytes());
    // Per key: 16-byte entry, 5/4 slack, plus sketch and shard overhead.
    assert!(at_cap <= max_keys * 16 * 5 / 4 + 4 * MIB, "{at_cap}");
    // Three times the cap in distinct keys: no growth beyond the bound.
    flood(&rc, max_keys as u64, inserted - max_keys as u64, t0);
    let after = rc.memory_bytes();
    assert!(rc.tracked_keys() <= max_keys);
    assert!(after <= rc.table.max_memory_bytes());
    assert!(after <= 64 * MIB, "{after}");
    assert!(
        after - at_cap <= 4 * MIB,
        "only the overflow sketch may appear"
    );
}

#[test]
fn two_hundred_thousand_keys_stay_bounded() {
    check_memory(200_000, 600_000);
}

/// The 1M / 3M variant; run with
/// `cargo test -p levee-shield --release --lib -- --ignored million`.
#[test]
#[ignore = "heavy: run in release with --ignored"]
fn million_keys_fit_in_64_mib() {
    check_memory(1_000_000, 3_000_000);
}

#[test]
fn counter_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RateCounter>();
}

#[test]
fn concurrent_hits_never_exceed_limit() {
    let t0 = Instant::now();
    let rc = RateCounter::new(1000, secs(60.0), 100);
    let admitted: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..1000).filter(|_| allowed(rc.hit(b"shared", t0))).count()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    assert_eq!(admitted, 1000);
}

proptest! {
    /// Hard requirement (1): per key, per aligned window, never more than
    /// `limit` admitted — including keys pushed into the overflow sketch
    /// (max_keys far below the key count). With room for every key the
    /// count is exact: admitted == min(requests, limit).
    #[test]
    fn never_admits_more_than_limit_per_window(
        limit in 1u64..6,
        window_s in 1u64..4,
        max_keys in prop_oneof![Just(2usize), Just(1000usize)],
        reqs in proptest::collection::vec((0u8..12, 0u64..400), 1..400),
    ) {
        let t0 = Instant::now();
        let rc = RateCounter::new(limit, Duration::from_secs(window_s), max_keys);
        let mut t_ms = 0u64;
        let mut admitted: HashMap<(u8, u64), u64> = HashMap::new();
        let mut sent: HashMap<(u8, u64), u64> = HashMap::new();
        // Anchor the epoch at t0.
        rc.hit(b"anchor", t0);
        for (key, dt) in reqs {
            t_ms += dt;
            let w = t_ms / (window_s * 1000);
            let d = rc.hit(&[key], t0 + Duration::from_millis(t_ms));
            *sent.entry((key, w)).or_default() += 1;
            if let RateDecision::Limited { retry_after } = d {
                prop_assert!(retry_after > Duration::ZERO);
                prop_assert!(retry_after <= Duration::from_secs(window_s));
            } else {
                *admitted.entry((key, w)).or_default() += 1;
            }
        }
        for (k, n) in &admitted {
            prop_assert!(*n <= limit, "key {:?} admitted {} > {}", k, n, limit);
        }
        if max_keys >= 1000 {
            for (k, n) in &sent {
                prop_assert_eq!(admitted.get(k).copied().unwrap_or(0), (*n).min(limit));
            }
        }
    }
}
