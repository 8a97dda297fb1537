//! The shield end to end: firewall rules (IP sets, string, SQLi, XSS in the
//! body, labels, dry-run counting), rate-based rules enforced on the request
//! that crosses the limit, bans, trusted-proxy identity, throttles, reload
//! without restart, and a flood from thousands of loopback addresses.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use support::{get, hello_function, request, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const FUNCTION: &str = "reserved_concurrency = 40\ntimeout = \"10s\"";

fn with_rules(name: &str, rules: &str) -> Server {
    Server::start(
        name,
        &format!(
            "{}\n[[routes]]\nroute = \"ANY /f\"\nfunction = \"f\"\n\n[[routes]]\nroute = \"ANY /admin/{{x}}\"\nfunction = \"f\"\n\n{rules}",
            hello_function("f", FUNCTION)
        ),
    )
}

/// One request from 127.`a`.`b`.`c`; returns the status (0 if the
/// connection failed).
async fn status_from(src: Ipv4Addr, to: SocketAddr, head: &str) -> u16 {
    let socket = TcpSocket::new_v4().unwrap();
    if socket.bind(SocketAddr::from((src, 0))).is_err() {
        return 0;
    }
    let Ok(mut s) = socket.connect(to).await else {
        return 0;
    };
    if s.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = vec![0u8; 256];
    match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => String::from_utf8_lossy(&buf[9..12]).parse().unwrap_or(0),
        _ => 0,
    }
}

fn counters(s: &Server) -> serde_json::Value {
    s.admin("GET", "/admin/firewall", b"").json()["rules"].clone()
}

fn counter(s: &Server, rule: &str, field: &str) -> u64 {
    counters(s)
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == rule)
        .and_then(|r| r[field].as_u64())
        .unwrap_or_else(|| panic!("no counter {field} for {rule}: {}", counters(s)))
}

const RULES: &str = r#"
[firewall]
default_action = "allow"

[firewall.ip_sets]
blocked = ["127.0.9.0/24", "2001:db8::/32"]

[[firewall.rules]]
name = "deny-list"
priority = 1
action = "block"
statement = { ip_set = { name = "blocked" } }

[[firewall.rules]]
name = "hide-admin"
priority = 2
action = "block"
response = { status = 404, body = "nothing here", content_type = "text/plain" }
statement = { string_match = { field = "path", search = "/admin/", position = "starts_with", transforms = ["url_decode", "lowercase"] } }

[[firewall.rules]]
name = "sqli-q"
priority = 3
action = "block"
statement = { sqli = { field = { query_arg = "q" }, transforms = ["url_decode"] } }

[[firewall.rules]]
name = "tag-bots"
priority = 4
action = "count"
labels = ["bot"]
statement = { string_match = { field = { header = "user-agent" }, search = "evilbot", transforms = ["lowercase"] } }

[[firewall.rules]]
name = "block-bot-posts"
priority = 5
action = "block"
statement = { and = [{ label = "bot" }, { string_match = { field = "method", search = "POST", position = "exactly" } }] }

[[firewall.rules]]
name = "xss-body"
priority = 6
action = "block"
statement = { xss = { field = "body" } }

[[firewall.rules]]
name = "watch-big-queries"
priority = 7
action = "block"
dry_run = true
statement = { size = { field = "query_string", op = "gt", size = 100 } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_rules_block_what_they_match_and_nothing_else() {
    let s = with_rules("rules", RULES);
    let edge = s.edge;
    let head = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");

    assert_eq!(
        status_from(Ipv4Addr::new(127, 0, 9, 7), edge, &head("/f")).await,
        403,
        "IP set"
    );
    assert_eq!(
        status_from(Ipv4Addr::new(127, 0, 8, 7), edge, &head("/f")).await,
        200,
        "outside the set"
    );

    let r = tokio::task::spawn_blocking(move || get(edge, "/%41dmin/users"))
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "nothing here"),
        "transforms before matching"
    );

    let attack = "/f?q=1%27%20OR%20%271%27%3D%271";
    let benign = "/f?q=O%27Brien%20shoes";
    let (a, b) =
        tokio::task::spawn_blocking(move || (get(edge, attack).status, get(edge, benign).status))
            .await
            .unwrap();
    assert_eq!(
        (a, b),
        (403, 200),
        "SQL injection blocked, a name with a quote is not"
    );

    let (bot_get, bot_post, human_post) = tokio::task::spawn_blocking(move || {
        let ua = [("user-agent", "EvilBot/1.0")];
        (
            request(edge, "GET", "/f", &ua, b"").status,
            request(edge, "POST", "/f", &ua, b"x").status,
            request(edge, "POST", "/f", &[], b"x").status,
        )
    })
    .await
    .unwrap();
    assert_eq!(
        (bot_get, bot_post, human_post),
        (200, 403, 200),
        "labels flow to later rules"
    );

    let (xss, plain) = tokio::task::spawn_blocking(move || {
        (
            request(
                edge,
                "POST",
                "/f",
                &[],
                b"<script>alert(document.cookie)</script>",
            )
            .status,
            request(edge, "POST", "/f", &[], b"{\"comment\":\"I <3 this\"}").status,
        )
    })
    .await
    .unwrap();
    assert_eq!((xss, plain), (403, 200), "body inspection");

    let long = format!("/f?pad={}", "a".repeat(200));
    let r = tokio::task::spawn_blocking(move || get(edge, &long))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "dry-run rules never block");
    assert_eq!(counter(&s, "watch-big-queries", "counted"), 1);
    assert_eq!(counter(&s, "deny-list", "blocked"), 1);
    assert_eq!(counter(&s, "tag-bots", "matched"), 2);
    assert!(counter(&s, "deny-list", "evaluated") >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_rules_cut_off_the_request_that_crosses_the_limit() {
    let s = with_rules(
        "rate",
        r#"
[firewall]
[[firewall.rules]]
name = "per-ip"
priority = 1
action = "block"
response = { status = 429 }
ban = { after = 3, within = "1m", duration = "10m" }
statement = { rate = { limit = 10, window = "60s", key = ["ip"] } }
"#,
    );
    let head = "GET /f HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(status_from(Ipv4Addr::new(127, 0, 20, 1), s.edge, head).await);
    }
    assert_eq!(statuses[..10], [200; 10], "{statuses:?}");
    assert_eq!(
        statuses[10..],
        [429; 5],
        "the 11th request is refused: {statuses:?}"
    );
    assert_eq!(
        status_from(Ipv4Addr::new(127, 0, 20, 2), s.edge, head).await,
        200,
        "other clients unaffected"
    );
    assert_eq!(
        s.instances("f")["invocations"],
        11,
        "blocked requests cost no invocation"
    );
    assert_eq!(counter(&s, "per-ip", "blocked"), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_tripping_a_rule_is_banned_past_the_window() {
    let s = with_rules(
        "ban",
        r#"
[firewall]
[[firewall.rules]]
name = "burst"
priority = 1
action = "block"
ban = { after = 3, within = "1m", duration = "10m" }
statement = { rate = { limit = 2, window = "3s" } }
"#,
    );
    let head = "GET /f HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let (banned, polite) = (Ipv4Addr::new(127, 0, 30, 1), Ipv4Addr::new(127, 0, 30, 2));
    // Warm the function from a third address, so a cold start does not push
    // the five requests below across a window boundary.
    assert_eq!(
        status_from(Ipv4Addr::new(127, 0, 30, 3), s.edge, head).await,
        200
    );
    let mut first = Vec::new();
    for _ in 0..5 {
        first.push(status_from(banned, s.edge, head).await);
    }
    assert_eq!(first, [200, 200, 403, 403, 403], "three strikes");
    for _ in 0..2 {
        assert_eq!(status_from(polite, s.edge, head).await, 200);
    }
    // One whole window later is always a new window. (Polling instead would
    // count: refused requests count, and three of them ban.)
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(status_from(polite, s.edge, head).await, 200);
    assert_eq!(
        status_from(banned, s.edge, head).await,
        403,
        "still banned after the window reset"
    );
}

#[test]
fn forwarded_clients_are_counted_separately_only_behind_trusted_proxies() {
    let rules = r#"
[client_ip]
trusted_proxies = ["127.0.0.1/32"]

[firewall]
[[firewall.rules]]
name = "per-client"
priority = 1
action = "block"
statement = { rate = { limit = 2, window = "60s" } }
"#;
    let s = with_rules("xff", rules);
    let via = |ip: &str| request(s.edge, "GET", "/f", &[("x-forwarded-for", ip)], b"").status;
    assert_eq!(
        [
            via("198.51.100.1"),
            via("198.51.100.1"),
            via("198.51.100.1")
        ],
        [200, 200, 403]
    );
    assert_eq!(
        via("198.51.100.2"),
        200,
        "a different forwarded client has its own count"
    );
    // The event reports the resolved client.
    let e = request(
        s.edge,
        "GET",
        "/f",
        &[("x-forwarded-for", "203.0.113.5")],
        b"",
    )
    .json();
    assert_eq!(e["requestContext"]["http"]["sourceIp"], "203.0.113.5");
}

#[test]
fn throttles_answer_429_naming_the_bucket() {
    let s = Server::start(
        "throttle",
        &format!(
            "[throttle]\nrate = 0.5\nburst = 5\n\n{}\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\nthrottle = {{ rate = 0.5, burst = 2 }}\n\n[[routes]]\nroute = \"GET /g\"\nfunction = \"f\"\n",
            hello_function("f", FUNCTION)
        ),
    );
    let f: Vec<u16> = (0..3).map(|_| get(s.edge, "/f").status).collect();
    assert_eq!(f, [200, 200, 429], "route bucket of 2");
    let r = get(s.edge, "/f");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["limit"], "routes.throttle");
    assert!(r.header("retry-after").is_some());
    // The account bucket (5) is shared: 3 taken by /f above (the 4th was refused by its route after taking one).
    let g: Vec<u16> = (0..3).map(|_| get(s.edge, "/g").status).collect();
    assert!(g.contains(&429), "{g:?}");
    let last = get(s.edge, "/g");
    assert_eq!(last.json()["limit"], "throttle");
}

#[test]
fn rules_reload_on_sighup_and_a_bad_file_keeps_the_old_rules() {
    let s = with_rules("reload", "");
    assert_eq!(get(s.edge, "/f").status, 200);
    let config = s.dir.join("levee.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{original}\n[firewall]\n[[firewall.rules]]\nname = \"closed\"\npriority = 1\naction = \"block\"\nstatement = {{ string_match = {{ field = \"path\", search = \"/f\", position = \"exactly\" }} }}\n"),
    )
    .unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(
        s.wait_until(Duration::from_secs(5), || get(s.edge, "/f").status == 403),
        "new rule in force"
    );

    std::fs::write(&config, format!("{original}\n[firewall]\nbogus = 1\n")).unwrap();
    let r = s.admin("POST", "/admin/reload", b"");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("bogus"), "{}", r.text());
    assert_eq!(get(s.edge, "/f").status, 403, "old rules kept");
    std::fs::write(&config, &original).unwrap();
    assert_eq!(s.admin("POST", "/admin/reload", b"").status, 200);
    assert_eq!(get(s.edge, "/f").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_thousands_of_addresses_leaves_legitimate_traffic_alone() {
    let s = with_rules(
        "flood",
        r#"
[limits]
max_connections_per_ip = 4

[firewall]
[[firewall.rules]]
name = "per-ip"
priority = 1
action = "block"
statement = { rate = { limit = 1, window = "60s" } }
"#,
    );
    let edge = s.edge;
    // Legitimate clients: 20 addresses, 5 requests each, spread over the attack.
    let legit = tokio::spawn(async move {
        let mut statuses = Vec::new();
        for round in 0..5u8 {
            for i in 0..20u8 {
                let head = "GET /f HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
                // Each legitimate client sends one request per window: within its limit.
                statuses.push(status_from(Ipv4Addr::new(127, 2, round, i + 1), edge, head).await);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        statuses
    });
    // The attack: 2000 addresses × 4 requests, 32 in flight at a time — fewer
    // than the function's reservation (40), so what this measures is the
    // shield, not the concurrency limit (which would rightly answer 429 to
    // legitimate clients once allowed attack requests fill it).
    let limit = Arc::new(tokio::sync::Semaphore::new(32));
    let mut attack = Vec::new();
    for n in 0..2000u32 {
        for _ in 0..4 {
            let permit = Arc::clone(&limit).acquire_owned().await.unwrap();
            let src = Ipv4Addr::new(127, 1, (n / 250) as u8, (n % 250) as u8 + 1);
            attack.push(tokio::spawn(async move {
                let head = "GET /f HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
                let status = status_from(src, edge, head).await;
                drop(permit);
                status
            }));
        }
    }
    let mut attack_ok = 0;
    for a in attack {
        if a.await.unwrap() == 200 {
            attack_ok += 1;
        }
    }
    let statuses = legit.await.unwrap();
    let total = statuses.len();
    let ok = statuses.iter().filter(|&&c| c == 200).count();
    assert_eq!(
        ok, total,
        "every legitimate request succeeded ({ok}/{total}): {statuses:?}"
    );
    let invocations = s.instances("f")["invocations"].as_u64().unwrap();
    assert!(
        attack_ok <= 2000,
        "at most one per attacking address: {attack_ok}"
    );
    assert!(
        invocations <= 2000 + total as u64,
        "the attack caused no more invocations than its rule allows: {invocations}"
    );
}
