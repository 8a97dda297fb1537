//! levee-store: Levee's persistent state — usage plans, API keys, quota
//! counters and daily usage records — in one SQLite file (WAL) under the
//! data directory, mirrored in memory so the request path never waits on
//! the disk.
//!
//! Owns: the schema and its migrations ([`schema`]), the admin operations
//! on plans and keys ([`Store`]), the hot-path lookups (`authenticate`,
//! [`QuotaCounters::try_consume`], `record_usage`), and the write-behind that
//! puts counts on disk within 1 s ([`quota`] states the contract). Must
//! never: make the edge wait on SQLite, store or return a key's secret after
//! creation, or read the wall clock on the hot path (callers pass the time;
//! the [`Clock`] is read only for admin timestamps).
//!
//! Shared state sits behind traits ([`QuotaCounters`]) so a cluster backend
//! (Redis/Valkey) can replace the embedded one without touching the
//! pipeline.

pub mod error;
pub mod index;
pub mod key;
pub mod period;
pub mod plan;
pub mod quota;
pub mod schema;
pub mod sqlite;
mod store;
pub mod usage;
pub mod writebehind;

pub use error::StoreError;
pub use index::AuthenticatedKey;
pub use key::KeyInfo;
pub use levee_common::clock::{Clock, ManualClock, SystemClock};
pub use period::{day_string, parse_day, period_bounds, unix_day, Period};
pub use plan::{Plan, PlanSource, PlanSpec, QuotaSpec, RouteOverride, ThrottleSpec};
pub use quota::{route_counter_id, EmbeddedQuotas, QuotaCounters, QuotaDecision};
pub use schema::MIGRATIONS;
pub use store::{Store, DB_FILE, FLUSH_INTERVAL, LOCK_FILE};
pub use usage::{UsageOutcome, UsageRow};
