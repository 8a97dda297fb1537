//! Scheduling end to end: warm reuse, concurrency limits answered with 429 at
//! once (`queue_timeout = "0s"`) or after a bounded wait in which known
//! clients go first, reservations that other functions cannot take, scale
//! to zero, and provisioned instances.

mod support;

use std::time::Duration;

use support::{get, hello_function, processes_of_uid, request, Server};

fn route(path: &str, function: &str) -> String {
    format!("\n[[routes]]\nroute = \"GET {path}\"\nfunction = \"{function}\"\n")
}

/// Sends `n` concurrent GETs and returns (status, body, completion order).
fn concurrent(s: &Server, paths: Vec<String>) -> Vec<(u16, serde_json::Value, usize)> {
    let order = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| {
                let order = &order;
                scope.spawn(move || {
                    let r = get(s.edge, p);
                    let seq = order.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
                    (r.status, body, seq)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn reserved_concurrency_caps_the_function_and_excess_gets_429_at_once() {
    let s = Server::start(
        "reserved",
        &format!(
            "{}{}",
            hello_function(
                "hello",
                "reserved_concurrency = 2\ntimeout = \"10s\"\nqueue_timeout = \"0s\""
            ),
            route("/s", "hello")
        ),
    );
    let results = concurrent(&s, vec!["/s?action=sleep&ms=2000".to_string(); 5]);
    let ok: Vec<_> = results.iter().filter(|r| r.0 == 200).collect();
    let throttled: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok.len(), 2, "{results:?}");
    assert_eq!(throttled.len(), 3, "{results:?}");
    for t in &throttled {
        assert_eq!(t.1["limit"], "reserved_concurrency");
        assert_eq!(t.1["value"], 2);
        assert_eq!(
            t.1["reason"],
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
        assert!(
            ok.iter().all(|o| o.2 > t.2),
            "a 429 must not wait for capacity: {results:?}"
        );
    }
    let r = get(s.edge, "/s?action=sleep&ms=10");
    assert_eq!(r.status, 200, "capacity returns after the sleepers finish");
    assert!(s.instances("hello")["live"].as_u64().unwrap() <= 2);
}

#[test]
fn a_burst_waits_for_a_slot_instead_of_a_429() {
    let s = Server::start(
        "queued",
        &format!(
            "{}{}",
            hello_function(
                "hello",
                "reserved_concurrency = 1\ntimeout = \"10s\"\nqueue_timeout = \"5s\""
            ),
            route("/s", "hello")
        ),
    );
    let results = std::thread::scope(|scope| {
        let burst = scope.spawn(|| concurrent(&s, vec!["/s?action=sleep&ms=300".to_string(); 4]));
        // The waiting requests show on the admin API while they wait.
        let seen = s.wait_until(Duration::from_secs(5), || {
            s.instances("hello")["queued"].as_u64().unwrap_or(0) > 0
        });
        (burst.join().unwrap(), seen)
    });
    let (results, seen_queued) = results;
    assert!(seen_queued, "no request was seen waiting");
    assert!(results.iter().all(|r| r.0 == 200), "{results:?}");
    assert_eq!(s.instances("hello")["queued"], 0);
    assert_eq!(s.instances("hello")["live"], 1, "one at a time, in turn");
}

/// With the queue full of clients first seen during a surge, a client seen
/// before it still gets through: it waits ahead of them and takes the
/// place of the newest one.
#[test]
fn at_the_limit_clients_seen_before_the_surge_go_first() {
    let s = Server::start(
        "fair",
        &format!(
            "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n\n{}{}",
            hello_function(
                "hello",
                "reserved_concurrency = 1\ntimeout = \"10s\"\nqueue_timeout = \"5s\"\nqueue_depth = 3"
            ),
            route("/s", "hello")
        ),
    );
    let from =
        |ip: &str, path: &str| request(s.edge, "GET", path, &[("x-forwarded-for", ip)], b"").status;
    assert_eq!(
        from("203.0.113.7", "/s"),
        200,
        "seen while the function had room"
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (known, surge) = std::thread::scope(|scope| {
        let surge: Vec<_> = (1..=8)
            .map(|i| {
                let (from, stop) = (&from, &stop);
                scope.spawn(move || {
                    let ip = format!("198.51.100.{i}");
                    let mut statuses = Vec::new();
                    // Bounded: 40 requests or until the known client is done.
                    for _ in 0..40 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        statuses.push(from(&ip, "/s?action=sleep&ms=100"));
                    }
                    statuses
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let known: Vec<u16> = (0..3)
            .map(|_| from("203.0.113.7", "/s?action=sleep&ms=100"))
            .collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let surge: Vec<u16> = surge.into_iter().flat_map(|h| h.join().unwrap()).collect();
        (known, surge)
    });
    assert_eq!(known, [200, 200, 200], "the known client never got a 429");
    assert!(
        surge.iter().filter(|&&c| c == 429).count() > 0,
        "the surge overflowed the queue: {surge:?}"
    );
}

#[test]
fn throttled_responses_carry_retry_after() {
    let s = Server::start(
        "retry-after",
        &format!(
            "{}{}",
            hello_function("off", "reserved_concurrency = 0"),
            route("/off", "off")
        ),
    );
    let r = get(s.edge, "/off");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["function"], "off");
}

#[test]
fn one_function_at_its_limit_never_takes_anothers_reservation() {
    // Account 3: `vip` reserves 2, so `busy` shares an unreserved pool of 1.
    let s = Server::start(
        "isolation",
        &format!(
            "[account]\nconcurrency = 3\n\n{}{}{}{}",
            hello_function("busy", "timeout = \"10s\""),
            hello_function("vip", "reserved_concurrency = 2\ntimeout = \"10s\""),
            route("/busy", "busy"),
            route("/vip", "vip"),
        ),
    );
    let mut paths = vec!["/busy?action=sleep&ms=1500".to_string(); 3];
    paths.extend(vec!["/vip?action=sleep&ms=300".to_string(); 2]);
    let results = concurrent(&s, paths);
    let busy: Vec<_> = results[..3].iter().map(|r| r.0).collect();
    assert_eq!(busy.iter().filter(|&&c| c == 200).count(), 1, "{results:?}");
    assert_eq!(busy.iter().filter(|&&c| c == 429).count(), 2, "{results:?}");
    let throttled = results[..3].iter().find(|r| r.0 == 429).unwrap();
    assert_eq!(throttled.1["limit"], "account.concurrency");
    assert_eq!(throttled.1["value"], 1);
    assert_eq!(results[3].0, 200, "vip keeps its reservation: {results:?}");
    assert_eq!(results[4].0, 200, "vip keeps its reservation: {results:?}");
}

#[test]
fn warm_instances_are_reused_then_reaped_to_zero() {
    let s = Server::start(
        "reap",
        &format!(
            "{}{}",
            hello_function("hello", "idle_timeout = \"1s\""),
            route("/p", "hello")
        ),
    );
    let first = get(s.edge, "/p?action=pid").json();
    let second = get(s.edge, "/p?action=pid").json();
    assert_eq!(
        first["instance"], second["instance"],
        "the warm instance takes the next invocation"
    );
    assert_eq!(s.instances("hello")["live"], 1);
    assert!(
        s.wait_until(Duration::from_secs(10), || s.instances("hello")["live"]
            == 0),
        "idle instance was not reaped: {}",
        s.instances("hello")
    );
    let uid = first["uid"].as_u64().unwrap();
    assert!(
        processes_of_uid(uid).is_empty(),
        "reaped instance's processes (uid {uid}) still running"
    );
    let third = get(s.edge, "/p?action=pid").json();
    assert_ne!(
        first["instance"], third["instance"],
        "a new instance starts after scale to zero"
    );
    assert_eq!(s.instances("hello")["starts"], 2);
}

#[test]
fn provisioned_instances_start_at_boot_and_stay_warm() {
    let s = Server::start(
        "provisioned",
        &format!(
            "{}{}",
            hello_function(
                "hello",
                "provisioned = 2\nreserved_concurrency = 3\nidle_timeout = \"1s\""
            ),
            route("/e", "hello")
        ),
    );
    assert_eq!(s.instances("hello")["live"], 2, "started before serving");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        s.instances("hello")["live"],
        2,
        "provisioned instances are not reaped"
    );
    let env = get(s.edge, "/e?action=env").json();
    assert_eq!(
        env["AWS_LAMBDA_INITIALIZATION_TYPE"],
        "provisioned-concurrency"
    );
    assert_eq!(
        s.instances("hello")["starts"],
        2,
        "served warm, no cold start"
    );
}

#[test]
fn concurrent_invocations_never_cross_instances() {
    let s = Server::start(
        "crosstalk",
        &format!(
            "{}{}",
            hello_function("hello", "reserved_concurrency = 8"),
            route("/x", "hello")
        ),
    );
    // Rounds of 8 concurrent requests: within the reservation, so every one
    // is admitted, and each must get back its own event.
    for round in 0..4 {
        let paths: Vec<String> = (0..8).map(|i| format!("/x?marker={round}-{i}")).collect();
        let results = concurrent(&s, paths);
        for (i, (status, body, _)) in results.iter().enumerate() {
            assert_eq!(*status, 200, "{body}");
            assert_eq!(
                body["queryStringParameters"]["marker"],
                format!("{round}-{i}")
            );
        }
    }
}
