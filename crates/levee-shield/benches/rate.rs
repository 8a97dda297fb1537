//! Cost of the per-request limiter calls: `RateCounter::hit` for one hot key
//! and for a flood of distinct keys (below the cap, and far past it where the
//! overflow sketch takes over), plus the token buckets and the ban check.
//! Also prints the honest memory figure for 1,000,000 distinct keys.
//!
//! Run: `cargo bench -p levee-shield --bench rate`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use levee_shield::ban::BanList;
use levee_shield::bucket::{KeyedBuckets, TokenBucket};
use levee_shield::rate::RateCounter;

const MIB: f64 = 1024.0 * 1024.0;

fn memory_million_keys() {
    let t0 = Instant::now();
    let rc = RateCounter::new(100, Duration::from_secs(60), 1_000_000);
    let start = Instant::now();
    for k in 0u64..1_000_000 {
        rc.hit(&k.to_le_bytes(), t0);
    }
    let one_m = rc.memory_bytes();
    let tracked = rc.tracked_keys();
    for k in 1_000_000u64..3_000_000 {
        rc.hit(&k.to_le_bytes(), t0);
    }
    eprintln!(
        "rate memory: 1M keys -> {} bytes ({:.1} MiB, {} tracked); 3M keys -> {} bytes \
         ({:.1} MiB, {} tracked); {:.0} ns/insert",
        one_m,
        one_m as f64 / MIB,
        tracked,
        rc.memory_bytes(),
        rc.memory_bytes() as f64 / MIB,
        rc.tracked_keys(),
        start.elapsed().as_nanos() as f64 / 3e6,
    );
    assert!(rc.memory_bytes() <= 64 << 20);
}

fn bench_rate(c: &mut Criterion) {
    memory_million_keys();
    let t0 = Instant::now();

    let rc = RateCounter::new(1_000_000_000, Duration::from_secs(60), 1_000_000);
    c.bench_function("rate_hit_hot_key", |b| {
        b.iter(|| rc.hit(black_box(b"203.0.113.7"), t0))
    });

    // Distinct keys, table large enough for all of them (steady state: the
    // key space cycles through 1M keys already inserted once).
    let rc = RateCounter::new(100, Duration::from_secs(60), 1_000_000);
    let mut k = 0u64;
    c.bench_function("rate_hit_distinct_keys_under_cap", |b| {
        b.iter(|| {
            k = (k + 1) % 1_000_000;
            rc.hit(black_box(&k.to_le_bytes()), t0)
        })
    });

    // A flood of never-seen keys against a full 100k table: every hit misses,
    // reclaims nothing and lands in the overflow sketch.
    let rc = RateCounter::new(100, Duration::from_secs(60), 100_000);
    let mut k = 0u64;
    c.bench_function("rate_hit_distinct_keys_flood_past_cap", |b| {
        b.iter(|| {
            k += 1;
            rc.hit(black_box(&k.to_le_bytes()), t0)
        })
    });

    let tb = TokenBucket::new(1e9, u32::MAX);
    c.bench_function("token_bucket_try_take", |b| {
        b.iter(|| tb.try_take(black_box(t0)))
    });

    let kb = KeyedBuckets::new(10.0, 20, 100_000);
    let mut k = 0u64;
    c.bench_function("keyed_buckets_try_take_distinct", |b| {
        b.iter(|| {
            k = (k + 1) % 50_000;
            kb.try_take(black_box(&k.to_le_bytes()), t0)
        })
    });

    let bl = BanList::new(
        5,
        Duration::from_secs(60),
        Duration::from_secs(600),
        100_000,
    );
    c.bench_function("ban_banned_lookup", |b| {
        b.iter(|| bl.banned(black_box(b"203.0.113.7"), t0))
    });
}

criterion_group!(benches, bench_rate);
criterion_main!(benches);
