//! Cost of the store's hot-path calls: `authenticate` (hit, plausible miss,
//! garbage), `authenticate_with_plan`, `try_consume` on one hot counter and
//! across many, and `record_usage`. None of them may touch SQLite; the
//! flusher thread runs during the measurement as it does in production.
//!
//! Run: `cargo bench -p levee-store --bench store`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use levee_store::{period_bounds, ManualClock, Period, PlanSpec, QuotaSpec, Store, UsageOutcome};

const NOW: i64 = 1_800_000_000;
/// Keys created up front; each costs one fsynced insert, so this stays small.
const KEYS: usize = 1_000;

fn bench_store(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open_with_clock(dir.path(), Arc::new(ManualClock::at_unix(NOW))).expect("opens");
    let mut plan = PlanSpec::named("bench");
    plan.quota = Some(QuotaSpec {
        limit: levee_store::plan::MAX_QUOTA_LIMIT,
        period: Period::Day,
        offset: 0,
    });
    store.create_plan(plan).expect("creates plan");
    let keys: Vec<_> = (0..KEYS)
        .map(|i| {
            store
                .create_key(&format!("k{i}"), "bench")
                .expect("creates key")
        })
        .collect();
    let (_, secret) = &keys[KEYS / 2];
    let miss = "Z".repeat(40);
    let (start, _) = period_bounds(NOW, Period::Day, 0);

    c.bench_function("authenticate_hit", |b| {
        b.iter(|| store.authenticate(black_box(secret)))
    });
    c.bench_function("authenticate_with_plan_hit", |b| {
        b.iter(|| store.authenticate_with_plan(black_box(secret)))
    });
    c.bench_function("authenticate_miss", |b| {
        b.iter(|| store.authenticate(black_box(&miss)))
    });
    c.bench_function("authenticate_garbage", |b| {
        b.iter(|| store.authenticate(black_box("not a key!")))
    });

    let hot = keys[0].0.id.clone();
    c.bench_function("try_consume_hot_key", |b| {
        b.iter(|| {
            store
                .quotas()
                .try_consume(black_box(&hot), start, u64::MAX / 2)
        })
    });
    let ids: Vec<String> = keys.iter().map(|(k, _)| k.id.clone()).collect();
    let mut i = 0;
    c.bench_function("try_consume_1000_keys", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            store
                .quotas()
                .try_consume(black_box(&ids[i]), start, u64::MAX / 2)
        })
    });
    c.bench_function("record_usage", |b| {
        b.iter(|| store.record_usage(black_box(&hot), 20_000, UsageOutcome::Admitted))
    });
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
