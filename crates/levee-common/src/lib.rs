//! What every Levee crate may share: one grammar for durations and one for
//! sizes, so `levee.toml`, firewall rules and the command line read `1m30s`
//! or `6MiB` the same way; and one way to quote caller-supplied text back in a
//! message, bounded and escaped.
//!
//! A leaf: it depends on nothing and never does I/O.

pub mod text;
pub mod units;

pub use units::{format_duration, parse_duration, parse_size};
