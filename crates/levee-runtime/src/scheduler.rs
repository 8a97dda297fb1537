//! The scheduler: which instance runs an invocation, and when instances start
//! and stop.
//!
//! A warm idle instance takes the next invocation (most recently used first, so
//! the rest can idle out); otherwise a new instance starts, if the function's
//! concurrency allows (see [`crate::limits`]), and the request is refused at
//! once with 429 if not. Provisioned instances start at boot and are kept;
//! others are reaped after `idle_timeout`. Repeated init failures back off
//! exponentially instead of spawning a process per request. The scheduler
//! never waits for capacity: every wait here is bounded by the function's
//! timeout or the init timeout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use levee_config::{Config, Function};

use crate::error::{InvokeError, RuntimeError};
use crate::instance::{Blueprint, Instance, Starting, Unanswered};
use crate::limits::{AccountPool, FunctionSlots, Patience};
use crate::sandbox::{self, CopyBudget, Sandbox};

/// How often idle instances are reaped and provisioned ones topped up.
const REAP_INTERVAL: Duration = Duration::from_millis(500);
/// First pause after an init failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest pause between init attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Instances one invocation is offered to when each dies before its runtime
/// takes it (see [`Unanswered::NeverTaken`]): enough to step over a dead
/// idle instance or two, few enough that a function whose instances keep
/// dying answers its caller at once.
const MAX_ATTEMPTS: u32 = 3;

/// One invocation to run.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// Correlates the invocation across the access log, the function's log
    /// lines and the runtime's `Lambda-Runtime-Aws-Request-Id`.
    pub request_id: Arc<str>,
    /// The event document.
    pub payload: Bytes,
    /// Decoded client context JSON (Invoke API), if any; must be valid JSON.
    pub client_context: Option<String>,
    /// Who asked, for fair admission at the concurrency limit (a bounded
    /// wait, known clients first); `None` for the platform's own callers
    /// (the Invoke API, queue pollers), which get Lambda's 429 at once.
    pub client: Option<std::net::IpAddr>,
}

/// A successful invocation.
#[derive(Debug)]
pub struct InvokeOutput {
    /// What the function returned.
    pub payload: Bytes,
    /// Time from dispatch to the function's answer.
    pub duration: Duration,
    /// Set when this invocation had to start a new instance.
    pub init_duration: Option<Duration>,
}

/// A point-in-time view of one function's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Instances running (idle, busy or initialising).
    pub live: u32,
    /// Instances waiting for work.
    pub idle: u32,
    /// Instances started since boot.
    pub starts: u64,
    /// Init failures since boot.
    pub init_failures: u64,
    /// Invocations dispatched to an instance since boot.
    pub invocations: u64,
    /// Requests waiting for a slot now (fair admission; for a function on
    /// the shared pool, every such function's waiters).
    pub queued: u64,
}

/// All functions' pools.
#[derive(Debug)]
pub struct Scheduler {
    functions: HashMap<String, FunctionHandle>,
    sandbox: Sandbox,
    reaper: tokio::task::JoinHandle<()>,
}

impl Scheduler {
    /// Stages every function's code and starts provisioned instances.
    pub async fn start(config: &Config) -> Result<Scheduler, RuntimeError> {
        let data_dir = &config.server.data_dir;
        let stage_err = |function: &str, path: &Path, source| RuntimeError::Stage {
            function: function.into(),
            path: path.into(),
            source,
        };
        let _ = sandbox::remove_tree(&data_dir.join("instances"));
        let egress = config
            .functions
            .values()
            .any(|f| f.network == levee_config::Network::Egress);
        let sandbox = Sandbox::new(&config.server, egress)?;
        let reserved_total = config
            .functions
            .values()
            .filter_map(|f| f.reserved_concurrency)
            .sum();
        let account = AccountPool::new(config.account.concurrency, reserved_total);
        let mut functions = HashMap::new();
        for (name, f) in &config.functions {
            let staged_code = stage_code(data_dir, f).map_err(|e| match e {
                StageError::Io(e) => stage_err(name, &f.code, e),
                StageError::TooLarge => RuntimeError::CodeTooLarge {
                    function: name.clone(),
                    limit: sandbox::MAX_CODE_BYTES,
                },
            })?;
            let mut function = f.clone();
            function.command[0] = sandbox::resolve_program(&function.command[0]);
            let needs = sandbox::resolve_needs(&function.command[0], &f.code).await;
            // Shown at their real place: a symlinked `/lib/...` would point
            // into the read-only `/usr` of the instance's root.
            for path in &mut function.runtime_paths {
                if let Ok(real) = path.canonicalize() {
                    *path = real;
                }
            }
            if sandbox.isolated() {
                let shown = needs.paths.iter().chain(&function.runtime_paths);
                if let Some(path) = shown.into_iter().find(|p| sandbox::exposes(p, data_dir)) {
                    return Err(RuntimeError::ExposesData {
                        function: name.clone(),
                        path: path.clone(),
                    });
                }
            }
            let pool = Arc::new(Pool {
                bp: Blueprint {
                    arn: function_arn(name),
                    name: Arc::from(name.as_str()),
                    function,
                    staged_code,
                    needs,
                    sandbox: sandbox.clone(),
                },
                slots: FunctionSlots::new(f.reserved_concurrency, &account),
                state: Mutex::new(PoolState::default()),
                next_instance: AtomicU64::new(1),
                starts: AtomicU64::new(0),
                init_failures: AtomicU64::new(0),
                invocations: AtomicU64::new(0),
            });
            functions.insert(name.clone(), FunctionHandle { pool });
        }
        for h in functions.values() {
            h.pool.refill_standby();
        }
        let mut provisioning = tokio::task::JoinSet::new();
        for h in functions.values() {
            provisioning.spawn(Arc::clone(&h.pool).top_up());
        }
        while provisioning.join_next().await.is_some() {}
        let pools: Vec<_> = functions.values().map(|h| Arc::clone(&h.pool)).collect();
        let reaper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(REAP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for pool in &pools {
                    pool.reap();
                    pool.refill_standby();
                    // In its own task: a slow init must not hold up reaping
                    // the other pools.
                    tokio::spawn(Arc::clone(pool).top_up());
                }
            }
        });
        Ok(Scheduler {
            functions,
            sandbox,
            reaper,
        })
    }

    /// The function named `name`, if configured.
    pub fn function(&self, name: &str) -> Option<&FunctionHandle> {
        self.functions.get(name)
    }

    /// Every function's stats, by name.
    pub fn stats(&self) -> Vec<(String, PoolStats)> {
        let mut all: Vec<_> = self
            .functions
            .iter()
            .map(|(n, h)| (n.clone(), h.stats()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Stops reaping and kills every idle instance, waiting for their cleanup.
    pub async fn shutdown(&self) {
        self.reaper.abort();
        for handle in self.functions.values() {
            let (idle, standby) = {
                let mut state = handle.pool.lock();
                (std::mem::take(&mut state.idle), state.standby.take())
            };
            for instance in idle {
                instance.stop().await;
            }
            if let Some(standby) = standby {
                standby.stop().await;
            }
        }
        self.sandbox.close();
    }
}

/// The ARN runtimes and SDKs see for a function.
pub fn function_arn(name: &str) -> String {
    format!(
        "arn:aws:lambda:{}:000000000000:function:{name}",
        sandbox::REGION
    )
}

enum StageError {
    Io(std::io::Error),
    TooLarge,
}

/// Copies the function's code once per boot into `data_dir/functions/NAME/code`
/// and seals it read-only; instances copy from there, so edits to the source
/// directory while serving never reach half an instance.
fn stage_code(data_dir: &Path, f: &Function) -> Result<PathBuf, StageError> {
    let dest = data_dir
        .join("functions")
        .join(f.name.as_str())
        .join("code");
    sandbox::remove_tree(&dest).map_err(StageError::Io)?;
    sandbox::copy_tree(&f.code, &dest, &mut CopyBudget::default()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            StageError::TooLarge
        } else {
            StageError::Io(e)
        }
    })?;
    sandbox::seal_tree(&dest).map_err(StageError::Io)?;
    Ok(dest)
}

/// A cheap, clonable handle to one function's pool.
#[derive(Debug, Clone)]
pub struct FunctionHandle {
    pool: Arc<Pool>,
}

impl FunctionHandle {
    /// The function's configuration.
    pub fn config(&self) -> &Function {
        &self.pool.bp.function
    }

    /// Runs one invocation. The work runs in its own task, so a caller that
    /// goes away (client disconnect) neither kills the instance mid-invocation
    /// nor leaks its concurrency slot.
    pub async fn invoke(&self, req: InvokeRequest) -> Result<InvokeOutput, InvokeError> {
        let f = &self.pool.bp.function;
        let patience = Patience {
            wait: f.queue_timeout,
            depth: f.queue_depth,
        };
        let permit = self
            .pool
            .slots
            .acquire(req.client, patience)
            .await
            .map_err(InvokeError::Throttled)?;
        let pool = Arc::clone(&self.pool);
        tokio::spawn(async move {
            let out = Arc::clone(&pool).run(req).await;
            drop(permit);
            out
        })
        .await
        .unwrap_or_else(|e| Err(InvokeError::Unavailable(format!("invocation task: {e}"))))
    }

    /// Current instance counts.
    pub fn stats(&self) -> PoolStats {
        let state = self.pool.lock();
        PoolStats {
            live: state.live,
            idle: state.idle.len() as u32,
            starts: self.pool.starts.load(Ordering::Relaxed),
            init_failures: self.pool.init_failures.load(Ordering::Relaxed),
            invocations: self.pool.invocations.load(Ordering::Relaxed),
            queued: self.pool.slots.queued() as u64,
        }
    }
}

#[derive(Debug)]
struct Pool {
    bp: Blueprint,
    slots: FunctionSlots,
    state: Mutex<PoolState>,
    next_instance: AtomicU64,
    starts: AtomicU64,
    init_failures: AtomicU64,
    invocations: AtomicU64,
}

#[derive(Debug, Default)]
struct PoolState {
    /// Least recently used first.
    idle: Vec<Instance>,
    /// Idle + busy + starting. Bounded: each busy or starting instance holds a
    /// concurrency permit, and idle ones were busy once, so live ≤ the
    /// function's concurrency ceiling (plus provisioned, which is ≤ it).
    live: u32,
    backoff: Backoff,
    /// One instance prepared up to the gate, so the next on-demand cold
    /// start only `exec`s the function (see `Instance::prepare`). Not counted
    /// in `live`: no function code runs in it.
    standby: Option<Starting>,
    /// A standby is being prepared.
    refilling: bool,
    /// Provisioned instances are being started.
    topping_up: bool,
}

/// Consecutive init failures and when the next attempt may start.
#[derive(Debug, Default, Clone)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<(String, String)>,
}

impl Backoff {
    fn pause(failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
    }

    /// The error to answer with instead of starting, while backing off.
    fn blocked(&self, now: Instant) -> Option<InvokeError> {
        let retry_at = self.retry_at?;
        if now >= retry_at {
            return None;
        }
        let (error_type, message) = self.last_error.clone().unwrap_or_default();
        Some(InvokeError::Init {
            error_type,
            error_message: format!(
                "{message} (init failed {} times in a row; next attempt in {} ms)",
                self.failures,
                (retry_at - now).as_millis()
            ),
        })
    }

    fn failed(&mut self, now: Instant, err: &InvokeError) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + Self::pause(self.failures));
        self.last_error = Some((err.error_type().to_string(), err.error_message()));
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // The state is plain counters and a Vec, consistent at every step,
        // so a panic while holding it leaves it usable (`levee_common::sync`).
        levee_common::sync::lock(&self.state)
    }

    async fn run(self: Arc<Self>, req: InvokeRequest) -> Result<InvokeOutput, InvokeError> {
        let f = &self.bp.function;
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let mut attempt = 1;
        loop {
            let (mut instance, init_duration) = match self.take_idle() {
                Some(i) => (i, None),
                None => {
                    let started = Instant::now();
                    let i = self.start_instance("on-demand").await?;
                    (i, Some(started.elapsed()))
                }
            };
            let started = Instant::now();
            let result = instance
                .invoke(
                    Arc::clone(&req.request_id),
                    req.payload.clone(),
                    req.client_context.clone(),
                    f.timeout,
                    f.memory_mb,
                )
                .await;
            let duration = started.elapsed();
            let result = match result {
                Ok(payload) => Ok(payload),
                Err(Unanswered::Failed(e)) => Err(e),
                Err(Unanswered::NeverTaken(status)) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(function = %self.bp.name, request_id = %req.request_id, %status, "instance died before taking the invocation; trying another");
                    self.retire(instance);
                    attempt += 1;
                    continue;
                }
                Err(Unanswered::NeverTaken(status)) => Err(InvokeError::Crashed(status)),
            };
            report(
                &self.bp.name,
                &req.request_id,
                duration,
                f.memory_mb,
                init_duration,
                &result,
            );
            return match result {
                Ok(payload) => {
                    self.put_idle(instance);
                    Ok(InvokeOutput {
                        payload,
                        duration,
                        init_duration,
                    })
                }
                Err(e) => {
                    if e.keeps_instance() {
                        self.put_idle(instance);
                    } else {
                        self.retire(instance);
                    }
                    Err(e)
                }
            };
        }
    }

    fn take_idle(&self) -> Option<Instance> {
        let mut dead = Vec::new();
        let found = {
            let mut state = self.lock();
            loop {
                match state.idle.pop() {
                    Some(i) if i.is_alive() => break Some(i),
                    Some(i) => {
                        state.live -= 1;
                        dead.push(i);
                    }
                    None => break None,
                }
            }
        };
        drop(dead);
        found
    }

    fn put_idle(&self, instance: Instance) {
        self.lock().idle.push(instance);
    }

    fn retire(&self, instance: Instance) {
        self.lock().live -= 1;
        drop(instance);
    }

    fn instance_name(&self) -> String {
        let n = self.next_instance.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.bp.name)
    }

    /// Starts an instance: through the standby for on-demand starts when one
    /// is ready, else from scratch.
    async fn start_instance(
        self: &Arc<Self>,
        init_type: &'static str,
    ) -> Result<Instance, InvokeError> {
        let standby = {
            let mut state = self.lock();
            if let Some(err) = state.backoff.blocked(Instant::now()) {
                return Err(err);
            }
            state.live += 1;
            match init_type {
                "on-demand" => state.standby.take().filter(Starting::is_alive),
                _ => None,
            }
        };
        self.starts.fetch_add(1, Ordering::Relaxed);
        let result = match standby {
            Some(ready) => ready.go().await,
            None => match Instance::prepare(&self.bp, self.instance_name(), init_type).await {
                Ok(ready) => ready.go().await,
                Err(e) => Err(e),
            },
        };
        {
            let mut state = self.lock();
            match &result {
                Ok(_) => state.backoff = Backoff::default(),
                Err(e) => {
                    state.live -= 1;
                    state.backoff.failed(Instant::now(), e);
                    self.init_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(function = %self.bp.name, error = %e, "instance init failed");
                }
            }
        }
        self.refill_standby();
        result
    }

    /// Prepares a standby in the background if there is none (and the
    /// function is not backing off after init failures).
    fn refill_standby(self: &Arc<Self>) {
        {
            let mut state = self.lock();
            if state.standby.is_some()
                || state.refilling
                || state.backoff.blocked(Instant::now()).is_some()
            {
                return;
            }
            state.refilling = true;
        }
        let pool = Arc::clone(self);
        tokio::spawn(async move {
            let prepared = Instance::prepare(&pool.bp, pool.instance_name(), "on-demand").await;
            let mut state = pool.lock();
            state.refilling = false;
            match prepared {
                Ok(ready) => state.standby = Some(ready),
                Err(e) => {
                    tracing::debug!(function = %pool.bp.name, error = %e, "standby not prepared")
                }
            }
        });
    }

    /// Kills instances idle longer than `idle_timeout`, keeping `provisioned`.
    fn reap(&self) {
        let f = &self.bp.function;
        let expired: Vec<Instance> = {
            let mut state = self.lock();
            let keep_at_least = f.provisioned;
            let mut expired = Vec::new();
            let mut i = 0;
            while i < state.idle.len() {
                let stale = !state.idle[i].is_alive()
                    || (state.idle[i].last_used.elapsed() >= f.idle_timeout
                        && state.live > keep_at_least);
                if stale {
                    expired.push(state.idle.remove(i));
                    state.live -= 1;
                } else {
                    i += 1;
                }
            }
            expired
        };
        if !expired.is_empty() {
            tracing::debug!(function = %self.bp.name, count = expired.len(), "reaped idle instances");
        }
    }

    /// Starts instances until `provisioned` are live (respecting backoff),
    /// all at once; returns when they are up or failed. At most one top-up
    /// runs per pool.
    async fn top_up(self: Arc<Self>) {
        let missing = {
            let mut state = self.lock();
            let missing = self.bp.function.provisioned.saturating_sub(state.live);
            if missing == 0 || state.topping_up {
                return;
            }
            state.topping_up = true;
            missing
        };
        let mut starts = tokio::task::JoinSet::new();
        for _ in 0..missing {
            let pool = Arc::clone(&self);
            starts.spawn(async move {
                if let Ok(i) = pool.start_instance("provisioned-concurrency").await {
                    pool.put_idle(i);
                }
            });
        }
        while starts.join_next().await.is_some() {}
        self.lock().topping_up = false;
    }
}

/// Lambda's REPORT line, at debug level under `levee::report`: one line per
/// invocation is too much for the default log at 10k invocations/s.
fn report(
    function: &str,
    request_id: &str,
    duration: Duration,
    memory_mb: u32,
    init: Option<Duration>,
    result: &Result<Bytes, InvokeError>,
) {
    let ms = duration.as_secs_f64() * 1000.0;
    let init = init
        .map(|d| format!(" Init Duration: {:.2} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_default();
    let status = match result {
        Ok(_) => String::new(),
        Err(e) => format!(" Status: {}", e.error_type()),
    };
    tracing::debug!(
        target: "levee::report",
        function,
        request_id,
        "REPORT RequestId: {request_id} Duration: {ms:.2} ms Billed Duration: {} ms Memory Size: {memory_mb} MB{init}{status}",
        duration.as_micros().div_ceil(1000)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(Backoff::pause(1), BACKOFF_BASE);
        assert_eq!(Backoff::pause(2), BACKOFF_BASE * 2);
        assert_eq!(Backoff::pause(4), BACKOFF_BASE * 8);
        assert_eq!(Backoff::pause(40), BACKOFF_MAX);
    }

    #[test]
    fn backoff_blocks_until_retry_time() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.blocked(t0).is_none());
        let err = InvokeError::Init {
            error_type: "Runtime.ImportModuleError".into(),
            error_message: "no module named app".into(),
        };
        b.failed(t0, &err);
        let blocked = b.blocked(t0).expect("blocked right after a failure");
        assert_eq!(blocked.error_type(), "Runtime.ImportModuleError");
        assert!(blocked.error_message().contains("no module named app"));
        assert!(
            b.blocked(t0 + BACKOFF_BASE).is_none(),
            "retry allowed after the pause"
        );
    }
}
