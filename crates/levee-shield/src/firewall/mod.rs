//! Firewall rules: AWS-WAF-style statements evaluated by priority, first
//! terminating action wins.
//!
//! Owns rule compilation ([`Firewall::compile`], which reports every problem
//! with its key path), evaluation ([`Firewall::evaluate`] / [`Firewall::resume`]),
//! per-rule counters, and the AWS WAF JSON importer ([`import_waf_json`]).
//!
//! Must never do I/O, read a clock (callers pass `now`), panic on any input,
//! or count a request twice in a rate-based rule: when a rule needs the body,
//! evaluation stops *before* that rule and [`Firewall::resume`] continues from
//! it, so rules already evaluated (and their counters) are never revisited.
//!
//! Order of a request through the firewall:
//! 1. bans (from rules with `ban = {...}`) are checked before any rule;
//! 2. rules in ascending `priority`: a match adds the rule's labels, then
//!    `count` (or any rule with `dry_run = true`) bumps counters and goes on,
//!    `allow`/`block` stop;
//! 3. the default action.
//!
//! Every bound is a named constant: [`MAX_RULES`], [`MAX_DEPTH`],
//! [`MAX_CHILDREN`], [`MAX_REGEXES`], [`REGEX_SIZE_LIMIT`],
//! [`MAX_IP_SET_ENTRIES`], [`MAX_BODY_INSPECTION_BYTES`] and friends.

mod config;
mod detect;
mod engine;
mod field;
mod ipset;
mod path_shape;
mod rule;
mod shape;
mod transform;
mod waf_import;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::{
    ActionKind, BanConfig, BlockResponseConfig, DefaultAction, DetectConfig, DurationConfig,
    FieldConfig, FirewallConfig, IpSetStatementConfig, IpSource, PositionConfig, RateKeyConfig,
    RateStatementConfig, RegexMatchConfig, RuleConfig, SizeConstraintConfig, SizeOp,
    StatementConfig, StringMatchConfig, TransformConfig, DEFAULT_BODY_INSPECTION_BYTES,
    DEFAULT_RATE_MAX_KEYS,
};
pub use engine::{
    Firewall, MAX_BAN_AFTER, MAX_BAN_DURATION, MAX_BAN_WITHIN, MAX_BLOCK_BODY, MAX_BLOCK_HEADERS,
    MAX_BODY_INSPECTION_BYTES, MAX_IP_SETS, MAX_LABELS_PER_RULE, MAX_RATE_MAX_KEYS, MAX_RULES,
};
pub use ipset::{IpSet, MAX_IP_SET_ENTRIES};
pub use path_shape::{PathShape, PATH_SHAPE_LEN};
pub use rule::{
    MAX_CHILDREN, MAX_DEPTH, MAX_PATTERN_LEN, MAX_RATE_KEYS, MAX_RATE_LIMIT, MAX_REGEXES,
    MAX_SEARCH_LEN, REGEX_SIZE_LIMIT,
};
pub use shape::{Shape, SHAPE_LEN};
pub use transform::{percent_decode, MAX_TRANSFORMS};
pub use waf_import::{import_waf_json, ImportError, WafImport};

/// What the firewall may look at. Built by the edge per request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Already resolved (trusted-proxy aware) by the edge.
    pub client_ip: IpAddr,
    /// First X-Forwarded-For hop, if any (forwarded-IP aggregation key and
    /// `ip_set` with `source = "forwarded"`).
    pub forwarded_ip: Option<IpAddr>,
    /// The method.
    pub method: &'a str,
    /// Raw, percent-encoded path.
    pub path: &'a str,
    /// Raw query string, without `?`.
    pub query: &'a str,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// The first `body_inspection_bytes` bytes of the body once read; pass
    /// `Some(&[])` for a request known to have no body.
    pub body: Option<&'a [u8]>,
    /// The API key the edge resolved, if any.
    pub api_key: Option<&'a str>,
}

/// The firewall's decision.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Default action allow, or an allow rule matched. `labels` are every
    /// label added on the way (for logging and downstream decisions).
    Allow {
        /// Labels added by matching rules, in the order added, deduplicated.
        labels: Vec<Arc<str>>,
    },
    /// Answer with this response and do not forward the request.
    Block {
        /// The rule that blocked (`"default"` for the default action).
        rule: Arc<str>,
        /// Status, 200..=599.
        status: u16,
        /// Response body.
        body: bytes::Bytes,
        /// Content-Type of `body`.
        content_type: String,
        /// Extra response headers configured on the rule.
        headers: Arc<[(http::HeaderName, http::HeaderValue)]>,
        /// For rate-based rules and bans: when the client may try again.
        retry_after: Option<Duration>,
    },
    /// A rule needs the body: read at most
    /// [`Firewall::body_inspection_bytes`] bytes and call [`Firewall::resume`].
    NeedBody(Continuation),
}

/// Where evaluation stopped for the body. Single use: not `Clone`, so a
/// request cannot be resumed twice (which would count it twice).
#[derive(Debug)]
pub struct Continuation {
    /// The compiled firewall it belongs to; a continuation handed to another
    /// firewall (after a reload) starts over there.
    firewall_id: u64,
    /// Index (in priority order) of the rule that needed the body.
    next_rule: usize,
    /// Labels added before that rule.
    labels: Vec<Arc<str>>,
}

impl PartialEq for Continuation {
    fn eq(&self, o: &Self) -> bool {
        self.firewall_id == o.firewall_id
            && self.next_rule == o.next_rule
            && self.labels == o.labels
    }
}

/// Per-rule counters for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleCounters {
    /// Rule name.
    pub name: String,
    /// Requests the rule was evaluated on (bans excluded).
    pub evaluated: u64,
    /// Requests its statement matched.
    pub matched: u64,
    /// Requests it blocked, including those blocked by its ban.
    pub blocked: u64,
    /// Matches that only counted (`count` action or `dry_run`).
    pub counted: u64,
    /// Requests blocked because the client was banned by this rule.
    pub banned: u64,
}

/// Every problem found by [`Firewall::compile`], each with its key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FirewallError {
    /// (key path such as `firewall.rules[2].statement.regex.pattern`, message).
    pub problems: Vec<(String, String)>,
}

impl std::fmt::Display for FirewallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (path, msg)) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{path}: {msg}")?;
        }
        Ok(())
    }
}
