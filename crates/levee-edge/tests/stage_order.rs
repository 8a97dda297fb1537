//! The edge's stage order as a contract, in process and without starting a
//! function: the real stages built from a config, with a recording invoker
//! in place of instances. A request the firewall blocks never reaches key
//! lookup, the cache or an invocation; a throttled one never reaches the
//! cache; an over-budget one never reaches the invoker behind billing. Each
//! test fails if its two stages are swapped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use levee_config::Config;
use levee_edge::apikeys::ApiKeys;
use levee_edge::billing::Billing;
use levee_edge::cache::EdgeCache;
use levee_edge::client_ip::ClientIdentity;
use levee_edge::clock::Clock;
use levee_edge::invocation::{Billed, Invoke, Invoked, Tags};
use levee_edge::shield::{Shield, ShieldHandle};
use levee_edge::{BodyPolicy, Edge, RequestInfo, Router, Stages};
use levee_runtime::{FunctionHandle, InvokeOutput, InvokeRequest, Scheduler};

/// Answers every invocation with 200 and counts them.
#[derive(Debug, Default)]
struct Recording(AtomicU64);

impl Invoke for Recording {
    fn invoke<'a>(
        &'a self,
        _function: &'a FunctionHandle,
        _req: InvokeRequest,
        _tags: Tags<'a>,
    ) -> Invoked<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {
            Ok(InvokeOutput {
                payload: Bytes::from_static(br#"{"statusCode":200,"body":"ran"}"#),
                duration: Duration::from_millis(1),
                init_duration: None,
            })
        })
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("levee-stages-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("code")).unwrap();
    dir
}

struct Fixture {
    edge: Edge,
    cache: Arc<EdgeCache>,
    recording: Arc<Recording>,
    _scheduler: Arc<Scheduler>,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    /// Invocations that reached the invoker.
    fn invoked(&self) -> u64 {
        self.recording.0.load(Ordering::SeqCst)
    }
}

/// The real stages for `config_text` (plus one function `f` whose code is
/// an empty directory: nothing ever starts it), invoking through a
/// [`Recording`], or through `Billed` over it when `billed`.
async fn fixture(name: &str, config_text: &str, billed: bool) -> Fixture {
    let dir = &scratch(name);
    let recording = Arc::new(Recording::default());
    let text = format!(
        "[server]\ndata_dir = \"{}\"\n\n[functions.f]\ncommand = [\"/bin/true\"]\ncode = \"{}\"\n\n{config_text}",
        dir.join("data").display(),
        dir.join("code").display()
    );
    let config = Config::parse(&text, "stage_order.toml", dir).unwrap();
    std::fs::create_dir_all(&config.server.data_dir).unwrap();
    let scheduler = Arc::new(Scheduler::start(&config).await.unwrap());
    let store = Arc::new(levee_store::Store::open(&config.server.data_dir).unwrap());
    let queues = Arc::new(levee_queue::Queues::open(&config.server.data_dir).unwrap());
    let cache = EdgeCache::new(&config.cache);
    let inner: Arc<dyn Invoke> = Arc::clone(&recording) as Arc<dyn Invoke>;
    let invoker: Arc<dyn Invoke> = if billed {
        let meters = levee_meter::Meters::open(&config.server.data_dir, config.prices).unwrap();
        let alerts = levee_meter::AlertSink::spawn(&tokio::runtime::Handle::current());
        let budgets = levee_meter::Budgets::new(
            config.budgets.values().cloned().collect(),
            Arc::clone(&meters),
            alerts,
        );
        let billing = Arc::new(Billing::new(meters, budgets, Clock::default()));
        Arc::new(Billed::new(inner, billing))
    } else {
        inner
    };
    let edge = Edge::new(Stages {
        identity: ClientIdentity::new(Vec::new()),
        max_headers: 100,
        shield: ShieldHandle::new(Shield::build(&config).unwrap()),
        router: Router::build(
            &config.routes,
            &scheduler,
            &levee_edge::authorizer::Authorizers::default(),
            None,
        )
        .unwrap(),
        api_keys: Arc::new(ApiKeys::new(store, Clock::default())),
        body: BodyPolicy {
            min_rate: 1024,
            grace: Duration::from_secs(5),
        },
        queues,
        cache: Arc::clone(&cache),
        invoker,
        watch: None,
    });
    Fixture {
        edge,
        cache,
        recording,
        _scheduler: scheduler,
        dir: dir.clone(),
    }
}

/// One GET; its status and the decision the metrics would record.
async fn get(edge: &Edge, path: &str) -> (u16, &'static str) {
    let req = http::Request::get(path)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let resp = edge.handle(req, peer).await;
    let decision = resp.extensions().get::<RequestInfo>().unwrap().decision;
    (resp.status().as_u16(), decision.as_str())
}

const BLOCK_ALL: &str = r#"
[firewall]
default_action = "allow"

[[firewall.rules]]
name = "teapot"
priority = 1
action = "block"
response = { status = 418, body = "no", content_type = "text/plain" }
statement = { string_match = { field = "path", search = "/", position = "starts_with" } }
"#;

#[tokio::test]
async fn the_firewall_comes_before_keys_cache_and_invocation() {
    let routes = "[[routes]]\nroute = \"GET /k\"\nfunction = \"f\"\napi_key_required = true\n\n[[routes]]\nroute = \"GET /c\"\nfunction = \"f\"\ncache = { ttl = \"1h\" }\n";
    let fx = fixture("firewall", &format!("{routes}{BLOCK_ALL}"), false).await;
    // Without a key the key stage would say 403: the firewall answers first.
    assert_eq!(get(&fx.edge, "/k").await, (418, "firewall_blocked"));
    assert_eq!(get(&fx.edge, "/c").await, (418, "firewall_blocked"));
    assert_eq!(fx.invoked(), 0, "nothing invoked");
    let stats = fx.cache.stats();
    assert_eq!(
        (stats.hits, stats.misses),
        (0, 0),
        "the cache never saw them"
    );
}

#[tokio::test]
async fn a_throttled_request_never_reaches_the_cache() {
    let fx = fixture(
        "throttle",
        "[[routes]]\nroute = \"GET /c\"\nfunction = \"f\"\ncache = { ttl = \"1h\" }\nthrottle = { rate = 0.01, burst = 1 }\n",
        false,
    )
    .await;
    assert_eq!(get(&fx.edge, "/c").await, (200, "allowed"));
    // A cache before the throttle would answer this as a hit.
    assert_eq!(get(&fx.edge, "/c").await, (429, "throttled"));
    assert_eq!(fx.cache.stats().hits, 0);
    assert_eq!(fx.invoked(), 1);
}

#[tokio::test]
async fn an_over_budget_request_never_reaches_the_invoker() {
    // Each request costs $1; the budget stops the function at $1.
    let fx = fixture(
        "budget",
        "[prices]\nper_million_requests = 1000000\nper_gb_second = 0\n\n[budgets.cap]\nscope = { function = \"f\" }\nperiod = \"day\"\nlimit = 1\naction = \"stop\"\n\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
        true,
    )
    .await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(get(&fx.edge, "/f").await);
    }
    let ran = fx.invoked();
    assert_eq!(answers[0], (200, "allowed"), "{answers:?}");
    let refused = answers
        .iter()
        .filter(|a| **a == (503, "over_budget"))
        .count();
    assert!(refused >= 2, "{answers:?}");
    assert_eq!(
        ran as usize,
        answers.len() - refused,
        "every refused request stopped before the invoker: {answers:?}"
    );
}
