//! The compiled firewall: validation of a whole [`FirewallConfig`], the
//! priority-ordered evaluation loop, bans and counters.
//!
//! Owns rule ordering, actions, labels, bans and the body continuation.
//! Must never re-evaluate a rule for the same request (rate counters would
//! count it twice) and never block on anything: counters are relaxed atomics,
//! rate and ban state lives behind the `rate`/`ban` modules' own APIs.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

use super::config::{ActionKind, BlockResponseConfig, DefaultAction, FirewallConfig, RuleConfig};
use super::ipset::IpSet;
use super::rule::{ip_bytes, Compiler, Ctx, Top, Tri};
use super::{Continuation, FirewallError, RequestView, RuleCounters, Verdict};
use crate::ban::BanList;

/// Rules per firewall.
pub const MAX_RULES: usize = 1000;
/// Named IP sets per firewall.
pub const MAX_IP_SETS: usize = 100;
/// Labels one rule may add.
pub const MAX_LABELS_PER_RULE: usize = 20;
/// Largest `body_inspection_bytes`.
pub const MAX_BODY_INSPECTION_BYTES: u32 = 64 * 1024;
/// Largest `rate_max_keys` (each key costs the rate module ~100 bytes).
pub const MAX_RATE_MAX_KEYS: usize = 10_000_000;
/// Largest custom block body.
pub const MAX_BLOCK_BODY: usize = 8 * 1024;
/// Most extra headers on a block response.
pub const MAX_BLOCK_HEADERS: usize = 16;
/// Ban bounds: `after` in 1..=MAX_BAN_AFTER.
pub const MAX_BAN_AFTER: u32 = 1000;
/// Ban bounds: `within` in 1s..=1h.
pub const MAX_BAN_WITHIN: Duration = Duration::from_secs(3600);
/// Ban bounds: `duration` in 1s..=7d.
pub const MAX_BAN_DURATION: Duration = Duration::from_secs(7 * 86_400);
/// Longest rule, set or label name.
const MAX_NAME_LEN: usize = 128;

const DEFAULT_BODY: &str = r#"{"message":"Forbidden"}"#;

/// Distinguishes compiled firewalls so a continuation cannot be resumed on
/// a different one (a config reload between `evaluate` and `resume`).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A compiled firewall. Immutable except counters and rate/ban state;
/// `Send + Sync`, share it behind an `Arc`.
#[derive(Debug)]
pub struct Firewall {
    id: u64,
    /// Sorted by ascending priority.
    rules: Vec<Rule>,
    /// Indices of rules carrying a ban list, in priority order.
    ban_rules: Vec<usize>,
    default: Option<Arc<BlockResponse>>,
    /// `"default"`, allocated once.
    default_name: Arc<str>,
    body_limit: usize,
    inspects_body: bool,
}

#[derive(Debug)]
struct Rule {
    name: Arc<str>,
    action: Action,
    labels: Vec<Arc<str>>,
    ban: Option<BanList>,
    top: Top,
    counters: Counters,
}

#[derive(Debug)]
enum Action {
    Allow,
    Block(Arc<BlockResponse>),
    Count,
}

#[derive(Debug)]
struct BlockResponse {
    status: u16,
    body: Bytes,
    content_type: String,
    headers: Arc<[(HeaderName, HeaderValue)]>,
}

#[derive(Debug, Default)]
struct Counters {
    evaluated: AtomicU64,
    matched: AtomicU64,
    blocked: AtomicU64,
    counted: AtomicU64,
    banned: AtomicU64,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':' | b'.'))
}

impl Firewall {
    /// Compiles and validates; every problem names its key path, e.g.
    /// `firewall.rules[2].statement.regex`.
    pub fn compile(cfg: &FirewallConfig) -> Result<Firewall, FirewallError> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut err = |p: String, m: String| errors.push((p, m));

        if cfg.body_inspection_bytes == 0 || cfg.body_inspection_bytes > MAX_BODY_INSPECTION_BYTES {
            err(
                "firewall.body_inspection_bytes".into(),
                format!("must be 1..={MAX_BODY_INSPECTION_BYTES}"),
            );
        }
        if cfg.rate_max_keys == 0 || cfg.rate_max_keys > MAX_RATE_MAX_KEYS {
            err(
                "firewall.rate_max_keys".into(),
                format!("must be 1..={MAX_RATE_MAX_KEYS}"),
            );
        }
        let default = match (cfg.default_action, &cfg.default_response) {
            (DefaultAction::Allow, None) => None,
            (DefaultAction::Allow, Some(_)) => {
                err(
                    "firewall.default_response".into(),
                    "only valid with default_action = \"block\"".into(),
                );
                None
            }
            (DefaultAction::Block, r) => match block_response(r.as_ref()) {
                Ok(b) => Some(Arc::new(b)),
                Err((k, m)) => {
                    err(format!("firewall.default_response{k}"), m);
                    None
                }
            },
        };

        if cfg.ip_sets.len() > MAX_IP_SETS {
            err(
                "firewall.ip_sets".into(),
                format!("at most {MAX_IP_SETS} sets"),
            );
        }
        let mut ip_sets = HashMap::new();
        for (name, entries) in cfg.ip_sets.iter().take(MAX_IP_SETS) {
            if !valid_name(name) {
                err(
                    format!("firewall.ip_sets.{name}"),
                    format!("set names are [A-Za-z0-9_-]{{1,{MAX_NAME_LEN}}}"),
                );
            }
            match IpSet::parse(entries) {
                Ok(s) => {
                    ip_sets.insert(name.clone(), Arc::new(s));
                }
                Err((i, m)) => err(format!("firewall.ip_sets.{name}[{i}]"), m),
            }
        }

        if cfg.rules.len() > MAX_RULES {
            err(
                "firewall.rules".into(),
                format!("at most {MAX_RULES} rules"),
            );
        }
        // Compile in priority order so label references can be checked
        // against rules that run earlier; paths keep the config index.
        let mut order: Vec<(usize, &RuleConfig)> =
            cfg.rules.iter().take(MAX_RULES).enumerate().collect();
        order.sort_by_key(|(_, r)| r.priority);
        let mut names = BTreeSet::new();
        let mut prev_priority: Option<u32> = None;
        let mut known_labels: Vec<String> = Vec::new();
        let mut regexes = 0;
        let mut rules = Vec::with_capacity(order.len());
        for (i, rc) in order {
            let p = format!("firewall.rules[{i}]");
            if !valid_name(&rc.name) {
                err(
                    format!("{p}.name"),
                    format!("rule names are [A-Za-z0-9_-]{{1,{MAX_NAME_LEN}}}"),
                );
            } else if !names.insert(rc.name.as_str()) {
                err(
                    format!("{p}.name"),
                    format!("duplicate rule name `{}`", rc.name),
                );
            }
            if prev_priority == Some(rc.priority) {
                err(
                    format!("{p}.priority"),
                    format!("priority {} is used by another rule", rc.priority),
                );
            }
            prev_priority = Some(rc.priority);
            let action = match (rc.action, &rc.response) {
                (ActionKind::Block, r) => match block_response(r.as_ref()) {
                    Ok(b) => Some(Action::Block(Arc::new(b))),
                    Err((k, m)) => {
                        err(format!("{p}.response{k}"), m);
                        None
                    }
                },
                (_, Some(_)) => {
                    err(
                        format!("{p}.response"),
                        "only valid with action = \"block\"".into(),
                    );
                    None
                }
                (ActionKind::Allow, None) => Some(Action::Allow),
                (ActionKind::Count, None) => Some(Action::Count),
            };
            if rc.labels.len() > MAX_LABELS_PER_RULE {
                err(
                    format!("{p}.labels"),
                    format!("at most {MAX_LABELS_PER_RULE} labels"),
                );
            }
            for (j, l) in rc.labels.iter().enumerate() {
                if !valid_label(l) {
                    err(
                        format!("{p}.labels[{j}]"),
                        format!("labels are [A-Za-z0-9_.:-]{{1,{MAX_NAME_LEN}}}"),
                    );
                }
            }
            let ban = rc.ban.and_then(|b| {
                let mut ok = true;
                if rc.action != ActionKind::Block {
                    err(
                        format!("{p}.ban"),
                        "only valid with action = \"block\"".into(),
                    );
                    ok = false;
                }
                if b.after == 0 || b.after > MAX_BAN_AFTER {
                    err(
                        format!("{p}.ban.after"),
                        format!("must be 1..={MAX_BAN_AFTER}"),
                    );
                    ok = false;
                }
                if b.within.0 < Duration::from_secs(1) || b.within.0 > MAX_BAN_WITHIN {
                    err(format!("{p}.ban.within"), "must be 1s..=1h".into());
                    ok = false;
                }
                if b.duration.0 < Duration::from_secs(1) || b.duration.0 > MAX_BAN_DURATION {
                    err(format!("{p}.ban.duration"), "must be 1s..=7d".into());
                    ok = false;
                }
                ok.then(|| {
                    BanList::new(b.after, b.within.0, b.duration.0, cfg.rate_max_keys.max(1))
                })
            });
            let mut c = Compiler {
                ip_sets: &ip_sets,
                known_labels: &known_labels,
                regexes,
                rate_max_keys: cfg.rate_max_keys.clamp(1, MAX_RATE_MAX_KEYS),
                errors: Vec::new(),
            };
            let top = c.top(&rc.statement, &format!("{p}.statement"));
            regexes = c.regexes;
            for (k, m) in c.errors {
                err(k, m);
            }
            if let (Some(action), Some(top)) = (action, top) {
                // Only a rule that compiled adds labels: a rule matching the
                // label of a broken one is reported in the same pass, so the
                // importer drops a whole chain in one round, not one a round.
                known_labels.extend(rc.labels.iter().cloned());
                // Dry run keeps the rule's own action in config, but acts as count.
                let action = if rc.dry_run { Action::Count } else { action };
                rules.push(Rule {
                    name: Arc::from(rc.name.as_str()),
                    action,
                    labels: rc.labels.iter().map(|l| Arc::from(l.as_str())).collect(),
                    ban,
                    top,
                    counters: Counters::default(),
                });
            }
        }
        if !errors.is_empty() {
            return Err(FirewallError { problems: errors });
        }
        let ban_rules = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.ban.is_some())
            .map(|(i, _)| i)
            .collect();
        let inspects_body = rules.iter().any(|r| match &r.top {
            Top::Plain(s) => s.inspects_body(),
            Top::Rate(r) => r.inspects_body(),
        });
        Ok(Firewall {
            id: NEXT_ID.fetch_add(1, Relaxed),
            rules,
            ban_rules,
            default,
            default_name: Arc::from("default"),
            body_limit: cfg.body_inspection_bytes as usize,
            inspects_body,
        })
    }

    /// Whether any rule inspects the body: if so, how many leading bytes the
    /// edge should read (at most) before calling [`Firewall::resume`].
    pub fn body_inspection_bytes(&self) -> Option<usize> {
        self.inspects_body.then_some(self.body_limit)
    }

    /// Evaluates bans, then rules in priority order, against what is known so
    /// far. Returns [`Verdict::NeedBody`] at the first rule that cannot be
    /// decided without the body; earlier rules are never evaluated again.
    pub fn evaluate(&self, req: &RequestView<'_>, now: Instant) -> Verdict {
        let mut ipbuf = [0u8; 16];
        let ip = ip_bytes(req.client_ip, &mut ipbuf);
        for &i in &self.ban_rules {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            let (Some(ban), Action::Block(resp)) = (&rule.ban, &rule.action) else {
                continue;
            };
            if let Some(left) = ban.banned(ip, now) {
                rule.counters.banned.fetch_add(1, Relaxed);
                rule.counters.blocked.fetch_add(1, Relaxed);
                return block(&rule.name, resp, Some(left));
            }
        }
        self.run(0, Vec::new(), req, now)
    }

    /// Continues an evaluation that returned [`Verdict::NeedBody`]. A `None`
    /// body is treated as empty, so resuming always reaches a decision.
    pub fn resume(&self, cont: Continuation, req: &RequestView<'_>, now: Instant) -> Verdict {
        let mut req = *req;
        if req.body.is_none() {
            req.body = Some(&[]);
        }
        if cont.firewall_id != self.id {
            // Compiled after the request was first seen: its rules and
            // counters never saw it, so start from the beginning.
            return self.evaluate(&req, now);
        }
        self.run(cont.next_rule, cont.labels, &req, now)
    }

    fn run(
        &self,
        start: usize,
        mut labels: Vec<Arc<str>>,
        req: &RequestView<'_>,
        now: Instant,
    ) -> Verdict {
        for (i, rule) in self.rules.iter().enumerate().skip(start) {
            let cx = Ctx {
                req,
                labels: &labels,
                body_limit: self.body_limit,
            };
            let outcome = match &rule.top {
                Top::Plain(s) => match s.eval(&cx) {
                    Tri::Yes => Ok(Some(None)),
                    Tri::No => Ok(None),
                    Tri::NeedBody => Err(()),
                },
                Top::Rate(r) => r.eval(&cx, now).map(|o| o.map(Some)).map_err(|_| ()),
            };
            let retry_after = match outcome {
                Err(()) => {
                    return Verdict::NeedBody(Continuation {
                        firewall_id: self.id,
                        next_rule: i,
                        labels,
                    })
                }
                Ok(None) => {
                    rule.counters.evaluated.fetch_add(1, Relaxed);
                    continue;
                }
                Ok(Some(retry_after)) => retry_after,
            };
            let c = &rule.counters;
            c.evaluated.fetch_add(1, Relaxed);
            c.matched.fetch_add(1, Relaxed);
            for l in &rule.labels {
                if !labels.contains(l) {
                    labels.push(l.clone());
                }
            }
            match &rule.action {
                Action::Count => {
                    c.counted.fetch_add(1, Relaxed);
                }
                Action::Allow => return Verdict::Allow { labels },
                Action::Block(resp) => {
                    c.blocked.fetch_add(1, Relaxed);
                    if let Some(ban) = &rule.ban {
                        let mut ipbuf = [0u8; 16];
                        // The verdict is the same either way; a new ban shows
                        // up on this client's next request.
                        let _ = ban.strike(ip_bytes(req.client_ip, &mut ipbuf), now);
                    }
                    return block(&rule.name, resp, retry_after);
                }
            }
        }
        match &self.default {
            None => Verdict::Allow { labels },
            Some(resp) => block(&self.default_name, resp, None),
        }
    }

    /// Per-rule counters, in priority order.
    pub fn counters(&self) -> Vec<RuleCounters> {
        self.rules
            .iter()
            .map(|r| RuleCounters {
                name: r.name.to_string(),
                evaluated: r.counters.evaluated.load(Relaxed),
                matched: r.counters.matched.load(Relaxed),
                blocked: r.counters.blocked.load(Relaxed),
                counted: r.counters.counted.load(Relaxed),
                banned: r.counters.banned.load(Relaxed),
            })
            .collect()
    }
}

fn block(rule: &Arc<str>, r: &BlockResponse, retry_after: Option<Duration>) -> Verdict {
    Verdict::Block {
        rule: rule.clone(),
        status: r.status,
        body: r.body.clone(),
        content_type: r.content_type.clone(),
        headers: r.headers.clone(),
        retry_after,
    }
}

/// Validates a block response; the error is (key suffix, message).
fn block_response(cfg: Option<&BlockResponseConfig>) -> Result<BlockResponse, (String, String)> {
    let Some(cfg) = cfg else {
        return Ok(BlockResponse {
            status: 403,
            body: Bytes::from_static(DEFAULT_BODY.as_bytes()),
            content_type: "application/json".into(),
            headers: Arc::from(Vec::new()),
        });
    };
    if !(200..=599).contains(&cfg.status) {
        return Err((".status".into(), "must be 200..=599".into()));
    }
    let (body, default_ct) = match &cfg.body {
        None => (DEFAULT_BODY.to_owned(), "application/json"),
        Some(b) if b.len() > MAX_BLOCK_BODY => {
            return Err((".body".into(), format!("at most {MAX_BLOCK_BODY} bytes")))
        }
        Some(b) => (b.clone(), "text/plain; charset=utf-8"),
    };
    let content_type = cfg
        .content_type
        .clone()
        .unwrap_or_else(|| default_ct.to_owned());
    if HeaderValue::from_str(&content_type).is_err() {
        return Err((".content_type".into(), "not a valid header value".into()));
    }
    if cfg.headers.len() > MAX_BLOCK_HEADERS {
        return Err((
            ".headers".into(),
            format!("at most {MAX_BLOCK_HEADERS} headers"),
        ));
    }
    let mut headers = Vec::with_capacity(cfg.headers.len());
    for (k, v) in &cfg.headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            (
                format!(".headers.{k}"),
                "not a valid header name".to_owned(),
            )
        })?;
        // Framing headers are the edge's business: a wrong content-length
        // or transfer-encoding here would desync the connection.
        if [
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
            http::header::CONNECTION,
            http::header::CONTENT_TYPE,
        ]
        .contains(&name)
        {
            return Err((
                format!(".headers.{k}"),
                "set by the edge (use content_type for Content-Type)".into(),
            ));
        }
        let value = HeaderValue::from_str(v).map_err(|_| {
            (
                format!(".headers.{k}"),
                "not a valid header value".to_owned(),
            )
        })?;
        headers.push((name, value));
    }
    Ok(BlockResponse {
        status: cfg.status,
        body: Bytes::from(body),
        content_type,
        headers: Arc::from(headers),
    })
}
