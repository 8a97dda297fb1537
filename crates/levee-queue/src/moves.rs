//! Message move tasks (`StartMessageMoveTask`, `ListMessageMoveTasks`,
//! `CancelMessageMoveTask`): messages of a dead-letter queue moved back to
//! where they came from, or to a queue named, at a bounded rate.
//!
//! Owns the tasks of one server: at most one running per source queue (as
//! SQS), the most recent [`MAX_TASKS_KEPT`] remembered. Tasks live in
//! memory: a restart ends them (the messages moved so far stay moved; the
//! rest stay in the dead-letter queue). Must never move faster than the
//! task's rate, or touch a queue the task does not name.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::error::QueueError;
use crate::model::queue_arn;
use crate::queues::Queues;

/// Tasks remembered for `ListMessageMoveTasks`, finished ones included.
pub const MAX_TASKS_KEPT: usize = 100;
/// SQS's range for `MaxNumberOfMessagesPerSecond`; its default when unset.
pub const MAX_RATE: u32 = 500;
const DEFAULT_RATE: u32 = MAX_RATE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Completed,
    Cancelling,
    Cancelled,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Completed => "COMPLETED",
            Status::Cancelling => "CANCELLING",
            Status::Cancelled => "CANCELLED",
            Status::Failed => "FAILED",
        }
    }
}

/// One task, as `ListMessageMoveTasks` reports it.
#[derive(Debug)]
pub struct Task {
    /// SQS's shape: base64 of `{"taskId":UUID,"sourceArn":ARN}`.
    pub handle: String,
    pub source: String,
    pub destination: Option<String>,
    pub rate: u32,
    /// `MaxNumberOfMessagesPerSecond` as the caller gave it.
    pub asked_rate: Option<u32>,
    pub to_move: u64,
    pub started_ms: i64,
    moved: AtomicU64,
    cancel: AtomicBool,
    state: Mutex<(Status, Option<String>)>,
}

impl Task {
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    /// The status and, when it failed, why.
    pub fn status(&self) -> (Status, Option<String>) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, status: Status, reason: Option<String>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (status, reason);
    }
}

/// The tasks of one server, newest first.
#[derive(Debug, Default)]
pub struct MoveTasks {
    tasks: Mutex<VecDeque<Arc<Task>>>,
}

impl MoveTasks {
    /// Starts moving `source`'s messages; refused while a task of the same
    /// source runs. `to_move` is the queue's count at the start.
    pub fn start(
        &self,
        queues: Arc<Queues>,
        source: String,
        destination: Option<String>,
        rate: Option<u32>,
        to_move: u64,
        now_ms: i64,
    ) -> Result<Arc<Task>, QueueError> {
        let asked_rate = rate;
        let rate = rate.unwrap_or(DEFAULT_RATE);
        if !(1..=MAX_RATE).contains(&rate) {
            return Err(QueueError::invalid_value(
                "MaxNumberOfMessagesPerSecond",
                &rate.to_string(),
                &format!("Must be between 1 and {MAX_RATE}."),
            ));
        }
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if tasks.iter().any(|t| {
            t.source == source && matches!(t.status().0, Status::Running | Status::Cancelling)
        }) {
            return Err(QueueError::invalid(
                "There is already a task running. Only one active task is allowed for a source queue arn at a given time.",
            ));
        }
        let handle = serde_json::json!({
            "taskId": uuid::Uuid::new_v4().to_string(),
            "sourceArn": queue_arn(&source),
        });
        let task = Arc::new(Task {
            handle: STANDARD.encode(handle.to_string()),
            source,
            destination,
            rate,
            asked_rate,
            to_move,
            started_ms: now_ms,
            moved: AtomicU64::new(0),
            cancel: AtomicBool::new(false),
            state: Mutex::new((Status::Running, None)),
        });
        tasks.push_front(Arc::clone(&task));
        tasks.truncate(MAX_TASKS_KEPT);
        tokio::spawn(run(queues, Arc::clone(&task)));
        Ok(task)
    }

    /// The tasks whose source is `source`, newest first, at most `max`.
    pub fn list(&self, source: &str, max: usize) -> Vec<Arc<Task>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .iter()
            .filter(|t| t.source == source)
            .take(max)
            .cloned()
            .collect()
    }

    /// Asks a running task to stop; `None` for an unknown or finished one.
    pub fn cancel(&self, handle: &str) -> Option<Arc<Task>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        let task = tasks.iter().find(|t| t.handle == handle)?;
        if task.status().0 != Status::Running {
            return None;
        }
        task.cancel.store(true, Ordering::Relaxed);
        task.set(Status::Cancelling, None);
        Some(Arc::clone(task))
    }
}

/// The source ARN a task handle names, if it is one of SQS's shape.
pub fn source_of_handle(handle: &str) -> Option<String> {
    let json = STANDARD.decode(handle.as_bytes()).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
    uuid::Uuid::parse_str(v.get("taskId")?.as_str()?).ok()?;
    Some(v.get("sourceArn")?.as_str()?.to_string())
}

/// Moves `rate` messages a second until the source is empty, the task is
/// cancelled, or a move fails.
async fn run(queues: Arc<Queues>, task: Arc<Task>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if task.cancel.load(Ordering::Relaxed) {
            task.set(Status::Cancelled, None);
            return;
        }
        match queues
            .move_back(
                &task.source,
                task.destination.as_deref(),
                task.rate as usize,
            )
            .await
        {
            Ok(0) => {
                task.set(Status::Completed, None);
                return;
            }
            Ok(n) => {
                task.moved.fetch_add(n as u64, Ordering::Relaxed);
            }
            // SQS gives the error's code as the reason.
            Err(e) => {
                task.set(Status::Failed, Some(e.aws_code().query_code.to_string()));
                return;
            }
        }
    }
}
