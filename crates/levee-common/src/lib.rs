//! What every Levee crate may share: one grammar for durations and one for
//! sizes, so `levee.toml`, firewall rules and the command line read `1m30s`
//! or `6MiB` the same way; one way to quote caller-supplied text back in a
//! message, bounded and escaped; the validated names of functions, queues,
//! plans and budgets; the clock "now" is read through; and the one policy
//! for poisoned locks.
//!
//! A leaf: it depends on nothing and does no I/O beyond reading the system
//! time.

pub mod clock;
pub mod name;
pub mod sync;
pub mod text;
pub mod units;

pub use units::{format_duration, parse_duration, parse_size};
