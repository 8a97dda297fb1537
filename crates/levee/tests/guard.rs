//! The connection guard under hostile clients: slowloris, slow POST, slow
//! read, connection caps, oversized heads, idle keep-alive, and HTTP/2. Slow
//! clients come from many distinct loopback addresses (127.0.x.y), as real
//! distinct attackers would; every loop is bounded in count and time.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use support::{get, h2_frame, hello_function, request, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn guarded(name: &str, limits: &str) -> Server {
    Server::start(
        name,
        &format!(
            "[limits]\n{limits}\n\n{}\n[[routes]]\nroute = \"ANY /f\"\nfunction = \"f\"\n",
            hello_function("f", "reserved_concurrency = 50\ntimeout = \"10s\"")
        ),
    )
}

/// A connection from 127.0.`hi`.`lo`.
async fn connect_from(hi: u8, lo: u8, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((Ipv4Addr::new(127, 0, hi, lo), 0)))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads until EOF, error or `within`; true if the server closed the
/// connection in time.
async fn closed_by(s: &mut TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends `count` legitimate requests from 127.0.0.1, one every 50 ms, on a
/// blocking thread; returns how many got 200 (and panics, listing the other
/// statuses, if any did not).
fn legit_traffic(edge: SocketAddr, count: usize) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let statuses: Vec<u16> = (0..count)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(50));
                get(edge, "/f?action=pid").status
            })
            .collect();
        let ok = statuses.iter().filter(|&&s| s == 200).count();
        assert_eq!(ok, count, "legitimate requests failed: {statuses:?}");
        ok
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_from_hundreds_of_connections_does_not_take_the_service_down() {
    let s = guarded(
        "slowloris",
        "header_timeout = \"2s\"\nmax_connections_per_ip = 10",
    );
    let edge = s.edge;
    assert_eq!(get(edge, "/f").status, 200, "warm up");
    // 300 connections from 30 addresses, each trickling a header line per
    // 500 ms and never finishing the head.
    let mut slow = Vec::new();
    for i in 0..300u16 {
        let mut c = connect_from(1, (i / 10) as u8 + 1, edge).await;
        c.write_all(b"GET /f HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(c);
    }
    let legit = legit_traffic(edge, 60);
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        for c in &mut slow {
            let _ = c.write_all(b"x-slow: 1\r\n").await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The head timeout (2 s) closes every slow connection; one deadline for
    // all, so a regression fails in 5 s rather than 300 × 5 s.
    let mut closed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for c in &mut slow {
        if closed_by(c, deadline).await {
            closed += 1;
        }
    }
    let ok = tokio::task::spawn_blocking(move || legit.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        ok, 60,
        "every legitimate request succeeded during the attack"
    );
    assert_eq!(
        closed, 300,
        "slow connections must be cut by the head timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_post_bodies_get_408_and_do_not_block_others() {
    let s = guarded("slowpost", "body_min_rate = 1000\nbody_grace = \"1s\"");
    let edge = s.edge;
    let mut slow = Vec::new();
    for i in 0..50u8 {
        let mut c = connect_from(2, i + 1, edge).await;
        c.write_all(b"POST /f HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nab")
            .await
            .unwrap();
        slow.push(c);
    }
    let legit = legit_traffic(edge, 30);
    let mut timed_out = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    for c in &mut slow {
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout_at(deadline, c.read(&mut buf)).await;
        if let Ok(Ok(n)) = n {
            if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408") {
                timed_out += 1;
            }
        }
    }
    let ok = tokio::task::spawn_blocking(move || legit.join().unwrap())
        .await
        .unwrap();
    assert_eq!(timed_out, 50, "slow bodies answered 408");
    assert_eq!(ok, 30);
    assert!(
        s.instances("f")["starts"].as_u64().unwrap() <= 2,
        "slow bodies never invoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_are_cut_off_by_the_send_timeout() {
    let s = guarded("slowread", "send_timeout = \"2s\"");
    let edge = s.edge;
    let mut readers = Vec::new();
    for i in 0..10u8 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket
            .bind(SocketAddr::from((Ipv4Addr::new(127, 0, 3, i + 1), 0)))
            .unwrap();
        let mut c = socket.connect(edge).await.unwrap();
        c.write_all(b"GET /f?action=big&bytes=5000000 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        readers.push(c);
    }
    let legit = legit_traffic(edge, 30);
    // Never read for 7 s (the responses start within a few seconds; the send
    // timeout is 2 s), then drain: the server must have given up, so each
    // connection ends well short of the 5 MB body.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut cut = 0;
    // One deadline for all readers: a regression cannot stretch the test to
    // readers × timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for c in &mut readers {
        let mut total = 0usize;
        let mut head = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            if head.len() < 12 {
                head.extend_from_slice(&buf[..n.min(12 - head.len())]);
            }
            total += n;
        }
        // Cut short in the middle of a 200, not refused with a short error.
        if head.starts_with(b"HTTP/1.1 200") && total < 5_000_000 {
            cut += 1;
        }
    }
    let ok = tokio::task::spawn_blocking(move || legit.join().unwrap())
        .await
        .unwrap();
    assert_eq!(ok, 30);
    assert_eq!(cut, 10, "every non-reading client was cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_per_address_and_in_total() {
    let s = guarded(
        "conncap",
        "max_connections = 12\nmax_connections_per_ip = 5",
    );
    let edge = s.edge;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(4, 1, edge).await);
    }
    let mut sixth = connect_from(4, 1, edge).await;
    assert!(
        closed_by(
            &mut sixth,
            tokio::time::Instant::now() + Duration::from_secs(2)
        )
        .await,
        "6th from one address refused"
    );
    for i in 0..7u8 {
        held.push(connect_from(4, 10 + i, edge).await);
    }
    let mut over = connect_from(4, 50, edge).await;
    assert!(
        closed_by(
            &mut over,
            tokio::time::Instant::now() + Duration::from_secs(2)
        )
        .await,
        "13th connection refused"
    );
    drop(held);
    // The server sees the closes asynchronously: retry, bounded (5 s).
    let mut status = 0;
    for _ in 0..50 {
        // A connection still refused at accept makes `get` panic: retry.
        status = tokio::task::spawn_blocking(move || get(edge, "/f").status)
            .await
            .unwrap_or(0);
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "slots come back when connections close");
}

#[test]
fn oversized_heads_get_431() {
    let s = guarded("431", "max_header_bytes = \"16KiB\"\nmax_headers = 50");
    let big = "a".repeat(20 * 1024);
    let r = request(s.edge, "GET", "/f", &[("x-big", &big)], b"");
    assert_eq!(r.status, 431);
    let names: Vec<String> = (0..60).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let r = request(s.edge, "GET", "/f", &many, b"");
    assert_eq!(r.status, 431);
    assert_eq!(get(s.edge, "/f").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_but_slow_functions_are_not_idle() {
    let s = guarded("idle", "idle_timeout = \"1s\"");
    let mut c = connect_from(5, 1, s.edge).await;
    // A 2.5 s invocation on a connection with a 1 s idle timeout completes.
    c.write_all(b"GET /f?action=sleep&ms=2500 HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(8), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Then, idle, it is closed.
    assert!(
        closed_by(&mut c, tokio::time::Instant::now() + Duration::from_secs(4)).await,
        "idle keep-alive closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_works_under_the_guard() {
    use http_body_util::{BodyExt, Empty};
    let s = guarded("h2", "h2_max_streams = 10");
    let stream = TcpStream::connect(s.edge).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for _ in 0..5 {
        let req = http::Request::get(format!("http://{}/f?action=pid", s.edge))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["pid"].as_u64().is_some());
    }
}

/// HTTP/2 slowloris, two ways: a head trickled in CONTINUATION frames, and
/// a connection kept busy with PINGs that never sends a request. Each sends
/// something every 300 ms, so `idle_timeout` alone would never close them;
/// `header_timeout` (1 s) must, as it does on HTTP/1.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_heads_are_held_to_the_header_timeout() {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let s = guarded("h2slow", "header_timeout = \"1s\"\nidle_timeout = \"60s\"");
    let legit = legit_traffic(s.edge, 20);
    let mut results = Vec::new();
    for (i, first) in [h2_frame(0x1, 0, 1, &[0; 8]), h2_frame(0x6, 0, 0, &[0; 8])]
        .into_iter()
        .enumerate()
    {
        let mut c = connect_from(7, i as u8 + 1, s.edge).await;
        let mut opening = PREFACE.to_vec();
        opening.extend(h2_frame(0x4, 0, 0, &[0; 0]));
        opening.extend(first);
        c.write_all(&opening).await.unwrap();
        let again = if i == 0 {
            h2_frame(0x9, 0, 1, &[0; 4])
        } else {
            h2_frame(0x6, 0, 0, &[0; 8])
        };
        let started = Instant::now();
        let mut closed = false;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if c.write_all(&again).await.is_err()
                || closed_by(
                    &mut c,
                    tokio::time::Instant::now() + Duration::from_millis(10),
                )
                .await
            {
                closed = true;
                break;
            }
        }
        results.push((closed, started.elapsed()));
    }
    for (closed, after) in &results {
        assert!(closed, "closed within 6 s: {results:?}");
        assert!(
            *after >= Duration::from_millis(900),
            "not before the timeout: {results:?}"
        );
    }
    assert_eq!(legit.join().unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_has_its_own_guard_and_a_small_head_before_the_token() {
    let s = Server::start(
        "adminguard",
        &format!(
            "[admin_limits]\nmax_connections = 8\nmax_connections_per_ip = 4\nheader_timeout = \"1s\"\n\n{}\n[[routes]]\nroute = \"ANY /f\"\nfunction = \"f\"\n",
            hello_function("f", "")
        ),
    );
    let admin = s.admin;
    // Four slow heads without a token from one address fill its share …
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from(4, 1, admin).await;
        c.write_all(b"GET /admin/functions HTTP/1.1\r\n")
            .await
            .unwrap();
        slow.push(c);
    }
    // … so a fifth is closed at once.
    let mut fifth = connect_from(4, 1, admin).await;
    let soon = tokio::time::Instant::now() + Duration::from_secs(2);
    assert!(closed_by(&mut fifth, soon).await, "per-address cap");
    // The head timeout (1 s) closes the slow ones.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    for c in &mut slow {
        assert!(closed_by(c, deadline).await, "head timeout");
    }
    // A 64 KiB head is refused with 431 before the token is looked at.
    let mut big = connect_from(4, 2, admin).await;
    let head = format!(
        "GET /admin/functions HTTP/1.1\r\nhost: x\r\nx-pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), big.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // Both listeners still serve.
    assert_eq!(get(s.edge, "/f").status, 200);
    assert_eq!(s.admin("GET", "/admin/functions", b"").status, 200);
}
