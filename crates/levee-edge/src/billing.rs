//! Billing at the edge: the budget check before an invocation (a `stop`
//! budget answers 503, a `throttle` budget 429) and the meter after it.
//! Shared by HTTP routes and the Invoke API, so every invocation is metered
//! the same way. The decisions and the arithmetic live in `levee-meter`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use levee_config::Function;
use levee_meter::{BudgetDecision, Budgets, Invocation, Meters};
use levee_runtime::{FunctionHandle, InvokeError, InvokeOutput, InvokeRequest};

use crate::clock::Clock;

/// Invokes `function` the way every path must (HTTP routes, the Invoke API,
/// queue pollers): the budget check first, then the invocation, then its
/// meter. `Err` is the budget's refusal; the invocation did not run.
pub async fn invoke(
    billing: Option<&Billing>,
    function: &FunctionHandle,
    req: InvokeRequest,
    route: Option<&str>,
    key: Option<&str>,
) -> Result<Result<InvokeOutput, InvokeError>, Refusal> {
    if let Some(b) = billing {
        b.admit(&function.config().name, key)?;
    }
    let started = Instant::now();
    let result = function.invoke(req).await;
    if let Some(b) = billing {
        b.record(function.config(), route, key, &result, started.elapsed());
    }
    Ok(result)
}

/// A budget said no: 503 for `stop`, 429 for `throttle`.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    retry_after_secs: u64,
    body: String,
}

impl Refusal {
    /// The answer to send: JSON naming the budget and when it resets.
    pub fn into_response(self) -> Response<Bytes> {
        let mut resp = Response::new(Bytes::from(self.body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.retry_after_secs),
        );
        resp
    }
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
        route: Option<&str>,
        key: Option<&str>,
        result: &Result<InvokeOutput, InvokeError>,
        waited: Duration,
    ) {
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
