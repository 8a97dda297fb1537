//! The request-level flow of [`EdgeCache::serve`], on tokio's paused clock.

// The stand-in functions return `Fetched`, the pipeline's contract
// (`Result<Response, Response>`); both variants are a whole response by design.
#![allow(clippy::result_large_err)]

use std::sync::atomic::AtomicUsize;

use super::*;

/// A function stand-in: counts calls, sleeps `delay`, answers `make()`.
fn fetch_with(
    calls: &Arc<AtomicUsize>,
    delay: Duration,
    make: impl FnOnce() -> Fetched + Send + Sync + 'static,
) -> Fetch {
    let calls = Arc::clone(calls);
    Box::new(move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            make()
        })
    })
}

fn ok(status: u16, body: &str, headers: &[(&str, &str)]) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(body.to_owned()));
    *resp.status_mut() = StatusCode::from_u16(status).expect("status");
    for (n, v) in headers {
        resp.headers_mut().append(
            http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    resp
}

fn answer(body: &'static str) -> impl FnOnce() -> Fetched + Send + Sync + 'static {
    move || Ok(ok(200, body, &[("content-type", "text/plain")]))
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(()).expect("request").into_parts().0
}

fn policy() -> CachePolicy {
    CachePolicy {
        default_ttl: Duration::from_secs(10),
        ..CachePolicy::default()
    }
}

const ROUTE: &str = "GET /items/{id}";

fn cache() -> Arc<EdgeCache> {
    EdgeCache::new(&CacheSettings::default())
}

async fn get(c: &Arc<EdgeCache>, p: &CachePolicy, uri: &str, fetch: Fetch) -> Response<Bytes> {
    c.serve(ROUTE, p, &request("GET", uri, &[]), fetch).await
}

fn label(r: &Response<Bytes>) -> &str {
    r.headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Lets spawned fills run to completion on the paused clock.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_miss_then_hits_until_the_ttl_ends() {
    let (c, p, calls) = (cache(), policy(), Arc::new(AtomicUsize::new(0)));
    let zero = Duration::ZERO;
    let r = get(
        &c,
        &p,
        "/items/1?junk=1",
        fetch_with(&calls, zero, answer("one")),
    )
    .await;
    assert_eq!((label(&r), r.body().as_ref()), ("Miss", &b"one"[..]));
    tokio::time::advance(Duration::from_secs(4)).await;
    let r = get(
        &c,
        &p,
        "/items/1?junk=2",
        fetch_with(&calls, zero, answer("two")),
    )
    .await;
    assert_eq!((label(&r), r.body().as_ref()), ("Hit", &b"one"[..]));
    assert_eq!(r.headers()["age"], "4");
    tokio::time::advance(Duration::from_secs(7)).await;
    let r = get(
        &c,
        &p,
        "/items/1",
        fetch_with(&calls, zero, answer("three")),
    )
    .await;
    assert_eq!((label(&r), r.body().as_ref()), ("Miss", &b"three"[..]));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.stores), (1, 2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_misses_cost_one_invocation() {
    let (c, p, calls) = (cache(), policy(), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (c, p) = (Arc::clone(&c), p.clone());
            let fetch = fetch_with(&calls, Duration::from_millis(100), answer("once"));
            tokio::spawn(async move { get(&c, &p, &format!("/items/9?r={i}"), fetch).await })
        })
        .collect();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(
            (r.status(), r.body().as_ref()),
            (StatusCode::OK, &b"once"[..])
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = c.stats();
    assert_eq!((s.misses, s.collapsed, s.in_flight), (1, 999, 0));
}

#[tokio::test(start_paused = true)]
async fn a_failing_leader_does_not_send_its_waiters_to_the_function() {
    let (c, p, calls) = (cache(), policy(), Arc::new(AtomicUsize::new(0)));
    let run = |make: fn() -> Fetched, n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (c, p) = (Arc::clone(&c), p.clone());
                let fetch = fetch_with(&calls, Duration::from_millis(50), make);
                tokio::spawn(async move { get(&c, &p, "/items/5", fetch).await })
            })
            .collect();
        async move {
            let mut statuses = Vec::new();
            for t in tasks {
                statuses.push(t.await.expect("task").status().as_u16());
            }
            statuses
        }
    };
    // The platform could not answer: everyone shares the one error.
    let statuses = run(|| Err(ok(504, "timeout", &[])), 100).await;
    assert!(statuses.iter().all(|&s| s == 504), "{statuses:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The fill dies without an outcome: waiters get 503, not a stampede.
    let statuses = run(|| panic!("the fill dies"), 100).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    // The next request starts one new fill.
    let r = get(
        &c,
        &p,
        "/items/5",
        fetch_with(&calls, Duration::ZERO, answer("ok")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn a_hung_fill_releases_waiters_after_the_collapse_wait() {
    let (c, p, calls) = (cache(), policy(), Arc::new(AtomicUsize::new(0)));
    let hang = LEADER_WAIT * 2;
    let leader = {
        let (c, p) = (Arc::clone(&c), p.clone());
        let fetch = fetch_with(&calls, hang, answer("late"));
        tokio::spawn(async move { get(&c, &p, "/items/3", fetch).await })
    };
    settle().await;
    let started = Instant::now();
    let r = get(&c, &p, "/items/3", fetch_with(&calls, hang, answer("x"))).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(started.elapsed(), COLLAPSE_WAIT);
    let r = leader.await.expect("leader");
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "leader bounded too"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(c.stats().rejected, 2);
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_stale_and_refreshes_once() {
    let c = cache();
    let p = CachePolicy {
        stale_while_revalidate: Duration::from_secs(30),
        ..policy()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    get(
        &c,
        &p,
        "/items/1",
        fetch_with(&calls, Duration::ZERO, answer("old")),
    )
    .await;
    tokio::time::advance(Duration::from_secs(15)).await;
    for _ in 0..50 {
        let fetch = fetch_with(&calls, Duration::from_millis(200), answer("new"));
        let r = get(&c, &p, "/items/1", fetch).await;
        assert_eq!((label(&r), r.body().as_ref()), ("Stale", &b"old"[..]));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one refresh");
    let r = get(
        &c,
        &p,
        "/items/1",
        fetch_with(&calls, Duration::ZERO, answer("x")),
    )
    .await;
    assert_eq!((label(&r), r.body().as_ref()), ("Hit", &b"new"[..]));
    assert_eq!(c.stats().refreshes, 1);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_covers_failures_within_its_window() {
    let c = cache();
    let p = CachePolicy {
        stale_if_error: Duration::from_secs(60),
        ..policy()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let z = Duration::ZERO;
    get(&c, &p, "/items/1", fetch_with(&calls, z, answer("good"))).await;
    tokio::time::advance(Duration::from_secs(20)).await;
    let throttled = || Err(ok(429, "throttled", &[]));
    let r = get(&c, &p, "/items/1", fetch_with(&calls, z, throttled)).await;
    assert_eq!((label(&r), r.body().as_ref()), ("Stale", &b"good"[..]));
    let crashed = || Ok(ok(500, "boom", &[]));
    let r = get(&c, &p, "/items/1", fetch_with(&calls, z, crashed)).await;
    assert_eq!(
        (label(&r), r.body().as_ref()),
        ("Stale", &b"good"[..]),
        "5xx too"
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    let r = get(&c, &p, "/items/1", fetch_with(&calls, z, throttled)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "window over");
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn not_found_is_cached_for_the_negative_ttl() {
    let c = cache();
    let p = CachePolicy {
        negative_ttl: Duration::from_secs(5),
        ..policy()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let missing = || Ok(ok(404, "no such item", &[]));
    let z = Duration::ZERO;
    for expected in ["Miss", "Hit"] {
        let r = get(&c, &p, "/items/404", fetch_with(&calls, z, missing)).await;
        assert_eq!((r.status().as_u16(), label(&r)), (404, expected));
        assert!(r.headers().get("etag").is_none());
    }
    tokio::time::advance(Duration::from_secs(6)).await;
    let r = get(&c, &p, "/items/404", fetch_with(&calls, z, missing)).await;
    assert_eq!(label(&r), "Miss");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(c.stats().negative_stores, 2);
}

#[tokio::test(start_paused = true)]
async fn memory_stays_within_max_bytes() {
    let max = 1 << 20;
    let c = EdgeCache::new(&CacheSettings {
        max_bytes: max,
        compress_min_bytes: 1024,
    });
    let p = policy();
    let calls = Arc::new(AtomicUsize::new(0));
    let body: &'static str = Box::leak("z".repeat(4096).into_boxed_str());
    for i in 0..2000 {
        let make = move || Ok(ok(200, body, &[("content-type", "image/png")]));
        get(
            &c,
            &p,
            &format!("/items/{i}"),
            fetch_with(&calls, Duration::ZERO, make),
        )
        .await;
    }
    c.run_pending_tasks();
    let s = c.stats();
    assert!(s.bytes <= max, "{} > {max}", s.bytes);
    assert!(s.bytes > max / 2, "the store is used: {}", s.bytes);
    assert!(s.entries < 2000);
}

#[tokio::test(start_paused = true)]
async fn objects_over_max_object_pass_through() {
    let c = cache();
    let p = CachePolicy {
        max_object_bytes: 1024,
        ..policy()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let big: &'static str = Box::leak("b".repeat(2048).into_boxed_str());
    for _ in 0..2 {
        let r = get(
            &c,
            &p,
            "/items/big",
            fetch_with(&calls, Duration::ZERO, answer(big)),
        )
        .await;
        assert_eq!((label(&r), r.body().len()), ("Miss", 2048));
    }
    assert_eq!((calls.load(Ordering::SeqCst), c.stats().too_big), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn purge_by_prefix_route_and_all() {
    let (c, p, calls) = (cache(), policy(), Arc::new(AtomicUsize::new(0)));
    let z = Duration::ZERO;
    for path in ["/items/1", "/items/10", "/items/2"] {
        get(&c, &p, path, fetch_with(&calls, z, answer("i"))).await;
    }
    for path in ["/a", "/b"] {
        let parts = request("GET", path, &[]);
        c.serve("GET /{x}", &p, &parts, fetch_with(&calls, z, answer("x")))
            .await;
    }
    assert_eq!(
        c.purge(Purge::KeyPrefix(format!("{ROUTE} GET /items/1"))),
        2
    );
    assert_eq!(c.purge(Purge::Route(ROUTE.into())), 1);
    assert_eq!(c.purge(Purge::Route("GET /items".into())), 0);
    assert_eq!(c.purge(Purge::All), 2);
    let r = get(&c, &p, "/items/2", fetch_with(&calls, z, answer("again"))).await;
    assert_eq!(label(&r), "Miss");
    assert_eq!(c.stats().purged, 5);
}

#[tokio::test(start_paused = true)]
async fn compression_is_negotiated_and_done_once() {
    let (c, p, calls) = (cache(), policy(), Arc::new(AtomicUsize::new(0)));
    let json: &'static str = Box::leak("{\"k\":\"value\"},".repeat(300).into_boxed_str());
    let make = move || Ok(ok(200, json, &[("content-type", "application/json")]));
    for (ae, coding) in [("gzip, br", "br"), ("gzip", "gzip"), ("br;q=0", "")]
        .iter()
        .cycle()
        .take(60)
    {
        let parts = request("GET", "/items/z", &[("accept-encoding", ae)]);
        let r = c
            .serve(ROUTE, &p, &parts, fetch_with(&calls, Duration::ZERO, make))
            .await;
        let got = r
            .headers()
            .get("content-encoding")
            .map_or("", |v| v.to_str().unwrap_or("?"));
        assert_eq!(got, *coding, "{ae}");
        assert_eq!(r.headers()["vary"], "Accept-Encoding");
        assert_eq!(r.body().len() < json.len(), !coding.is_empty());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(c.stats().compressions, 2, "gzip + br once, not per hit");
    let off = CachePolicy {
        compress: false,
        ..policy()
    };
    let parts = request("GET", "/items/raw", &[("accept-encoding", "br")]);
    let r = c
        .serve(
            ROUTE,
            &off,
            &parts,
            fetch_with(&calls, Duration::ZERO, make),
        )
        .await;
    assert!(r.headers().get("content-encoding").is_none());
}

#[tokio::test(start_paused = true)]
async fn conditional_requests_answer_304_from_the_cache() {
    let (c, p, calls) = (cache(), policy(), Arc::new(AtomicUsize::new(0)));
    let z = Duration::ZERO;
    let first = get(&c, &p, "/items/7", fetch_with(&calls, z, answer("body"))).await;
    let tag = first.headers()["etag"].to_str().expect("tag").to_owned();
    let parts = request("GET", "/items/7", &[("if-none-match", &tag)]);
    let r = c
        .serve(ROUTE, &p, &parts, fetch_with(&calls, z, answer("x")))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.body().is_empty());
    // Even the request that fills the cache may get a 304.
    let parts = request("GET", "/items/8", &[("if-none-match", &tag)]);
    let r = c
        .serve(ROUTE, &p, &parts, fetch_with(&calls, z, answer("body")))
        .await;
    assert_eq!((r.status().as_u16(), label(&r)), (304, "Miss"));
}

#[tokio::test(start_paused = true)]
async fn personal_answers_are_neither_stored_nor_shared() {
    let (c, p, calls) = (cache(), policy(), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let (c, p) = (Arc::clone(&c), p.clone());
            let make = move || Ok(ok(200, &format!("user {i}"), &[("set-cookie", "s=1")]));
            let fetch = fetch_with(&calls, Duration::from_millis(10), make);
            tokio::spawn(async move { get(&c, &p, "/items/me", fetch).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.expect("task");
        assert_eq!(
            r.body().as_ref(),
            format!("user {i}").as_bytes(),
            "own answer"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(c.stats().stores, 0);
    let varying = || Ok(ok(200, "v", &[("vary", "user-agent")]));
    get(
        &c,
        &p,
        "/items/v",
        fetch_with(&calls, Duration::ZERO, varying),
    )
    .await;
    assert_eq!(c.stats().stores, 0, "Vary outside the key");
}

#[tokio::test(start_paused = true)]
async fn head_shares_get_entries_but_never_fills_them() {
    let (c, p, calls) = (cache(), policy(), Arc::new(AtomicUsize::new(0)));
    let z = Duration::ZERO;
    let head = |uri| request("HEAD", uri, &[]);
    // HEAD first: its empty body must not be served to GET.
    let empty = || Ok(ok(200, "", &[]));
    let r = c
        .serve(ROUTE, &p, &head("/items/h"), fetch_with(&calls, z, empty))
        .await;
    assert_eq!(label(&r), "Miss");
    let r = c
        .serve(ROUTE, &p, &head("/items/h"), fetch_with(&calls, z, empty))
        .await;
    assert_eq!(label(&r), "Hit");
    let r = get(&c, &p, "/items/h", fetch_with(&calls, z, answer("full"))).await;
    assert_eq!((label(&r), r.body().as_ref()), ("Miss", &b"full"[..]));
    // GET filled: HEAD uses it, without the body.
    let r = c
        .serve(ROUTE, &p, &head("/items/h"), fetch_with(&calls, z, empty))
        .await;
    assert_eq!(label(&r), "Hit");
    assert!(r.body().is_empty());
    assert_eq!(r.headers()["content-length"], "4");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn applies_to_listed_methods_without_unkeyed_credentials() {
    let c = cache();
    let p = policy();
    let h = |pairs: &[(&str, &str)]| request("GET", "/", pairs).headers;
    assert!(c.applies(&p, &Method::GET, &h(&[])));
    assert!(c.applies(&p, &Method::HEAD, &h(&[])));
    assert!(!c.applies(&p, &Method::POST, &h(&[])));
    assert!(!c.applies(&p, &Method::GET, &h(&[("authorization", "Bearer x")])));
    assert!(!c.applies(&p, &Method::GET, &h(&[("range", "bytes=0-1")])));
    let keyed = CachePolicy {
        headers: vec!["authorization".into()],
        methods: vec!["GET".into()],
        ..policy()
    };
    assert!(c.applies(&keyed, &Method::GET, &h(&[("authorization", "Bearer x")])));
    assert!(!c.applies(&keyed, &Method::HEAD, &h(&[])));
}
