//! Compiled statements and their three-valued evaluation.
//!
//! Owns statement compilation (with key paths for every problem) and
//! matching. A statement evaluates to match, no match, or "needs the body";
//! `and`/`or`/`not` combine these so that a rule whose outcome is already
//! decided by the headers never waits for the body. Must never keep
//! per-request state and never recurse deeper than [`MAX_DEPTH`].

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::bytes::{Regex, RegexBuilder};

use super::config::{
    DetectConfig, FieldConfig, IpSource, PositionConfig, RateKeyConfig, RateStatementConfig,
    SizeOp, StatementConfig, TransformConfig,
};
use super::field::{Field, Scratch, Visit};
use super::ipset::IpSet;
use super::transform::{self, MAX_TRANSFORMS};
use super::RequestView;
use crate::rate::{RateCounter, RateDecision};

/// Maximum nesting of `and`/`or`/`not`/scope-down (a rule's top statement is depth 1).
pub const MAX_DEPTH: usize = 10;
/// Maximum children of one `and`/`or`.
pub const MAX_CHILDREN: usize = 100;
/// Maximum bytes of a string-match search string (AWS allows 50).
pub const MAX_SEARCH_LEN: usize = 256;
/// Maximum bytes of a regex pattern.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Compiled-program bound per regex, and for its lazy DFA cache.
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Regex statements in a whole firewall: with [`REGEX_SIZE_LIMIT`] this caps
/// regex memory at about 128 MiB however large the config.
pub const MAX_REGEXES: usize = 256;
/// Aggregation key parts of a rate-based statement (AWS allows 5).
pub const MAX_RATE_KEYS: usize = 5;
/// Rate limit bounds (AWS: 10..=2e9; we allow 1 for small deployments).
pub const MAX_RATE_LIMIT: u64 = 2_000_000_000;
/// Rate window bounds.
pub const MIN_RATE_WINDOW: Duration = Duration::from_secs(1);
/// Rate window bounds.
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(600);
/// Key parts longer than this are replaced by a keyed hash, so one rate
/// counter entry costs at most ~5 x 70 bytes of key however large the header.
const MAX_KEY_PART: usize = 64;

/// Three-valued outcome of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tri {
    /// Matched.
    Yes,
    /// Did not match.
    No,
    /// Undecided until the body is known.
    NeedBody,
}

impl From<Visit> for Tri {
    fn from(v: Visit) -> Tri {
        match v {
            Visit::Matched => Tri::Yes,
            Visit::NotMatched => Tri::No,
            Visit::NeedBody => Tri::NeedBody,
        }
    }
}

/// What evaluation sees besides the request.
#[derive(Debug)]
pub struct Ctx<'a, 'r> {
    /// The request.
    pub req: &'a RequestView<'r>,
    /// Labels added by earlier rules.
    pub labels: &'a [Arc<str>],
    /// Body bytes to inspect.
    pub body_limit: usize,
}

/// A compiled non-rate statement.
#[derive(Debug)]
pub enum Stmt {
    /// IP-set membership.
    IpSet(Arc<IpSet>, IpSource),
    /// A field matcher.
    Field(FieldStmt),
    /// Exact label.
    Label(Arc<str>),
    /// Label prefix.
    LabelNamespace(Arc<str>),
    /// Conjunction.
    And(Vec<Stmt>),
    /// Disjunction.
    Or(Vec<Stmt>),
    /// Negation.
    Not(Box<Stmt>),
}

/// A field, its transformations and what to test on the result.
#[derive(Debug)]
pub struct FieldStmt {
    field: Field,
    transforms: Vec<TransformConfig>,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Exactly(Vec<u8>),
    StartsWith(Vec<u8>),
    EndsWith(Vec<u8>),
    /// Contains / contains-word / regex: the `regex` crate finds literals with
    /// SIMD substring search and runs patterns in linear time.
    Regex(Regex),
    Size(SizeOp, u64),
    Sqli,
    Xss,
}

impl Test {
    fn check(&self, v: &[u8]) -> bool {
        match self {
            Test::Exactly(s) => v == s.as_slice(),
            Test::StartsWith(s) => v.starts_with(s),
            Test::EndsWith(s) => v.ends_with(s),
            Test::Regex(r) => r.is_match(v),
            Test::Size(op, n) => {
                let len = v.len() as u64;
                match op {
                    SizeOp::Eq => len == *n,
                    SizeOp::Ne => len != *n,
                    SizeOp::Lt => len < *n,
                    SizeOp::Le => len <= *n,
                    SizeOp::Gt => len > *n,
                    SizeOp::Ge => len >= *n,
                }
            }
            Test::Sqli => super::detect::is_sqli(v),
            Test::Xss => super::detect::is_xss(v),
        }
    }
}

impl Stmt {
    /// Evaluates against the request; recursion depth is bounded by compile.
    pub fn eval(&self, cx: &Ctx<'_, '_>) -> Tri {
        match self {
            Stmt::IpSet(set, src) => {
                let ip = match src {
                    IpSource::Client => Some(cx.req.client_ip),
                    IpSource::Forwarded => cx.req.forwarded_ip,
                };
                if ip.is_some_and(|ip| set.contains(ip)) {
                    Tri::Yes
                } else {
                    Tri::No
                }
            }
            Stmt::Field(f) => f
                .field
                .visit(cx.req, cx.body_limit, |v| {
                    f.test.check(&transform::apply(&f.transforms, v))
                })
                .into(),
            Stmt::Label(l) => tri(cx.labels.iter().any(|x| x == l)),
            Stmt::LabelNamespace(ns) => tri(cx.labels.iter().any(|x| x.starts_with(&**ns))),
            Stmt::And(v) => {
                // No beats NeedBody: one header-only mismatch decides the rule.
                let mut need = false;
                for s in v {
                    match s.eval(cx) {
                        Tri::No => return Tri::No,
                        Tri::NeedBody => need = true,
                        Tri::Yes => {}
                    }
                }
                if need {
                    Tri::NeedBody
                } else {
                    Tri::Yes
                }
            }
            Stmt::Or(v) => {
                let mut need = false;
                for s in v {
                    match s.eval(cx) {
                        Tri::Yes => return Tri::Yes,
                        Tri::NeedBody => need = true,
                        Tri::No => {}
                    }
                }
                if need {
                    Tri::NeedBody
                } else {
                    Tri::No
                }
            }
            Stmt::Not(s) => match s.eval(cx) {
                Tri::Yes => Tri::No,
                Tri::No => Tri::Yes,
                Tri::NeedBody => Tri::NeedBody,
            },
        }
    }

    /// Whether any part may need the body.
    pub fn inspects_body(&self) -> bool {
        match self {
            Stmt::Field(f) => f.field.is_body(),
            Stmt::And(v) | Stmt::Or(v) => v.iter().any(Stmt::inspects_body),
            Stmt::Not(s) => s.inspects_body(),
            Stmt::IpSet(..) | Stmt::Label(_) | Stmt::LabelNamespace(_) => false,
        }
    }
}

fn tri(b: bool) -> Tri {
    if b {
        Tri::Yes
    } else {
        Tri::No
    }
}

/// A compiled rate-based statement.
#[derive(Debug)]
pub struct RateStmt {
    counter: RateCounter,
    key: Vec<RateKey>,
    scope_down: Option<Stmt>,
    /// Keyed per firewall instance so attackers cannot aim hash collisions.
    hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug)]
enum RateKey {
    Ip,
    ForwardedIp,
    ApiKey,
    Field(Field),
}

impl RateStmt {
    /// Counts the request (if in scope and every key part is present) and
    /// matches when the key is over its limit; returns the retry-after.
    pub fn eval(&self, cx: &Ctx<'_, '_>, now: Instant) -> Result<Option<Duration>, NeedBody> {
        if let Some(s) = &self.scope_down {
            match s.eval(cx) {
                Tri::Yes => {}
                Tri::No => return Ok(None),
                Tri::NeedBody => return Err(NeedBody),
            }
        }
        let mut key = Vec::with_capacity(64);
        for (i, part) in self.key.iter().enumerate() {
            let mut ipbuf = [0u8; 16];
            let mut scratch = Scratch::default();
            let bytes: &[u8] = match part {
                RateKey::Ip => ip_bytes(cx.req.client_ip, &mut ipbuf),
                RateKey::ForwardedIp => match cx.req.forwarded_ip {
                    Some(ip) => ip_bytes(ip, &mut ipbuf),
                    None => return Ok(None),
                },
                RateKey::ApiKey => match cx.req.api_key {
                    Some(k) => k.as_bytes(),
                    None => return Ok(None),
                },
                RateKey::Field(f) => match f.first(cx.req, &mut scratch) {
                    Some(v) => v,
                    None => return Ok(None),
                },
            };
            // Part index + length prefix: ("ab","c") and ("a","bc") differ.
            key.push(i as u8);
            if bytes.len() > MAX_KEY_PART {
                key.push(0xff);
                key.extend_from_slice(&self.hasher.hash_one(bytes).to_le_bytes());
                key.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            } else {
                key.push(bytes.len() as u8);
                key.extend_from_slice(bytes);
            }
        }
        Ok(match self.counter.hit(&key, now) {
            RateDecision::Allowed { .. } => None,
            RateDecision::Limited { retry_after } => Some(retry_after),
        })
    }

    /// Whether the scope-down may need the body.
    pub fn inspects_body(&self) -> bool {
        self.scope_down.as_ref().is_some_and(Stmt::inspects_body)
    }
}

/// Marker: evaluation needs the body.
#[derive(Debug, Clone, Copy)]
pub struct NeedBody;

/// Canonical address bytes (IPv4-mapped IPv6 counts as IPv4).
pub fn ip_bytes(ip: IpAddr, buf: &mut [u8; 16]) -> &[u8] {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            buf[..4].copy_from_slice(&a.octets());
            &buf[..4]
        }
        IpAddr::V6(a) => {
            *buf = a.octets();
            &buf[..]
        }
    }
}

/// Compiles statements, collecting every problem with its key path.
#[derive(Debug)]
pub struct Compiler<'c> {
    /// Compiled IP sets by name.
    pub ip_sets: &'c HashMap<String, Arc<IpSet>>,
    /// Labels added by rules earlier in priority order.
    pub known_labels: &'c [String],
    /// User regexes compiled so far (bounded by [`MAX_REGEXES`]).
    pub regexes: usize,
    /// Rate counter capacity.
    pub rate_max_keys: usize,
    /// Problems found: (key path, message).
    pub errors: Vec<(String, String)>,
}

/// A compiled top-level statement.
#[derive(Debug)]
pub enum Top {
    /// An ordinary statement.
    Plain(Stmt),
    /// A rate-based statement.
    Rate(RateStmt),
}

impl Compiler<'_> {
    fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.errors.push((path.to_owned(), msg.into()));
    }

    /// Compiles a rule's top statement at `path` (e.g. `firewall.rules[2].statement`).
    pub fn top(&mut self, cfg: &StatementConfig, path: &str) -> Option<Top> {
        match cfg {
            StatementConfig::Rate(r) => self.rate(r, &format!("{path}.rate")).map(Top::Rate),
            other => self.stmt(other, path, 1).map(Top::Plain),
        }
    }

    fn rate(&mut self, r: &RateStatementConfig, path: &str) -> Option<RateStmt> {
        let before = self.errors.len();
        if r.limit == 0 || r.limit > MAX_RATE_LIMIT {
            self.err(
                &format!("{path}.limit"),
                format!("must be 1..={MAX_RATE_LIMIT}"),
            );
        }
        if r.window.0 < MIN_RATE_WINDOW || r.window.0 > MAX_RATE_WINDOW {
            self.err(&format!("{path}.window"), "must be 1s..=600s");
        }
        if r.key.is_empty() || r.key.len() > MAX_RATE_KEYS {
            self.err(
                &format!("{path}.key"),
                format!("must have 1..={MAX_RATE_KEYS} parts"),
            );
        }
        let mut key = Vec::with_capacity(r.key.len());
        for (i, k) in r.key.iter().enumerate() {
            if r.key.get(..i).is_some_and(|prev| prev.contains(k)) {
                self.err(&format!("{path}.key[{i}]"), "duplicate key part");
            }
            let field = |f: FieldConfig| Field::compile(&f);
            let part = match k {
                RateKeyConfig::Ip => Ok(RateKey::Ip),
                RateKeyConfig::ForwardedIp => Ok(RateKey::ForwardedIp),
                RateKeyConfig::ApiKey => Ok(RateKey::ApiKey),
                RateKeyConfig::Path => field(FieldConfig::Path).map(RateKey::Field),
                RateKeyConfig::Method => field(FieldConfig::Method).map(RateKey::Field),
                RateKeyConfig::QueryString => field(FieldConfig::QueryString).map(RateKey::Field),
                RateKeyConfig::Header(h) => {
                    field(FieldConfig::Header(h.clone())).map(RateKey::Field)
                }
                RateKeyConfig::QueryArg(a) => {
                    field(FieldConfig::QueryArg(a.clone())).map(RateKey::Field)
                }
                RateKeyConfig::Cookie(c) => {
                    field(FieldConfig::Cookie(c.clone())).map(RateKey::Field)
                }
                RateKeyConfig::HeaderShape => field(FieldConfig::HeaderShape).map(RateKey::Field),
                RateKeyConfig::PathShape => field(FieldConfig::PathShape).map(RateKey::Field),
            };
            match part {
                Ok(p) => key.push(p),
                Err(e) => self.err(&format!("{path}.key[{i}]"), e),
            }
        }
        let scope_down = match &r.scope_down {
            Some(s) => self.stmt(s, &format!("{path}.scope_down"), 2),
            None => None,
        };
        if self.errors.len() > before {
            return None;
        }
        Some(RateStmt {
            counter: RateCounter::new(r.limit, r.window.0, self.rate_max_keys),
            key,
            scope_down,
            hasher: Default::default(),
        })
    }

    fn stmt(&mut self, cfg: &StatementConfig, path: &str, depth: usize) -> Option<Stmt> {
        if depth > MAX_DEPTH {
            self.err(path, format!("statements nest deeper than {MAX_DEPTH}"));
            return None;
        }
        match cfg {
            StatementConfig::IpSet(s) => match self.ip_sets.get(&s.name) {
                Some(set) => Some(Stmt::IpSet(set.clone(), s.source)),
                None => {
                    self.err(
                        &format!("{path}.ip_set.name"),
                        format!("no ip set named `{}`", s.name),
                    );
                    None
                }
            },
            StatementConfig::StringMatch(m) => {
                let p = format!("{path}.string_match");
                let s = m.search.as_bytes();
                if s.is_empty() || s.len() > MAX_SEARCH_LEN {
                    self.err(
                        &format!("{p}.search"),
                        format!("must be 1..={MAX_SEARCH_LEN} bytes"),
                    );
                    return None;
                }
                let word = "[^A-Za-z0-9_]";
                let test = match m.position {
                    PositionConfig::Exactly => Test::Exactly(s.to_vec()),
                    PositionConfig::StartsWith => Test::StartsWith(s.to_vec()),
                    PositionConfig::EndsWith => Test::EndsWith(s.to_vec()),
                    PositionConfig::Contains => {
                        Test::Regex(self.regex(&regex::escape(&m.search), &p, true)?)
                    }
                    PositionConfig::ContainsWord => Test::Regex(self.regex(
                        &format!("(?-u:(?:^|{word}){}(?:$|{word}))", regex::escape(&m.search)),
                        &p,
                        true,
                    )?),
                };
                self.field_stmt(&m.field, &m.transforms, test, &p)
            }
            StatementConfig::Regex(m) => {
                let p = format!("{path}.regex");
                if m.pattern.len() > MAX_PATTERN_LEN {
                    self.err(
                        &format!("{p}.pattern"),
                        format!("longer than {MAX_PATTERN_LEN} bytes"),
                    );
                    return None;
                }
                let re = self.regex(&m.pattern, &p, false)?;
                self.field_stmt(&m.field, &m.transforms, Test::Regex(re), &p)
            }
            StatementConfig::Size(m) => {
                let p = format!("{path}.size");
                self.field_stmt(&m.field, &m.transforms, Test::Size(m.op, m.size), &p)
            }
            StatementConfig::Sqli(DetectConfig { field, transforms }) => {
                self.field_stmt(field, transforms, Test::Sqli, &format!("{path}.sqli"))
            }
            StatementConfig::Xss(DetectConfig { field, transforms }) => {
                self.field_stmt(field, transforms, Test::Xss, &format!("{path}.xss"))
            }
            StatementConfig::Label(l) => {
                if !self.known_labels.iter().any(|k| k == l) {
                    self.err(
                        &format!("{path}.label"),
                        format!("no rule with a lower priority adds label `{l}`"),
                    );
                    return None;
                }
                Some(Stmt::Label(Arc::from(l.as_str())))
            }
            StatementConfig::LabelNamespace(ns) => {
                if ns.is_empty() || !self.known_labels.iter().any(|k| k.starts_with(ns.as_str())) {
                    self.err(
                        &format!("{path}.label_namespace"),
                        format!("no rule with a lower priority adds a label in `{ns}`"),
                    );
                    return None;
                }
                Some(Stmt::LabelNamespace(Arc::from(ns.as_str())))
            }
            StatementConfig::And(v) => self.list(v, &format!("{path}.and"), depth).map(Stmt::And),
            StatementConfig::Or(v) => self.list(v, &format!("{path}.or"), depth).map(Stmt::Or),
            StatementConfig::Not(s) => self
                .stmt(s, &format!("{path}.not"), depth + 1)
                .map(|s| Stmt::Not(Box::new(s))),
            StatementConfig::Rate(_) => {
                self.err(
                    &format!("{path}.rate"),
                    "rate-based statements are only allowed as a rule's top statement",
                );
                None
            }
        }
    }

    fn list(&mut self, v: &[StatementConfig], path: &str, depth: usize) -> Option<Vec<Stmt>> {
        if v.is_empty() || v.len() > MAX_CHILDREN {
            self.err(path, format!("must have 1..={MAX_CHILDREN} statements"));
            return None;
        }
        let out: Vec<Option<Stmt>> = v
            .iter()
            .enumerate()
            .map(|(i, s)| self.stmt(s, &format!("{path}[{i}]"), depth + 1))
            .collect();
        out.into_iter().collect()
    }

    fn field_stmt(
        &mut self,
        f: &FieldConfig,
        ts: &[TransformConfig],
        test: Test,
        path: &str,
    ) -> Option<Stmt> {
        if ts.len() > MAX_TRANSFORMS {
            self.err(
                &format!("{path}.transforms"),
                format!("at most {MAX_TRANSFORMS} transformations"),
            );
            return None;
        }
        match Field::compile(f) {
            Ok(field) => Some(Stmt::Field(FieldStmt {
                field,
                transforms: ts.to_vec(),
                test,
            })),
            Err(e) => {
                self.err(&format!("{path}.field"), e);
                None
            }
        }
    }

    /// `literal`: an escaped search string, tiny whatever its length, so it
    /// does not count against [`MAX_REGEXES`].
    fn regex(&mut self, pattern: &str, path: &str, literal: bool) -> Option<Regex> {
        if !literal {
            if self.regexes >= MAX_REGEXES {
                self.err(
                    path,
                    format!("more than {MAX_REGEXES} regex statements in the firewall"),
                );
                return None;
            }
            self.regexes += 1;
        }
        match RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
        {
            Ok(r) => Some(r),
            Err(e) => {
                // Keep the first line: regex errors can be multi-line ascii art.
                let msg = e.to_string();
                self.err(
                    &format!("{path}.pattern"),
                    msg.lines()
                        .last()
                        .unwrap_or("invalid regex")
                        .trim()
                        .to_owned(),
                );
                None
            }
        }
    }
}
