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

// The loader and what it stands on: where problems are, and their lines.
mod load;
mod locate;
mod problems;
mod values;

// One module per section of the file, each owning its rules.
mod authorizers;
mod auto;
mod budgets;
mod cache;
mod cors;
mod firewall;
mod functions;
mod guard;
mod plans;
mod queues;
mod routes;
mod server;
mod tls;

mod error;
mod model;
mod route;

pub use authorizers::{Authorizer, IdentitySource, JwksSource, Jwt, LambdaAuthorizer};
pub use auto::{AutoAction, AutoMitigation, AutoMode, Sensitivity};
pub use budgets::{check_webhook, Budget, BudgetAction, BudgetPeriod, BudgetScope, Prices};
pub use cache::{CachePolicy, CacheSettings};
pub use cors::Cors;
pub use error::{ConfigError, Problem};
pub use functions::RUNTIME_API_PORT;
pub use guard::{ClientIp, Limits, Throttle};
pub use levee_common::{parse_duration, parse_size};
pub use model::{
    exposed_admin, AccessLog, Account, Config, Function, Isolation, Network, RuntimeKind, Server,
};
pub use plans::{Plan, PlanLimits, Quota, QuotaPeriod};
pub use queues::{DeadLetter, EventSourceConfig, FifoConfig, QueueConfig};
pub use route::{Route, RouteKey, RouteMethod};
pub use tls::{CertificateFiles, ClientAuth, Tls, TlsIdentity, MAX_CERTIFICATES};

#[cfg(test)]
mod tests;
