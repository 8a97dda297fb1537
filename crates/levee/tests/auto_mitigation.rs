//! Automatic attack detection and mitigation end to end: after a baseline
//! of ordinary traffic, a distributed flood with one tool's user agent
//! opens an event on `GET /admin/shield/auto` whose signature is that user
//! agent (not the thousands of sources) and whose rule passes `levee
//! check`; the rule comes into force (the flood gets 429, ordinary clients
//! do not) and is lifted once the flood is over. Clients are played
//! through X-Forwarded-For from a trusted loopback proxy.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::{hello_function, request, Server};

const BROWSERS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    "Mozilla/5.0 (Macintosh) Safari/605.1.15",
    "Boto3/1.43.11 Python/3.11",
];

fn config() -> String {
    format!(
        "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n[auto_mitigation]\nlearn_for = \"10s\"\nquiet_for = \"3s\"\nexempt_routes = [\"GET /health\"]\nexempt_sources = [\"172.18.0.0/16\"]\n\n{}\n[[routes]]\nroute = \"GET /f\"\nfunction = \"hello\"\n\n[[routes]]\nroute = \"GET /health\"\nfunction = \"hello\"\n",
        hello_function("hello", "")
    )
}

fn from(s: &Server, ip: &str, agent: &str) -> u16 {
    at(s, "/f", ip, agent)
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
    let s = Server::start("auto", &config());
    let stop_baseline = AtomicBool::new(false);
    let flooding = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Ordinary traffic, about 20 a second from 30 clients, throughout.
        scope.spawn(|| {
            let mut i = 0usize;
            let end = Instant::now() + Duration::from_secs(60);
            while !stop_baseline.load(Ordering::Relaxed) && Instant::now() < end {
                from(&s, &format!("10.1.{}.{}", i % 10, i % 3), BROWSERS[i % 3]);
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
        for t in 0..6u32 {
            let flooding = &flooding;
            let s = &s;
            scope.spawn(move || {
                let end = Instant::now() + Duration::from_secs(15);
                let mut i = t;
                while flooding.load(Ordering::Relaxed) && Instant::now() < end {
                    let ip = format!("172.16.{}.{}", i % 250, (i / 250) % 8);
                    from(s, &ip, "python-requests/2.32");
                    i += 6;
                }
            });
        }
        let enforced = s.wait_until(Duration::from_secs(10), || {
            report(&s)["events"][0]["mitigation"] == "enforced"
        });
        assert!(enforced, "no rule in force: {}", report(&s));
        // In force: the tool is held to its baseline rate (none: 1 a
        // second), the ordinary clients are not touched.
        let tool: Vec<u16> = (0..20)
            .map(|i| from(&s, &format!("172.17.0.{i}"), "python-requests/2.32"))
            .collect();
        let ordinary: Vec<u16> = (0..20)
            .map(|i| from(&s, &format!("10.1.{i}.1"), BROWSERS[i % 3]))
            .collect();
        // Exempt clients and routes are left alone by the same rule.
        let exempt = [
            from(&s, "172.18.0.5", "python-requests/2.32"),
            at(&s, "/health", "172.17.1.1", "python-requests/2.32"),
        ];
        let metrics = s.admin("GET", "/metrics", b"").text();
        flooding.store(false, Ordering::Relaxed);
        assert!(tool.iter().filter(|&&c| c == 429).count() >= 18, "{tool:?}");
        assert!(ordinary.iter().all(|&c| c == 200), "{ordinary:?}");
        assert_eq!(exempt, [200, 200], "an exempt source, an exempt route");
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
            from(&s, &format!("10.2.{}.1", i % 10), BROWSERS[i % 3]);
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
