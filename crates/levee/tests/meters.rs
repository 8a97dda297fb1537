//! Meters, budgets and observability end to end: metering arithmetic against
//! hand-computed expectations, each budget action (stop with the spend cap
//! held under a flood, throttle, alert webhooks), persistence across
//! `kill -9`, the Prometheus exposition read by a real parser, and the
//! access log.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{get, hello_function, python, Server, Webhook};

fn server(name: &str, extra: &str) -> Server {
    Server::start(
        name,
        &format!(
            "{}\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n\n{extra}",
            hello_function(
                "f",
                "memory_mb = 1024\nreserved_concurrency = 4\ntimeout = \"10s\""
            )
        ),
    )
}

fn costs(s: &Server) -> serde_json::Value {
    let r = s.admin("GET", "/admin/costs?by=function&period=day", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["costs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "f")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn only_the_cache_decides_what_counts_as_cached() {
    let s = server(
        "xcache",
        "[[routes]]\nroute = \"GET /c\"\nfunction = \"f\"\ncache = { ttl = \"60s\" }",
    );
    assert_eq!(get(s.edge, "/c").header("x-cache"), Some("Miss"));
    assert_eq!(get(s.edge, "/c").header("x-cache"), Some("Hit"));
    for _ in 0..3 {
        let r = get(s.edge, "/f?action=header&name=x-cache&value=Hit");
        assert_eq!(
            r.header("x-cache"),
            Some("Hit"),
            "the function's header is passed on"
        );
    }
    let text = s.admin("GET", "/metrics", b"").text();
    assert!(
        text.contains(r#"levee_requests_total{route="GET /f",status="200",decision="allowed"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"levee_requests_total{route="GET /c",status="200",decision="cached"} 1"#),
        "a real hit is cached: {text}"
    );
    assert!(
        !text.contains(r#"route="GET /f",status="200",decision="cached""#),
        "{text}"
    );
}

#[test]
fn failed_invocations_are_billed_for_the_time_they_ran() {
    let s = server("failbill", "");
    for _ in 0..5 {
        assert_eq!(get(s.edge, "/f?action=error&ms=200").status, 502);
    }
    let c = costs(&s);
    assert_eq!(c["requests"], 5, "{c}");
    // 5 × ≥200 ms at 1 GB: a failure is not a 1 ms bill.
    let gb_s = c["gb_seconds"].as_f64().unwrap();
    assert!(gb_s >= 1.0, "{c}");
}

#[test]
fn invocations_are_metered_and_priced_like_lambda() {
    let s = server("metering", "");
    for _ in 0..10 {
        assert_eq!(get(s.edge, "/f?action=sleep&ms=100").status, 200);
    }
    let c = costs(&s);
    assert_eq!(c["requests"], 10, "{c}");
    // 10 × ≥100 ms billed at 1 GB: at least 1.0 GB-s, and not double.
    let gb_s = c["gb_seconds"].as_f64().unwrap();
    assert!((1.0..2.0).contains(&gb_s), "{c}");
    let usd = c["usd"].as_f64().unwrap();
    let expected = 10.0 * 0.20 / 1e6 + gb_s * 0.0000166667;
    assert!(
        (usd - expected).abs() < 1e-12,
        "priced at Lambda's list prices: {usd} vs {expected}"
    );
}

#[test]
fn a_stop_budget_holds_the_spend_cap_under_a_flood() {
    // $1 per request, $5 per day: the sixth invocation would pass the cap.
    let s = server(
        "stop",
        "[prices]\nper_million_requests = 1000000\nper_gb_second = 0\n\n[budgets.cap]\nscope = { function = \"f\" }\nperiod = \"day\"\nlimit = 5\naction = \"stop\"\n\n[limits]\nmax_connections_per_ip = 400\n",
    );
    // 25 waves of 4 concurrent requests (the function's concurrency), so
    // what stops them is the budget, not the concurrency limit.
    let mut statuses: Vec<(u16, String)> = Vec::new();
    for _ in 0..25 {
        statuses.extend(std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let r = get(s.edge, "/f?action=sleep&ms=50");
                        (r.status, r.text())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        }));
    }
    let invoked = s.instances("f")["invocations"].as_u64().unwrap();
    // At most the cap's 5, plus what was in flight when it was reached
    // (the function's concurrency, 4).
    assert!(invoked <= 5 + 4, "invocations past the cap: {invoked}");
    let stopped: Vec<_> = statuses.iter().filter(|(c, _)| *c == 503).collect();
    assert!(!stopped.is_empty());
    assert!(
        stopped[0].1.contains("cap"),
        "the body names the budget: {}",
        stopped[0].1
    );
    let spent = costs(&s)["usd"].as_f64().unwrap();
    assert!(spent <= 5.0 + 4.0 + 1e-9, "spend {spent}");
    let status = s.admin("GET", "/admin/budgets", b"").json();
    assert_eq!(status["budgets"][0]["state"], "stopped", "{status}");
    let cli = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args([
            "budgets",
            "--admin",
            &format!("http://{}", s.admin),
            "--token",
            support::ADMIN_TOKEN,
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("cap\tday\t5.00") && l.contains("stopped")),
        "{out}"
    );
    let cli = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args([
            "costs",
            "--by",
            "function",
            "--admin",
            &format!("http://{}", s.admin),
            "--token",
            support::ADMIN_TOKEN,
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&cli.stdout)
        .lines()
        .any(|l| l.starts_with("f\t")));
    assert_eq!(get(s.edge, "/f").status, 503, "still stopped");
}

#[test]
fn a_throttle_budget_caps_the_rate_once_spent() {
    let s = server(
        "throttlebudget",
        "[prices]\nper_million_requests = 1000000\nper_gb_second = 0\n\n[budgets.slow]\nperiod = \"day\"\nlimit = 2\naction = { throttle = 0.5 }\n",
    );
    let answers: Vec<_> = (0..6).map(|_| get(s.edge, "/f")).collect();
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    let capped = answers[2..]
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| panic!("over budget: capped to 0.5/s: {statuses:?}"));
    assert!(
        capped.header("retry-after").is_some(),
        "a 429 says when to retry"
    );
}

#[test]
fn alert_thresholds_post_to_the_webhook() {
    let hook = Webhook::start();
    let s = server(
        "alerts",
        &format!("[prices]\nper_million_requests = 1000000\nper_gb_second = 0\n\n[budgets.watch]\nperiod = \"month\"\nlimit = 10\nalerts = [0.5]\naction = \"alert\"\nwebhook = \"{}\"\n", hook.url),
    );
    for _ in 0..6 {
        assert_eq!(
            get(s.edge, "/f").status,
            200,
            "alert-only budgets never refuse"
        );
    }
    assert!(
        s.wait_until(Duration::from_secs(10), || !hook.posts().is_empty()),
        "no webhook arrived"
    );
    let first = hook.posts()[0].clone();
    assert_eq!(first["budget"], "watch", "{first}");
}

#[test]
fn meters_survive_kill_9() {
    let s = server("meterkill", "");
    for _ in 0..3 {
        assert_eq!(get(s.edge, "/f").status, 200);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let dir = s.kill9();
    let s = Server::start_in(
        dir,
        &format!(
            "{}\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
            hello_function(
                "f",
                "memory_mb = 1024\nreserved_concurrency = 4\ntimeout = \"10s\""
            )
        ),
        &[],
    );
    assert_eq!(costs(&s)["requests"], 3, "metered before the crash");
}

#[test]
fn prometheus_exposition_parses_and_the_access_log_has_a_line_per_request() {
    let s = server("metrics", "");
    assert_eq!(get(s.edge, "/f").status, 200);
    assert_eq!(get(s.edge, "/nope").status, 404);
    let text = s.admin("GET", "/metrics", b"").text();
    let parser = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
samples = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        key = s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
        samples[key] = s.value
for k, v in sorted(samples.items()):
    print(k, int(v) if float(v).is_integer() else v)
"#;
    let out = support::run_with_input(Command::new(python()).args(["-c", parser]), &text);
    assert!(
        out.status.success(),
        "the exposition does not parse:\n{text}"
    );
    let parsed = String::from_utf8_lossy(&out.stdout);
    assert!(
        parsed.contains("levee_requests_total{decision=allowed,route=GET /f,status=200} 1"),
        "{parsed}"
    );
    assert!(
        parsed.contains("levee_requests_total{decision=not_found,route=none,status=404} 1"),
        "{parsed}"
    );
    assert!(
        parsed.contains("levee_invocations_total{function=f,outcome=success} 1"),
        "{parsed}"
    );
    assert!(
        parsed.contains("levee_cold_starts_total{function=f}"),
        "{parsed}"
    );
    let rss: f64 = parsed
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes{} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(rss > 1e6, "levee's own memory is exported: {parsed}");
    assert!(
        s.wait_until(Duration::from_secs(5), || {
            let log = s.stderr();
            log.lines()
                .any(|l| l.contains("levee::access") && l.contains("GET /f") && l.contains("200"))
                && log.lines().any(|l| {
                    l.contains("levee::access") && l.contains("404") && l.contains("not_found")
                })
        }),
        "access log lines missing:\n{}",
        s.stderr()
    );
}
