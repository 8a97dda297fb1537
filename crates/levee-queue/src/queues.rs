//! [`Queues`]: the store's public face.
//!
//! Owns: opening the data directory (lock file, migrations, the writer
//! thread), validation of every request before it reaches the writer, long
//! polling (bounded waiters woken by the writer after a commit) and the
//! read-only views (`list`, `peek`, `info`) on a separate reader
//! connection. Must never: let a second process open the same
//! `queues.db`, keep a long poll past 20 s, or admit more than
//! [`MAX_WAITERS_PER_QUEUE`] waiters on one queue (later ones get a short
//! poll: an immediate, possibly empty answer).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::db;
use crate::digest::{md5_of_attributes, md5_of_body};
use crate::error::QueueError;
use crate::model::{
    validate_message, MessageAttributes, NewMessage, PeekedMessage, QueueInfo, QueueSettings,
    ReceiveOptions, ReceivedMessage, SentMessage, MAX_RECEIVE_MESSAGES, MAX_VISIBILITY_SECS,
    MAX_WAIT_SECS,
};
use crate::writer::{CreateMode, Job, Op, Outcome, Prepared, Shared, Writer};
use levee_common::clock::{Clock, SystemClock};
use levee_common::sync::{lock, read, write};

/// File names inside the data directory.
pub const DB_FILE: &str = "queues.db";
pub const LOCK_FILE: &str = "queues.lock";
/// Jobs waiting for the writer; a full channel makes callers wait (async)
/// rather than grow memory.
const JOB_CHANNEL: usize = 4096;
/// Long polls held open per queue.
pub const MAX_WAITERS_PER_QUEUE: usize = 1024;
/// Most messages one `peek` returns.
pub const MAX_PEEK: usize = 1000;
/// Most entries in one batch call (SQS's batch limit is 10; the poller
/// deletes up to a whole event-source batch at once).
pub const MAX_BATCH_ENTRIES: usize = MAX_RECEIVE_MESSAGES;
/// Shortest re-check of a long poll waiting for a hidden message to become
/// visible, so a clock that moved backwards can't make it spin.
const MIN_RECHECK: Duration = Duration::from_millis(10);

/// Durable standard queues in `data_dir/queues.db`. `Send + Sync`; share
/// it with `Arc`. Dropping it finishes the writer's current batch and
/// closes the file. Every async method must run inside a tokio runtime.
#[derive(Debug)]
pub struct Queues {
    shared: Arc<Shared>,
    jobs: Option<mpsc::Sender<Job>>,
    reader: Mutex<Connection>,
    writer: Option<JoinHandle<()>>,
    /// The queues the config declares (as many as the config may, see
    /// `levee_config`): their settings belong to levee.toml, so the SQS API
    /// may use but not delete or reconfigure them.
    declared: RwLock<BTreeSet<String>>,
    /// Declared last: released after the writer has stopped.
    _lock: File,
}

impl Drop for Queues {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop after its last batch.
        self.jobs.take();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
    }
}

/// Counts this long poll among a queue's waiters until dropped.
#[derive(Debug)]
struct WaiterSlot(Arc<AtomicUsize>);

impl WaiterSlot {
    fn take(counter: &Arc<AtomicUsize>) -> Option<Self> {
        let taken = counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WAITERS_PER_QUEUE).then_some(n + 1)
            })
            .is_ok();
        taken.then(|| WaiterSlot(Arc::clone(counter)))
    }
}

impl Drop for WaiterSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn unexpected() -> QueueError {
    QueueError::corrupt("the writer answered a different request")
}

impl Queues {
    /// Opens (creating if needed) `data_dir/queues.db` with the wall clock.
    pub fn open(data_dir: &Path) -> Result<Queues, QueueError> {
        Self::open_with_clock(data_dir, Arc::new(SystemClock))
    }

    /// Like [`Queues::open`] with an injected clock for message times.
    pub fn open_with_clock(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Queues, QueueError> {
        std::fs::create_dir_all(data_dir)?;
        let lock_path = data_dir.join(LOCK_FILE);
        let Some(lock_file) = levee_store::sqlite::exclusive(&lock_path)? else {
            return Err(QueueError::Locked {
                path: lock_path.display().to_string(),
            });
        };
        let path = data_dir.join(DB_FILE);
        let mut conn = db::open_connection(&path)?;
        db::migrate(&mut conn)?;
        let shared = Arc::new(Shared {
            queues: RwLock::new(BTreeMap::new()),
            clock,
        });
        let writer = Writer::new(conn, Arc::clone(&shared))?;
        let reader = db::open_connection(&path)?;
        let (tx, rx) = mpsc::channel(JOB_CHANNEL);
        let handle = writer.spawn(rx)?;
        Ok(Queues {
            shared,
            jobs: Some(tx),
            reader: Mutex::new(reader),
            writer: Some(handle),
            declared: RwLock::default(),
            _lock: lock_file,
        })
    }

    async fn submit(&self, op: Op) -> Result<Outcome, QueueError> {
        let jobs = self.jobs.as_ref().ok_or(QueueError::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        jobs.send(Job { op, reply })
            .await
            .map_err(|_| QueueError::ShuttingDown)?;
        answer.await.map_err(|_| QueueError::ShuttingDown)?
    }

    async fn per_entry(&self, op: Op) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        match self.submit(op).await? {
            Outcome::PerEntry(v) => Ok(v),
            _ => Err(unexpected()),
        }
    }

    async fn done(&self, op: Op) -> Result<(), QueueError> {
        match self.submit(op).await? {
            Outcome::Done => Ok(()),
            _ => Err(unexpected()),
        }
    }

    // ---- queues ----

    /// SQS CreateQueue: creates `name`, or succeeds if it exists with
    /// exactly these settings; `Exists` if its settings differ.
    pub async fn create_queue(
        &self,
        name: &str,
        settings: QueueSettings,
    ) -> Result<(), QueueError> {
        self.done(Op::Create {
            name: name.to_string(),
            settings,
            mode: CreateMode::IfAbsent,
        })
        .await
    }

    /// Makes the config's queues exist with the config's settings (created
    /// when missing, updated when different) and makes them the declared
    /// set, which [`Queues::delete_queue`] and [`Queues::set_settings`]
    /// refuse; queues created at run time are left alone. Missing queues are
    /// first created without their dead-letter rule, so a rule may name any
    /// queue of the same config.
    pub async fn sync_config_queues(
        &self,
        queues: &[(String, QueueSettings)],
    ) -> Result<(), QueueError> {
        for (name, settings) in queues {
            if self.settings(name).is_none() {
                let plain = QueueSettings {
                    redrive: None,
                    ..settings.clone()
                };
                self.done(Op::Create {
                    name: name.clone(),
                    settings: plain,
                    mode: CreateMode::Upsert,
                })
                .await?;
            }
        }
        for (name, settings) in queues {
            self.done(Op::Create {
                name: name.clone(),
                settings: settings.clone(),
                mode: CreateMode::Upsert,
            })
            .await?;
        }
        *write(&self.declared) = queues.iter().map(|(name, _)| name.clone()).collect();
        Ok(())
    }

    /// Refuses to change a queue the config declares.
    fn undeclared(&self, name: &str) -> Result<(), QueueError> {
        let declared = read(&self.declared);
        match declared.contains(name) {
            true => Err(QueueError::Declared {
                name: name.to_string(),
            }),
            false => Ok(()),
        }
    }

    /// Replaces a queue's settings (SetQueueAttributes); not for a queue the
    /// config declares.
    pub async fn set_settings(
        &self,
        name: &str,
        settings: QueueSettings,
    ) -> Result<(), QueueError> {
        self.undeclared(name)?;
        self.done(Op::SetSettings {
            name: name.to_string(),
            settings,
        })
        .await
    }

    /// Deletes a queue and its messages; not a queue the config declares.
    pub async fn delete_queue(&self, name: &str) -> Result<(), QueueError> {
        self.undeclared(name)?;
        self.done(Op::DeleteQueue {
            name: name.to_string(),
        })
        .await
    }

    /// Deletes every message of a queue.
    pub async fn purge(&self, name: &str) -> Result<(), QueueError> {
        self.done(Op::Purge {
            name: name.to_string(),
        })
        .await
    }

    /// Moves up to `max` visible messages out of dead-letter queue `queue`:
    /// to `destination`, or each back to the queue it was dead-lettered
    /// from. Returns how many moved.
    pub async fn move_back(
        &self,
        queue: &str,
        destination: Option<&str>,
        max: usize,
    ) -> Result<usize, QueueError> {
        match self
            .submit(Op::MoveBack {
                queue: queue.to_string(),
                destination: destination.map(str::to_string),
                max,
            })
            .await?
        {
            Outcome::Moved(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }

    /// A queue's settings, if it exists.
    pub fn settings(&self, name: &str) -> Option<QueueSettings> {
        self.shared.entry(name).ok().map(|e| e.settings.clone())
    }

    /// Queue names, sorted.
    pub fn names(&self) -> Vec<String> {
        read(&self.shared.queues).keys().cloned().collect()
    }

    /// One queue's summary; `base_url` prefixes its URL.
    pub fn info(&self, name: &str, base_url: &str) -> Result<QueueInfo, QueueError> {
        let entry = self.shared.entry(name)?;
        let now = self.shared.clock.now_ms();
        let (approximate_messages, in_flight, delayed) =
            db::counts(&lock(&self.reader), entry.id, now)?;
        Ok(QueueInfo {
            name: entry.name.clone(),
            url: queue_url(base_url, &entry.name),
            approximate_messages,
            in_flight,
            delayed,
            settings: entry.settings.clone(),
            created_ms: entry.created_ms,
            modified_ms: entry.modified_ms,
        })
    }

    /// Every queue's summary, sorted by name (`levee queues list`). URLs use
    /// `base_url` (the admin listener's `http://host:port`).
    pub fn list(&self, base_url: &str) -> Result<Vec<QueueInfo>, QueueError> {
        let mut out = Vec::new();
        for name in self.names() {
            match self.info(&name, base_url) {
                Ok(info) => out.push(info),
                // Deleted between the two reads.
                Err(QueueError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Up to `max` (≤ [`MAX_PEEK`]) unexpired messages in delivery order,
    /// without changing their visibility or receive counts.
    pub fn peek(&self, name: &str, max: usize) -> Result<Vec<PeekedMessage>, QueueError> {
        let entry = self.shared.entry(name)?;
        let now = self.shared.clock.now_ms();
        db::peek(&lock(&self.reader), entry.id, now, max.min(MAX_PEEK))
    }

    // ---- messages ----

    /// Sends one message (the edge's async routes). The body must be UTF-8
    /// text SQS allows; `Full` means the queue is at `max_messages` (answer
    /// 503). Returns once the message is committed.
    pub async fn send(
        &self,
        queue: &str,
        body: Bytes,
        attributes: MessageAttributes,
    ) -> Result<SentMessage, QueueError> {
        let body =
            // Takes the buffer back without a copy when the Bytes is unique.
            String::from_utf8(Vec::from(body)).map_err(|_| QueueError::InvalidMessageContents {
                message: "the message body is not UTF-8 text".into(),
            })?;
        let msg = NewMessage {
            body,
            attributes,
            ..NewMessage::default()
        };
        self.send_batch(queue, vec![msg])
            .await?
            .pop()
            .unwrap_or_else(|| Err(unexpected()))
    }

    /// Sends up to [`MAX_BATCH_ENTRIES`] messages in one commit; each entry
    /// succeeds or fails on its own (invalid, or the queue filled up).
    pub async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Result<SentMessage, QueueError>>, QueueError> {
        if messages.len() > MAX_BATCH_ENTRIES {
            return Err(QueueError::invalid(format!(
                "at most {MAX_BATCH_ENTRIES} messages per batch"
            )));
        }
        let entry = self.shared.entry(queue)?;
        let mut results: Vec<Option<Result<SentMessage, QueueError>>> = Vec::new();
        let mut prepared = Vec::new();
        for m in messages {
            match validate_message(&entry.name, &entry.settings, &m) {
                Ok(_) => {
                    let sent = SentMessage {
                        message_id: uuid::Uuid::new_v4().to_string(),
                        md5_of_body: md5_of_body(&m.body),
                        md5_of_attributes: md5_of_attributes(&m.attributes),
                        sequence_number: None,
                    };
                    prepared.push(Prepared { message: m, sent });
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut committed = if prepared.is_empty() {
            Vec::new().into_iter()
        } else {
            match self
                .submit(Op::Send {
                    queue: queue.to_string(),
                    messages: prepared,
                })
                .await?
            {
                Outcome::Sent(v) => v.into_iter(),
                _ => return Err(unexpected()),
            }
        };
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| committed.next().unwrap_or_else(|| Err(unexpected()))))
            .collect())
    }

    /// Receives up to `max_messages`, long-polling up to `wait` (≤ 20 s)
    /// for the first one. Received messages are hidden for the visibility
    /// timeout and their receive counts go up.
    pub async fn receive(
        &self,
        queue: &str,
        options: ReceiveOptions,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if !(1..=MAX_RECEIVE_MESSAGES).contains(&options.max_messages) {
            return Err(QueueError::invalid(format!(
                "MaxNumberOfMessages must be between 1 and {MAX_RECEIVE_MESSAGES}"
            )));
        }
        if options
            .visibility_timeout
            .is_some_and(|v| v > MAX_VISIBILITY_SECS)
        {
            return Err(QueueError::invalid(format!(
                "VisibilityTimeout must be between 0 and {MAX_VISIBILITY_SECS}"
            )));
        }
        let entry = self.shared.entry(queue)?;
        let wait = options
            .wait
            .min(Duration::from_secs(u64::from(MAX_WAIT_SECS)));
        let deadline = tokio::time::Instant::now() + wait;
        let slot = if wait.is_zero() {
            None
        } else {
            WaiterSlot::take(&entry.waiters)
        };
        loop {
            // Registered before the receive runs, so a send committed
            // between the empty answer and the wait still wakes us.
            let notified = entry.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (messages, next_visible_ms) = match self
                .submit(Op::Receive {
                    queue: queue.to_string(),
                    max_messages: options.max_messages,
                    max_bytes: options.max_bytes,
                    visibility: options.visibility_timeout,
                })
                .await?
            {
                Outcome::Received {
                    messages,
                    next_visible_ms,
                } => (messages, next_visible_ms),
                _ => return Err(unexpected()),
            };
            let now = tokio::time::Instant::now();
            if !messages.is_empty() || slot.is_none() || now >= deadline {
                return Ok(messages);
            }
            let mut until = deadline;
            if let Some(at) = next_visible_ms {
                let ms = at.saturating_sub(self.shared.clock.now_ms());
                let due = Duration::from_millis(u64::try_from(ms).unwrap_or(0)).max(MIN_RECHECK);
                until = until.min(now + due);
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Deletes by receipt handle, each entry on its own. A stale handle or
    /// an already deleted message succeeds without effect (as in SQS); a
    /// malformed one or another queue's is `ReceiptHandleIsInvalid`.
    pub async fn delete_messages(
        &self,
        queue: &str,
        handles: Vec<String>,
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        if handles.len() > MAX_BATCH_ENTRIES {
            return Err(QueueError::invalid(format!(
                "at most {MAX_BATCH_ENTRIES} entries per batch"
            )));
        }
        self.per_entry(Op::Delete {
            queue: queue.to_string(),
            handles,
        })
        .await
    }

    /// One [`Queues::delete_messages`] entry.
    pub async fn delete_message(&self, queue: &str, handle: &str) -> Result<(), QueueError> {
        self.delete_messages(queue, vec![handle.to_string()])
            .await?
            .pop()
            .unwrap_or_else(|| Err(unexpected()))
    }

    /// Sets in-flight messages' remaining visibility to `secs` (≤ 12 h) from
    /// now; `MessageNotInflight` for a message that is visible, deleted or
    /// was received again since.
    pub async fn change_visibility(
        &self,
        queue: &str,
        entries: Vec<(String, u32)>,
    ) -> Result<Vec<Result<(), QueueError>>, QueueError> {
        if entries.len() > MAX_BATCH_ENTRIES {
            return Err(QueueError::invalid(format!(
                "at most {MAX_BATCH_ENTRIES} entries per batch"
            )));
        }
        if entries.iter().any(|(_, s)| *s > MAX_VISIBILITY_SECS) {
            return Err(QueueError::invalid(format!(
                "VisibilityTimeout must be between 0 and {MAX_VISIBILITY_SECS}"
            )));
        }
        self.per_entry(Op::ChangeVisibility {
            queue: queue.to_string(),
            entries,
        })
        .await
    }
}

/// `{base}/000000000000/{name}`.
pub fn queue_url(base_url: &str, name: &str) -> String {
    format!(
        "{}/{}/{name}",
        base_url.trim_end_matches('/'),
        crate::model::ACCOUNT_ID
    )
}
