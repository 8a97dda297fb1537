//! Automatic attack detection and mitigation end to end: after a baseline
//! of ordinary traffic, a distributed flood with one tool's user agent
//! opens an event on `GET /admin/shield/auto` whose signature is that user
//! agent (not the thousands of sources) and whose rule passes `levee
//! check`; the rule comes into force (the flood gets 429, ordinary clients
//! do not) and is lifted once the flood is over. A flood that rotates
//! browsers' user agents is matched by its header shape instead; a flash
//! crowd from new networks and a route launch by known clients are
//! noticed and left alone. Clients are played through X-Forwarded-For
//! from a trusted loopback proxy; ordinary ones send their browser's or
//! SDK's headers in its own order, the flooding tool its short set.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{hello_function, request, Server, Webhook};

const BROWSERS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    "Mozilla/5.0 (Macintosh) Safari/605.1.15",
    "Boto3/1.43.11 Python/3.11",
];

fn config() -> String {
    with_auto("")
}

/// The test config, `extra` added to its `[auto_mitigation]`.
fn with_auto(extra: &str) -> String {
    format!(
        "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[auto_mitigation]\n{extra}learn_for = \"10s\"\nquiet_for = \"3s\"\nexempt_routes = [\"GET /health\"]\nexempt_sources = [\"172.18.0.0/16\"]\n\n{}\n[[routes]]\nroute = \"GET /f\"\nfunction = \"hello\"\n\n[[routes]]\nroute = \"GET /health\"\nfunction = \"hello\"\n",
        hello_function("hello", "")
    )
}

fn from(s: &Server, ip: &str, agent: &str) -> u16 {
    at(s, "/f", ip, agent)
}

/// The `i`th ordinary client's request: `BROWSERS[i % 3]` with the
/// headers that client sends, in its order.
fn ordinary(s: &Server, path: &str, ip: &str, i: usize) -> u16 {
    let agent = BROWSERS[i % 3];
    let headers: Vec<(&str, &str)> = match i % 3 {
        0 => vec![
            ("user-agent", agent),
            ("accept", "text/html"),
            ("accept-language", "en-US"),
            ("accept-encoding", "gzip"),
            ("x-forwarded-for", ip),
        ],
        1 => vec![
            ("accept", "*/*"),
            ("sec-fetch-site", "none"),
            ("user-agent", agent),
            ("accept-language", "en-GB"),
            ("x-forwarded-for", ip),
        ],
        _ => vec![
            ("accept-encoding", "identity"),
            ("user-agent", agent),
            ("amz-sdk-request", "attempt=1"),
            ("x-forwarded-for", ip),
        ],
    };
    request(s.edge, "GET", path, &headers, b"").status
}

/// Runs `each(i)` `rate` times a second (paced, over `threads` threads)
/// until `stop` or `within` has passed; the statuses it returned.
fn paced(
    rate: u32,
    threads: u32,
    within: Duration,
    stop: &AtomicBool,
    each: impl Fn(usize) -> u16 + Sync,
) -> Vec<u16> {
    let gap = Duration::from_secs(1) / (rate / threads);
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..threads)
            .map(|t| {
                let each = &each;
                scope.spawn(move || {
                    let start = Instant::now();
                    let mut codes = Vec::new();
                    for k in 0u32.. {
                        if stop.load(Ordering::Relaxed) || start.elapsed() >= within {
                            break;
                        }
                        codes.push(each((k * threads + t) as usize));
                        if let Some(wait) =
                            (start + gap * (k + 1)).checked_duration_since(Instant::now())
                        {
                            std::thread::sleep(wait);
                        }
                    }
                    codes
                })
            })
            .collect();
        runs.into_iter().flat_map(|r| r.join().unwrap()).collect()
    })
}

/// Starts `threads` threads in `scope` calling `each(i)` as fast as they
/// can (thread `t` takes `i` = t, t + threads, …) while `go` is set, for at
/// most `within`.
fn flood<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    go: &'scope AtomicBool,
    threads: usize,
    within: Duration,
    each: impl Fn(usize) -> u16 + Send + Copy + 'scope,
) {
    for t in 0..threads {
        scope.spawn(move || {
            let end = Instant::now() + within;
            let mut i = t;
            while go.load(Ordering::Relaxed) && Instant::now() < end {
                each(i);
                i += threads;
            }
        });
    }
}

fn at(s: &Server, path: &str, ip: &str, agent: &str) -> u16 {
    request(
        s.edge,
        "GET",
        path,
        &[("x-forwarded-for", ip), ("user-agent", agent)],
        b"",
    )
    .status
}

fn report(s: &Server) -> serde_json::Value {
    s.admin("GET", "/admin/shield/auto", b"").json()
}

#[test]
fn a_distributed_flood_is_throttled_by_its_user_agent_then_the_rule_is_lifted() {
    let hook = Webhook::start();
    let s = Server::start("auto", &with_auto(&format!("webhook = \"{}\"\n", hook.url)));
    let stop_baseline = AtomicBool::new(false);
    let flooding = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Ordinary traffic, about 20 a second from 30 clients, throughout.
        scope.spawn(|| {
            let mut i = 0usize;
            let end = Instant::now() + Duration::from_secs(60);
            while !stop_baseline.load(Ordering::Relaxed) && Instant::now() < end {
                ordinary(&s, "/f", &format!("10.1.{}.{}", i % 10, i % 3), i);
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        assert!(
            s.wait_until(Duration::from_secs(30), || report(&s)["learning"] == false),
            "never finished learning: {}",
            report(&s)
        );
        assert_eq!(report(&s)["events"], serde_json::json!([]), "nothing yet");
        // The flood: one tool, 2,000 sources in 250 /24s, bounded in time.
        flooding.store(true, Ordering::Relaxed);
        let srv = &s;
        flood(scope, &flooding, 6, Duration::from_secs(15), move |i| {
            let ip = format!("172.16.{}.{}", i % 250, (i / 250) % 8);
            from(srv, &ip, "python-requests/2.32")
        });
        let enforced = s.wait_until(Duration::from_secs(10), || {
            report(&s)["events"][0]["mitigation"] == "enforced"
        });
        assert!(enforced, "no rule in force: {}", report(&s));
        // In force: the tool is held to its baseline rate (none: 1 a
        // second), the ordinary clients are not touched.
        let tool: Vec<u16> = (0..20)
            .map(|i| from(&s, &format!("172.17.0.{i}"), "python-requests/2.32"))
            .collect();
        let untouched: Vec<u16> = (0..20)
            .map(|i| ordinary(&s, "/f", &format!("10.1.{i}.1"), i))
            .collect();
        // Exempt clients and routes are left alone by the same rule.
        let exempt = [
            from(&s, "172.18.0.5", "python-requests/2.32"),
            at(&s, "/health", "172.17.1.1", "python-requests/2.32"),
        ];
        let metrics = s.admin("GET", "/metrics", b"").text();
        flooding.store(false, Ordering::Relaxed);
        assert!(tool.iter().filter(|&&c| c == 429).count() >= 18, "{tool:?}");
        assert!(untouched.iter().all(|&c| c == 200), "{untouched:?}");
        assert_eq!(exempt, [200, 200], "an exempt source, an exempt route");
        // The access log names the automatic rule that refused them.
        let log = s.stderr();
        assert!(
            log.lines().any(|l| l.contains("levee::access")
                && l.contains("172.17.0.")
                && l.contains(" 429 ")
                && l.ends_with("rule=auto-1")),
            "no access line naming auto-1 in:\n{}",
            log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
        );
        for line in ["levee_auto_events_total 1", "levee_auto_active_rules 1"] {
            assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
        }
        let event = report(&s)["events"][0].clone();
        let signature = &event["signature"];
        assert_eq!(signature["attribute"], "user_agent", "{event}");
        assert_eq!(signature["value"], "python-requests/2.32", "{event}");
        assert_eq!(signature["baseline_share"], 0.0);
        assert!(signature["coverage"].as_f64().unwrap() > 0.5, "{event}");
        // The reported rule pastes into the config and checks clean.
        let pasted = s.dir.join("with-rule.toml");
        std::fs::write(
            &pasted,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\n{}\n{}",
                config(),
                signature["rule"].as_str().unwrap()
            ),
        )
        .unwrap();
        let check = Command::new(env!("CARGO_BIN_EXE_levee"))
            .args(["check", "--config", pasted.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        // Over: the event ends after the quiet period and the rule goes.
        assert!(
            s.wait_until(Duration::from_secs(15), || report(&s)["events"][0]["state"]
                == "ended"),
            "the event never ended: {}",
            report(&s)
        );
        assert_eq!(report(&s)["events"][0]["mitigation"], "lifted");
        // The webhook heard each step of the event.
        assert!(
            s.wait_until(Duration::from_secs(10), || hook.posts().len() >= 3),
            "{:?}",
            hook.posts()
        );
        let steps: Vec<(String, String)> = hook
            .posts()
            .iter()
            .map(|p| {
                assert_eq!(p["source"], "levee.auto_mitigation", "{p}");
                assert_eq!(p["event"]["id"], 1, "{p}");
                let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_string();
                (text(&p["event"]["state"]), text(&p["event"]["mitigation"]))
            })
            .collect();
        let step = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            steps,
            [
                step("active", "counting"),
                step("active", "enforced"),
                step("ended", "lifted")
            ]
        );
        assert_eq!(from(&s, "172.17.0.99", "python-requests/2.32"), 200);
        stop_baseline.store(true, Ordering::Relaxed);
    });
}

/// The learned baseline is saved once learning is done and taken up again
/// after `kill -9`: the restarted server is ready at once.
#[test]
fn the_baseline_survives_kill_9() {
    let s = Server::start("autosave", &config());
    let end = Instant::now() + Duration::from_secs(40);
    let mut i = 0usize;
    while report(&s)["learning"] != false && Instant::now() < end {
        for _ in 0..5 {
            ordinary(&s, "/f", &format!("10.2.{}.1", i % 10), i);
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let learned = report(&s);
    assert_eq!(learned["learning"], false, "{learned}");
    assert!(
        s.wait_until(Duration::from_secs(5), || s
            .dir
            .join("data/auto-baseline.json")
            .exists()),
        "saved when learning was done"
    );
    let dir = s.kill9();
    let s = Server::start_in(dir, &config(), &[]);
    let restored = report(&s);
    assert_eq!(restored["learning"], false, "no learning again: {restored}");
    assert!(
        restored["learned_seconds"].as_u64().unwrap() >= 10,
        "{restored}"
    );
    assert!(
        restored["reference_rps"].as_f64().unwrap() > 1.0,
        "{restored}"
    );
}

/// Learns about 20 requests a second of ordinary traffic from 30 clients
/// while `body` runs, then stops it.
fn with_baseline(s: &Server, body: impl FnOnce()) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            paced(20, 2, Duration::from_secs(90), &stop, |i| {
                ordinary(s, "/f", &format!("10.1.{}.{}", i % 10, i % 3), i)
            })
        });
        assert!(
            s.wait_until(Duration::from_secs(30), || report(s)["learning"] == false),
            "never finished learning: {}",
            report(s)
        );
        body();
        stop.store(true, Ordering::Relaxed);
    });
}

#[test]
fn a_flood_rotating_browser_agents_is_throttled_by_its_header_shape() {
    let s = Server::start("autoshape", &config());
    with_baseline(&s, || {
        let flooding = AtomicBool::new(false);
        std::thread::scope(|scope| {
            flooding.store(true, Ordering::Relaxed);
            let srv = &s;
            flood(scope, &flooding, 6, Duration::from_secs(15), move |i| {
                // Browsers' agents in turn, the tool's own headers.
                let ip = format!("172.16.{}.{}", i % 250, (i / 250) % 8);
                from(srv, &ip, BROWSERS[i % 3])
            });
            let enforced = s.wait_until(Duration::from_secs(10), || {
                report(&s)["events"][0]["mitigation"] == "enforced"
            });
            let tool: Vec<u16> = (0..20)
                .map(|i| from(&s, &format!("172.17.0.{i}"), BROWSERS[i % 3]))
                .collect();
            let untouched: Vec<u16> = (0..20)
                .map(|i| ordinary(&s, "/f", &format!("10.1.{i}.1"), i))
                .collect();
            flooding.store(false, Ordering::Relaxed);
            assert!(enforced, "no rule in force: {}", report(&s));
            let event = report(&s)["events"][0].clone();
            let signature = &event["signature"];
            assert_eq!(signature["attribute"], "header_shape", "{event}");
            let shape = signature["value"].as_str().unwrap();
            assert!(
                shape.starts_with("hs1-04-"),
                "host, connection, x-forwarded-for, user-agent: {event}"
            );
            assert!(
                signature["rule"]
                    .as_str()
                    .unwrap()
                    .contains("field = \"header_shape\""),
                "{event}"
            );
            assert!(tool.iter().filter(|&&c| c == 429).count() >= 18, "{tool:?}");
            assert!(untouched.iter().all(|&c| c == 200), "{untouched:?}");
        });
    });
}

/// Ten times the traffic from new networks with the usual variety, then
/// five times from the known clients onto a new route, then the known
/// clients' own traffic replayed in bursts (ten times for a second, three
/// times over): the first two are events (the detector sees them) with
/// nothing to refuse, and every request is answered.
#[test]
fn a_flash_crowd_a_route_launch_and_a_bursty_replay_are_not_mitigated() {
    let s = Server::start(
        "autobenign",
        &format!(
            "{}\n[[routes]]\nroute = \"GET /new\"\nfunction = \"hello\"\n",
            config()
        ),
    );
    with_baseline(&s, || {
        let never = AtomicBool::new(false);
        // New clients, 200 a second, one per address over 100 /16s.
        let crowd = paced(200, 4, Duration::from_secs(6), &never, |i| {
            let ip = format!("{}.{}.{}.1", 20 + i % 100, (i / 100) % 250, i % 7);
            ordinary(&s, "/f", &ip, i)
        });
        let crowd_report = report(&s);
        assert!(
            s.wait_until(Duration::from_secs(15), || report(&s)["events"][0]["state"]
                == "ended"),
            "{}",
            report(&s)
        );
        // The known clients call a new route, 100 a second.
        let launch = paced(100, 4, Duration::from_secs(6), &never, |i| {
            ordinary(&s, "/new", &format!("10.1.{}.{}", i % 10, i % 3), i)
        });
        assert!(
            s.wait_until(Duration::from_secs(15), || {
                report(&s)["events"]
                    .as_array()
                    .is_some_and(|e| e.iter().all(|e| e["state"] == "ended"))
            }),
            "{}",
            report(&s)
        );
        // The known clients, as they were, ten times over for one second
        // in three.
        let mut replay = Vec::new();
        for _ in 0..3 {
            replay.extend(paced(200, 4, Duration::from_secs(1), &never, |i| {
                ordinary(&s, "/f", &format!("10.1.{}.{}", i % 10, i % 3), i)
            }));
            std::thread::sleep(Duration::from_secs(2));
        }
        let after = report(&s);
        let metrics = s.admin("GET", "/metrics", b"").text();
        let events = after["events"].as_array().unwrap();
        assert!(!events.is_empty(), "the crowd was an event: {crowd_report}");
        assert_eq!(
            events[0]["signature"],
            serde_json::Value::Null,
            "{crowd_report}"
        );
        for event in events {
            assert_eq!(event["mitigation"], "none", "{after}");
        }
        assert!(events.len() >= 2, "the launch was an event too: {after}");
        // What changed in the launch: the route asked for, nothing else.
        let launch_event = &events[1];
        assert!(
            launch_event["changes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["attribute"] == "path_shape" && c["value"] == "/new"),
            "{launch_event}"
        );
        assert_eq!(launch_event["strained"], false, "{launch_event}");
        let refused = crowd
            .iter()
            .chain(&launch)
            .chain(&replay)
            .filter(|&&c| c != 200)
            .count();
        assert_eq!(
            refused,
            0,
            "of {} crowd, {} launch and {} replayed requests",
            crowd.len(),
            launch.len(),
            replay.len()
        );
        assert!(replay.len() >= 450, "{}", replay.len());
        assert!(
            crowd.len() >= 600 && launch.len() >= 300,
            "{} {}",
            crowd.len(),
            launch.len()
        );
        assert!(
            metrics.lines().any(|l| l == "levee_auto_active_rules 0"),
            "{metrics}"
        );
    });
}

/// A flood that copies an ordinary browser's agent and headers exactly
/// (a third of the baseline has them, so neither is a signature) onto one
/// slow route, from addresses spread over a hundred /16s: only the route
/// and the look together single it out, and they are used because the
/// function is saturated. The same browser elsewhere is left alone.
#[test]
fn a_flood_copying_a_browser_onto_one_route_is_matched_by_route_and_look_while_saturated() {
    let s = Server::start(
        "autostrain",
        &format!(
            "{}\n{}\n[[routes]]\nroute = \"GET /login\"\nfunction = \"login\"\n",
            config(),
            hello_function("login", "reserved_concurrency = 2\nqueue_timeout = \"0s\"")
        ),
    );
    with_baseline(&s, || {
        let flooding = AtomicBool::new(true);
        std::thread::scope(|scope| {
            let srv = &s;
            flood(scope, &flooding, 6, Duration::from_secs(20), move |i| {
                let ip = format!("{}.{}.{}.9", 100 + i % 100, (i / 100) % 250, i % 3);
                ordinary(srv, "/login?action=sleep&ms=50", &ip, 0)
            });
            let enforced = s.wait_until(Duration::from_secs(12), || {
                report(&s)["events"][0]["mitigation"] == "enforced"
            });
            let flood: Vec<u16> = (0..20)
                .map(|i| ordinary(&s, "/login?action=sleep&ms=50", &format!("30.0.{i}.1"), 0))
                .collect();
            // The same browser on another route.
            let elsewhere: Vec<u16> = (0..20)
                .map(|i| ordinary(&s, "/f", &format!("10.1.{i}.1"), 0))
                .collect();
            flooding.store(false, Ordering::Relaxed);
            let event = report(&s)["events"][0].clone();
            assert!(enforced, "no rule in force: {event}");
            assert_eq!(event["strained"], true, "{event}");
            let signature = &event["signature"];
            assert_eq!(signature["attribute"], "path_shape+header_shape", "{event}");
            assert!(
                signature["value"]
                    .as_str()
                    .unwrap()
                    .starts_with("/login?action&ms hs1-"),
                "{event}"
            );
            let changed: Vec<&str> = event["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["attribute"].as_str().unwrap())
                .collect();
            assert!(changed.contains(&"path_shape"), "{event}");
            assert!(
                flood.iter().filter(|&&c| c == 429).count() >= 18,
                "{flood:?}"
            );
            assert!(elsewhere.iter().all(|&c| c == 200), "{elsewhere:?}");
            // The rule is what refused them, not the function's slots.
            assert!(
                s.stderr().contains("rule=auto-"),
                "access log names the rule"
            );
        });
    });
}

/// A budget spent at far more than its limit allows (here $0.01 a day, at
/// hundreds of invocations a second) shows as `budget_burning` — the
/// detector's sensitivity raised — and stops showing once the spending
/// does.
#[test]
fn a_budget_burning_fast_raises_the_detectors_sensitivity() {
    let s = Server::start(
        "autoburn",
        &format!(
            "{}\n[budgets.tiny]\nscope = \"all\"\nperiod = \"day\"\nlimit = 0.01\nalerts = [10.0]\n",
            config()
        ),
    );
    assert_eq!(report(&s)["budget_burning"], false, "{}", report(&s));
    let spending = AtomicBool::new(true);
    let burning = std::thread::scope(|scope| {
        let srv = &s;
        flood(scope, &spending, 4, Duration::from_secs(20), move |i| {
            ordinary(srv, "/f", &format!("10.2.{}.{}", i % 250, i % 3), i)
        });
        let burning = s.wait_until(Duration::from_secs(15), || {
            report(&s)["budget_burning"] == true
        });
        spending.store(false, Ordering::Relaxed);
        burning
    });
    assert!(burning, "{}", report(&s));
    assert!(
        s.wait_until(Duration::from_secs(15), || report(&s)["budget_burning"]
            == false),
        "{}",
        report(&s)
    );
}
