//! The one invocation boundary: HTTP routes (and the cache's fills and
//! refreshes, which run the same call), the Invoke API, `Event` retries and
//! the queue pollers all run functions through an [`Invoke`]. In a server
//! that is [`Billed`] over [`Scheduled`]: the budget check, the scheduler,
//! the meter, in that order, for every path alike.
//!
//! Must never know about HTTP; what a failure means to a caller is read from
//! [`InvokeFailure::fault`] and [`InvokeFailure::may_succeed_later`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use levee_runtime::{FunctionHandle, InvokeError, InvokeOutput, InvokeRequest};

use crate::billing::{Billing, Refusal};

/// What an invocation is metered under.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tags<'a> {
    /// The route that caused it, for HTTP requests.
    pub route: Option<&'a str>,
    /// The API key that paid for it.
    pub key: Option<&'a str>,
}

/// The answer of an [`Invoke`].
pub type Invoked<'a> =
    Pin<Box<dyn Future<Output = Result<InvokeOutput, InvokeFailure>> + Send + 'a>>;

/// Invoke this function with this event.
pub trait Invoke: Send + Sync + std::fmt::Debug {
    /// Runs `function` with `req`, metered under `tags`.
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionHandle,
        req: InvokeRequest,
        tags: Tags<'a>,
    ) -> Invoked<'a>;
}

/// Why an invocation has no answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeFailure {
    /// A budget refused it: it never ran.
    #[error("over budget")]
    OverBudget(Refusal),
    /// It was throttled, or ran (or tried to start) and failed.
    #[error(transparent)]
    Failed(#[from] InvokeError),
}

/// Whose doing a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The function's own: it threw, crashed, timed out, ran out of memory,
    /// failed its init, or answered more than 6 MB.
    Function,
    /// A limit its owner set: a concurrency reservation or a budget.
    Limit,
    /// The platform could not start an instance.
    Platform,
}

impl InvokeFailure {
    /// Whose doing it is.
    pub fn fault(&self) -> Fault {
        match self {
            InvokeFailure::OverBudget(_) | InvokeFailure::Failed(InvokeError::Throttled(_)) => {
                Fault::Limit
            }
            InvokeFailure::Failed(InvokeError::Unavailable(_)) => Fault::Platform,
            InvokeFailure::Failed(_) => Fault::Function,
        }
    }

    /// Whether the same invocation, unchanged, can succeed by waiting: limits
    /// lift and instances free up. A function's own failure may well repeat,
    /// and a platform that cannot start instances is not waited for.
    pub fn may_succeed_later(&self) -> bool {
        self.fault() == Fault::Limit
    }
}

/// The scheduler's implementation: the function's own instances, no meter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scheduled;

impl Invoke for Scheduled {
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionHandle,
        req: InvokeRequest,
        _tags: Tags<'a>,
    ) -> Invoked<'a> {
        Box::pin(async move { function.invoke(req).await.map_err(InvokeFailure::Failed) })
    }
}

/// Budgets before and meters after `inner`.
#[derive(Debug)]
pub struct Billed {
    inner: Arc<dyn Invoke>,
    billing: Arc<Billing>,
}

impl Billed {
    /// `inner`, budgeted and metered by `billing`.
    pub fn new(inner: Arc<dyn Invoke>, billing: Arc<Billing>) -> Self {
        Self { inner, billing }
    }
}

impl Invoke for Billed {
    fn invoke<'a>(
        &'a self,
        function: &'a FunctionHandle,
        req: InvokeRequest,
        tags: Tags<'a>,
    ) -> Invoked<'a> {
        Box::pin(async move {
            self.billing
                .admit(&function.config().name, tags.key)
                .map_err(InvokeFailure::OverBudget)?;
            let started = Instant::now();
            let result = self.inner.invoke(function, req, tags).await;
            let ran = match &result {
                Ok(out) => Some(Ok(out)),
                Err(InvokeFailure::Failed(e)) => Some(Err(e)),
                Err(InvokeFailure::OverBudget(_)) => None,
            };
            if let Some(ran) = ran {
                self.billing
                    .record(function.config(), tags, ran, started.elapsed());
            }
            result
        })
    }
}

/// What a server invokes through: billed when `billing` is on.
pub fn invoker(billing: Option<Arc<Billing>>) -> Arc<dyn Invoke> {
    match billing {
        Some(b) => Arc::new(Billed::new(Arc::new(Scheduled), b)),
        None => Arc::new(Scheduled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use levee_runtime::Limit;

    #[test]
    fn faults_say_whose_doing_and_whether_waiting_helps() {
        let throttled = InvokeFailure::from(InvokeError::Throttled(Limit::Reserved { limit: 1 }));
        assert_eq!(throttled.fault(), Fault::Limit);
        assert!(throttled.may_succeed_later());
        let crashed = InvokeFailure::from(InvokeError::Crashed("exit status: 1".into()));
        assert_eq!(crashed.fault(), Fault::Function);
        assert!(!crashed.may_succeed_later());
        let down = InvokeFailure::from(InvokeError::Unavailable("spawn".into()));
        assert_eq!(down.fault(), Fault::Platform);
        assert!(!down.may_succeed_later());
    }
}
