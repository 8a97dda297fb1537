//! The glue between durable queues and functions: config into queue
//! settings and event-source mappings, and the [`Invoker`] the pollers call,
//! which goes through the edge's [`Invoke`] like every other invocation (a
//! function at its concurrency limit, or over budget, is `Throttled`, so the
//! batch waits in the queue instead of being dropped).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use levee_config::{Config, EventSourceConfig, QueueConfig};
use levee_queue::model::{FifoSettings, QueueSettings, Redrive};
use levee_queue::{EventSource, InvokeResult, Invoker};
use levee_runtime::{InvokeRequest, Scheduler};

use crate::invocation::{Fault, Invoke, Tags};

/// `[queues.NAME]` as the queue store's settings.
pub fn settings(q: &QueueConfig) -> QueueSettings {
    let secs = |d: std::time::Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
    QueueSettings {
        visibility_timeout: secs(q.visibility_timeout),
        delay: secs(q.delay),
        retention: secs(q.retention),
        max_message_size: u32::try_from(q.max_message_size).unwrap_or(u32::MAX),
        receive_wait: 0,
        max_messages: q.max_messages,
        redrive: q.dead_letter.as_ref().map(|d| Redrive {
            dead_letter: d.queue.clone(),
            max_receive_count: d.max_receive_count,
        }),
        fifo: q.fifo.as_ref().map(|f| FifoSettings {
            content_based_dedup: f.content_based_deduplication,
            dedup_per_group: f.dedup_per_group,
            throughput_per_group: f.throughput_per_group,
        }),
        ..QueueSettings::default()
    }
}

/// Every configured queue, by name.
pub fn config_queues(config: &Config) -> Vec<(String, QueueSettings)> {
    config
        .queues
        .values()
        .map(|q| (q.name.to_string(), settings(q)))
        .collect()
}

/// `[[event_sources]]` as poller mappings.
pub fn event_sources(sources: &[EventSourceConfig]) -> Vec<EventSource> {
    sources
        .iter()
        .map(|e| EventSource {
            queue: e.queue.clone(),
            function: e.function.clone(),
            batch_size: e.batch_size as usize,
            max_batching_window: e.max_batching_window,
            max_concurrency: e.max_concurrency as usize,
            report_batch_item_failures: e.report_batch_item_failures,
        })
        .collect()
}

/// Invokes functions for the pollers.
#[derive(Debug)]
pub struct FunctionInvoker {
    scheduler: Arc<Scheduler>,
    invoker: Arc<dyn Invoke>,
}

impl FunctionInvoker {
    /// The functions of `scheduler`, run through `invoker`.
    pub fn new(scheduler: Arc<Scheduler>, invoker: Arc<dyn Invoke>) -> Arc<Self> {
        Arc::new(Self { scheduler, invoker })
    }
}

impl Invoker for FunctionInvoker {
    fn invoke(
        &self,
        function: &str,
        payload: Bytes,
    ) -> Pin<Box<dyn Future<Output = InvokeResult> + Send + '_>> {
        let function = function.to_owned();
        Box::pin(async move {
            let Some(handle) = self.scheduler.function(&function) else {
                return InvokeResult::Unavailable;
            };
            let request = InvokeRequest {
                request_id: Arc::from(uuid::Uuid::new_v4().to_string()),
                payload,
                client_context: None,
                client: None,
            };
            match self.invoker.invoke(handle, request, Tags::default()).await {
                Ok(out) => InvokeResult::Ok(out.payload),
                Err(failure) => match failure.fault() {
                    Fault::Limit => InvokeResult::Throttled,
                    Fault::Platform => InvokeResult::Unavailable,
                    Fault::Function => InvokeResult::FunctionError,
                },
            }
        })
    }
}
