//! The edge cache end to end: hits, misses and expiry, cache-key
//! normalisation against a cache-busting run, collapsing of concurrent
//! misses, stale-if-error while the function fails, Vary, 304s, negative
//! caching, compression and purges.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::{get, hello_function, python, request, workspace, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

fn flaky_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("levee-flaky-{name}-{}", std::process::id()))
}

fn cached_server(name: &str, extra_env: &[(&str, &str)]) -> Server {
    // The function looks for the file through `runtime_paths`: an
    // isolated instance sees nothing else of the host.
    let shared = flaky_dir(name);
    std::fs::create_dir_all(&shared).unwrap();
    let flaky = shared.join("fail");
    let _ = std::fs::remove_file(&flaky);
    Server::start_with_env(
        name,
        &format!(
            r#"[limits]
max_connections_per_ip = 2000

{hello}
[functions.py]
command = ["{py}", "-m", "awslambdaric", "app.handler"]
code = "{code}"
timeout = "5s"
env = {{ FLAKY_FILE = "{flaky}" }}
runtime_paths = ["{shared}"]

[[routes]]
route = "GET /c"
function = "hello"
cache = {{ ttl = "1s", query = ["action", "ms", "code", "bytes"] }}

[[routes]]
route = "GET /long"
function = "hello"
cache = {{ ttl = "1h", query = ["action"] }}

[[routes]]
route = "GET /flaky"
function = "py"
cache = {{ ttl = "1s", query = ["action"], stale_if_error = "1m" }}

[[routes]]
route = "GET /echo"
function = "hello"
cache = {{ ttl = "1h", query = ["value"], headers = ["accept-language"] }}

[[routes]]
route = "GET /vary"
function = "py"
cache = {{ ttl = "1m", query = ["action"], headers = ["accept-language"] }}
"#,
            hello = hello_function("hello", "reserved_concurrency = 20"),
            py = python(),
            code = workspace().join("examples/python").display(),
            flaky = flaky.display(),
            shared = shared.display(),
        ),
        extra_env,
    )
}

fn invocations(s: &Server, f: &str) -> u64 {
    s.instances(f)["invocations"].as_u64().unwrap()
}

#[test]
fn hits_misses_and_expiry() {
    let s = cached_server("hitmiss", &[]);
    let first = get(s.edge, "/c?action=pid");
    assert_eq!((first.status, first.header("x-cache")), (200, Some("Miss")));
    let second = get(s.edge, "/c?action=pid");
    assert_eq!(second.header("x-cache"), Some("Hit"));
    assert_eq!(second.body, first.body, "the same answer");
    assert!(second.header("age").is_some());
    assert_eq!(invocations(&s, "hello"), 1);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        get(s.edge, "/c?action=pid").header("x-cache"),
        Some("Miss"),
        "expired after its ttl"
    );
    assert_eq!(invocations(&s, "hello"), 2);
}

#[test]
fn a_cache_busting_run_of_10000_random_query_strings_costs_one_invocation() {
    let s = cached_server("bust", &[]);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..1250 {
                    let r = get(
                        s.edge,
                        &format!("/long?action=pid&utm_{t}_{i}={}", i * 7919 + t),
                    );
                    assert_eq!(r.status, 200);
                }
            });
        }
    });
    assert_eq!(
        invocations(&s, "hello"),
        1,
        "unlisted parameters are not in the key"
    );
}

/// One GET from 127.3.x.y; the status and the X-Cache header.
async fn fetch(src: Ipv4Addr, to: SocketAddr, path: &str) -> (u16, String) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((src, 0))).unwrap();
    let mut s = socket.connect(to).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text[9..12].parse().unwrap();
    let cache = text
        .lines()
        .find_map(|l| l.strip_prefix("x-cache: "))
        .unwrap_or("")
        .to_string();
    (status, cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_cause_one_invocation() {
    let s = cached_server("collapse", &[]);
    let edge = s.edge;
    let tasks: Vec<_> = (0..1000u32)
        .map(|i| {
            let src = Ipv4Addr::new(127, 3, (i / 250) as u8, (i % 250) as u8 + 1);
            tokio::spawn(fetch(src, edge, "/c?action=sleep&ms=1500"))
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(
        statuses.iter().all(|(code, _)| *code == 200),
        "{:?}",
        &statuses[..5]
    );
    assert_eq!(statuses.iter().filter(|(_, c)| c == "Miss").count(), 1);
    let stats = tokio::task::spawn_blocking(move || {
        let s = s;
        (invocations(&s, "hello"), s)
    })
    .await
    .unwrap();
    assert_eq!(stats.0, 1, "collapsed into one invocation");
}

#[test]
fn stale_answers_are_served_while_the_function_fails() {
    let s = cached_server("stale", &[]);
    let flaky = flaky_dir("stale").join("fail");
    let good = get(s.edge, "/flaky?action=flaky");
    assert_eq!(good.status, 200, "{}", good.text());
    std::fs::write(&flaky, "fail").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let stale = get(s.edge, "/flaky?action=flaky");
    std::fs::remove_dir_all(flaky_dir("stale")).unwrap();
    assert_eq!(stale.status, 200, "the last good answer, not the error");
    assert_eq!(stale.header("x-cache"), Some("Stale"));
    assert_eq!(stale.body, good.body);
    assert!(
        s.stderr().contains("failing because FLAKY_FILE exists"),
        "the function really failed"
    );
}

#[test]
fn vary_conditional_requests_negative_caching_compression_and_purge() {
    let s = cached_server("misc", &[]);
    let en = request(
        s.edge,
        "GET",
        "/vary?action=vary",
        &[("accept-language", "en")],
        b"",
    );
    let fr = request(
        s.edge,
        "GET",
        "/vary?action=vary",
        &[("accept-language", "fr")],
        b"",
    );
    assert_eq!(
        (en.text().as_str(), fr.text().as_str()),
        ("language=en", "language=fr")
    );
    let en2 = request(
        s.edge,
        "GET",
        "/vary?action=vary",
        &[("accept-language", "en")],
        b"",
    );
    assert_eq!(
        (en2.text().as_str(), en2.header("x-cache")),
        ("language=en", Some("Hit"))
    );

    let etag = en2.header("etag").expect("an ETag").to_string();
    let not_modified = request(
        s.edge,
        "GET",
        "/vary?action=vary",
        &[("accept-language", "en"), ("if-none-match", &etag)],
        b"",
    );
    assert_eq!(not_modified.status, 304);
    assert!(not_modified.body.is_empty());

    let missing = get(s.edge, "/vary?action=notfound");
    assert_eq!(missing.status, 404);
    assert_eq!(
        get(s.edge, "/vary?action=notfound").header("x-cache"),
        Some("Hit"),
        "negative caching"
    );

    let big = request(
        s.edge,
        "GET",
        "/c?action=big&bytes=20000",
        &[("accept-encoding", "gzip, br")],
        b"",
    );
    assert_eq!(big.header("content-encoding"), Some("br"));
    assert!(big.body.len() < 20_000, "compressed: {}", big.body.len());
    let gz = request(
        s.edge,
        "GET",
        "/c?action=big&bytes=20000",
        &[("accept-encoding", "gzip")],
        b"",
    );
    assert_eq!(
        (gz.header("content-encoding"), gz.header("x-cache")),
        (Some("gzip"), Some("Hit"))
    );
    let plain = get(s.edge, "/c?action=big&bytes=20000");
    assert_eq!(
        plain.body.len(),
        20_000,
        "identity for clients that ask for none"
    );

    let purged = s
        .admin("POST", "/admin/cache/purge", br#"{"route":"GET /c"}"#)
        .json();
    assert_eq!(purged["purged"], 1, "{purged}");
    assert_eq!(
        get(s.edge, "/c?action=big&bytes=20000").header("x-cache"),
        Some("Miss")
    );
    assert_eq!(
        request(
            s.edge,
            "GET",
            "/vary?action=vary",
            &[("accept-language", "en")],
            b""
        )
        .header("x-cache"),
        Some("Hit"),
        "other routes keep their entries"
    );
    assert_eq!(
        s.admin("POST", "/admin/cache/purge", br#"{"all":true,"route":"x"}"#)
            .status,
        400
    );
    let stats = s.admin("GET", "/admin/cache", b"").json();
    assert!(stats["cache"]["hits"].as_u64().unwrap() >= 3, "{stats}");
}

#[test]
fn unkeyed_headers_never_reach_the_function_so_they_cannot_poison_the_cache() {
    let s = cached_server("poison", &[]);
    let evil = request(
        s.edge,
        "GET",
        "/echo",
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-evil", "evil"),
            ("user-agent", "evil-agent"),
            ("accept-language", "EN"),
        ],
        b"",
    );
    assert_eq!(evil.header("x-cache"), Some("Miss"));
    let seen = evil.json();
    assert_eq!(
        seen["headers"],
        serde_json::json!({ "accept-language": "en" }),
        "only the keyed header, in the key's form"
    );
    assert_eq!(seen["requestContext"]["domainName"], "localhost");
    // The support client sends `host: 127.0.0.1:port`; an attacker's Host
    // is just as unkeyed.
    let plain = request(s.edge, "GET", "/echo", &[("accept-language", "en")], b"");
    assert_eq!(plain.header("x-cache"), Some("Hit"));
    assert!(!plain.text().contains("evil"), "{}", plain.text());
}

#[test]
fn the_function_sees_listed_parameters_in_the_order_the_key_has_them() {
    let s = cached_server("order", &[]);
    let first = get(s.edge, "/echo?value=2&value=1&other=x");
    assert_eq!(first.header("x-cache"), Some("Miss"));
    let seen = first.json();
    assert_eq!(seen["queryStringParameters"]["value"], "1,2");
    assert_eq!(seen["rawQueryString"], "value=1&value=2");
    let second = get(s.edge, "/echo?value=1&value=2");
    assert_eq!(second.header("x-cache"), Some("Hit"), "one key");
    assert_eq!(second.body, first.body);
}
