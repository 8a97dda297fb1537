//! [`Reject`]: why the edge answers a request itself instead of passing it
//! on, and which stage decided so.
//!
//! Every stage that can stop a request returns `Result<_, Reject>`. A
//! `Reject` knows its metrics label ([`Reject::decision`], from what decided,
//! never from a status code); [`crate::respond::reject`] is the one place
//! that turns it into a response. It must never carry platform internals
//! that the response would show a client.

use std::time::Duration;

use http::StatusCode;
use levee_meter::metrics::Decision;
use levee_runtime::InvokeError;
use levee_shield::auto::Outcome;
use levee_shield::firewall::Verdict;

use crate::invocation::InvokeFailure;

/// See the module docs.
#[derive(Debug)]
pub enum Reject {
    /// HTTP the edge does not serve: too many headers (431), CONNECT or
    /// TRACE (501), an unmet `Expect` (417), a bad transfer coding.
    Malformed {
        status: StatusCode,
        message: &'static str,
    },
    /// A firewall rule's own answer: always a `Verdict::Block`.
    Firewall(Verdict),
    /// No route matches.
    NotFound,
    /// A throttle's bucket is empty.
    Throttled {
        /// The config key of the limit: `throttle`, `routes.throttle`,
        /// `plan.throttle`.
        limit: &'static str,
        /// The route, for the route and account throttles.
        route: Option<String>,
        wait: Duration,
    },
    /// No API key, or an unknown or disabled one.
    Forbidden,
    /// The route's authorizer refused the caller's token (401) or its
    /// scopes (403).
    Unauthorized(crate::authorizer::Denied),
    /// The API key's quota is used up until `resets_at` (Unix seconds).
    QuotaExhausted {
        quota: u64,
        resets_at: i64,
        now: i64,
    },
    /// A body over the route's limit (declared or counted).
    TooLarge { limit: u64 },
    /// A body slower than `body_min_rate`.
    SlowBody,
    /// A body that could not be read, or an event that could not be built
    /// from the request.
    Unreadable(&'static str),
    /// The invocation gave no answer: over budget, throttled, failed.
    Invoke {
        function: String,
        failure: InvokeFailure,
    },
    /// The function answered something the payload 2.0 rules refuse.
    BadFunctionResponse(String),
    /// The async route's queue is at `max_messages`.
    QueueFull,
    /// The async route's queue refused the content (names the character).
    QueueRefused(String),
    /// The async route's queue failed; logged, never shown.
    QueueFailed,
}

impl Reject {
    /// The failed invocation of `function`.
    pub fn invoke(function: &str, failure: impl Into<InvokeFailure>) -> Self {
        Reject::Invoke {
            function: function.to_string(),
            failure: failure.into(),
        }
    }

    /// What decided, for the metrics and the access log. A function that
    /// failed was still allowed through: the edge did not stop it.
    pub fn decision(&self) -> Decision {
        match self {
            Reject::Malformed { .. } | Reject::Unreadable(_) => Decision::Malformed,
            Reject::Firewall(_) => Decision::FirewallBlocked,
            Reject::NotFound => Decision::NotFound,
            Reject::Throttled { .. } => Decision::Throttled,
            Reject::Forbidden => Decision::Forbidden,
            Reject::Unauthorized(_) => Decision::Unauthorized,
            Reject::QuotaExhausted { .. } => Decision::OverQuota,
            Reject::TooLarge { .. } => Decision::TooLarge,
            Reject::SlowBody => Decision::SlowClient,
            Reject::Invoke {
                failure: InvokeFailure::OverBudget(_),
                ..
            } => Decision::OverBudget,
            Reject::Invoke {
                failure: InvokeFailure::Failed(InvokeError::Throttled(_)),
                ..
            } => Decision::Throttled,
            Reject::QueueFull => Decision::QueueFull,
            Reject::QueueRefused(_) => Decision::Malformed,
            Reject::Invoke { .. } | Reject::BadFunctionResponse(_) | Reject::QueueFailed => {
                Decision::Allowed
            }
        }
    }

    /// What the refusal says about the service behind the edge, for the
    /// attack detector: only the function's own refusals and failures
    /// are strain; a rule's, a throttle's or a key's refusal is the
    /// defence working.
    pub fn outcome(&self) -> Outcome {
        match self {
            Reject::Invoke {
                failure: InvokeFailure::OverBudget(_),
                ..
            } => Outcome::OverBudget,
            Reject::Invoke {
                failure: InvokeFailure::Failed(InvokeError::Throttled(_)),
                ..
            }
            | Reject::QueueFull => Outcome::Saturated,
            Reject::Invoke { .. } | Reject::BadFunctionResponse(_) | Reject::QueueFailed => {
                Outcome::Failed
            }
            _ => Outcome::Fine,
        }
    }
}
