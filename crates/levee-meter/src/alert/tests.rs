use std::sync::atomic::AtomicUsize;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A tiny webhook receiver on 127.0.0.1:0: answers 500 to the first
/// `fail_first` requests and 200 after; with `hang`, never answers.
#[derive(Debug)]
pub(crate) struct Receiver {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

pub(crate) async fn receiver(fail_first: usize, hang: bool) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (h, b) = (Arc::clone(&hits), Arc::clone(&bodies));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (h, b) = (Arc::clone(&h), Arc::clone(&b));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head, then Content-Length bytes of body.
                let (head_end, length) = loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let n = h.fetch_add(1, Ordering::SeqCst);
                if hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    return;
                }
                let status = if n < fail_first {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                if n >= fail_first {
                    if let Ok(v) = serde_json::from_slice(&buf[head_end..head_end + length]) {
                        lock(&b).push(v);
                    }
                }
                let _ = stream
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    Receiver { url, hits, bodies }
}

pub(crate) fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 5,
        first_backoff: Duration::from_millis(10),
        timeout: Duration::from_millis(500),
        queue: 1000,
        concurrency: 4,
    }
}

pub(crate) fn alert(budget: &str) -> Alert {
    Alert {
        budget: budget.into(),
        kind: AlertKind::Actual,
        threshold: 0.8,
        spent: 4.0,
        forecast: 8.0,
        limit: 5.0,
        consumed_ratio: 0.8,
        scope: BudgetScope::All,
        period: BudgetPeriod::Day,
        period_start: 0,
        resets_at: 86_400,
        action: BudgetAction::Stop,
        at: 10,
    }
}

/// Polls `done` every 10 ms for at most 5 s.
pub(crate) async fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_is_retried_until_it_answers() {
    let r = receiver(2, false).await;
    let sink = AlertSink::spawn_with(&tokio::runtime::Handle::current(), fast());
    sink.send(&r.url, &alert("daily-cap"));
    assert!(eventually(|| sink.delivered() == 1).await);
    assert_eq!(r.hits.load(Ordering::SeqCst), 3, "two 500s, then a 200");
    assert_eq!(sink.failed(), 0);
    let bodies = lock(&r.bodies).clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["budget"], "daily-cap");
    assert_eq!(bodies[0]["kind"], "actual");
    assert_eq!(bodies[0]["threshold"], 0.8);
    assert_eq!(bodies[0]["action"], "stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded() {
    let r = receiver(usize::MAX, false).await;
    let policy = RetryPolicy {
        attempts: 3,
        ..fast()
    };
    let sink = AlertSink::spawn_with(&tokio::runtime::Handle::current(), policy);
    sink.send(&r.url, &alert("b"));
    assert!(eventually(|| sink.failed() == 1).await);
    // Give a fourth try the time to happen, if it wrongly would.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(r.hits.load(Ordering::SeqCst), 3);
    assert_eq!(sink.delivered(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_never_blocks_the_sender() {
    // A port that was just free: connections are refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    let sink = AlertSink::spawn_with(&tokio::runtime::Handle::current(), fast());
    let start = Instant::now();
    for _ in 0..20 {
        sink.send(&dead, &alert("b"));
    }
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert!(
        eventually(|| sink.failed() == 20).await,
        "failed {}",
        sink.failed()
    );
    assert_eq!(sink.delivered(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest() {
    // A receiver that never answers holds the only delivery slot.
    let r = receiver(0, true).await;
    let policy = RetryPolicy {
        queue: 3,
        concurrency: 1,
        attempts: 1,
        timeout: Duration::from_secs(30),
        ..fast()
    };
    let sink = AlertSink::spawn_with(&tokio::runtime::Handle::current(), policy);
    sink.send(&r.url, &alert("first"));
    assert!(eventually(|| r.hits.load(Ordering::SeqCst) == 1).await);
    for i in 0..10 {
        sink.send(&r.url, &alert(&format!("a{i}")));
    }
    assert_eq!(sink.pending(), 3);
    assert_eq!(sink.dropped(), 7);
}

#[test]
fn urls_split_into_host_port_and_path() {
    assert_eq!(
        split_url("http://127.0.0.1:9000/hook?x=1"),
        Some(("127.0.0.1".into(), 9000, "/hook?x=1".into()))
    );
    assert_eq!(
        split_url("http://example.com"),
        Some(("example.com".into(), 80, "/".into()))
    );
    assert_eq!(
        split_url("http://[::1]:8080/h"),
        Some(("::1".into(), 8080, "/h".into()))
    );
    assert_eq!(split_url("https://x/"), None);
    assert_eq!(split_url("http://:80/"), None);
    assert_eq!(split_url("http://x:99999/"), None);
}

#[test]
fn a_disabled_sink_accepts_and_drops() {
    let sink = AlertSink::disabled();
    sink.send("http://127.0.0.1:1/", &alert("b"));
    assert_eq!(sink.pending(), 0);
}
