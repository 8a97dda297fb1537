//! The writer thread: the only code that changes `queues.db`.
//!
//! Owns: group commit — it takes the first pending job, drains up to
//! [`MAX_JOBS_PER_COMMIT`] more that arrived meanwhile, applies them all in
//! one transaction, commits, and only then answers each caller and wakes
//! long-pollers. Also owns the per-queue depth counters (only this thread
//! changes depths, so they need no lock), redrive to dead-letter queues,
//! and the expiry sweep. Must never: answer a caller before the commit that
//! carries its change, leave a failed transaction open, or panic on a
//! malformed receipt handle (an ordinary `ReceiptHandleIsInvalid`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::db::{count_u32, decode_attributes, encode_attributes};
use crate::error::{quote, QueueError};
use crate::model::queue_arn;
use crate::model::{
    sequence_number, validate_queue_name, NewMessage, QueueSettings, ReceivedMessage, SentMessage,
    DEDUP_WINDOW_MS, MAX_QUEUES,
};
use levee_common::clock::Clock;
use levee_common::sync::{read, write};

/// Most jobs folded into one transaction: amortises the commit over many
/// concurrent senders.
pub(crate) const MAX_JOBS_PER_COMMIT: usize = 512;
/// Most rows (messages sent, received, deleted or changed) folded into one
/// transaction: a poller's job may touch up to 10,000, so jobs alone do not
/// bound how long one commit holds every caller in it. A single job over
/// this still runs, alone.
pub(crate) const MAX_ROWS_PER_COMMIT: usize = 5_000;
/// How often expired messages are deleted.
const SWEEP_INTERVAL_MS: i64 = 1000;
/// Most expired rows one sweep deletes, so a sweep after a long pause does
/// not stall the writer; the rest go on the next one.
const SWEEP_LIMIT: i64 = 10_000;
/// Expired FIFO deduplication ids deleted per sweep: above the highest FIFO
/// send rate measured here (~90,000 msg/s), so the table never holds more
/// than the last five minutes of sends plus one second.
const DEDUP_SWEEP_LIMIT: i64 = 200_000;
/// Query rounds one receive may take when messages are being moved to a
/// dead-letter queue instead of delivered.
const MAX_RECEIVE_ROUNDS: usize = 8;
/// Most message groups one FIFO receive looks at, from where the last one
/// stopped: a receive costs two index lookups per group, so one that finds
/// every group in flight stays cheap however many there are; the next
/// receive goes on from there.
const MAX_GROUPS_PER_RECEIVE: usize = 256;
/// Longest receipt handle accepted (ours are under 80 characters).
const MAX_RECEIPT_LEN: usize = 1024;

/// A message a receive may take: (seq, size in bytes, receive count).
type Candidate = (i64, i64, i64);

/// A queue as the rest of the crate sees it. Replaced whole (never mutated)
/// when its settings change; `notify` and `waiters` carry over.
#[derive(Debug)]
pub(crate) struct QueueEntry {
    pub id: i64,
    pub name: String,
    pub settings: QueueSettings,
    pub created_ms: i64,
    pub modified_ms: i64,
    /// Woken after a commit that made messages visible in this queue.
    pub notify: Arc<Notify>,
    /// Long polls waiting on this queue.
    pub waiters: Arc<AtomicUsize>,
}

/// What the writer shares with readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub queues: RwLock<BTreeMap<String, Arc<QueueEntry>>>,
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    pub fn entry(&self, name: &str) -> Result<Arc<QueueEntry>, QueueError> {
        read(&self.queues)
            .get(name)
            .cloned()
            .ok_or_else(|| QueueError::not_found(name))
    }
}

/// A message ready to insert: validated, id and digests computed by the
/// caller (so that work runs on the callers' threads, not this one).
#[derive(Debug)]
pub(crate) struct Prepared {
    pub message: NewMessage,
    pub sent: SentMessage,
}

/// How `Create` treats an existing queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CreateMode {
    /// SQS CreateQueue: fine if identical, else `Exists`.
    IfAbsent,
    /// Config sync: create or update.
    Upsert,
}

#[derive(Debug)]
pub(crate) enum Op {
    Send {
        queue: String,
        messages: Vec<Prepared>,
    },
    Receive {
        queue: String,
        max_messages: usize,
        max_bytes: usize,
        visibility: Option<u32>,
    },
    Delete {
        queue: String,
        handles: Vec<String>,
    },
    ChangeVisibility {
        queue: String,
        entries: Vec<(String, u32)>,
    },
    Create {
        name: String,
        settings: QueueSettings,
        mode: CreateMode,
    },
    SetSettings {
        name: String,
        settings: QueueSettings,
    },
    DeleteQueue {
        name: String,
    },
    Purge {
        name: String,
    },
    /// Up to `max` visible messages of dead-letter queue `queue` back to
    /// `destination`, or each to the queue it was dead-lettered from.
    MoveBack {
        queue: String,
        destination: Option<String>,
        max: usize,
    },
}

impl Op {
    /// Admin steps run in their own transaction: they change the queue map
    /// that later jobs in the same drain read.
    fn is_admin(&self) -> bool {
        matches!(
            self,
            Op::Create { .. } | Op::SetSettings { .. } | Op::DeleteQueue { .. } | Op::Purge { .. }
        )
    }

    /// Rows the job may touch, for [`MAX_ROWS_PER_COMMIT`].
    fn rows(&self) -> usize {
        match self {
            Op::Send { messages, .. } => messages.len(),
            Op::Receive { max_messages, .. } => *max_messages,
            Op::Delete { handles, .. } => handles.len(),
            Op::ChangeVisibility { entries, .. } => entries.len(),
            Op::MoveBack { max, .. } => *max,
            _ => 1,
        }
    }
}

#[derive(Debug)]
pub(crate) enum Outcome {
    Sent(Vec<Result<SentMessage, QueueError>>),
    Received {
        messages: Vec<ReceivedMessage>,
        /// When the next hidden message becomes visible (unix ms), if any;
        /// only computed when nothing was received.
        next_visible_ms: Option<i64>,
    },
    PerEntry(Vec<Result<(), QueueError>>),
    /// Messages a move moved.
    Moved(usize),
    Done,
}

/// Puts `first` and then jobs from `next` into `batch` while both the job
/// count and the row budget allow; returns the job that did not fit.
fn fill<F: FnMut() -> Option<Job>>(batch: &mut Vec<Job>, first: Job, mut next: F) -> Option<Job> {
    let mut rows = first.op.rows();
    batch.push(first);
    while batch.len() < MAX_JOBS_PER_COMMIT {
        let job = next()?;
        if rows.saturating_add(job.op.rows()) > MAX_ROWS_PER_COMMIT {
            return Some(job);
        }
        rows += job.op.rows();
        batch.push(job);
    }
    None
}

#[derive(Debug)]
pub(crate) struct Job {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Outcome, QueueError>>,
}

/// `queue_id.seq.token`, base64url: opaque to clients, checked on use.
pub(crate) fn encode_receipt(queue_id: i64, seq: i64, token: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{queue_id}.{seq}.{token}"))
}

pub(crate) fn decode_receipt(handle: &str) -> Option<(i64, i64, i64)> {
    if handle.is_empty() || handle.len() > MAX_RECEIPT_LEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(handle.trim()).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    let mut parts = text.split('.');
    let q = parts.next()?.parse().ok()?;
    let s = parts.next()?.parse().ok()?;
    let t: i64 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && t > 0).then_some((q, s, t))
}

/// A fresh receipt token: random, positive, never 0 (0 = never received).
fn fresh_token() -> i64 {
    let (hi, _) = uuid::Uuid::new_v4().as_u64_pair();
    i64::try_from(hi >> 1).unwrap_or(1) | 1
}

fn secs_ms(secs: u32) -> i64 {
    i64::from(secs) * 1000
}

#[derive(Debug)]
pub(crate) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    /// Rows per queue id, expired-but-unswept included.
    depth: HashMap<i64, u64>,
    last_sweep_ms: i64,
    /// Per FIFO queue id, the group the last receive stopped at: receives
    /// go round the groups, so none starves behind the others. At most one
    /// a queue.
    fifo_cursor: HashMap<i64, String>,
}

/// Answers waiting for the commit, and queues to wake after it.
#[derive(Debug, Default)]
struct Pending {
    replies: Vec<(oneshot::Sender<Result<Outcome, QueueError>>, Outcome)>,
    wake: Wake,
    in_tx: bool,
}

/// Queues to wake after a commit, each with how many messages became
/// visible in it: one waiter is woken per message, not every waiter per
/// send (500 long polls woken by each single send cut sends tenfold).
type Wake = Vec<(Arc<Notify>, usize)>;

impl Writer {
    pub fn new(conn: Connection, shared: Arc<Shared>) -> Result<Self, QueueError> {
        let mut w = Writer {
            conn,
            shared,
            depth: HashMap::new(),
            last_sweep_ms: i64::MIN,
            fifo_cursor: HashMap::new(),
        };
        w.load_queues()?;
        w.reload_depths()?;
        Ok(w)
    }

    pub fn spawn(self, jobs: mpsc::Receiver<Job>) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("levee-queue-writer".into())
            .spawn(move || self.run(jobs))
    }

    fn load_queues(&mut self) -> Result<(), QueueError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, settings, created_ms, modified_ms FROM queues")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut map = BTreeMap::new();
        for row in rows {
            let (id, name, settings, created_ms, modified_ms) = row?;
            let settings: QueueSettings = serde_json::from_str(&settings)
                .map_err(|e| QueueError::corrupt(format!("settings of queue {name}: {e}")))?;
            map.insert(
                name.clone(),
                Arc::new(QueueEntry {
                    id,
                    name,
                    settings,
                    created_ms,
                    modified_ms,
                    notify: Arc::new(Notify::new()),
                    waiters: Arc::new(AtomicUsize::new(0)),
                }),
            );
        }
        *write(&self.shared.queues) = map;
        Ok(())
    }

    /// Recounts from disk: at start, and after a rolled-back transaction
    /// whose in-memory changes must be forgotten.
    fn reload_depths(&mut self) -> Result<(), QueueError> {
        let mut stmt = self
            .conn
            .prepare("SELECT queue_id, count(*) FROM messages GROUP BY queue_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        let mut depth = HashMap::new();
        for row in rows {
            let (q, n) = row?;
            depth.insert(q, u64::try_from(n).unwrap_or(0));
        }
        self.depth = depth;
        Ok(())
    }

    fn depth_add(&mut self, queue_id: i64, delta: i64) {
        let d = self.depth.entry(queue_id).or_insert(0);
        *d = d.saturating_add_signed(delta);
    }

    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(MAX_JOBS_PER_COMMIT);
        // Ends when every sender (the `Queues`) is gone.
        // A job that would overflow the row budget waits for the next batch.
        let mut held: Option<Job> = None;
        loop {
            let Some(first) = held.take().or_else(|| jobs.blocking_recv()) else {
                break;
            };
            held = fill(&mut batch, first, || jobs.try_recv().ok());
            self.process(&mut batch);
        }
    }

    fn process(&mut self, batch: &mut Vec<Job>) {
        let now = self.shared.clock.now_ms();
        if now.saturating_sub(self.last_sweep_ms) >= SWEEP_INTERVAL_MS {
            self.last_sweep_ms = now;
            // A failed sweep is retried on the next interval; expired rows
            // are invisible to every query meanwhile.
            if self.sweep(now, None).is_err() {
                let _ = self.reload_depths();
            }
        }
        let mut pending = Pending::default();
        for job in batch.drain(..) {
            if job.op.is_admin() {
                self.commit(&mut pending);
                let result = self.admin(job.op, now);
                let _ = job.reply.send(result);
                continue;
            }
            if !pending.in_tx {
                if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
                    let _ = job.reply.send(Err(e.into()));
                    continue;
                }
                pending.in_tx = true;
            }
            match self.apply(job.op, now, &mut pending.wake) {
                Ok(Ok(outcome)) => pending.replies.push((job.reply, outcome)),
                Ok(Err(e)) => {
                    // A refusal decided before any write: nothing to undo.
                    let _ = job.reply.send(Err(e));
                }
                Err(e) => {
                    let e = QueueError::from(e);
                    let _ = job.reply.send(Err(e.clone()));
                    self.abort(&mut pending, e);
                }
            }
        }
        self.commit(&mut pending);
    }

    /// Commits the open transaction, then answers and wakes.
    fn commit(&mut self, pending: &mut Pending) {
        if !pending.in_tx {
            return;
        }
        match self.conn.execute_batch("COMMIT") {
            Ok(()) => {
                pending.in_tx = false;
                for (reply, outcome) in pending.replies.drain(..) {
                    let _ = reply.send(Ok(outcome));
                }
                let mut counts: Vec<(Arc<Notify>, usize)> = Vec::new();
                for (n, k) in pending.wake.drain(..) {
                    match counts.iter_mut().find(|(m, _)| Arc::ptr_eq(m, &n)) {
                        Some((_, total)) => *total = total.saturating_add(k),
                        None => counts.push((n, k)),
                    }
                }
                for (n, k) in counts {
                    // More wakes than waiters would only be stored permits.
                    for _ in 0..k.min(crate::queues::MAX_WAITERS_PER_QUEUE) {
                        n.notify_one();
                    }
                }
            }
            Err(e) => self.abort(pending, e.into()),
        }
    }

    /// Rolls back and tells everyone in the transaction it failed.
    fn abort(&mut self, pending: &mut Pending, e: QueueError) {
        let _ = self.conn.execute_batch("ROLLBACK");
        pending.in_tx = false;
        pending.wake.clear();
        for (reply, _) in pending.replies.drain(..) {
            let _ = reply.send(Err(e.clone()));
        }
        let _ = self.reload_depths();
    }

    /// Deletes expired rows (of one queue, or all), at most [`SWEEP_LIMIT`].
    fn sweep(&mut self, now: i64, queue_id: Option<i64>) -> Result<usize, rusqlite::Error> {
        let mut stmt = self.conn.prepare_cached(
            "DELETE FROM messages WHERE seq IN (
                 SELECT seq FROM messages WHERE expires_at <= ?1
                 AND (?2 IS NULL OR queue_id = ?2) LIMIT ?3)
             RETURNING queue_id",
        )?;
        let gone: Vec<i64> = stmt
            .query_map(params![now, queue_id, SWEEP_LIMIT], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        for q in &gone {
            self.depth_add(*q, -1);
        }
        self.conn
            .prepare_cached(
                "DELETE FROM dedup WHERE rowid IN (
                     SELECT rowid FROM dedup WHERE expires_ms <= ?1 LIMIT ?2)",
            )?
            .execute(params![now, DEDUP_SWEEP_LIMIT])?;
        Ok(gone.len())
    }

    /// A data job inside the open transaction. The outer error is a storage
    /// failure (the transaction is lost); the inner one a refusal.
    fn apply(
        &mut self,
        op: Op,
        now: i64,
        wake: &mut Wake,
    ) -> Result<Result<Outcome, QueueError>, rusqlite::Error> {
        let queue_name = match &op {
            Op::Send { queue, .. }
            | Op::Receive { queue, .. }
            | Op::Delete { queue, .. }
            | Op::ChangeVisibility { queue, .. }
            | Op::MoveBack { queue, .. } => queue.clone(),
            _ => return Ok(Err(QueueError::corrupt("admin step in a data batch"))),
        };
        let entry = match self.shared.entry(&queue_name) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        };
        Ok(Ok(match op {
            Op::Send { messages, .. } => self.send(&entry, messages, now, wake)?,
            Op::Receive {
                max_messages,
                max_bytes,
                visibility,
                ..
            } => self.receive(&entry, max_messages, max_bytes, visibility, now, wake)?,
            Op::Delete { handles, .. } => self.delete(&entry, &handles, now)?,
            Op::ChangeVisibility { entries, .. } => {
                self.change_visibility(&entry, &entries, now, wake)?
            }
            Op::MoveBack {
                destination, max, ..
            } => {
                let destination = match destination.map(|d| self.shared.entry(&d)).transpose() {
                    Ok(d) => d,
                    Err(e) => return Ok(Err(e)),
                };
                self.move_back(&entry, destination.as_deref(), max, now, wake)?
            }
            _ => Outcome::Done,
        }))
    }

    /// Moves visible messages out of `from` (oldest first), each to
    /// `destination` or to the queue it was dead-lettered from; a message
    /// whose way back is gone, or whose target is full, stays.
    fn move_back(
        &mut self,
        from: &QueueEntry,
        destination: Option<&QueueEntry>,
        max: usize,
        now: i64,
        wake: &mut Wake,
    ) -> Result<Outcome, rusqlite::Error> {
        let rows: Vec<(i64, Option<i64>, i64)> = self
            .conn
            .prepare_cached(
                "SELECT seq, dead_letter_source, sent_ms FROM messages
                 WHERE queue_id = ?1 AND visible_at <= ?2 ORDER BY seq LIMIT ?3",
            )?
            .query_map(params![from.id, now, max as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        let by_id: HashMap<i64, Arc<QueueEntry>> = read(&self.shared.queues)
            .values()
            .map(|e| (e.id, Arc::clone(e)))
            .collect();
        let mut moved = 0;
        for (seq, source, sent_ms) in rows {
            let target = match destination {
                Some(d) => by_id.get(&d.id),
                None => source.and_then(|id| by_id.get(&id)),
            };
            let Some(target) = target.filter(|t| t.id != from.id) else {
                continue;
            };
            if self.depth.get(&target.id).copied().unwrap_or(0) >= target.settings.max_messages {
                continue;
            }
            self.conn
                .prepare_cached(
                    "UPDATE messages SET queue_id = ?2, visible_at = ?3, receive_count = 0,
                         first_receive_ms = NULL, receipt = 0, dead_letter_source = NULL,
                         expires_at = ?4
                     WHERE seq = ?1",
                )?
                .execute(params![
                    seq,
                    target.id,
                    now,
                    sent_ms.saturating_add(secs_ms(target.settings.retention))
                ])?;
            self.depth_add(from.id, -1);
            self.depth_add(target.id, 1);
            wake.push((Arc::clone(&target.notify), 1));
            moved += 1;
        }
        Ok(Outcome::Moved(moved))
    }

    fn send(
        &mut self,
        entry: &QueueEntry,
        messages: Vec<Prepared>,
        now: i64,
        wake: &mut Wake,
    ) -> Result<Outcome, rusqlite::Error> {
        let s = &entry.settings;
        let mut swept = false;
        let mut results = Vec::with_capacity(messages.len());
        let mut visible_now = 0usize;
        for p in messages {
            let mut depth = self.depth.get(&entry.id).copied().unwrap_or(0);
            if depth >= s.max_messages && !swept {
                // Expired rows still count until swept; sweep this queue
                // before refusing.
                swept = true;
                self.sweep(now, Some(entry.id))?;
                depth = self.depth.get(&entry.id).copied().unwrap_or(0);
            }
            if depth >= s.max_messages {
                results.push(Err(QueueError::Full {
                    name: entry.name.clone(),
                    max: s.max_messages,
                }));
                continue;
            }
            // FIFO: a deduplication id seen in the last five minutes
            // answers with the message it first sent, and sends nothing.
            let dedup = s.fifo.as_ref().map(|f| {
                let id = p
                    .message
                    .dedup_id
                    .clone()
                    .unwrap_or_else(|| crate::digest::sha256_hex(&p.message.body));
                let scope = match f.dedup_per_group {
                    true => p.message.group_id.clone().unwrap_or_default(),
                    false => String::new(),
                };
                (scope, id)
            });
            if let Some((scope, id)) = &dedup {
                let seen: Option<(String, i64)> = self
                    .conn
                    .prepare_cached(
                        "SELECT message_id, seq FROM dedup
                         WHERE queue_id = ?1 AND scope = ?2 AND dedup_id = ?3 AND expires_ms > ?4",
                    )?
                    .query_row(params![entry.id, scope, id, now], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((message_id, seq)) = seen {
                    results.push(Ok(SentMessage {
                        message_id,
                        sequence_number: Some(sequence_number(seq)),
                        ..p.sent
                    }));
                    continue;
                }
            }
            let delay = p.message.delay.unwrap_or(s.delay);
            visible_now += usize::from(delay == 0);
            self.conn
                .prepare_cached(
                    "INSERT INTO messages (queue_id, message_id, body, attributes, md5_body,
                     md5_attributes, sent_ms, visible_at, expires_at, group_id, dedup_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![
                    entry.id,
                    p.sent.message_id,
                    p.message.body,
                    encode_attributes(&p.message.attributes),
                    p.sent.md5_of_body,
                    p.sent.md5_of_attributes,
                    now,
                    now.saturating_add(secs_ms(delay)),
                    now.saturating_add(secs_ms(s.retention)),
                    p.message.group_id,
                    dedup.as_ref().map(|(_, id)| id),
                ])?;
            let mut sent = p.sent;
            if let Some((scope, id)) = &dedup {
                let seq = self.conn.last_insert_rowid();
                self.conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO dedup (queue_id, scope, dedup_id, message_id, seq, expires_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        entry.id,
                        scope,
                        id,
                        sent.message_id,
                        seq,
                        now.saturating_add(DEDUP_WINDOW_MS)
                    ])?;
                sent.sequence_number = Some(sequence_number(seq));
            }
            self.depth_add(entry.id, 1);
            results.push(Ok(sent));
        }
        if visible_now > 0 {
            wake.push((Arc::clone(&entry.notify), visible_now));
        }
        Ok(Outcome::Sent(results))
    }

    fn receive(
        &mut self,
        entry: &QueueEntry,
        max_messages: usize,
        max_bytes: usize,
        visibility: Option<u32>,
        now: i64,
        wake: &mut Wake,
    ) -> Result<Outcome, rusqlite::Error> {
        let visibility_ms = secs_ms(visibility.unwrap_or(entry.settings.visibility_timeout));
        let dead_letter = entry.settings.redrive.as_ref().and_then(|r| {
            let dlq = read(&self.shared.queues).get(&r.dead_letter).cloned()?;
            (dlq.id != entry.id).then_some((dlq, r.max_receive_count))
        });
        let mut out: Vec<ReceivedMessage> = Vec::new();
        let mut bytes = 0usize;
        'rounds: for _ in 0..MAX_RECEIVE_ROUNDS {
            let want = max_messages.saturating_sub(out.len());
            if want == 0 {
                break;
            }
            // Sizes first, bodies only for the messages that fit: a big
            // batch of big messages must not be read into memory whole
            // before the byte budget cuts it.
            let candidates = match entry.settings.fifo {
                None => self.ready(entry.id, want, now)?,
                Some(_) => self.ready_in_groups(entry.id, want, now)?,
            };
            let fetched = candidates.len();
            for (seq, size, receive_count) in candidates {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                let redrive = dead_letter
                    .as_ref()
                    .filter(|(_, max_count)| receive_count >= i64::from(*max_count));
                if redrive.is_none() && !out.is_empty() && bytes.saturating_add(size) > max_bytes {
                    break 'rounds;
                }
                let row = self.row(seq)?;
                if let Some((dlq, _)) = redrive {
                    self.redrive(entry, dlq, &row, now, visibility_ms, wake)?;
                    continue;
                }
                bytes = bytes.saturating_add(size);
                let token = fresh_token();
                let mut stmt = self.conn.prepare_cached(
                    "UPDATE messages SET visible_at = ?2, receive_count = receive_count + 1,
                         first_receive_ms = coalesce(first_receive_ms, ?3), receipt = ?4
                     WHERE seq = ?1",
                )?;
                stmt.execute(params![
                    row.seq,
                    now.saturating_add(visibility_ms),
                    now,
                    token
                ])?;
                let attributes = match decode_attributes(row.attributes) {
                    Ok(a) => a,
                    // A row we wrote ourselves failed to parse: deliver the
                    // body rather than wedge the queue, and say so.
                    Err(e) => {
                        tracing::warn!(queue = %entry.name, error = %e, "dropping unreadable message attributes");
                        Default::default()
                    }
                };
                let sequence = row.group_id.is_some().then(|| sequence_number(row.seq));
                out.push(ReceivedMessage {
                    group_id: row.group_id,
                    dedup_id: row.dedup_id,
                    sequence_number: sequence,
                    message_id: row.message_id,
                    receipt_handle: encode_receipt(entry.id, row.seq, token),
                    body: row.body,
                    md5_of_body: row.md5_body,
                    md5_of_attributes: if attributes.is_empty() {
                        None
                    } else {
                        row.md5_attributes
                    },
                    attributes,
                    sent_ms: row.sent_ms,
                    receive_count: count_u32(row.receive_count.saturating_add(1)),
                    first_receive_ms: row.first_receive_ms.unwrap_or(now),
                });
            }
            if fetched < want {
                break;
            }
        }
        let next_visible_ms = if out.is_empty() {
            self.conn
                .prepare_cached(
                    "SELECT min(visible_at) FROM messages WHERE queue_id = ?1 AND visible_at > ?2",
                )?
                .query_row(params![entry.id, now], |r| r.get(0))?
        } else {
            None
        };
        Ok(Outcome::Received {
            messages: out,
            next_visible_ms,
        })
    }

    /// Up to `want` visible messages of a standard queue, oldest first, as
    /// (seq, size, receive count).
    fn ready(
        &self,
        queue_id: i64,
        want: usize,
        now: i64,
    ) -> Result<Vec<Candidate>, rusqlite::Error> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, octet_length(body) + coalesce(octet_length(attributes), 0), receive_count
             FROM messages
             WHERE queue_id = ?1 AND visible_at <= ?2 AND expires_at > ?2
             ORDER BY visible_at, seq LIMIT ?3",
        )?;
        let limit = i64::try_from(want).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![queue_id, now, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        rows.collect()
    }

    /// Up to `want` messages of a FIFO queue, group by group from where
    /// the last receive stopped: each group that has none in flight gives
    /// its messages in order, as many as fit, up to its first one not yet
    /// visible (SQS also returns a group's messages together). Looks at
    /// most at [`MAX_GROUPS_PER_RECEIVE`] groups.
    fn ready_in_groups(
        &mut self,
        queue_id: i64,
        want: usize,
        now: i64,
    ) -> Result<Vec<Candidate>, rusqlite::Error> {
        let mut next_group = self.conn.prepare_cached(
            "SELECT group_id FROM messages INDEXED BY messages_fifo_groups
             WHERE queue_id = ?1 AND group_id > ?2 ORDER BY group_id LIMIT 1",
        )?;
        let mut in_flight = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_group
                 WHERE queue_id = ?1 AND group_id = ?2 AND visible_at > ?3 AND receipt != 0)",
        )?;
        let mut in_order = self.conn.prepare_cached(
            "SELECT seq, octet_length(body) + coalesce(octet_length(attributes), 0), receive_count,
                 visible_at, expires_at
             FROM messages INDEXED BY messages_fifo_groups
             WHERE queue_id = ?1 AND group_id = ?2 ORDER BY seq LIMIT ?3",
        )?;
        let start = self.fifo_cursor.get(&queue_id).cloned().unwrap_or_default();
        let mut cursor = start.clone();
        let mut wrapped = false;
        let mut out: Vec<Candidate> = Vec::new();
        for _ in 0..MAX_GROUPS_PER_RECEIVE {
            if out.len() >= want {
                break;
            }
            let group: Option<String> = next_group
                .query_row(params![queue_id, cursor], |r| r.get(0))
                .optional()?;
            let group = match group {
                Some(g) if wrapped && g > start => break,
                Some(g) => g,
                // Past the last group: once round to the first.
                None if !wrapped && !start.is_empty() => {
                    wrapped = true;
                    cursor.clear();
                    continue;
                }
                None => break,
            };
            cursor.clone_from(&group);
            if in_flight.query_row(params![queue_id, group, now], |r| r.get::<_, bool>(0))? {
                continue;
            }
            let limit = i64::try_from(want - out.len()).unwrap_or(i64::MAX);
            let rows = in_order.query_map(params![queue_id, group, limit], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?),
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?;
            for row in rows {
                let (candidate, visible_at, expires_at) = row?;
                // An expired message is gone (the sweep deletes it); one not
                // yet visible holds the rest of its group behind it.
                if expires_at <= now {
                    continue;
                }
                if visible_at > now {
                    break;
                }
                out.push(candidate);
            }
        }
        self.fifo_cursor.insert(queue_id, cursor);
        Ok(out)
    }

    /// One message's row, by its sequence number.
    fn row(&self, seq: i64) -> Result<Row, rusqlite::Error> {
        self.conn
            .prepare_cached(
                "SELECT seq, message_id, body, attributes, md5_body, md5_attributes,
                     sent_ms, receive_count, first_receive_ms, group_id, dedup_id
                 FROM messages WHERE seq = ?1",
            )?
            .query_row(params![seq], |r| {
                Ok(Row {
                    seq: r.get(0)?,
                    message_id: r.get(1)?,
                    body: r.get(2)?,
                    attributes: r.get(3)?,
                    md5_body: r.get(4)?,
                    md5_attributes: r.get(5)?,
                    sent_ms: r.get(6)?,
                    receive_count: r.get(7)?,
                    first_receive_ms: r.get(8)?,
                    group_id: r.get(9)?,
                    dedup_id: r.get(10)?,
                })
            })
    }

    /// Moves a message that reached its receive limit to the dead-letter
    /// queue. If that queue is full the message stays where it is, hidden
    /// for one visibility timeout, and is tried again then (never dropped).
    fn redrive(
        &mut self,
        from: &QueueEntry,
        dlq: &QueueEntry,
        row: &Row,
        now: i64,
        visibility_ms: i64,
        wake: &mut Wake,
    ) -> Result<(), rusqlite::Error> {
        let depth = self.depth.get(&dlq.id).copied().unwrap_or(0);
        if depth >= dlq.settings.max_messages {
            tracing::warn!(queue = %from.name, dead_letter = %dlq.name, "dead-letter queue full; message kept");
            self.conn
                .prepare_cached("UPDATE messages SET visible_at = ?2 WHERE seq = ?1")?
                .execute(params![row.seq, now.saturating_add(visibility_ms)])?;
            return Ok(());
        }
        // As in SQS, expiry stays based on the original send time.
        self.conn
            .prepare_cached(
                "UPDATE messages SET queue_id = ?2, visible_at = ?3, receive_count = 0,
                     first_receive_ms = NULL, receipt = 0, expires_at = ?4,
                     dead_letter_source = ?5
                 WHERE seq = ?1",
            )?
            .execute(params![
                row.seq,
                dlq.id,
                now,
                row.sent_ms.saturating_add(secs_ms(dlq.settings.retention)),
                from.id
            ])?;
        self.depth_add(from.id, -1);
        self.depth_add(dlq.id, 1);
        wake.push((Arc::clone(&dlq.notify), 1));
        Ok(())
    }

    fn delete(
        &mut self,
        entry: &QueueEntry,
        handles: &[String],
        now: i64,
    ) -> Result<Outcome, rusqlite::Error> {
        let mut results = Vec::with_capacity(handles.len());
        for h in handles {
            let Some((q, seq, token)) = decode_receipt(h).filter(|(q, _, _)| *q == entry.id) else {
                results.push(Err(QueueError::bad_receipt(h)));
                continue;
            };
            // A stale handle (the message was received again since) or an
            // already deleted message succeeds without deleting, as in SQS.
            // On a FIFO queue a handle past its visibility timeout is
            // refused: the group may already be another consumer's.
            let fifo = entry.settings.fifo.is_some();
            let n = self
                .conn
                .prepare_cached(
                    "DELETE FROM messages WHERE seq = ?1 AND queue_id = ?2 AND receipt = ?3
                         AND (?4 = 0 OR visible_at > ?5)",
                )?
                .execute(params![seq, q, token, fifo, now])?;
            self.depth_add(entry.id, -i64::try_from(n).unwrap_or(0));
            let expired = fifo
                && n == 0
                && self
                    .conn
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM messages
                             WHERE seq = ?1 AND queue_id = ?2 AND receipt = ?3)",
                    )?
                    .query_row(params![seq, q, token], |r| r.get::<_, bool>(0))?;
            results.push(match expired {
                true => Err(QueueError::ReceiptHandleExpired { handle: quote(h) }),
                false => Ok(()),
            });
        }
        Ok(Outcome::PerEntry(results))
    }

    fn change_visibility(
        &mut self,
        entry: &QueueEntry,
        entries: &[(String, u32)],
        now: i64,
        wake: &mut Wake,
    ) -> Result<Outcome, rusqlite::Error> {
        let mut results = Vec::with_capacity(entries.len());
        for (h, secs) in entries {
            let Some((q, seq, token)) = decode_receipt(h).filter(|(q, _, _)| *q == entry.id) else {
                results.push(Err(QueueError::bad_receipt(h)));
                continue;
            };
            // As in SQS, a handle still current may change its message's
            // visibility after the timeout ran out; a deleted message or
            // one received again since may not.
            let n = self
                .conn
                .prepare_cached(
                    "UPDATE messages SET visible_at = ?4
                     WHERE seq = ?1 AND queue_id = ?2 AND receipt = ?3",
                )?
                .execute(params![seq, q, token, now.saturating_add(secs_ms(*secs))])?;
            if n == 0 {
                results.push(Err(QueueError::MessageNotInflight { handle: quote(h) }));
            } else {
                if *secs == 0 {
                    wake.push((Arc::clone(&entry.notify), 1));
                }
                results.push(Ok(()));
            }
        }
        Ok(Outcome::PerEntry(results))
    }

    /// An admin step in its own transaction; the queue map changes only
    /// after it commits.
    fn admin(&mut self, op: Op, now: i64) -> Result<Outcome, QueueError> {
        match op {
            Op::Create {
                name,
                settings,
                mode,
            } => self.create(name, settings, mode, now),
            Op::SetSettings { name, settings } => {
                let entry = self.shared.entry(&name)?;
                self.check_settings(&name, &settings)?;
                self.conn.execute(
                    "UPDATE queues SET settings = ?2, modified_ms = ?3 WHERE id = ?1",
                    params![entry.id, settings_json(&settings)?, now],
                )?;
                self.replace(&entry, settings, now);
                Ok(Outcome::Done)
            }
            Op::DeleteQueue { name } => {
                let entry = self.shared.entry(&name)?;
                let tx = self.conn.transaction()?;
                tx.execute("DELETE FROM messages WHERE queue_id = ?1", [entry.id])?;
                tx.execute("DELETE FROM dedup WHERE queue_id = ?1", [entry.id])?;
                tx.execute("DELETE FROM queues WHERE id = ?1", [entry.id])?;
                tx.commit()?;
                write(&self.shared.queues).remove(&name);
                self.depth.remove(&entry.id);
                self.fifo_cursor.remove(&entry.id);
                // Long polls on it re-check and find it gone.
                entry.notify.notify_waiters();
                Ok(Outcome::Done)
            }
            Op::Purge { name } => {
                let entry = self.shared.entry(&name)?;
                self.conn
                    .execute("DELETE FROM messages WHERE queue_id = ?1", [entry.id])?;
                self.depth.insert(entry.id, 0);
                Ok(Outcome::Done)
            }
            _ => Err(QueueError::corrupt("data step run as admin")),
        }
    }

    fn check_settings(&self, name: &str, settings: &QueueSettings) -> Result<(), QueueError> {
        validate_queue_name(name)?;
        settings.validate()?;
        if let Some(r) = &settings.redrive {
            // In AWS's form, the policy as stored standing for what was sent.
            let bad = |reason: &str| {
                let policy = format!(
                    "{{\"deadLetterTargetArn\":\"{}\",\"maxReceiveCount\":{}}}",
                    queue_arn(&r.dead_letter),
                    r.max_receive_count
                );
                QueueError::invalid_value("RedrivePolicy", &policy, reason)
            };
            if r.dead_letter == name {
                return Err(bad("A queue can't be its own dead-letter queue."));
            }
            let fifo_dlq = read(&self.shared.queues)
                .get(&r.dead_letter)
                .map(|dlq| dlq.settings.fifo.is_some());
            if fifo_dlq.is_some_and(|f| f != settings.fifo.is_some()) {
                return Err(bad(
                    "Dead-letter queue type must match the source queue type (FIFO or standard).",
                ));
            }
            if fifo_dlq.is_none() {
                return Err(bad("Dead letter target does not exist."));
            }
        }
        Ok(())
    }

    fn create(
        &mut self,
        name: String,
        settings: QueueSettings,
        mode: CreateMode,
        now: i64,
    ) -> Result<Outcome, QueueError> {
        self.check_settings(&name, &settings)?;
        let existing = read(&self.shared.queues).get(&name).cloned();
        if let Some(entry) = existing {
            if entry.settings == settings {
                return Ok(Outcome::Done);
            }
            if mode == CreateMode::IfAbsent {
                let attribute = entry.settings.first_difference(&settings).to_string();
                return Err(QueueError::Exists { name, attribute });
            }
            self.conn.execute(
                "UPDATE queues SET settings = ?2, modified_ms = ?3 WHERE id = ?1",
                params![entry.id, settings_json(&settings)?, now],
            )?;
            self.replace(&entry, settings, now);
            return Ok(Outcome::Done);
        }
        if read(&self.shared.queues).len() >= MAX_QUEUES {
            return Err(QueueError::TooManyQueues { max: MAX_QUEUES });
        }
        self.conn.execute(
            "INSERT INTO queues (name, settings, created_ms, modified_ms) VALUES (?1, ?2, ?3, ?3)",
            params![name, settings_json(&settings)?, now],
        )?;
        let id = self.conn.last_insert_rowid();
        write(&self.shared.queues).insert(
            name.clone(),
            Arc::new(QueueEntry {
                id,
                name,
                settings,
                created_ms: now,
                modified_ms: now,
                notify: Arc::new(Notify::new()),
                waiters: Arc::new(AtomicUsize::new(0)),
            }),
        );
        Ok(Outcome::Done)
    }

    fn replace(&self, entry: &QueueEntry, settings: QueueSettings, now: i64) {
        write(&self.shared.queues).insert(
            entry.name.clone(),
            Arc::new(QueueEntry {
                id: entry.id,
                name: entry.name.clone(),
                settings,
                created_ms: entry.created_ms,
                modified_ms: now,
                notify: Arc::clone(&entry.notify),
                waiters: Arc::clone(&entry.waiters),
            }),
        );
        // A shorter wait or delay may have made messages due.
        entry.notify.notify_waiters();
    }
}

fn settings_json(s: &QueueSettings) -> Result<String, QueueError> {
    serde_json::to_string(s).map_err(|e| QueueError::corrupt(format!("settings: {e}")))
}

#[derive(Debug)]
struct Row {
    seq: i64,
    message_id: String,
    body: String,
    attributes: Option<String>,
    md5_body: String,
    md5_attributes: Option<String>,
    sent_ms: i64,
    receive_count: i64,
    first_receive_ms: Option<i64>,
    group_id: Option<String>,
    dedup_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive_job(max_messages: usize) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            op: Op::Receive {
                queue: "q".into(),
                max_messages,
                max_bytes: usize::MAX,
                visibility: None,
            },
            reply,
        }
    }

    #[test]
    fn a_commit_holds_at_most_the_row_budget_unless_one_job_is_bigger() {
        let mut queued: std::collections::VecDeque<Job> = [10, 4_000, 2_000, 10]
            .into_iter()
            .map(receive_job)
            .collect();
        let mut batch = Vec::new();
        let first = queued.pop_front().unwrap();
        let held = fill(&mut batch, first, || queued.pop_front());
        assert_eq!(batch.len(), 2, "10 + 4,000 rows fit; 2,000 more would not");
        let held = held.expect("the job that did not fit is kept");
        assert_eq!(held.op.rows(), 2_000);
        batch.clear();
        assert!(fill(&mut batch, receive_job(9_000), || None).is_none());
        assert_eq!(batch.len(), 1, "a job over the budget still runs, alone");
    }

    #[test]
    fn receipts_round_trip_and_garbage_is_refused() {
        let h = encode_receipt(3, 42, 99);
        assert_eq!(decode_receipt(&h), Some((3, 42, 99)));
        for bad in [
            "",
            "not base64 !!",
            &URL_SAFE_NO_PAD.encode("1.2"),
            &URL_SAFE_NO_PAD.encode("1.2.0"),
            &URL_SAFE_NO_PAD.encode("1.2.3.4"),
            &"A".repeat(5000),
        ] {
            assert_eq!(decode_receipt(bad), None, "{bad}");
        }
    }

    #[test]
    fn tokens_are_positive_and_vary() {
        let a = fresh_token();
        let b = fresh_token();
        assert!(a > 0 && b > 0);
        assert_ne!(a, b);
    }
}
