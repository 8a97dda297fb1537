//! Event-source pollers: queue → function, the way Lambda's SQS mapping
//! works.
//!
//! Owns: per mapping, `max_concurrency` poller tasks; each long-polls a
//! batch (up to `batch_size` messages, 6 MB-safe in bytes, gathering for up
//! to `max_batching_window`), invokes the function through [`Invoker`] and
//! settles the batch: success deletes (all, or all but the reported
//! failures), a function error leaves the batch to reappear after its
//! visibility timeout (and, after `max_receive_count`, the dead-letter
//! queue), a throttle or unavailable function makes it visible again after
//! a back-off of 1 s doubling to 30 s. Must never: delete a message the
//! function did not clearly process, drop a batch on a throttle, or poll
//! after shutdown.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::QueueError;
use crate::event::{batch_outcome, sqs_event, BatchOutcome};
use crate::model::{ReceiveOptions, ReceivedMessage, MAX_RECEIVE_MESSAGES, MAX_WAIT_SECS};
use crate::queues::Queues;

/// Body bytes one batch may carry. Lambda's synchronous payload limit is
/// 6 MB; 4 MiB of bodies leaves room for the record envelope and JSON
/// escaping of typical text.
pub const MAX_BATCH_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Longest batching window (Lambda's).
pub const MAX_BATCHING_WINDOW: Duration = Duration::from_secs(300);
/// Poller tasks per mapping (Lambda's MaximumConcurrency range is 2..=1000).
pub const MAX_POLLERS: usize = 1000;
/// Back-off after a throttle, an unavailable function or a store error.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Calls a function synchronously. Implemented by the edge
/// (`levee_edge::queueing`, through billing and the scheduler); this crate
/// only depends on the trait.
pub trait Invoker: Send + Sync + 'static {
    fn invoke(
        &self,
        function: &str,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = InvokeResult> + Send + '_>>;
}

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeResult {
    /// The function's answer.
    Ok(Bytes),
    /// The function failed (threw, timed out, crashed).
    FunctionError,
    /// At its concurrency limit or over budget: back off and retry, never
    /// drop.
    Throttled,
    /// It can't run now (unknown, disabled, shutting down): treated like a
    /// throttle.
    Unavailable,
}

/// One event-source mapping, validated by the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSource {
    pub queue: String,
    pub function: String,
    /// 1..=10 000.
    pub batch_size: usize,
    /// 0..=300 s.
    pub max_batching_window: Duration,
    /// Poller tasks, 1..=1000.
    pub max_concurrency: usize,
    pub report_batch_item_failures: bool,
}

/// The running pollers. Dropping it stops them at once (in-flight batches
/// reappear after their visibility timeout); [`PollerHandle::shutdown`]
/// lets each finish its current invocation first.
#[derive(Debug)]
pub struct PollerHandle {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl PollerHandle {
    /// Stops polling and waits for in-flight invocations to settle.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for PollerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts every mapping's pollers on the current tokio runtime.
pub fn start_pollers(
    queues: Arc<Queues>,
    mappings: Vec<EventSource>,
    invoker: Arc<dyn Invoker>,
) -> PollerHandle {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for m in mappings {
        let source = Arc::new(EventSource {
            batch_size: m.batch_size.clamp(1, MAX_RECEIVE_MESSAGES),
            max_batching_window: m.max_batching_window.min(MAX_BATCHING_WINDOW),
            max_concurrency: m.max_concurrency.clamp(1, MAX_POLLERS),
            ..m
        });
        for _ in 0..source.max_concurrency {
            let poller = Poller {
                queues: Arc::clone(&queues),
                source: Arc::clone(&source),
                invoker: Arc::clone(&invoker),
                stop: stopped.clone(),
                backoff: BACKOFF_START,
            };
            tasks.push(tokio::spawn(poller.run()));
        }
    }
    PollerHandle { stop, tasks }
}

struct Poller {
    queues: Arc<Queues>,
    source: Arc<EventSource>,
    invoker: Arc<dyn Invoker>,
    stop: watch::Receiver<bool>,
    backoff: Duration,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("source", &self.source)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

impl Poller {
    async fn run(mut self) {
        while !*self.stop.borrow() {
            let mut stop = self.stop.clone();
            let batch = tokio::select! {
                b = self.gather() => b,
                _ = stop.changed() => return,
            };
            match batch {
                Ok(batch) if batch.is_empty() => {}
                Ok(batch) => self.deliver(batch).await,
                Err(e) => {
                    // Queue deleted or store trouble: keep trying, slowly.
                    tracing::warn!(queue = %self.source.queue, error = %e, "event source can't poll");
                    self.pause().await;
                }
            }
        }
    }

    /// Long-polls for a first message, then keeps gathering until the batch
    /// is full, its bytes reach [`MAX_BATCH_BODY_BYTES`] or the batching
    /// window (started by the first message) closes.
    async fn gather(&self) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max_wait = Duration::from_secs(u64::from(MAX_WAIT_SECS));
        let mut batch: Vec<ReceivedMessage> = Vec::new();
        // Position in `batch` of each message id (≤ batch_size entries).
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut bytes = 0usize;
        let mut window_end = None;
        loop {
            let wait = match window_end {
                None => max_wait,
                Some(end) => {
                    let left = end - tokio::time::Instant::now().min(end);
                    if left.is_zero() {
                        break;
                    }
                    left.min(max_wait)
                }
            };
            let got = self
                .queues
                .receive(
                    &self.source.queue,
                    ReceiveOptions {
                        max_messages: self.source.batch_size - batch.len(),
                        max_bytes: MAX_BATCH_BODY_BYTES.saturating_sub(bytes),
                        visibility_timeout: None,
                        wait,
                    },
                )
                .await;
            let got = match got {
                Ok(g) => g,
                // Keep what was already received: it is in flight.
                Err(e) if batch.is_empty() => return Err(e),
                Err(_) => break,
            };
            for m in got {
                // A message seen again (its visibility ran out while the
                // window was open) replaces its stale copy: one record per
                // message, with the receipt handle that can still delete it.
                match seen.get(&m.message_id) {
                    Some(&i) => batch[i] = m,
                    None => {
                        bytes = bytes.saturating_add(m.body.len());
                        seen.insert(m.message_id.clone(), batch.len());
                        batch.push(m);
                    }
                }
            }
            if batch.is_empty() {
                // A long poll that timed out empty: poll again.
                return Ok(batch);
            }
            if batch.len() >= self.source.batch_size
                || bytes >= MAX_BATCH_BODY_BYTES
                || self.source.max_batching_window.is_zero()
            {
                break;
            }
            window_end.get_or_insert_with(|| {
                tokio::time::Instant::now() + self.source.max_batching_window
            });
        }
        Ok(batch)
    }

    /// Delivers one batch and deletes what succeeded. On a FIFO queue a
    /// failed message holds the rest of its group, as Lambda does: none of
    /// the group's later messages in the batch is deleted, so the group
    /// comes back in order.
    async fn deliver(&mut self, batch: Vec<ReceivedMessage>) {
        let payload = sqs_event(&self.source.queue, &batch);
        let result = self.invoker.invoke(&self.source.function, payload).await;
        let done: Vec<String> = match result {
            InvokeResult::Ok(answer) => {
                self.backoff = BACKOFF_START;
                if self.source.report_batch_item_failures {
                    let ids: HashSet<&str> = batch.iter().map(|m| m.message_id.as_str()).collect();
                    match batch_outcome(&answer, &ids) {
                        BatchOutcome::AllSucceeded => handles(&batch, |_| true),
                        BatchOutcome::Failed(failed) => succeeded_in_order(&batch, &failed),
                        BatchOutcome::AllFailed => Vec::new(),
                    }
                } else {
                    handles(&batch, |_| true)
                }
            }
            // The batch reappears after its visibility timeout.
            InvokeResult::FunctionError => Vec::new(),
            InvokeResult::Throttled | InvokeResult::Unavailable => {
                let secs = u32::try_from(self.backoff.as_secs()).unwrap_or(30);
                let entries = batch
                    .iter()
                    .map(|m| (m.receipt_handle.clone(), secs))
                    .collect();
                // If this fails the batch still reappears after its
                // visibility timeout; nothing is lost.
                let _ = self
                    .queues
                    .change_visibility(&self.source.queue, entries)
                    .await;
                self.pause().await;
                return;
            }
        };
        if !done.is_empty() {
            if let Err(e) = self.queues.delete_messages(&self.source.queue, done).await {
                // Undeleted messages are delivered again: at-least-once.
                tracing::warn!(queue = %self.source.queue, error = %e, "could not delete a processed batch");
            }
        }
    }

    /// Sleeps for the current back-off (or until stopped) and doubles it.
    async fn pause(&mut self) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(self.backoff) => {}
            _ = stop.changed() => {}
        }
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

fn handles(batch: &[ReceivedMessage], keep: impl Fn(&ReceivedMessage) -> bool) -> Vec<String> {
    batch
        .iter()
        .filter(|m| keep(m))
        .map(|m| m.receipt_handle.clone())
        .collect()
}

/// The receipt handles to delete after a partial failure: every message
/// not in `failed`, except, on a FIFO queue, those after a failed message of
/// their own group (the batch is in each group's order).
fn succeeded_in_order(batch: &[ReceivedMessage], failed: &HashSet<String>) -> Vec<String> {
    let mut held: HashSet<&str> = HashSet::new();
    let mut done = Vec::new();
    for m in batch {
        let group = m.group_id.as_deref();
        if failed.contains(&m.message_id) {
            held.extend(group);
        } else if !group.is_some_and(|g| held.contains(g)) {
            done.push(m.receipt_handle.clone());
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, group: Option<&str>) -> ReceivedMessage {
        ReceivedMessage {
            message_id: id.into(),
            receipt_handle: format!("rh-{id}"),
            group_id: group.map(str::to_owned),
            ..ReceivedMessage::default()
        }
    }

    #[test]
    fn a_failed_fifo_message_holds_the_rest_of_its_group_only() {
        let batch = [
            msg("a1", Some("A")),
            msg("b1", Some("B")),
            msg("a2", Some("A")),
            msg("a3", Some("A")),
            msg("b2", Some("B")),
            msg("s1", None),
        ];
        let failed: HashSet<String> = ["a2".to_string()].into();
        assert_eq!(
            succeeded_in_order(&batch, &failed),
            ["rh-a1", "rh-b1", "rh-b2", "rh-s1"]
        );
    }
}
