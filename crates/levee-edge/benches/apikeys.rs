//! Cost of the API key stage per request: key lookup, the plan's per-key
//! token bucket and quota, and the usage record — `ApiKeys::check` as the
//! pipeline calls it, on a real store (SQLite under a temp dir, flusher on).

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use levee_edge::apikeys::ApiKeys;
use levee_edge::clock::Clock;
use levee_store::{Period, PlanSpec, QuotaSpec, Store, ThrottleSpec};

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("levee-bench-apikeys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = Arc::new(Store::open(&dir).expect("store"));
    let mut spec = PlanSpec::named("bench");
    spec.throttle = Some(ThrottleSpec {
        rate: 1e9,
        burst: 1_000_000_000,
    });
    spec.quota = Some(QuotaSpec {
        limit: 1_000_000_000_000,
        period: Period::Day,
        offset: 0,
    });
    store.create_plan(spec).expect("plan");
    let secrets: Vec<String> = (0..1000)
        .map(|i| store.create_key(&format!("k{i}"), "bench").expect("key").1)
        .collect();
    let stage = ApiKeys::new(Arc::clone(&store), Clock::default());
    let headers = |secret: &str| {
        let mut h = http::HeaderMap::new();
        h.insert("x-api-key", secret.parse().expect("header"));
        h
    };
    let one = headers(&secrets[0]);
    c.bench_function("api_key_check_hot_key", |b| {
        b.iter(|| match stage.check("GET /k", &one, Instant::now()) {
            Ok(admitted) => admitted.headers.len(),
            Err(refused) => panic!("refused: {refused:?}"),
        })
    });
    let many: Vec<_> = secrets.iter().map(|s| headers(s)).collect();
    let mut i = 0;
    c.bench_function("api_key_check_1000_keys", |b| {
        b.iter(|| {
            i = (i + 1) % many.len();
            stage.check("GET /k", &many[i], Instant::now()).is_ok()
        })
    });
    let unknown = headers("x".repeat(40).as_str());
    c.bench_function("api_key_check_unknown_key", |b| {
        b.iter(|| stage.check("GET /k", &unknown, Instant::now()).is_err())
    });
    drop(stage);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
