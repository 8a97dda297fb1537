//! The model of `levee.toml`, parsed and validated once at load.
//!
//! This crate owns the meaning of every configuration key: defaults, limits
//! (Lambda's, where Levee mimics Lambda) and the translation of API Gateway
//! route keys to router paths. Whatever it returns is valid, so other crates
//! never re-check it; whatever it refuses is reported all at once, each
//! problem naming its key and line.
//!
//! It must never do I/O beyond reading the one file (and checking that the
//! `code` directories it names exist), and never panic: a mangled or hostile
//! file is an ordinary error.

mod budgets;
mod cache;
mod error;
mod guard;
mod load;
mod model;
mod plans;
mod queues;
mod route;

pub use budgets::{check_webhook, Budget, BudgetAction, BudgetPeriod, BudgetScope, Prices};
pub use cache::{CachePolicy, CacheSettings};
pub use error::{ConfigError, Problem};
pub use guard::{ClientIp, Limits, Throttle};
pub use levee_common::{parse_duration, parse_size};
pub use model::{exposed_admin, AccessLog, Account, Config, Function, RuntimeKind, Server};
pub use plans::{Plan, PlanLimits, Quota, QuotaPeriod};
pub use queues::{DeadLetter, EventSourceConfig, QueueConfig};
pub use route::{Route, RouteMethod};

#[cfg(test)]
mod tests;
