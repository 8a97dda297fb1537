//! Billing at the edge: the budget check before an invocation (a `stop`
//! budget answers 503, a `throttle` budget 429) and the meter after it,
//! applied to every path by [`crate::invocation::Billed`]. The decisions
//! and the arithmetic live in `levee-meter`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use levee_config::Function;
use levee_meter::{BudgetDecision, Budgets, Invocation, Meters};
use levee_runtime::{InvokeError, InvokeOutput};

use crate::clock::Clock;
use crate::invocation::Tags;

/// A budget said no: 503 for `stop`, 429 for `throttle`.
#[derive(Debug)]
pub struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) retry_after_secs: u64,
    /// JSON naming the budget and when it resets.
    pub(crate) body: String,
}

/// Meters and budgets, when `[metering]` is on.
#[derive(Debug)]
pub struct Billing {
    meters: Arc<Meters>,
    budgets: Arc<Budgets>,
    clock: Clock,
}

impl Billing {
    /// Billing over `meters` and `budgets`, reading time from `clock`.
    pub fn new(meters: Arc<Meters>, budgets: Arc<Budgets>, clock: Clock) -> Self {
        Self {
            meters,
            budgets,
            clock,
        }
    }

    /// Whether `function` may be invoked for `key` now.
    pub fn admit(&self, function: &str, key: Option<&str>) -> Result<(), Refusal> {
        let decision = self
            .budgets
            .check(function, key, self.clock.now(), Instant::now());
        let body = decision.body().unwrap_or_default();
        let (status, retry_after_secs) = match decision {
            BudgetDecision::Allow => return Ok(()),
            BudgetDecision::Throttled { retry_after, .. } => {
                (StatusCode::TOO_MANY_REQUESTS, retry_after.as_secs().max(1))
            }
            BudgetDecision::Stopped { resets_at_unix, .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                (resets_at_unix - self.clock.now()).max(1) as u64,
            ),
        };
        Err(Refusal {
            status,
            retry_after_secs,
            body,
        })
    }

    /// Meters one invocation. Lambda bills failed invocations too: a failed
    /// one is billed for `waited`, the time the platform spent on it (its
    /// start included), at least 1 ms, so a function that runs long and then
    /// fails cannot slip past a budget; timeouts bill the whole timeout.
    /// Throttled invocations never ran and are not billed.
    pub fn record(
        &self,
        function: &Function,
        tags: Tags<'_>,
        result: Result<&InvokeOutput, &InvokeError>,
        waited: Duration,
    ) {
        let Tags { route, key } = tags;
        let ran = waited.max(Duration::from_millis(1));
        let (duration, bytes_out, cold, outcome) = match result {
            Ok(out) => (
                out.duration,
                out.payload.len() as u64,
                out.init_duration.is_some(),
                "success",
            ),
            Err(InvokeError::Throttled(_)) | Err(InvokeError::Unavailable(_)) => return,
            Err(InvokeError::Timeout(t)) => (*t, 0, false, "timeout"),
            Err(InvokeError::Crashed(_)) | Err(InvokeError::OutOfMemory(_)) => {
                (ran, 0, false, "crashed")
            }
            Err(_) => (ran, 0, false, "error"),
        };
        let now = self.clock.now();
        self.meters.record(&Invocation {
            function: &function.name,
            route,
            key,
            duration,
            memory_mb: function.memory_mb,
            bytes_out,
            at_unix: now,
            cold,
            outcome,
        });
        self.budgets.after_record(&function.name, key, now);
    }

    /// The meters, for the admin API.
    pub fn meters(&self) -> &Arc<Meters> {
        &self.meters
    }

    /// The budgets, for the admin API.
    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    /// Unix seconds by this billing's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}
