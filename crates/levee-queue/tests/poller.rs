//! Event-source pollers against a fake in-memory invoker.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use levee_queue::{
    start_pollers, EventSource, InvokeResult, Invoker, MessageAttributes, NewMessage,
    QueueSettings, Queues,
};
use serde_json::Value;

/// Answers from a script (then `Ok(empty)`), recording every event.
#[derive(Debug, Default)]
struct FakeInvoker {
    script: Mutex<VecDeque<InvokeResult>>,
    events: Mutex<Vec<Value>>,
}

impl FakeInvoker {
    fn scripted(results: Vec<InvokeResult>) -> Arc<Self> {
        Arc::new(FakeInvoker {
            script: Mutex::new(results.into()),
            events: Mutex::default(),
        })
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().expect("lock").clone()
    }

    fn bodies(&self) -> Vec<Vec<String>> {
        self.events()
            .iter()
            .map(|e| {
                e["Records"]
                    .as_array()
                    .expect("records")
                    .iter()
                    .map(|r| r["body"].as_str().expect("body").to_string())
                    .collect()
            })
            .collect()
    }
}

impl Invoker for FakeInvoker {
    fn invoke(
        &self,
        function: &str,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = InvokeResult> + Send + '_>> {
        assert_eq!(function, "worker");
        let event: Value = serde_json::from_slice(&payload).expect("event json");
        self.events.lock().expect("lock").push(event);
        let next = self.script.lock().expect("lock").pop_front();
        Box::pin(async move { next.unwrap_or(InvokeResult::Ok(Bytes::new())) })
    }
}

fn source(batch_size: usize, window_ms: u64, report: bool) -> EventSource {
    EventSource {
        queue: "in".into(),
        function: "worker".into(),
        batch_size,
        max_batching_window: Duration::from_millis(window_ms),
        max_concurrency: 1,
        report_batch_item_failures: report,
    }
}

async fn setup(visibility: u32, bodies: &[&str]) -> (tempfile::TempDir, Arc<Queues>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Arc::new(Queues::open(dir.path()).expect("opens"));
    let s = QueueSettings {
        visibility_timeout: visibility,
        ..QueueSettings::default()
    };
    q.create_queue("in", s).await.expect("created");
    let batch = bodies
        .iter()
        .map(|b| NewMessage {
            body: b.to_string(),
            ..NewMessage::default()
        })
        .collect();
    q.send_batch("in", batch).await.expect("sent");
    (dir, q)
}

/// Waits until `cond` holds, up to 10 s.
async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 10 s");
}

fn depth(q: &Queues) -> u64 {
    let i = q.info("in", "").expect("info");
    i.approximate_messages + i.in_flight + i.delayed
}

#[tokio::test]
async fn batches_are_bounded_by_batch_size_and_deleted_on_success() {
    let (_d, q) = setup(30, &["1", "2", "3", "4", "5"]).await;
    let inv = FakeInvoker::scripted(vec![]);
    let handle = start_pollers(Arc::clone(&q), vec![source(2, 0, false)], inv.clone());
    until(|| depth(&q) == 0).await;
    handle.shutdown().await;
    let sizes: Vec<usize> = inv.bodies().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    let first = &inv.events()[0]["Records"][0];
    assert_eq!(first["eventSource"], "aws:sqs");
    assert_eq!(first["attributes"]["ApproximateReceiveCount"], "1");
}

#[tokio::test]
async fn the_batching_window_gathers_late_messages() {
    let (_d, q) = setup(30, &["early"]).await;
    let inv = FakeInvoker::scripted(vec![]);
    let handle = start_pollers(Arc::clone(&q), vec![source(10, 500, false)], inv.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    q.send("in", Bytes::from_static(b"late"), MessageAttributes::new())
        .await
        .expect("sent");
    until(|| depth(&q) == 0).await;
    handle.shutdown().await;
    assert_eq!(
        inv.bodies(),
        vec![vec!["early".to_string(), "late".to_string()]]
    );
}

#[tokio::test]
async fn partial_failures_keep_only_the_reported_messages() {
    let (_d, q) = setup(1, &["ok", "bad"]).await;
    // The ids are random; answer after seeing the first event.
    let inv = Arc::new(PartialInvoker::default());
    let handle = start_pollers(Arc::clone(&q), vec![source(10, 0, true)], inv.clone());
    until(|| inv.calls.lock().expect("lock").len() >= 2).await;
    handle.shutdown().await;
    let calls = inv.calls.lock().expect("lock").clone();
    assert_eq!(calls[0], vec!["ok".to_string(), "bad".to_string()]);
    // Only "bad" came back, after the 1 s visibility timeout.
    assert_eq!(calls[1], vec!["bad".to_string()]);
}

/// Reports the record whose body is "bad" as failed, once; then succeeds.
#[derive(Debug, Default)]
struct PartialInvoker {
    calls: Mutex<Vec<Vec<String>>>,
}

impl Invoker for PartialInvoker {
    fn invoke(
        &self,
        _function: &str,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = InvokeResult> + Send + '_>> {
        let event: Value = serde_json::from_slice(&payload).expect("json");
        let records = event["Records"].as_array().expect("records").clone();
        let mut calls = self.calls.lock().expect("lock");
        calls.push(
            records
                .iter()
                .map(|r| r["body"].as_str().expect("body").to_string())
                .collect(),
        );
        let answer = if calls.len() == 1 {
            let bad = records
                .iter()
                .find(|r| r["body"] == "bad")
                .map(|r| r["messageId"].clone())
                .unwrap_or_default();
            serde_json::json!({ "batchItemFailures": [{ "itemIdentifier": bad }] }).to_string()
        } else {
            String::new()
        };
        Box::pin(async move { InvokeResult::Ok(Bytes::from(answer)) })
    }
}

#[tokio::test]
async fn throttled_batches_are_retried_not_dropped() {
    let (_d, q) = setup(30, &["t"]).await;
    let inv = FakeInvoker::scripted(vec![InvokeResult::Throttled]);
    let handle = start_pollers(Arc::clone(&q), vec![source(10, 0, false)], inv.clone());
    // Back-off is 1 s, far below the 30 s visibility timeout: the retry
    // proves the poller made the batch visible again.
    until(|| depth(&q) == 0).await;
    handle.shutdown().await;
    assert_eq!(
        inv.bodies(),
        vec![vec!["t".to_string()], vec!["t".to_string()]]
    );
    assert_eq!(
        inv.events()[1]["Records"][0]["attributes"]["ApproximateReceiveCount"],
        "2"
    );
}

#[tokio::test]
async fn function_errors_redeliver_after_the_visibility_timeout() {
    let (_d, q) = setup(1, &["e"]).await;
    let inv = FakeInvoker::scripted(vec![InvokeResult::FunctionError]);
    let started = std::time::Instant::now();
    let handle = start_pollers(Arc::clone(&q), vec![source(10, 0, true)], inv.clone());
    until(|| depth(&q) == 0).await;
    handle.shutdown().await;
    assert_eq!(inv.bodies().len(), 2);
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn unreadable_answers_delete_nothing() {
    let (_d, q) = setup(30, &["x"]).await;
    let inv = FakeInvoker::scripted(vec![InvokeResult::Ok(Bytes::from_static(b"not json"))]);
    let handle = start_pollers(Arc::clone(&q), vec![source(10, 0, true)], inv.clone());
    until(|| !inv.events().is_empty()).await;
    handle.shutdown().await;
    assert_eq!(depth(&q), 1, "kept for redelivery");
}

#[tokio::test]
async fn a_message_that_reappears_within_the_window_is_delivered_once_and_deleted() {
    // Visibility 1 s, window 2.5 s: the message comes back twice while the
    // batch is still gathering.
    let (_d, q) = setup(1, &["only"]).await;
    let inv = FakeInvoker::scripted(vec![]);
    let handle = start_pollers(Arc::clone(&q), vec![source(10, 2500, false)], inv.clone());
    until(|| !inv.events().is_empty()).await;
    until(|| depth(&q) == 0).await;
    handle.shutdown().await;
    assert_eq!(inv.bodies(), vec![vec!["only".to_string()]], "one record");
    let count = &inv.events()[0]["Records"][0]["attributes"]["ApproximateReceiveCount"];
    assert_ne!(count, "1", "the newest copy, whose handle can delete it");
}
