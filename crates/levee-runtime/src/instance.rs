//! One instance: a function process plus its own Runtime API server.
//!
//! Owns the instance's life from spawn to teardown: start and wait for the
//! runtime's first `next` (init), hand it one invocation at a time, watch its
//! process, and kill it on drop. It never decides when to start, reuse or
//! discard an instance; the scheduler does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use levee_config::Function;
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::InvokeError;
use crate::forward;
use crate::logs;
use crate::runtime_api::{Delivery, InitSignal, Outcome, RuntimeApi};
use crate::sandbox::{self, InstanceSpec, Needs, Sandbox};

/// Lambda's cap on initialisation.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How an instance's process ended.
#[derive(Debug, Clone)]
pub(crate) struct Exit {
    pub status: String,
    pub oom: bool,
}

/// Why an invocation got no answer from an instance.
#[derive(Debug)]
pub(crate) enum Unanswered {
    /// The runtime took the event; this is what the caller gets.
    Failed(InvokeError),
    /// The instance was gone before any runtime took the event (it died
    /// while idle): no function code saw it, so it may run elsewhere. Holds
    /// how the process ended.
    NeverTaken(String),
}

impl From<InvokeError> for Unanswered {
    fn from(e: InvokeError) -> Self {
        Unanswered::Failed(e)
    }
}

/// What a function needs to start instances, shared by its pool.
#[derive(Debug)]
pub(crate) struct Blueprint {
    pub function: Function,
    pub name: Arc<str>,
    pub arn: String,
    pub staged_code: std::path::PathBuf,
    pub needs: Needs,
    pub sandbox: Sandbox,
}

/// A started, initialised instance.
#[derive(Debug)]
pub(crate) struct Instance {
    deliveries: mpsc::Sender<Delivery>,
    exited: watch::Receiver<Option<Exit>>,
    /// Dropping this kills the process (the supervisor sees the channel close).
    kill: oneshot::Sender<()>,
    supervisor: tokio::task::JoinHandle<()>,
    _api: RuntimeApi,
    /// `forward` listeners; stop (with their connections) on drop.
    _forwards: forward::Forwards,
    pub last_used: Instant,
}

/// An instance whose sandbox is ready and whose process waits at the gate
/// (see [`sandbox::open_gate`]): no function code has run yet. Dropping it
/// kills the process.
#[derive(Debug)]
pub(crate) struct Starting {
    instance: Instance,
    init: oneshot::Receiver<InitSignal>,
    gate: Option<tokio::process::ChildStdin>,
}

impl Instance {
    /// Prepares an instance up to the gate: its own Runtime API listener,
    /// directories, cgroups and a process waiting to `exec` the function.
    pub(crate) async fn prepare(
        bp: &Blueprint,
        instance_name: String,
        init_type: &'static str,
    ) -> Result<Starting, InvokeError> {
        let (tx, rx) = mpsc::channel(1);
        let (init_tx, init_rx) = oneshot::channel();
        let log_id = Arc::new(Mutex::new(None));
        let sandbox = bp.sandbox.clone();
        let (function, staged, needs) = (
            bp.function.clone(),
            bp.staged_code.clone(),
            bp.needs.clone(),
        );
        let name = instance_name.clone();
        // Blocking file I/O (cgroups, lstat of what is shown): keep it off the workers.
        let prepared = tokio::task::spawn_blocking(move || {
            sandbox.prepare(&InstanceSpec {
                function: &function,
                needs: &needs,
                instance_name: &name,
                staged_code: &staged,
                init_type,
            })
        })
        .await
        .map_err(|e| InvokeError::Unavailable(e.to_string()))?
        .map_err(|e| InvokeError::Unavailable(format!("preparing instance: {e}")))?;
        let spec = InstanceSpec {
            function: &bp.function,
            needs: &bp.needs,
            instance_name: &instance_name,
            staged_code: &bp.staged_code,
            init_type,
        };
        let mut spawned = prepared.spawn(&spec).await.map_err(|e| InvokeError::Init {
            error_type: "Runtime.InvalidEntrypoint".into(),
            error_message: format!("cannot start {:?}: {e}", bp.function.command[0]),
        })?;
        let listener = spawned
            .take_api_listener()
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|e| InvokeError::Unavailable(format!("runtime API listener: {e}")))?;
        let api = RuntimeApi::start(listener, &bp.arn, rx, init_tx, Arc::clone(&log_id));
        let forwards = forward::start(spawned.take_forwards());
        let gate = spawned.take_gate();
        if let Some(out) = spawned.child.stdout.take() {
            tokio::spawn(logs::pump(
                out,
                Arc::clone(&bp.name),
                "stdout",
                Arc::clone(&log_id),
            ));
        }
        if let Some(err) = spawned.child.stderr.take() {
            tokio::spawn(logs::pump(err, Arc::clone(&bp.name), "stderr", log_id));
        }

        let (exit_tx, exited) = watch::channel(None);
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let supervisor = tokio::spawn(async move {
            let status = tokio::select! {
                status = spawned.child.wait() => status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                _ = kill_rx => "killed by the platform".to_string(),
            };
            spawned.kill();
            let oom = spawned.oom_killed();
            let _ = exit_tx.send(Some(Exit { status, oom }));
            spawned.teardown().await;
        });
        Ok(Starting {
            instance: Instance {
                deliveries: tx,
                exited,
                kill: kill_tx,
                supervisor,
                _api: api,
                _forwards: forwards,
                last_used: Instant::now(),
            },
            init: init_rx,
            gate,
        })
    }

    /// Kills the process and waits until its directories and cgroups are gone.
    pub(crate) async fn stop(self) {
        let Instance {
            kill, supervisor, ..
        } = self;
        drop(kill);
        let _ = supervisor.await;
    }

    /// Whether the process is still running.
    pub(crate) fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    /// Runs one invocation. On `Err` the caller must discard the instance
    /// unless the error [`InvokeError::keeps_instance`].
    pub(crate) async fn invoke(
        &mut self,
        request_id: Arc<str>,
        payload: Bytes,
        client_context: Option<String>,
        timeout: Duration,
        memory_mb: u32,
    ) -> Result<Bytes, Unanswered> {
        let deadline = SystemTime::now() + timeout;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let (reply_tx, reply_rx) = oneshot::channel();
        let taken = Arc::new(AtomicBool::new(false));
        let delivery = Delivery {
            request_id,
            payload,
            deadline_ms,
            client_context,
            reply: reply_tx,
            taken: Arc::clone(&taken),
        };
        if self.deliveries.try_send(delivery).is_err() {
            return Err(Unanswered::NeverTaken(
                "instance no longer accepts work".into(),
            ));
        }
        let outcome = tokio::select! {
            biased;
            outcome = reply_rx => outcome.ok(),
            _ = self.exited.wait_for(Option::is_some) => None,
            _ = tokio::time::sleep(timeout) => return Err(InvokeError::Timeout(timeout).into()),
        };
        self.last_used = Instant::now();
        match outcome {
            Some(Outcome::Response(body)) => Ok(body),
            Some(Outcome::TooLarge(n)) => Err(InvokeError::ResponseTooLarge(n).into()),
            Some(Outcome::Error(e)) => Err(InvokeError::Function {
                error_type: e.error_type,
                error_message: e.error_message,
                body: e.body,
            }
            .into()),
            None => {
                // The reply channel closes only when the process is gone; wait
                // for the supervisor's verdict on how it died.
                let exit = self
                    .exited
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|e| e.clone());
                match exit {
                    Some(Exit { oom: true, .. }) => Err(InvokeError::OutOfMemory(memory_mb).into()),
                    Some(Exit { status, .. }) if !taken.load(Ordering::Acquire) => {
                        Err(Unanswered::NeverTaken(status))
                    }
                    Some(Exit { status, .. }) => Err(InvokeError::Crashed(status).into()),
                    None => Err(InvokeError::Crashed("instance vanished".into()).into()),
                }
            }
        }
    }
}

impl Starting {
    /// Kills the waiting process and waits for its cleanup.
    pub(crate) async fn stop(self) {
        self.instance.stop().await;
    }

    /// Whether the process is still waiting at the gate.
    pub(crate) fn is_alive(&self) -> bool {
        self.instance.is_alive()
    }

    /// Opens the gate and waits for the runtime to call `next`, report an
    /// init error, exit, or run out of [`INIT_TIMEOUT`].
    pub(crate) async fn go(mut self) -> Result<Instance, InvokeError> {
        if let Some(gate) = self.gate.take() {
            // A failed write means the process is gone; the exit watch below
            // reports how.
            let _ = sandbox::open_gate(gate).await;
        }
        let mut exited = self.instance.exited.clone();
        let init = tokio::time::timeout(INIT_TIMEOUT, async {
            tokio::select! {
                biased;
                signal = self.init => Some(signal),
                _ = exited.wait_for(Option::is_some) => None,
            }
        })
        .await;
        match init {
            Ok(Some(Ok(InitSignal::Ready))) => Ok(self.instance),
            Ok(Some(Ok(InitSignal::Failed(e)))) => Err(InvokeError::Init {
                error_type: e.error_type,
                error_message: e.error_message,
            }),
            Ok(_) => {
                let exit = exited.borrow().clone();
                let status = exit.map(|e| e.status).unwrap_or_default();
                Err(InvokeError::Init {
                    error_type: "Runtime.ExitError".into(),
                    error_message: format!("runtime exited before init completed: {status}"),
                })
            }
            Err(_) => Err(InvokeError::Init {
                error_type: "Runtime.InitTimeout".into(),
                error_message: format!(
                    "init did not complete within {} seconds",
                    INIT_TIMEOUT.as_secs()
                ),
            }),
        }
    }
}

impl InvokeError {
    /// After this error, may the instance serve again? Lambda keeps an
    /// environment after a function error or an oversized response, and
    /// resets it after a timeout or crash.
    pub(crate) fn keeps_instance(&self) -> bool {
        matches!(
            self,
            InvokeError::Function { .. } | InvokeError::ResponseTooLarge(_)
        )
    }
}
