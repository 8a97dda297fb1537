//! levee-meter: what invocations cost, and what a flood may spend.
//!
//! Owns: billing meters (requests, GB-seconds, bytes out; per function,
//! route and API key; per UTC hour, day and month) priced by a configurable
//! table ([`pricing`], [`meters`]), budgets with alerts, throttles and hard
//! spend caps ([`budget`] decides, [`budgets`] runs them), webhook alert
//! delivery ([`alert`]), the Prometheus metrics the platform exports
//! ([`metrics`]) and access-log lines ([`access`]).
//!
//! Must never: make a request wait on SQLite or on a webhook (the hot-path
//! calls [`Meters::record`] and [`Budgets::check`] touch memory only), read
//! the wall clock on the hot path (callers pass the time), grow a map
//! without a stated bound, or panic on any input.
//!
//! Pure decision logic ([`pricing`], [`period`], [`budget`], [`access`]) is
//! separate from I/O ([`meters`]' SQLite write-behind, [`alert`]'s HTTP).

pub mod access;
pub mod alert;
pub mod budget;
pub mod budgets;
mod db;
pub mod error;
pub mod meters;
pub mod metrics;
pub mod model;
pub mod period;
pub mod pricing;

pub use access::{access_line, AccessEntry, AccessFormat};
pub use alert::{Alert, AlertSink, RetryPolicy};
pub use budget::{AlertKind, BudgetDecision, BudgetState, BudgetStatus, BurnGauge};
pub use budgets::Budgets;
pub use error::MeterError;
pub use meters::{CostBy, CostPeriod, CostRow, Invocation, Meters, DB_FILE, FLUSH_INTERVAL};
pub use metrics::Decision;
pub use model::{Budget, BudgetAction, BudgetPeriod, BudgetScope, Prices};
pub use pricing::Usage;
