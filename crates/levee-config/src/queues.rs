//! `[queues.NAME]` and `[[event_sources]]`: durable queues declared in
//! levee.toml (more can be created at run time through the SQS API) and the
//! mappings that feed their messages to functions. Raw shapes and their
//! validation only; levee-queue owns queues at run time. Must never accept
//! a value outside the bounds stated here: levee-queue trusts them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::problems::{Found, KeyPath};
use crate::values::{checked_size, whole_seconds, RawSize};
use levee_common::name::QueueName;

/// Most queues in a config file (levee-queue's store limit).
const MAX_QUEUES: usize = 1000;
/// Most event-source mappings in a config file.
const MAX_EVENT_SOURCES: usize = 1000;
/// `visibility_timeout`: 0 to 12 h, default 30 s.
const MAX_VISIBILITY: Duration = Duration::from_secs(43_200);
/// `delay`: 0 to 15 min.
const MAX_DELAY: Duration = Duration::from_secs(900);
/// `retention`: 60 s to 14 days, default 4 days.
const MIN_RETENTION: Duration = Duration::from_secs(60);
const MAX_RETENTION: Duration = Duration::from_secs(14 * 86_400);
/// `max_message_size`: 1 KiB to 256 KiB, default 256 KiB.
const MIN_MESSAGE_SIZE: u64 = 1024;
const MAX_MESSAGE_SIZE: u64 = 256 * 1024;
/// `max_messages`: 1 to 10 M, default 100 000.
const MAX_MAX_MESSAGES: u64 = 10_000_000;
/// `max_receive_count`: 1 to 1000 (SQS's range).
const MAX_RECEIVE_COUNT: u32 = 1000;
/// `batch_size`: 1 to 10 000, default 10 (Lambda's standard-queue range).
const MAX_BATCH_SIZE: u32 = 10_000;
/// `batch_size` on a FIFO queue: 1 to 10 (Lambda's FIFO range).
const MAX_FIFO_BATCH_SIZE: u32 = 10;
/// `max_batching_window`: 0 to 300 s.
const MAX_BATCHING_WINDOW: Duration = Duration::from_secs(300);
/// `max_concurrency`: 2 to 1000, default 2 (Lambda's ScalingConfig range).
const MIN_CONCURRENCY: u32 = 2;
const MAX_CONCURRENCY: u32 = 1000;
const SECS_PER_DAY: u64 = 86_400;

/// A queue's dead-letter rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// A queue declared in the same file, not this one.
    pub queue: String,
    /// Receives before a message moves there; 1..=1000.
    pub max_receive_count: u32,
}

/// A FIFO queue's own keys (SQS's attributes of the same names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FifoConfig {
    /// `content_based_deduplication`: a send without a deduplication id
    /// uses the body's SHA-256.
    pub content_based_deduplication: bool,
    /// `deduplication_scope = "messageGroup"` (else `"queue"`).
    pub dedup_per_group: bool,
    /// `fifo_throughput_limit = "perMessageGroupId"` (else `"perQueue"`);
    /// only with `deduplication_scope = "messageGroup"`, as in SQS.
    pub throughput_per_group: bool,
}

/// One `[queues.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The table key: 1 to 80 of `[A-Za-z0-9_-]`, ending in `.fifo` for a
    /// FIFO queue.
    pub name: levee_common::name::QueueName,
    /// How long a received message stays hidden; 0..=12h, default 30 s.
    pub visibility_timeout: Duration,
    /// How long a new message stays hidden; 0..=15m, default 0.
    pub delay: Duration,
    /// How long a message is kept; 60s..=14d, default 4d.
    pub retention: Duration,
    /// Bytes; 1 KiB..=256 KiB, default 256 KiB.
    pub max_message_size: u64,
    /// Depth bound; 1..=10 000 000, default 100 000.
    pub max_messages: u64,
    pub dead_letter: Option<DeadLetter>,
    /// `Some` exactly when the name ends in `.fifo`.
    pub fifo: Option<FifoConfig>,
}

/// One `[[event_sources]]`: a queue feeding a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSourceConfig {
    pub queue: String,
    pub function: String,
    /// Messages per invocation; 1..=10 000, default 10.
    pub batch_size: u32,
    /// How long to gather a batch; 0..=300 s, default 0; ≥ 1 s when
    /// `batch_size` > 10 (Lambda's rule).
    pub max_batching_window: Duration,
    /// Concurrent pollers (each one invocation at a time); 2..=1000,
    /// default 2.
    pub max_concurrency: u32,
    /// Read `batchItemFailures` from the function's answer.
    pub report_batch_item_failures: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeadLetter {
    queue: String,
    #[serde(default = "default_receive_count")]
    max_receive_count: u32,
}

fn default_receive_count() -> u32 {
    10
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueue {
    visibility_timeout: Option<String>,
    delay: Option<String>,
    retention: Option<String>,
    max_message_size: Option<RawSize>,
    max_messages: Option<u64>,
    dead_letter: Option<RawDeadLetter>,
    content_based_deduplication: Option<bool>,
    deduplication_scope: Option<String>,
    fifo_throughput_limit: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEventSource {
    queue: String,
    function: String,
    batch_size: Option<u32>,
    max_batching_window: Option<String>,
    max_concurrency: Option<u32>,
    #[serde(default)]
    report_batch_item_failures: bool,
}

/// `key`'s value as whether it is `yes` (SQS's two spellings), or a problem.
fn either(key: &str, value: Option<&str>, yes: &str, no: &str, f: &mut Found) -> bool {
    match value {
        None => false,
        Some(v) if v == yes => true,
        Some(v) if v == no => false,
        Some(v) => {
            f.push(key, format!("must be \"{no}\" or \"{yes}\", not `{v}`"));
            false
        }
    }
}

/// The FIFO keys of a queue named `name`: refused on a standard queue.
fn fifo(name: &str, raw: &RawQueue, f: &mut Found) -> Option<FifoConfig> {
    if !name.ends_with(".fifo") {
        for (key, set) in [
            (
                "content_based_deduplication",
                raw.content_based_deduplication.is_some(),
            ),
            ("deduplication_scope", raw.deduplication_scope.is_some()),
            ("fifo_throughput_limit", raw.fifo_throughput_limit.is_some()),
        ] {
            if set {
                f.push(key, "only for FIFO queues, whose names end in .fifo");
            }
        }
        return None;
    }
    let dedup_per_group = either(
        "deduplication_scope",
        raw.deduplication_scope.as_deref(),
        "messageGroup",
        "queue",
        f,
    );
    let throughput_per_group = either(
        "fifo_throughput_limit",
        raw.fifo_throughput_limit.as_deref(),
        "perMessageGroupId",
        "perQueue",
        f,
    );
    if throughput_per_group && !dedup_per_group {
        f.push(
            "fifo_throughput_limit",
            "\"perMessageGroupId\" needs deduplication_scope = \"messageGroup\"",
        );
    }
    Some(FifoConfig {
        content_based_deduplication: raw.content_based_deduplication.unwrap_or(false),
        dedup_per_group,
        throughput_per_group,
    })
}

/// Validates one queue; `declared` are all queue names in the file (a
/// dead-letter queue must be one of them, and of the same type).
pub(crate) fn queue(
    name: &str,
    raw: RawQueue,
    declared: &[String],
    f: &mut Found,
) -> Option<QueueConfig> {
    let checked = f.named(QueueName::parse(name));
    let fifo = fifo(name, &raw, f);
    let visibility_timeout = whole_seconds(
        "visibility_timeout",
        raw.visibility_timeout.as_deref(),
        Duration::from_secs(30),
        Duration::ZERO,
        MAX_VISIBILITY,
        f,
    );
    let delay = whole_seconds(
        "delay",
        raw.delay.as_deref(),
        Duration::ZERO,
        Duration::ZERO,
        MAX_DELAY,
        f,
    );
    let retention = whole_seconds(
        "retention",
        raw.retention.as_deref(),
        Duration::from_secs(4 * SECS_PER_DAY),
        MIN_RETENTION,
        MAX_RETENTION,
        f,
    );
    let max_message_size = checked_size(
        "max_message_size",
        raw.max_message_size,
        MAX_MESSAGE_SIZE,
        MIN_MESSAGE_SIZE..=MAX_MESSAGE_SIZE,
        f,
    );
    let max_messages = match raw.max_messages {
        None => 100_000,
        Some(n) if (1..=MAX_MAX_MESSAGES).contains(&n) => n,
        Some(n) => {
            f.push(
                "max_messages",
                format!("must be between 1 and {MAX_MAX_MESSAGES}, not {n}"),
            );
            100_000
        }
    };
    let dead_letter = raw.dead_letter.and_then(|d| {
        let mut ok = true;
        if d.queue == name {
            f.push(
                KeyPath::of("dead_letter").key("queue"),
                "a queue can't be its own dead-letter queue",
            );
            ok = false;
        } else if !declared.contains(&d.queue) {
            f.push(
                KeyPath::of("dead_letter").key("queue"),
                format!("no queue `{}`; declare it as [queues.{}]", d.queue, d.queue),
            );
            ok = false;
        } else if d.queue.ends_with(".fifo") != name.ends_with(".fifo") {
            f.push(
                KeyPath::of("dead_letter").key("queue"),
                "a FIFO queue's dead-letter queue is a FIFO queue, a standard queue's is standard",
            );
            ok = false;
        }
        if !(1..=MAX_RECEIVE_COUNT).contains(&d.max_receive_count) {
            f.push(
                KeyPath::of("dead_letter").key("max_receive_count"),
                format!(
                    "must be between 1 and {MAX_RECEIVE_COUNT}, not {}",
                    d.max_receive_count
                ),
            );
            ok = false;
        }
        ok.then_some(DeadLetter {
            queue: d.queue,
            max_receive_count: d.max_receive_count,
        })
    });
    Some(QueueConfig {
        name: checked?,
        visibility_timeout,
        delay,
        retention,
        max_message_size,
        max_messages,
        dead_letter,
        fifo,
    })
}

/// Validates one mapping. `queues` are the validated queues; `functions`
/// maps each declared function to its timeout: a queue's visibility
/// timeout shorter than the function's timeout would hand a batch to a
/// second invocation while the first still runs, so it is refused (Lambda
/// refuses it too, and recommends 6×).
pub(crate) fn event_source(
    raw: RawEventSource,
    queues: &BTreeMap<String, QueueConfig>,
    functions: &BTreeMap<String, Duration>,
    found: &mut Found,
) -> Option<EventSourceConfig> {
    // The mapping is valid if checking it found nothing.
    let before = found.len();
    let queue = queues.get(&raw.queue);
    if queue.is_none() {
        found.push(
            "queue",
            format!(
                "no queue `{}`; declare it as [queues.{}]",
                raw.queue, raw.queue
            ),
        );
    }
    let timeout = functions.get(&raw.function);
    if timeout.is_none() {
        found.push(
            "function",
            format!("no function `{}` in [functions]", raw.function),
        );
    }
    let batch_size = raw.batch_size.unwrap_or(10);
    if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
        found.push(
            "batch_size",
            format!("must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}"),
        );
    }
    let max_batching_window = whole_seconds(
        "max_batching_window",
        raw.max_batching_window.as_deref(),
        Duration::ZERO,
        Duration::ZERO,
        MAX_BATCHING_WINDOW,
        found,
    );
    // A batch is in flight for its batching window and then the function's
    // run: a shorter visibility lets its first messages come back into the
    // same batch (AWS asks for the same, with 6x the timeout recommended).
    if let (Some(q), Some(t)) = (queue, timeout) {
        if q.visibility_timeout < *t + max_batching_window {
            found.push(
                "queue",
                format!(
                    "queue `{}` has visibility_timeout {:?}, less than function `{}`'s \
                     timeout {:?} plus max_batching_window {:?}: a batch would be \
                     redelivered while still gathering or running; set visibility_timeout \
                     to at least their sum (6x the timeout is recommended)",
                    q.name, q.visibility_timeout, raw.function, t, max_batching_window
                ),
            );
        }
    }
    // Lambda's rules for FIFO sources: at most 10 a batch, no window.
    let fifo = queue.is_some_and(|q| q.fifo.is_some());
    if fifo && batch_size > MAX_FIFO_BATCH_SIZE {
        found.push(
            "batch_size",
            format!("a FIFO queue's batches are at most {MAX_FIFO_BATCH_SIZE}, not {batch_size}"),
        );
    } else if fifo && !max_batching_window.is_zero() {
        found.push(
            "max_batching_window",
            "a FIFO queue's source has no batching window; leave it at 0s",
        );
    } else if batch_size > 10 && max_batching_window < Duration::from_secs(1) {
        found.push(
            "max_batching_window",
            "must be at least 1s when batch_size is above 10",
        );
    }
    let max_concurrency = raw.max_concurrency.unwrap_or(MIN_CONCURRENCY);
    if !(MIN_CONCURRENCY..=MAX_CONCURRENCY).contains(&max_concurrency) {
        found.push(
            "max_concurrency",
            format!(
                "must be between {MIN_CONCURRENCY} and {MAX_CONCURRENCY}, not {max_concurrency}"
            ),
        );
    }
    (found.len() == before).then_some(EventSourceConfig {
        queue: raw.queue,
        function: raw.function,
        batch_size,
        max_batching_window,
        max_concurrency,
        report_batch_item_failures: raw.report_batch_item_failures,
    })
}

/// Whether a config has too many queues.
pub(crate) fn too_many_queues(count: usize) -> Option<String> {
    (count > MAX_QUEUES).then(|| format!("at most {MAX_QUEUES} queues"))
}

/// Whether a config has too many event sources.
pub(crate) fn too_many_event_sources(count: usize) -> Option<String> {
    (count > MAX_EVENT_SOURCES).then(|| format!("at most {MAX_EVENT_SOURCES} event sources"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_queue(text: &str) -> RawQueue {
        toml_edit::de::from_str(text).expect("parses")
    }

    fn raw_source(text: &str) -> RawEventSource {
        toml_edit::de::from_str(text).expect("parses")
    }

    fn queue(name: &str, raw: RawQueue, declared: &[String]) -> (QueueConfig, Found) {
        let (queue, found) = Found::collect(|f| super::queue(name, raw, declared, f));
        (queue.expect("a valid name"), found)
    }

    fn event_source(
        raw: RawEventSource,
        queues: &BTreeMap<String, QueueConfig>,
        functions: &BTreeMap<String, Duration>,
    ) -> (Option<EventSourceConfig>, Found) {
        Found::collect(|f| super::event_source(raw, queues, functions, f))
    }

    #[test]
    fn a_full_queue_section_parses_with_days() {
        let declared = vec!["orders".to_string(), "orders-dlq".to_string()];
        let (q, found) = queue(
            "orders",
            raw_queue(
                r#"
visibility_timeout = "30s"
delay = "0s"
retention = "4d"
max_message_size = "256KiB"
max_messages = 100000
dead_letter = { queue = "orders-dlq", max_receive_count = 5 }
"#,
            ),
            &declared,
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(q.retention, Duration::from_secs(345_600));
        assert_eq!(q.max_message_size, 262_144);
        assert_eq!(
            q.dead_letter,
            Some(DeadLetter {
                queue: "orders-dlq".into(),
                max_receive_count: 5
            })
        );
        let (empty, found) = queue("orders-dlq", RawQueue::default(), &declared);
        assert!(found.is_empty());
        assert_eq!(empty.visibility_timeout, Duration::from_secs(30));
        assert_eq!(empty.max_messages, 100_000);
    }

    #[test]
    fn a_fifo_queue_takes_its_keys_and_its_sources_lambdas_limits() {
        let declared = vec!["pay.fifo".to_string(), "pay-dlq.fifo".to_string()];
        let (q, found) = queue(
            "pay.fifo",
            raw_queue(
                r#"
content_based_deduplication = true
deduplication_scope = "messageGroup"
fifo_throughput_limit = "perMessageGroupId"
dead_letter = { queue = "pay-dlq.fifo" }
"#,
            ),
            &declared,
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            q.fifo,
            Some(FifoConfig {
                content_based_deduplication: true,
                dedup_per_group: true,
                throughput_per_group: true
            })
        );
        let (plain, _) = queue("pay-dlq.fifo", RawQueue::default(), &declared);
        assert_eq!(plain.fifo, Some(FifoConfig::default()));
        let queues: BTreeMap<String, QueueConfig> = [("pay.fifo".to_string(), q)].into();
        let functions: BTreeMap<String, Duration> =
            [("worker".to_string(), Duration::from_secs(3))].into();
        let (es, found) = event_source(
            raw_source("queue = \"pay.fifo\"\nfunction = \"worker\"\nmax_batching_window = \"2s\""),
            &queues,
            &functions,
        );
        assert!(es.is_none());
        assert_eq!(found.keys(), ["max_batching_window"]);
    }

    // Bad names are pinned in tests/error_text.rs: a badly named entry is
    // not built at all.
    #[test]
    fn every_bad_queue_value_names_its_key() {
        let (_, found) = queue(
            "q",
            raw_queue(
                r#"
visibility_timeout = "13h"
delay = "16m"
retention = "15d"
max_message_size = "1MiB"
max_messages = 0
dead_letter = { queue = "bad.fifo", max_receive_count = 0 }
"#,
            ),
            &[],
        );
        assert_eq!(
            found.keys(),
            [
                "visibility_timeout",
                "delay",
                "retention",
                "max_message_size",
                "max_messages",
                "dead_letter.queue",
                "dead_letter.max_receive_count"
            ]
        );
        let (_, found) = queue(
            "a",
            raw_queue(r#"dead_letter = { queue = "missing" }"#),
            &["a".to_string()],
        );
        assert_eq!(found.keys(), ["dead_letter.queue"]);
    }

    #[test]
    fn event_sources_need_a_queue_a_function_and_enough_visibility() {
        let (q, _) = queue("orders", RawQueue::default(), &[]);
        let queues: BTreeMap<String, QueueConfig> = [("orders".to_string(), q)].into();
        let functions: BTreeMap<String, Duration> = [
            ("worker".to_string(), Duration::from_secs(3)),
            ("slow".to_string(), Duration::from_secs(60)),
        ]
        .into();
        let (es, found) = event_source(
            raw_source(
                r#"
queue = "orders"
function = "worker"
batch_size = 10
max_batching_window = "0s"
max_concurrency = 2
report_batch_item_failures = true
"#,
            ),
            &queues,
            &functions,
        );
        assert!(found.is_empty(), "{found:?}");
        let es = es.expect("valid");
        assert_eq!((es.batch_size, es.max_concurrency), (10, 2));
        assert!(es.report_batch_item_failures);
        let (es, found) = event_source(
            raw_source(
                r#"queue = "orders"
function = "slow""#,
            ),
            &queues,
            &functions,
        );
        assert!(es.is_none());
        assert_eq!(found.keys(), ["queue"]);
        assert!(found.messages()[0].contains("less than function `slow`'s timeout"));
        // Default visibility 30 s: 3 s of run plus 30 s of window is too long.
        let (es, found) = event_source(
            raw_source(
                r#"queue = "orders"
function = "worker"
max_batching_window = "30s""#,
            ),
            &queues,
            &functions,
        );
        assert!(es.is_none());
        assert!(
            found.messages()[0].contains("plus max_batching_window"),
            "{found:?}"
        );
        let (_, found) = event_source(
            raw_source(
                r#"
queue = "nope"
function = "ghost"
batch_size = 20000
max_concurrency = 1
"#,
            ),
            &queues,
            &functions,
        );
        assert_eq!(
            found.keys(),
            [
                "queue",
                "function",
                "batch_size",
                "max_batching_window",
                "max_concurrency"
            ]
        );
    }
}
