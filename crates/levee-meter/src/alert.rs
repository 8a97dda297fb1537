//! Alert delivery: webhook POSTs with bounded retries, off the request path.
//!
//! Owns: the pending-alert queue and the tokio task that drains it. Must
//! never block the caller ([`AlertSink::send`] is a push onto a bounded
//! in-memory queue, O(1), no await), hold more than `queue` alerts (the
//! oldest is dropped, with a log line, when full), retry forever, or run
//! more than `concurrency` deliveries at once.
//!
//! A delivery is a `POST` of the [`Alert`] as JSON over HTTP/1.1 (hyper;
//! plain http only in this build). A 2xx answer is success; anything else
//! — refused connection, timeout, non-2xx — is retried after 1 s, 2 s, 4 s, …
//! up to `attempts` tries, each bounded by `timeout`. A dead webhook thus
//! costs one delivery slot for at most attempts × timeout + the back-offs
//! (5 × 5 s + 15 s = 40 s by default), then the alert is logged as lost.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::{Notify, Semaphore};

use crate::budget::AlertKind;
use crate::model::{BudgetAction, BudgetPeriod, BudgetScope};
use levee_common::sync::lock;

/// What is POSTed to a budget's webhook (and logged).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub budget: String,
    pub kind: AlertKind,
    /// Fraction of the limit that was crossed.
    pub threshold: f64,
    pub spent: f64,
    pub forecast: f64,
    pub limit: f64,
    pub consumed_ratio: f64,
    pub scope: BudgetScope,
    pub period: BudgetPeriod,
    pub period_start: i64,
    pub resets_at: i64,
    pub action: BudgetAction,
    /// When it was raised, unix seconds.
    pub at: i64,
}

/// How deliveries are retried and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries per alert, ≥ 1.
    pub attempts: u32,
    /// Wait after the first failure; doubles after each.
    pub first_backoff: Duration,
    /// Bound on one try (connect + request + response head).
    pub timeout: Duration,
    /// Most alerts waiting for delivery.
    pub queue: usize,
    /// Most deliveries in progress at once.
    pub concurrency: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            queue: 1000,
            concurrency: 4,
        }
    }
}

#[derive(Debug)]
struct Job {
    url: String,
    body: Bytes,
    /// What it is about, for the log: "budget NAME", "auto-mitigation event N".
    what: String,
}

#[derive(Debug, Default)]
struct Stats {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    policy: RetryPolicy,
}

/// Where alerts go. Cloning shares the queue. Every alert is also logged
/// and counted by [`crate::Budgets`]; the sink only adds webhooks.
#[derive(Debug, Clone)]
pub struct AlertSink {
    /// `None`: webhooks are not delivered (tests, CLI commands).
    queue: Option<Arc<Queue>>,
    notify: Arc<Notify>,
    stats: Arc<Stats>,
}

impl AlertSink {
    /// A sink that delivers no webhooks.
    pub fn disabled() -> AlertSink {
        AlertSink {
            queue: None,
            notify: Arc::new(Notify::new()),
            stats: Arc::new(Stats::default()),
        }
    }

    /// Starts the delivery task on `runtime` with the default policy.
    pub fn spawn(runtime: &tokio::runtime::Handle) -> AlertSink {
        Self::spawn_with(runtime, RetryPolicy::default())
    }

    /// Starts the delivery task with `policy`. The task ends once every
    /// clone of the sink is dropped and the queue is empty.
    pub fn spawn_with(runtime: &tokio::runtime::Handle, policy: RetryPolicy) -> AlertSink {
        let policy = RetryPolicy {
            attempts: policy.attempts.max(1),
            queue: policy.queue.max(1),
            concurrency: policy.concurrency.max(1),
            ..policy
        };
        let queue = Arc::new(Queue {
            jobs: Mutex::new(VecDeque::new()),
            policy,
        });
        let sink = AlertSink {
            queue: Some(Arc::clone(&queue)),
            notify: Arc::new(Notify::new()),
            stats: Arc::new(Stats::default()),
        };
        runtime.spawn(worker(
            Arc::downgrade(&queue),
            Arc::clone(&sink.notify),
            Arc::clone(&sink.stats),
        ));
        sink
    }

    /// Queues `alert` for `url`. Never blocks; when the queue is full the
    /// oldest pending alert is dropped and logged.
    pub fn send(&self, url: &str, alert: &Alert) {
        if let Ok(body) = serde_json::to_vec(alert) {
            self.send_json(url, format!("budget {}", alert.budget), Bytes::from(body));
        }
    }

    /// Queues a JSON `body` for `url`, as [`AlertSink::send`] does; `what`
    /// names it in the log.
    pub fn send_json(&self, url: &str, what: String, body: Bytes) {
        let Some(queue) = &self.queue else { return };
        let job = Job {
            url: url.to_owned(),
            body,
            what,
        };
        {
            let mut jobs = lock(&queue.jobs);
            if jobs.len() >= queue.policy.queue {
                if let Some(old) = jobs.pop_front() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        about = %old.what,
                        limit = queue.policy.queue,
                        "alert queue full; dropped the oldest pending webhook"
                    );
                }
            }
            jobs.push_back(job);
        }
        self.notify.notify_one();
    }

    /// Webhooks answered 2xx.
    pub fn delivered(&self) -> u64 {
        self.stats.delivered.load(Ordering::Relaxed)
    }

    /// Webhooks given up on after every attempt failed.
    pub fn failed(&self) -> u64 {
        self.stats.failed.load(Ordering::Relaxed)
    }

    /// Alerts dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed)
    }

    /// Alerts waiting for a delivery slot.
    pub fn pending(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| lock(&q.jobs).len())
    }
}

async fn worker(queue: Weak<Queue>, notify: Arc<Notify>, stats: Arc<Stats>) {
    let Some(policy) = queue.upgrade().map(|q| q.policy) else {
        return;
    };
    let slots = Arc::new(Semaphore::new(policy.concurrency));
    loop {
        // A slot first, then a job: an alert leaves the bounded queue only
        // when it can be delivered, so at most `queue` wait in memory.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let job = {
            let Some(q) = queue.upgrade() else { return };
            let job = lock(&q.jobs).pop_front();
            job
        };
        let Some(job) = job else {
            drop(permit);
            // Wake on a new alert, or re-check once a second whether every
            // sink is gone (then the task ends).
            let _ = tokio::time::timeout(Duration::from_secs(1), notify.notified()).await;
            continue;
        };
        let stats = Arc::clone(&stats);
        tokio::spawn(async move {
            deliver(&job, policy, &stats).await;
            drop(permit);
        });
    }
}

async fn deliver(job: &Job, policy: RetryPolicy, stats: &Stats) {
    let mut backoff = policy.first_backoff;
    for attempt in 1..=policy.attempts {
        let result =
            match tokio::time::timeout(policy.timeout, post(&job.url, job.body.clone())).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {:?}", policy.timeout)),
            };
        match result {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(e) if attempt < policy.attempts => {
                tracing::debug!(about = %job.what, attempt, error = %e, "webhook failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    about = %job.what,
                    attempts = policy.attempts,
                    error = %e,
                    "webhook failed on every attempt; alert not delivered"
                );
            }
        }
    }
}

/// `http://host[:port][/path]` split into host, port and path.
fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let end = v6.find(']')?;
        let port = v6[end + 1..].strip_prefix(':');
        (v6[..end].to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 80,
    };
    (!host.is_empty()).then(|| (host, port, path.to_owned()))
}

async fn post(url: &str, body: Bytes) -> Result<(), String> {
    let (host, port, path) = split_url(url).ok_or("not an http://host[:port]/path URL")?;
    let stream = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // The connection task ends when `sender` is dropped or the peer closes.
    tokio::spawn(conn);
    let host_header = if port == 80 {
        host.clone()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let req = http::Request::post(path)
        .header(http::header::HOST, host_header)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "levee-alert")
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", resp.status()))
    }
}

#[cfg(test)]
pub(crate) mod tests;
