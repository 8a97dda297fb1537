//! Automatic attack detection (issue 14): a baseline of how much traffic
//! arrives and what it looks like, and an event when both change at once,
//! with the signature that covers the surplus and the firewall rule that
//! would match it.
//!
//! Owns the per-second composition of sampled requests (heavy hitters per
//! attribute, [`TOP_K`] each), the learned baseline (an EWMA of the rate
//! and of each value's share, [`BASELINE_VALUES`] per attribute) and the
//! recent events ([`MAX_EVENTS`]). Pure: samples in, [`Detector::tick`]
//! with the caller's clock, events out; no I/O, no threads. Must never
//! grow with the traffic's cardinality, learn while an event is open (an
//! attack must not teach itself normal), or propose a signature that
//! would have matched more than [`Settings::max_baseline_share`] of the
//! baseline.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::firewall::{PathShape, Shape};

/// Heavy hitters kept per attribute per tick (Space-Saving).
pub const TOP_K: usize = 256;
/// Values whose baseline share is remembered, per attribute.
pub const BASELINE_VALUES: usize = 1024;
/// Events kept, newest last.
pub const MAX_EVENTS: usize = 100;
/// Automatic rule `auto-N` has priority `AUTO_PRIORITY + N`: after any
/// operator rule a config is likely to hold.
pub const AUTO_PRIORITY: u64 = 1_000_000;
/// Longest user agent kept as a signature's text; longer ones are matched
/// by this prefix.
pub const MAX_AGENT_BYTES: usize = 96;

/// One sampled request, as the edge saw it: cheap to build (no heap) and
/// fixed in size.
#[derive(Debug, Clone)]
pub struct Sample {
    pub client: IpAddr,
    /// The `User-Agent`, cut at [`MAX_AGENT_BYTES`]; empty when absent.
    pub agent: Agent,
    /// The header-order fingerprint.
    pub shape: Shape,
    /// What it asked for, identifiers taken out.
    pub path: PathShape,
    pub method: Method,
    /// The status it was answered with.
    pub status: u16,
    /// Whether it carried an API key, and whether the key was good.
    pub key: KeyUse,
    /// Whether its answer shows the service under strain.
    pub outcome: Outcome,
}

/// A request's method, as one of the common ones or "other".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(u8);

/// Methods told apart; anything else is `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];

impl Method {
    pub fn of(method: &str) -> Self {
        let i = METHODS[..METHODS.len() - 1]
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1);
        Method(i as u8)
    }

    fn as_str(self) -> &'static str {
        METHODS[usize::from(self.0).min(METHODS.len() - 1)]
    }
}

/// A request's API key, as far as composition goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyUse {
    None,
    Valid,
    /// Missing where required, unknown or disabled.
    Refused,
}

impl KeyUse {
    fn as_str(self) -> &'static str {
        match self {
            KeyUse::None => "none",
            KeyUse::Valid => "valid",
            KeyUse::Refused => "refused",
        }
    }
}

/// What a request's answer says about the service behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered, or refused by a rule, a throttle or a key: no strain.
    Fine,
    /// The function had no free slot (its concurrency 429).
    Saturated,
    /// The function failed or timed out (a 5xx).
    Failed,
    /// Refused by a budget: the spend is at its limit.
    OverBudget,
}

/// A user agent's first bytes, inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    len: u8,
    bytes: [u8; MAX_AGENT_BYTES],
    /// The header was longer than what is kept.
    cut: bool,
}

/// Only the bytes in use: most agents are far shorter than the room.
impl std::hash::Hash for Agent {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.bytes[..usize::from(self.len)]);
        state.write_u8(u8::from(self.cut));
    }
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl Agent {
    /// From a header value; non-UTF-8 bytes are kept as they are and
    /// shown lossily.
    pub fn of(value: Option<&[u8]>) -> Self {
        let value = value.unwrap_or_default();
        let mut bytes = [0; MAX_AGENT_BYTES];
        // Cut on a character boundary so the text (and a rule) stays valid.
        let mut len = value.len().min(MAX_AGENT_BYTES);
        if let Err(e) = std::str::from_utf8(&value[..len]) {
            // A character cut in two at the end (not bad bytes inside).
            if e.error_len().is_none() {
                len = e.valid_up_to();
            }
        }
        bytes[..len].copy_from_slice(&value[..len]);
        Self {
            len: len as u8,
            bytes,
            cut: value.len() > len,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes[..usize::from(self.len)]).into_owned()
    }
}

/// What a signature matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// The request's user agent: what a distributed flood has in common.
    UserAgent,
    /// The header shape: what a flood rotating user agents still has in
    /// common, the tool's own order of headers.
    HeaderShape,
    /// The client's IPv4 /24 or IPv6 /48, or when the surplus is spread
    /// over many of those, its /16 or /32: only when the surplus really
    /// comes from one.
    Prefix,
    /// The path shape together with the header shape: one kind of client
    /// asking for one thing. A signature only while the service is under
    /// strain (a flash crowd of one browser to one page looks the same).
    PathAndShape,
    /// What is asked for, and how it was answered: evidence of what
    /// changed, never a signature alone (a launch or a crowd changes them
    /// too).
    PathShape,
    Method,
    Status,
    ApiKey,
}

impl Attribute {
    pub fn as_str(self) -> &'static str {
        match self {
            Attribute::UserAgent => "user_agent",
            Attribute::HeaderShape => "header_shape",
            Attribute::Prefix => "prefix",
            Attribute::PathAndShape => "path_shape+header_shape",
            Attribute::PathShape => "path_shape",
            Attribute::Method => "method",
            Attribute::Status => "status",
            Attribute::ApiKey => "api_key",
        }
    }
}

/// An attribute's value: the exemplar a rule is written from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Value {
    Agent(Agent),
    Shape(Shape),
    /// The network address of the client's /24 (or /48), as 128 bits;
    /// `wide`: its /16 (or /32) instead.
    Prefix {
        bits: u128,
        v6: bool,
        wide: bool,
    },
    PathAndShape(PathShape, Shape),
    Path(PathShape),
    Method(Method),
    Status(u16),
    Key(KeyUse),
}

impl Value {
    fn attribute(&self) -> Attribute {
        match self {
            Value::Agent(_) => Attribute::UserAgent,
            Value::Shape(_) => Attribute::HeaderShape,
            Value::Prefix { .. } => Attribute::Prefix,
            Value::PathAndShape(..) => Attribute::PathAndShape,
            Value::Path(_) => Attribute::PathShape,
            Value::Method(_) => Attribute::Method,
            Value::Status(_) => Attribute::Status,
            Value::Key(_) => Attribute::ApiKey,
        }
    }

    fn of_prefix(ip: IpAddr, wide: bool) -> Self {
        let (bits, v6) = match (ip, wide) {
            (IpAddr::V4(v4), false) => (u128::from(u32::from(v4) & 0xffff_ff00), false),
            (IpAddr::V4(v4), true) => (u128::from(u32::from(v4) & 0xffff_0000), false),
            (IpAddr::V6(v6), false) => (u128::from(v6) & !((1u128 << 80) - 1), true),
            (IpAddr::V6(v6), true) => (u128::from(v6) & !((1u128 << 96) - 1), true),
        };
        Value::Prefix { bits, v6, wide }
    }

    fn text(&self) -> String {
        match self {
            Value::Agent(a) => a.text(),
            Value::Shape(shape) => shape.as_str().to_owned(),
            Value::Prefix {
                bits,
                v6: false,
                wide,
            } => {
                let len = if *wide { 16 } else { 24 };
                format!("{}/{len}", std::net::Ipv4Addr::from(*bits as u32))
            }
            Value::Prefix {
                bits,
                v6: true,
                wide,
            } => {
                let len = if *wide { 32 } else { 48 };
                format!("{}/{len}", std::net::Ipv6Addr::from(*bits))
            }
            Value::PathAndShape(path, shape) => format!("{} {}", path.as_str(), shape.as_str()),
            Value::Path(path) => path.as_str().to_owned(),
            Value::Method(m) => m.as_str().to_owned(),
            Value::Status(status) => status.to_string(),
            Value::Key(key) => key.as_str().to_owned(),
        }
    }

    /// A saved value back from its attribute and text (`None` for one
    /// that does not parse).
    fn parse(attribute: &str, text: &str) -> Option<Self> {
        Some(match attribute {
            "path_shape+header_shape" => {
                let (path, shape) = text.rsplit_once(' ')?;
                Value::PathAndShape(PathShape::parse(path), Shape::parse(shape)?)
            }
            "path_shape" => Value::Path(PathShape::parse(text)),
            "method" => Value::Method(Method::of(text)),
            "status" => Value::Status(text.parse().ok()?),
            "api_key" => Value::Key(match text {
                "none" => KeyUse::None,
                "valid" => KeyUse::Valid,
                "refused" => KeyUse::Refused,
                _ => return None,
            }),
            _ => return None,
        })
    }

    /// The statement that matches this value (and the IP set it needs);
    /// `None` for evidence a rule cannot match before the answer.
    fn statement(&self, name: &str) -> Option<(String, Option<String>)> {
        Some(match self {
            Value::Agent(a) => {
                let position = if a.cut { "starts_with" } else { "exactly" };
                let search = toml_string(&a.text());
                (
                    format!(
                        "{{ string_match = {{ field = {{ header = \"user-agent\" }}, search = {search}, position = \"{position}\" }} }}"
                    ),
                    None,
                )
            }
            Value::Shape(shape) => (
                format!(
                    "{{ string_match = {{ field = \"header_shape\", search = \"{}\", position = \"exactly\" }} }}",
                    shape.as_str()
                ),
                None,
            ),
            Value::Prefix { .. } => (
                format!("{{ ip_set = {{ name = \"{name}\" }} }}"),
                Some(format!(
                    "[firewall.ip_sets]\n{name} = [\"{}\"]\n\n",
                    self.text()
                )),
            ),
            Value::PathAndShape(path, shape) => (
                format!(
                    "{{ and = [{}, {}] }}",
                    path_statement(path),
                    Value::Shape(*shape).statement(name)?.0
                ),
                None,
            ),
            Value::Path(path) => (path_statement(path), None),
            Value::Method(m) => (
                format!(
                    "{{ string_match = {{ field = \"method\", search = \"{}\", position = \"exactly\" }} }}",
                    m.as_str()
                ),
                None,
            ),
            Value::Status(_) | Value::Key(_) => return None,
        })
    }

    /// The `[[firewall.rules]]` entry (and IP set) for this value, as TOML
    /// that pastes into levee.toml.
    fn rule(&self, id: u64, rule: RuleKind) -> Option<String> {
        let name = format!("auto-{id}");
        // After every operator rule (AWS places its own at 10,000,000), and
        // one priority per rule, as the firewall requires.
        let priority = AUTO_PRIORITY + id;
        let (statement, ip_set) = self.statement(&name)?;
        let mut out = ip_set.unwrap_or_default();
        match rule {
            RuleKind::Count | RuleKind::Block => {
                let action = if rule == RuleKind::Block {
                    "block"
                } else {
                    "count"
                };
                let _ = write!(
                    out,
                    "[[firewall.rules]]\nname = \"{name}\"\npriority = {priority}\naction = \"{action}\"\nstatement = {statement}\n"
                );
            }
            RuleKind::Throttle(limit) => {
                // One counter for all the matching requests: a user agent
                // keys on itself, a prefix on the method (always there).
                let key = match self {
                    Value::Agent(_) => "[{ header = \"user-agent\" }]",
                    Value::Shape(_) | Value::PathAndShape(..) => "[\"header_shape\"]",
                    Value::Path(_) => "[\"path_shape\"]",
                    Value::Prefix { .. } | Value::Method(_) | Value::Status(_) | Value::Key(_) => {
                        "[\"method\"]"
                    }
                };
                let _ = write!(
                    out,
                    "[[firewall.rules]]\nname = \"{name}\"\npriority = {priority}\naction = \"block\"\nresponse = {{ status = 429, body = '{{\"message\":\"Too Many Requests\"}}', content_type = \"application/json\" }}\nstatement = {{ rate = {{ limit = {limit}, window = \"1s\", key = {key}, scope_down = {statement} }} }}\n"
                );
            }
        }
        Some(out)
    }
}

/// The statement matching a path shape: exactly, or by its start when
/// it was cut.
fn path_statement(path: &PathShape) -> String {
    let position = if path.is_cut() {
        "starts_with"
    } else {
        "exactly"
    };
    format!(
        "{{ string_match = {{ field = \"path_shape\", search = {}, position = \"{position}\" }} }}",
        toml_string(path.as_str())
    )
}

/// What a signature's rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuleKind {
    /// Counts (nothing is enforced).
    Count,
    /// The matching requests together held to this many a second (their
    /// baseline rate, at least 1), the rest answered 429.
    Throttle(u64),
    /// Every matching request refused (the firewall's 403).
    Block,
}

/// What an enforced signature does to the requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Held to twice their baseline rate (at least 1 a second), the rest
    /// answered 429.
    Throttle,
    /// Refused, 403.
    Block,
}

/// A TOML basic string for `text`.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Space-Saving heavy hitters: at most [`TOP_K`] counters; a value seen
/// when all are taken replaces the smallest and inherits its count (an
/// over-estimate by at most that count, kept as `error`). Each counter
/// also counts the requests from networks the baseline knows (not
/// inherited: an under-estimate).
#[derive(Debug, Default)]
struct TopK {
    /// (count, error, from known networks).
    counts: HashMap<Value, (u64, u64, u64)>,
}

impl TopK {
    fn add(&mut self, value: Value, known: bool) {
        let known = u64::from(known);
        if let Some((count, _, k)) = self.counts.get_mut(&value) {
            *count += 1;
            *k += known;
            return;
        }
        if self.counts.len() < TOP_K {
            self.counts.insert(value, (1, 0, known));
            return;
        }
        let Some((&smallest, &(min, ..))) = self.counts.iter().min_by_key(|(_, (c, ..))| *c) else {
            return;
        };
        self.counts.remove(&smallest);
        self.counts.insert(value, (min + 1, min, known));
    }

    /// Each value's share of requests from networks the baseline knows.
    fn known_shares(&self) -> impl Iterator<Item = (Value, f64)> + '_ {
        self.counts
            .iter()
            .map(|(value, (count, _, known))| (*value, *known as f64 / (*count).max(1) as f64))
    }

    /// Values with their guaranteed count (count less error), largest
    /// first.
    fn top(&self) -> Vec<(Value, u64)> {
        let mut v: Vec<(Value, u64)> = self
            .counts
            .iter()
            .map(|(value, (count, error, _))| (*value, count - error))
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.1));
        v
    }
}

/// How readily an event is declared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// A tick is a surge when its rate exceeds this many times the
    /// reference (3 for medium sensitivity).
    pub factor: f64,
    /// ... and the reference by at least this many requests a second, so
    /// a quiet service's doubling is not an attack.
    pub floor_rps: f64,
    /// Consecutive surge ticks before an event opens (one when the surge
    /// is over twice the threshold).
    pub surge_ticks: u32,
    /// Ticks of learning before anything is declared.
    pub learn_ticks: u32,
    /// Ticks back under the threshold before an event ends.
    pub quiet_ticks: u32,
    /// The most of the baseline a signature may have matched.
    pub max_baseline_share: f64,
    /// The most of a look's requests that may come from networks (/24s)
    /// the baseline knows.
    pub max_known_share: f64,
    /// The least of the surplus a signature must cover.
    pub min_coverage: f64,
    /// EWMA weight of one tick in the baseline.
    pub alpha: f64,
    /// Apply signatures as rules (after one tick of counting), not only
    /// report them.
    pub enforce: bool,
    /// What an enforced rule does.
    pub action: Action,
    /// A tick is under strain when at least this share of its requests
    /// found the function saturated, failing or over budget (and twice
    /// the baseline's share), or while a budget burns fast
    /// ([`Detector::set_burning`]): then a surge is `1 + (factor - 1) / 2` times
    /// the reference and half the floor above it, one tick opens an
    /// event, and a path shape with a common look may be a signature.
    pub strain_share: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            factor: 3.0,
            floor_rps: 50.0,
            surge_ticks: 2,
            learn_ticks: 600,
            quiet_ticks: 60,
            max_baseline_share: 0.01,
            max_known_share: 0.25,
            min_coverage: 0.5,
            alpha: 0.01,
            enforce: true,
            action: Action::Throttle,
            strain_share: 0.05,
        }
    }
}

/// What an event's surplus has in common, with the evidence for it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Signature {
    pub attribute: &'static str,
    pub value: String,
    /// Share of the surge tick's requests with this value.
    pub share: f64,
    /// Its share of the baseline (what a rule would have matched there).
    pub baseline_share: f64,
    /// The part of the surplus over the reference it accounts for.
    pub coverage: f64,
    /// The share of its requests from networks (/24s) the baseline knows.
    pub known_share: f64,
    /// A rule matching it, as levee.toml TOML: the enforced throttle, or
    /// a count rule when nothing is enforced.
    pub rule: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    Ended,
}

/// Where an event's rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mitigation {
    /// Reported only (count mode, or no signature).
    None,
    /// Its first tick: watched before it is applied.
    Counting,
    /// In force.
    Enforced,
    /// Taken off when the event ended.
    Lifted,
}

/// A value whose share grew, as evidence of what an event changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    pub attribute: &'static str,
    pub value: String,
    pub share: f64,
    pub baseline_share: f64,
}

/// Changes kept per event.
pub const MAX_CHANGES: usize = 8;
/// A change smaller than this (in share) is not shown.
const MIN_CHANGE: f64 = 0.1;

/// A surge over the baseline, from its first surge tick to its last.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Event {
    pub id: u64,
    pub state: State,
    /// Unix seconds of the tick that opened it, and of the one that ended it.
    pub started: u64,
    pub ended: Option<u64>,
    /// The learned rate when it opened, and the highest rate seen since,
    /// of the traffic that surged: all of it, or `route`'s.
    pub reference_rps: f64,
    pub peak_rps: f64,
    /// The path shape whose own surge opened it, when the traffic as a
    /// whole did not surge (a flood on a small route beside a large one).
    pub route: Option<String>,
    /// The service was under strain when it opened, so it was declared
    /// with raised sensitivity.
    pub strained: bool,
    /// What changed most against the baseline, in every attribute
    /// (at most [`MAX_CHANGES`]).
    pub changes: Vec<Change>,
    /// `None`: no value covers the surplus and was rare before — a flash
    /// crowd or a launch, which nothing should refuse.
    pub signature: Option<Signature>,
    pub mitigation: Mitigation,
    /// Unix seconds the rule came into force, and was lifted.
    pub enforced: Option<u64>,
    pub lifted: Option<u64>,
}

/// The learned picture of normal traffic.
#[derive(Debug, Default)]
struct Baseline {
    rate: f64,
    ticks: u32,
    /// The share of requests that found the service under strain.
    strain: f64,
    shares: HashMap<Value, f64>,
    /// The shares as they were [`SNAPSHOT_TICKS`] and twice that many
    /// learned ticks ago, newest last (at most [`SNAPSHOTS`]).
    earlier: VecDeque<HashMap<Value, f64>>,
}

/// Learned ticks between two snapshots of the shares, and how many are
/// kept: an attack that ramps up under the surge threshold is learned
/// for as long as it stays under it, but a signature is judged by the
/// smallest share its value had over the last 10–20 s, which the ramp's
/// start did not reach.
const SNAPSHOT_TICKS: u32 = 10;
const SNAPSHOTS: usize = 2;

impl Baseline {
    fn share(&self, value: &Value) -> f64 {
        self.shares.get(value).copied().unwrap_or(0.0)
    }

    /// A value's share as a signature is judged by: the smallest it had
    /// now and in each snapshot (absent from one: 0). Before the first
    /// snapshot, the share now.
    fn settled_share(&self, value: &Value) -> f64 {
        self.earlier
            .iter()
            .map(|shares| shares.get(value).copied().unwrap_or(0.0))
            .fold(self.share(value), f64::min)
    }

    fn learn(&mut self, total: u64, strain: f64, top: &[(Value, u64)], alpha: f64) {
        let a = if self.ticks == 0 {
            1.0
        } else {
            alpha.max(1.0 / f64::from(self.ticks + 1))
        };
        if self.ticks > 0 && self.ticks.is_multiple_of(SNAPSHOT_TICKS) {
            if self.earlier.len() == SNAPSHOTS {
                self.earlier.pop_front();
            }
            self.earlier.push_back(self.shares.clone());
        }
        self.rate += a * (total as f64 - self.rate);
        self.strain += a * (strain - self.strain);
        self.ticks = self.ticks.saturating_add(1);
        for share in self.shares.values_mut() {
            *share *= 1.0 - a;
        }
        if total > 0 {
            for (value, count) in top {
                *self.shares.entry(*value).or_default() += a * (*count as f64 / total as f64);
            }
        }
        if self.shares.len() > BASELINE_VALUES * 2 * TOPS {
            // The largest BASELINE_VALUES of each attribute stay.
            let mut v: Vec<(Value, f64)> = self.shares.drain().collect();
            v.sort_by(|x, y| y.1.total_cmp(&x.1));
            let mut kept: HashMap<Attribute, usize> = HashMap::new();
            v.retain(|(value, _)| {
                let n = kept.entry(value.attribute()).or_default();
                *n += 1;
                *n <= BASELINE_VALUES
            });
            self.shares = v.into_iter().collect();
        }
    }
}

/// The baseline as saved to disk, so a restart need not learn again.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SavedBaseline {
    /// Unix seconds it was saved.
    pub saved: u64,
    rate: f64,
    ticks: u32,
    /// (user agent, cut, share).
    agents: Vec<(String, bool, f64)>,
    /// (header shape, share); absent from a baseline saved before shapes.
    #[serde(default)]
    shapes: Vec<(String, f64)>,
    /// (prefix as "a.b.c.0/24" or "x::/48", share).
    prefixes: Vec<(String, f64)>,
    /// (attribute, value, share) of the other attributes, and the share
    /// under strain; absent from a baseline saved before them.
    #[serde(default)]
    others: Vec<(String, String, f64)>,
    #[serde(default)]
    strain: f64,
}

/// Summary for the admin API.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Status {
    pub learning: bool,
    /// A budget is being spent fast (sensitivity raised).
    pub budget_burning: bool,
    pub learned_seconds: u32,
    pub reference_rps: f64,
    pub current_rps: f64,
}

/// The detector: [`Detector::observe`] every sample of a tick, then
/// [`Detector::tick`] once a second.
#[derive(Debug)]
pub struct Detector {
    settings: Settings,
    total: u64,
    /// Samples of this tick whose answer showed strain.
    strained: u64,
    /// One sketch per attribute, in [`Top`] order.
    tops: [TopK; TOPS],
    baseline: Baseline,
    surge_run: u32,
    quiet_run: u32,
    last_rate: f64,
    open: Option<usize>,
    /// The open event's signature value, remembered when it ends.
    open_value: Option<Value>,
    /// The route (path shape) whose surge opened the open event, if it
    /// was one route's rather than the whole traffic's.
    open_route: Option<Value>,
    /// For the tick being ended, each candidate value's share of requests
    /// from networks the baseline knows (at most `CANDIDATES` × [`TOP_K`]).
    known: HashMap<Value, f64>,
    /// A budget is being spent fast: strain, whatever the answers say.
    burning: bool,
    next_id: u64,
    events: VecDeque<Event>,
    /// Signatures of ended events and when they ended, for a fast re-arm:
    /// at most [`MAX_REMEMBERED`], for [`REMEMBER_SECS`].
    remembered: VecDeque<(Value, u64)>,
}

/// The sketches, by index: signature candidates first, in the order they
/// are tried (user agent, header shape, /24, /16, then the path shape
/// with the header shape under strain), then evidence only.
#[derive(Debug, Clone, Copy)]
enum Top {
    Agent,
    Shape,
    Prefix,
    Network,
    PathAndShape,
    Path,
    Method,
    Status,
    Key,
}

/// Sketches kept per tick.
const TOPS: usize = 9;
/// Those whose values may become a signature.
const CANDIDATES: usize = Top::PathAndShape as usize + 1;

/// The traffic a second surged in: all of it, or one route's (a path
/// shape's), with its rate and the rate its baseline share expects.
#[derive(Debug)]
struct Surge {
    rate: f64,
    reference: f64,
    route: Option<Value>,
    /// Over twice the threshold: an event at once, without waiting for
    /// `surge_ticks` (a signature is validated all the same).
    strong: bool,
}

/// What an event opens with.
struct Opening {
    reference: f64,
    rate: f64,
    route: Option<String>,
    signature: Option<(Value, Signature)>,
    /// A remembered signature came back: enforced at once.
    rearmed: bool,
    strained: bool,
    changes: Vec<Change>,
}

/// Signatures remembered after their event ended, and for how long.
pub const MAX_REMEMBERED: usize = 256;
pub const REMEMBER_SECS: u64 = 24 * 3600;

impl Detector {
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            total: 0,
            strained: 0,
            tops: Default::default(),
            baseline: Baseline::default(),
            surge_run: 0,
            quiet_run: 0,
            last_rate: 0.0,
            open: None,
            open_value: None,
            open_route: None,
            known: HashMap::new(),
            burning: false,
            next_id: 1,
            events: VecDeque::new(),
            remembered: VecDeque::new(),
        }
    }

    pub fn observe(&mut self, sample: &Sample) {
        self.total += 1;
        if sample.outcome != Outcome::Fine {
            self.strained += 1;
        }
        let values = [
            (Top::Agent, Value::Agent(sample.agent)),
            (Top::Shape, Value::Shape(sample.shape)),
            (Top::Prefix, Value::of_prefix(sample.client, false)),
            (Top::Network, Value::of_prefix(sample.client, true)),
            (
                Top::PathAndShape,
                Value::PathAndShape(sample.path, sample.shape),
            ),
            (Top::Path, Value::Path(sample.path)),
            (Top::Method, Value::Method(sample.method)),
            (Top::Status, Value::Status(sample.status)),
            (Top::Key, Value::Key(sample.key)),
        ];
        // Whether the client's /24 was in the baseline (before any ramp):
        // a look that comes mostly from known networks is the known
        // clients'.
        let known = self.baseline.settled_share(&values[Top::Prefix as usize].1) > 0.0;
        for (top, value) in values {
            self.tops[top as usize].add(value, known);
        }
    }

    /// Ends the second that began a tick ago: compares it with the
    /// baseline, opens, updates or ends an event, and learns from it when
    /// no event is open. `now` is Unix seconds; `seen` is how many
    /// requests arrived in that second, sampled or not (the samples give
    /// the composition, scaled up to `seen`).
    pub fn tick(&mut self, now: u64, seen: u64) {
        let tops = self.composition(seen);
        let sampled = std::mem::take(&mut self.total);
        let strained = std::mem::take(&mut self.strained);
        let strain = if sampled == 0 {
            0.0
        } else {
            strained as f64 / sampled as f64
        };
        self.tops = Default::default();
        let total = seen;
        let rate = total as f64;
        self.last_rate = rate;
        let s = self.settings;
        let reference = self.baseline.rate;
        let learning = self.baseline.ticks < s.learn_ticks;
        let strained = !learning
            && (self.burning || (strain >= s.strain_share && strain >= 2.0 * self.baseline.strain));
        let (factor, floor, surge_ticks) = if strained {
            (1.0 + (s.factor - 1.0) / 2.0, s.floor_rps / 2.0, 1)
        } else {
            (s.factor, s.floor_rps, s.surge_ticks)
        };
        let threshold = |reference: f64| (factor * reference).max(reference + floor);
        let over = |rate: f64, reference: f64| !learning && rate > threshold(reference);
        let paths = &tops[Top::Path as usize];
        // The traffic as a whole, or else the route that surged most over
        // its own share of the baseline.
        let surge = if over(rate, reference) {
            Some(Surge {
                rate,
                reference,
                route: None,
                strong: rate > 2.0 * threshold(reference),
            })
        } else {
            paths
                .iter()
                .map(|(value, count)| {
                    (value, *count as f64, self.baseline.share(value) * reference)
                })
                .filter(|(_, count, expected)| over(*count, *expected))
                .max_by(|a, b| (a.1 - a.2).total_cmp(&(b.1 - b.2)))
                .map(|(value, count, expected)| Surge {
                    rate: count,
                    reference: expected,
                    route: Some(*value),
                    strong: count > 2.0 * threshold(expected),
                })
        };
        let surging = surge.is_some();
        // Pairs of a path with a common look only under strain.
        let candidates = if strained {
            &tops[..CANDIDATES]
        } else {
            &tops[..Top::PathAndShape as usize]
        };
        match self.open {
            Some(i) => {
                // Measured on the traffic that opened it.
                let (now_rate, its_reference) = match self.open_route {
                    None => (rate, reference),
                    Some(route) => (
                        paths
                            .iter()
                            .find(|(v, _)| *v == route)
                            .map_or(0.0, |(_, c)| *c as f64),
                        self.baseline.share(&route) * reference,
                    ),
                };
                let surging = over(now_rate, its_reference);
                let event = &mut self.events[i];
                event.peak_rps = event.peak_rps.max(now_rate);
                self.quiet_run = if surging { 0 } else { self.quiet_run + 1 };
                if event.mitigation == Mitigation::Counting && surging {
                    event.mitigation = Mitigation::Enforced;
                    event.enforced = Some(now);
                }
                if self.quiet_run >= s.quiet_ticks {
                    event.state = State::Ended;
                    event.ended = Some(now);
                    if event.mitigation != Mitigation::None {
                        event.mitigation = Mitigation::Lifted;
                        event.lifted = Some(now);
                    }
                    if let Some(value) = self.open_value.take() {
                        self.remember(value, now);
                    }
                    self.open = None;
                    self.open_route = None;
                    self.surge_run = 0;
                }
                // Frozen while an event is open.
            }
            None => {
                self.surge_run = if surging { self.surge_run + 1 } else { 0 };
                // A signature seen in an attack before comes back: enforced
                // on its first surge second, without the counting tick.
                let rearm = surge.as_ref().and_then(|surge| {
                    let (value, count) = self.returning(now, surge, candidates)?;
                    Some((value, self.signature_of(&value, count, surge, rate)?))
                });
                let opened = match (rearm, &surge) {
                    (Some(signature), Some(surge)) => Some((surge, Some(signature), true)),
                    (None, Some(surge)) if self.surge_run >= surge_ticks || surge.strong => {
                        Some((surge, self.signature(surge, rate, candidates), false))
                    }
                    _ => None,
                };
                if let Some((surge, signature, rearmed)) = opened {
                    let changes = self.changes(rate, &tops);
                    self.open_route = surge.route;
                    self.open_event(
                        now,
                        Opening {
                            reference: surge.reference,
                            rate: surge.rate,
                            route: surge.route.map(|r| r.text()),
                            signature,
                            rearmed,
                            strained,
                            changes,
                        },
                    );
                } else if !surging {
                    let all: Vec<(Value, u64)> = tops.into_iter().flatten().collect();
                    self.baseline.learn(total, strain, &all, s.alpha);
                }
            }
        }
    }

    /// Between ticks: when the second so far (`seen` requests since the
    /// last tick, sampled as [`Detector::observe`] was given) is already
    /// over the surge threshold and a remembered signature carries it, the
    /// signature is enforced now rather than at the tick's end. The tick
    /// that follows finds the event open. Whether it opened one.
    pub fn rearm_early(&mut self, now: u64, seen: u64) -> bool {
        let s = self.settings;
        let reference = self.baseline.rate;
        let rate = seen as f64;
        if self.open.is_some()
            || self.remembered.is_empty()
            || self.total == 0
            || self.baseline.ticks < s.learn_ticks
            || rate <= (s.factor * reference).max(reference + s.floor_rps)
        {
            return false;
        }
        let tops = self.composition(seen);
        let surge = Surge {
            rate,
            reference,
            route: None,
            strong: true,
        };
        let Some((value, count)) = self.returning(now, &surge, &tops[..Top::PathAndShape as usize])
        else {
            return false;
        };
        let Some(signature) = self.signature_of(&value, count, &surge, rate) else {
            return false;
        };
        let changes = self.changes(rate, &tops);
        self.open_event(
            now,
            Opening {
                reference,
                rate,
                route: None,
                signature: Some((value, signature)),
                rearmed: true,
                strained: false,
                changes,
            },
        );
        true
    }

    /// The second so far: each sketch's values with their counts scaled
    /// from the samples up to `seen` requests, and (into `known`) each
    /// candidate's share from known networks.
    fn composition(&mut self, seen: u64) -> Vec<Vec<(Value, u64)>> {
        let scale = if self.total == 0 {
            0.0
        } else {
            seen as f64 / self.total as f64
        };
        self.known = self.tops[..CANDIDATES]
            .iter()
            .flat_map(TopK::known_shares)
            .collect();
        self.tops
            .iter()
            .map(|top| {
                top.top()
                    .into_iter()
                    .map(|(v, c)| (v, (c as f64 * scale).round() as u64))
                    .collect()
            })
            .collect()
    }

    /// Whether a budget is being spent fast (the caller's reading, once a
    /// second): while it is, every tick is under strain.
    pub fn set_burning(&mut self, burning: bool) {
        self.burning = burning;
    }

    fn remember(&mut self, value: Value, now: u64) {
        self.remembered.retain(|(v, _)| *v != value);
        if self.remembered.len() == MAX_REMEMBERED {
            self.remembered.pop_front();
        }
        self.remembered.push_back((value, now));
    }

    /// Whether a look's requests this tick came mostly from networks the
    /// baseline never saw: one from the known clients (an app's new
    /// version, a launch) is theirs, not an attack's. A prefix is its own
    /// answer (its baseline share says whether it is known).
    fn strangers(&self, value: &Value) -> bool {
        match value {
            Value::Agent(_) | Value::Shape(_) | Value::PathAndShape(..) => {
                self.known.get(value).copied().unwrap_or(0.0) <= self.settings.max_known_share
            }
            _ => true,
        }
    }

    /// A remembered signature that carries most of this surge second.
    fn returning(
        &self,
        now: u64,
        surge: &Surge,
        tops: &[Vec<(Value, u64)>],
    ) -> Option<(Value, u64)> {
        tops.iter()
            .flat_map(|top| top.iter())
            .find_map(|(value, count)| {
                let remembered = self
                    .remembered
                    .iter()
                    .any(|(v, at)| v == value && now.saturating_sub(*at) <= REMEMBER_SECS);
                (remembered
                    && self.strangers(value)
                    && *count as f64 >= self.settings.min_coverage * surge.rate)
                    .then_some((*value, *count))
            })
    }

    /// The value that covers most of the surplus, was rare in the
    /// baseline, and covers enough, tried in [`Top`] order: a distributed
    /// flood is matched by what it looks like, not where it comes from,
    /// and a /24 before the /16 that many /24s collapse into.
    fn signature(
        &self,
        surge: &Surge,
        rate: f64,
        tops: &[Vec<(Value, u64)>],
    ) -> Option<(Value, Signature)> {
        let s = self.settings;
        let reference = self.baseline.rate;
        let surplus = surge.rate - surge.reference;
        if surplus <= 0.0 {
            return None;
        }
        tops.iter().find_map(|top| {
            top.iter()
                .filter_map(|(value, count)| {
                    let base = self.baseline.settled_share(value);
                    let excess = *count as f64 - base * reference;
                    let coverage = (excess / surplus).min(1.0);
                    (base <= s.max_baseline_share
                        && coverage >= s.min_coverage
                        && self.strangers(value))
                    .then_some((value, *count, coverage))
                })
                .max_by(|a, b| a.2.total_cmp(&b.2))
                .and_then(|(value, count, _)| {
                    Some((*value, self.signature_of(value, count, surge, rate)?))
                })
        })
    }

    /// The values whose share grew most over the baseline, one per
    /// attribute at most, largest growth first.
    fn changes(&self, rate: f64, tops: &[Vec<(Value, u64)>]) -> Vec<Change> {
        let mut changes: Vec<(f64, Change)> = tops
            .iter()
            .filter_map(|top| {
                top.iter()
                    .map(|(value, count)| {
                        let share = *count as f64 / rate.max(1.0);
                        let base = self.baseline.settled_share(value);
                        (share - base, value, share, base)
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
            })
            .filter(|(grew, ..)| *grew >= MIN_CHANGE)
            .map(|(grew, value, share, baseline_share)| {
                (
                    grew,
                    Change {
                        attribute: value.attribute().as_str(),
                        value: value.text(),
                        share,
                        baseline_share,
                    },
                )
            })
            .collect();
        changes.sort_by(|a, b| b.0.total_cmp(&a.0));
        changes.truncate(MAX_CHANGES);
        changes.into_iter().map(|(_, c)| c).collect()
    }

    /// A signature's evidence and rule, for `value` seen `count` times in
    /// a second of `rate` requests that `surge` is part of; `None` for a
    /// value no rule can match.
    fn signature_of(
        &self,
        value: &Value,
        count: u64,
        surge: &Surge,
        rate: f64,
    ) -> Option<Signature> {
        let reference = self.baseline.rate;
        let base = self.baseline.settled_share(value);
        let surplus = (surge.rate - surge.reference).max(1.0);
        let coverage = ((count as f64 - base * reference) / surplus).clamp(0.0, 1.0);
        // Its baseline rate, twice over for headroom, and never zero.
        let throttle = ((2.0 * base * reference).ceil() as u64).max(1);
        Some(Signature {
            attribute: value.attribute().as_str(),
            value: value.text(),
            share: count as f64 / rate,
            baseline_share: base,
            coverage,
            known_share: self.known.get(value).copied().unwrap_or(0.0),
            rule: value.rule(
                self.next_id,
                match (self.settings.enforce, self.settings.action) {
                    (false, _) => RuleKind::Count,
                    (true, Action::Throttle) => RuleKind::Throttle(throttle),
                    (true, Action::Block) => RuleKind::Block,
                },
            )?,
        })
    }

    fn open_event(&mut self, now: u64, opening: Opening) {
        let Opening {
            reference,
            rate,
            route,
            signature,
            rearmed,
            strained,
            changes,
        } = opening;
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        let mitigation = match (&signature, self.settings.enforce, rearmed) {
            (Some(_), true, true) => Mitigation::Enforced,
            (Some(_), true, false) => Mitigation::Counting,
            _ => Mitigation::None,
        };
        let (value, signature) = signature.unzip();
        self.open_value = value;
        self.events.push_back(Event {
            id: self.next_id,
            state: State::Active,
            started: now,
            ended: None,
            reference_rps: reference,
            peak_rps: rate,
            route,
            strained,
            changes,
            signature,
            mitigation,
            enforced: (mitigation == Mitigation::Enforced).then_some(now),
            lifted: None,
        });
        self.next_id += 1;
        self.open = Some(self.events.len() - 1);
        self.quiet_run = 0;
    }

    /// The rules in force now, as levee.toml TOML (empty when none).
    pub fn enforced_rules(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter(|e| e.mitigation == Mitigation::Enforced)
            .filter_map(|e| e.signature.as_ref().map(|s| s.rule.as_str()))
            .collect()
    }

    /// The learned baseline, to save (at most [`BASELINE_VALUES`] × 2 values
    /// per attribute).
    pub fn saved_baseline(&self, now: u64) -> SavedBaseline {
        let mut agents = Vec::new();
        let mut shapes = Vec::new();
        let mut prefixes = Vec::new();
        let mut others = Vec::new();
        for (value, share) in &self.baseline.shares {
            match value {
                Value::Agent(a) => agents.push((a.text(), a.cut, *share)),
                Value::Shape(shape) => shapes.push((shape.as_str().to_owned(), *share)),
                Value::Prefix { .. } => prefixes.push((value.text(), *share)),
                _ => others.push((value.attribute().as_str().to_owned(), value.text(), *share)),
            }
        }
        SavedBaseline {
            saved: now,
            rate: self.baseline.rate,
            ticks: self.baseline.ticks,
            agents,
            shapes,
            prefixes,
            others,
            strain: self.baseline.strain,
        }
    }

    /// Takes up a saved baseline instead of learning from nothing; values
    /// that do not parse, or beyond the bounds, are left out.
    pub fn restore(&mut self, saved: &SavedBaseline) {
        let mut shares = HashMap::new();
        for (text, cut, share) in saved.agents.iter().take(BASELINE_VALUES * 2) {
            let mut agent = Agent::of(Some(text.as_bytes()));
            agent.cut |= *cut;
            shares.insert(Value::Agent(agent), *share);
        }
        for (text, share) in saved.shapes.iter().take(BASELINE_VALUES * 2) {
            if let Some(shape) = Shape::parse(text) {
                shares.insert(Value::Shape(shape), *share);
            }
        }
        for (text, share) in saved.prefixes.iter().take(BASELINE_VALUES * 2) {
            if let Ok(net) = text.parse::<ipnet::IpNet>() {
                let wide = match net {
                    ipnet::IpNet::V4(n) => n.prefix_len() < 24,
                    ipnet::IpNet::V6(n) => n.prefix_len() < 48,
                };
                shares.insert(Value::of_prefix(net.network(), wide), *share);
            }
        }
        for (attribute, text, share) in saved.others.iter().take(BASELINE_VALUES * 2 * TOPS) {
            if let Some(value) = Value::parse(attribute, text) {
                shares.insert(value, *share);
            }
        }
        let finite = |x: f64| if x.is_finite() && x >= 0.0 { x } else { 0.0 };
        shares.retain(|_, share| finite(*share) > 0.0);
        self.baseline = Baseline {
            rate: finite(saved.rate),
            ticks: saved.ticks,
            strain: finite(saved.strain).min(1.0),
            shares,
            earlier: VecDeque::new(),
        };
    }

    /// Events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    pub fn status(&self) -> Status {
        Status {
            learning: self.baseline.ticks < self.settings.learn_ticks,
            budget_burning: self.burning,
            learned_seconds: self.baseline.ticks,
            reference_rps: self.baseline.rate,
            current_rps: self.last_rate,
        }
    }
}

/// The rules in force, each as [`Detector::enforced_rules`] renders it,
/// compiled into one firewall that the edge evaluates after the
/// operator's (whose rate counters and bans it never touches). `None` for
/// no rules; an error would be Levee's own bug, as every rule is rendered
/// here.
pub fn compile(rules: &[&str]) -> Result<Option<crate::firewall::Firewall>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        firewall: crate::firewall::FirewallConfig,
    }
    let Some((first, rest)) = rules.split_first() else {
        return Ok(None);
    };
    let parse = |text: &str| {
        toml::from_str::<Document>(text)
            .map(|d| d.firewall)
            .map_err(|e| e.to_string())
    };
    let mut all = parse(first)?;
    for text in rest {
        let more = parse(text)?;
        all.rules.extend(more.rules);
        all.ip_sets.extend(more.ip_sets);
    }
    crate::firewall::Firewall::compile(&all)
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BROWSERS: [&str; 4] = [
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
        "Mozilla/5.0 (Macintosh) Safari/605.1.15",
        "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0",
        "Boto3/1.43.11 Python/3.11",
    ];

    /// The first event's signature.
    fn first_signature(d: &Detector) -> Signature {
        let event = d.events().next().expect("an event");
        event.signature.clone().expect("a signature")
    }

    /// A tick in which every request was sampled.
    fn tick(d: &mut Detector, now: u64) {
        let seen = d.total;
        d.tick(now, seen);
    }

    #[test]
    fn sampled_composition_is_scaled_to_what_arrived() {
        let mut d = learned();
        for t in 25..27 {
            ordinary(&mut d, 4, t);
            for i in 0..200u32 {
                d.observe(&sample([172, 16, (i % 100) as u8, 1], "flood/1.0"));
            }
            // One request in ten was sampled.
            d.tick(t as u64, 2040);
        }
        let event = d.events().next().expect("an event").clone();
        assert_eq!(event.peak_rps, 2040.0);
        let sig = event.signature.expect("a signature");
        assert!(sig.coverage > 0.9, "{sig:?}");
    }

    fn sample(ip: [u8; 4], agent: &str) -> Sample {
        shaped(ip, agent, &["host", "user-agent", "accept"])
    }

    fn shaped(ip: [u8; 4], agent: &str, names: &[&'static str]) -> Sample {
        let mut headers = http::HeaderMap::new();
        for name in names {
            headers.append(*name, http::HeaderValue::from_static("v"));
        }
        Sample {
            client: IpAddr::from(ip),
            agent: Agent::of(Some(agent.as_bytes())),
            shape: Shape::of(&headers),
            path: PathShape::of("/", ""),
            method: Method::of("GET"),
            status: 200,
            key: KeyUse::None,
            outcome: Outcome::Fine,
        }
    }

    /// What browsers and an SDK send, each in its own order.
    const CLIENT_HEADERS: [&[&str]; 4] = [
        &[
            "host",
            "user-agent",
            "accept",
            "accept-language",
            "accept-encoding",
            "connection",
        ],
        &[
            "host",
            "accept",
            "sec-fetch-site",
            "user-agent",
            "accept-language",
            "accept-encoding",
            "connection",
        ],
        &[
            "host",
            "connection",
            "sec-ch-ua",
            "user-agent",
            "accept",
            "sec-fetch-mode",
            "accept-encoding",
            "accept-language",
        ],
        &[
            "host",
            "accept-encoding",
            "user-agent",
            "amz-sdk-invocation-id",
            "amz-sdk-request",
            "connection",
        ],
    ];

    fn quick() -> Settings {
        Settings {
            learn_ticks: 20,
            quiet_ticks: 3,
            floor_rps: 20.0,
            ..Settings::default()
        }
    }

    /// `n` requests a tick from 200 clients in 50 /24s with browser-like
    /// variety.
    fn ordinary(d: &mut Detector, n: usize, salt: usize) {
        for i in 0..n {
            let j = i + salt;
            d.observe(&shaped(
                [10, (j % 50) as u8, 0, (j % 4) as u8],
                BROWSERS[j % 4],
                CLIENT_HEADERS[j % 4],
            ));
        }
    }

    fn learned() -> Detector {
        let mut d = Detector::new(quick());
        for t in 0..25 {
            ordinary(&mut d, 40, t);
            tick(&mut d, t as u64);
        }
        assert!(!d.status().learning);
        d
    }

    #[test]
    fn a_distributed_flood_is_matched_by_its_user_agent_not_its_sources() {
        let mut d = learned();
        for t in 25..28u64 {
            ordinary(&mut d, 40, t as usize);
            for i in 0..2000u32 {
                // 2,000 sources over 250 /24s, one tool's user agent.
                d.observe(&sample(
                    [172, 16, (i % 250) as u8, (i / 250) as u8],
                    "python-requests/2.32",
                ));
            }
            tick(&mut d, t);
        }
        let events: Vec<&Event> = d.events().collect();
        assert_eq!(events.len(), 1, "{events:?}");
        let sig = events[0].signature.as_ref().expect("a signature");
        assert_eq!(
            (sig.attribute, sig.value.as_str()),
            ("user_agent", "python-requests/2.32")
        );
        assert!(sig.coverage > 0.9 && sig.baseline_share == 0.0, "{sig:?}");
        assert!(
            sig.rule
                .contains(r#"search = "python-requests/2.32", position = "exactly""#),
            "{}",
            sig.rule
        );
        assert_eq!(events[0].started, 25, "over twice the threshold: the first");
        // Back to normal: the event ends after the quiet ticks.
        for t in 28..32 {
            ordinary(&mut d, 40, t as usize);
            tick(&mut d, t);
        }
        assert_eq!(d.events().next().unwrap().state, State::Ended);
    }

    #[test]
    fn a_flood_rotating_browser_agents_is_matched_by_its_header_shape() {
        let mut d = learned();
        let tool = ["host", "user-agent", "connection"];
        for t in 25..27 {
            ordinary(&mut d, 40, t);
            for i in 0..2000usize {
                d.observe(&shaped(
                    [172, 16, (i % 250) as u8, (i / 250) as u8],
                    BROWSERS[i % 4],
                    &tool,
                ));
            }
            tick(&mut d, t as u64);
        }
        let sig = first_signature(&d);
        let shape = shaped([0; 4], "", &tool).shape;
        assert_eq!(
            (sig.attribute, sig.value.as_str()),
            ("header_shape", shape.as_str())
        );
        assert!(sig.coverage > 0.9 && sig.baseline_share == 0.0, "{sig:?}");
        assert!(
            sig.rule.contains(&format!(
                r#"field = "header_shape", search = "{}", position = "exactly""#,
                shape.as_str()
            )),
            "{}",
            sig.rule
        );
        assert!(compile(&[&sig.rule]).unwrap().is_some());
    }

    #[test]
    fn a_flood_from_one_prefix_with_varied_agents_is_matched_by_the_prefix() {
        let mut d = learned();
        for t in 25..27 {
            ordinary(&mut d, 40, t);
            for i in 0..1000usize {
                d.observe(&shaped(
                    [198, 51, 100, (i % 200) as u8],
                    BROWSERS[i % 4],
                    CLIENT_HEADERS[i % 4],
                ));
            }
            tick(&mut d, t as u64);
        }
        let sig = first_signature(&d);
        assert_eq!(
            (sig.attribute, sig.value.as_str()),
            ("prefix", "198.51.100.0/24")
        );
        assert!(
            sig.rule
                .starts_with("[firewall.ip_sets]\nauto-1 = [\"198.51.100.0/24\"]"),
            "{}",
            sig.rule
        );
        let with_agent = Value::Agent(Agent::of(Some(b"x")))
            .rule(2, RuleKind::Throttle(1))
            .unwrap();
        let both = compile(&[&sig.rule, &with_agent]).expect("compiles");
        assert_eq!(
            both.expect("a firewall").counters().len(),
            2,
            "IP sets merged"
        );
    }

    #[test]
    fn a_flood_spread_over_many_24s_of_one_16_is_matched_by_the_16() {
        let mut d = learned();
        for t in 25..27 {
            ordinary(&mut d, 40, t);
            // Ordinary agents, 8 /24s of 203.0.x.0: no /24 carries half.
            for i in 0..1600usize {
                d.observe(&shaped(
                    [203, 0, (i % 8) as u8, (i / 8 % 200) as u8 + 1],
                    BROWSERS[i % 4],
                    CLIENT_HEADERS[i % 4],
                ));
            }
            tick(&mut d, t as u64);
        }
        let sig = first_signature(&d);
        assert_eq!(
            (sig.attribute, sig.value.as_str()),
            ("prefix", "203.0.0.0/16")
        );
        assert!(compile(&[&sig.rule]).unwrap().is_some());
    }

    #[test]
    fn a_flash_crowd_with_ordinary_variety_gets_no_signature() {
        let mut d = learned();
        for t in 25..27 {
            // 10x, from new sources spread wide, with the usual agents.
            for i in 0..400usize {
                d.observe(&shaped(
                    [100, (i % 200) as u8, (i / 200) as u8, 1],
                    BROWSERS[i % 4],
                    CLIENT_HEADERS[i % 4],
                ));
            }
            tick(&mut d, t as u64);
        }
        let events: Vec<&Event> = d.events().collect();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].signature, None,
            "nothing to refuse: {:?}",
            events[0]
        );
    }

    #[test]
    fn nothing_is_declared_while_learning_and_an_attack_is_not_learned() {
        let mut d = Detector::new(quick());
        for t in 0..10 {
            d.observe(&sample([1, 2, 3, 4], "x"));
            for i in 0..500u32 {
                d.observe(&sample([9, 9, (i % 9) as u8, 1], "flood"));
            }
            tick(&mut d, t);
        }
        assert_eq!(d.events().count(), 0, "still learning");
        let mut d = learned();
        let before = d.status().reference_rps;
        for t in 25..40 {
            for _ in 0..1000 {
                d.observe(&sample([9, 9, 9, 9], "flood"));
            }
            tick(&mut d, t);
        }
        assert_eq!(d.status().reference_rps, before, "frozen during the event");
        assert_eq!(d.events().count(), 1, "one event for one long surge");
    }

    #[test]
    fn memory_is_bounded_by_the_sketches_not_the_traffic() {
        let mut d = learned();
        for round in 0..3u32 {
            for i in 0..20_000u32 {
                let agent = format!("agent-{round}-{i}");
                d.observe(&sample((i + round).to_be_bytes(), &agent));
            }
            assert!(d.tops.iter().all(|t| t.counts.len() <= TOP_K));
            tick(&mut d, 25 + u64::from(round));
        }
        assert!(d.baseline.shares.len() <= BASELINE_VALUES * 2 * TOPS);
        assert!(d.events.len() <= MAX_EVENTS);
    }

    #[test]
    fn agents_are_cut_on_a_character_boundary_and_quoted_for_toml() {
        let long = format!("{}é\"tail", "a".repeat(MAX_AGENT_BYTES - 1));
        let a = Agent::of(Some(long.as_bytes()));
        assert!(a.cut);
        assert_eq!(a.text(), "a".repeat(MAX_AGENT_BYTES - 1));
        let rule = Value::Agent(Agent::of(Some(b"say \"hi\"\x07")))
            .rule(9, RuleKind::Count)
            .unwrap();
        assert!(rule.contains(r#"search = "say \"hi\"\u0007""#), "{rule}");
        assert!(Value::Agent(a)
            .rule(3, RuleKind::Throttle(3))
            .unwrap()
            .contains("starts_with"));
    }

    fn flood_tick(d: &mut Detector, t: u64) {
        ordinary(d, 40, t as usize);
        for i in 0..2000u32 {
            d.observe(&sample(
                [172, 16, (i % 250) as u8, (i / 250) as u8],
                "python-requests/2.32",
            ));
        }
        tick(d, t);
    }

    #[test]
    fn a_signature_is_counted_one_tick_then_enforced_then_lifted_and_rearms_at_once() {
        let mut d = learned();
        // 50x the reference: an event in its first second.
        flood_tick(&mut d, 25);
        let event = d.events().next().unwrap();
        assert_eq!(
            event.mitigation,
            Mitigation::Counting,
            "watched for one tick first"
        );
        assert!(d.enforced_rules().is_empty());
        flood_tick(&mut d, 26);
        assert_eq!(d.events().next().unwrap().mitigation, Mitigation::Enforced);
        let rules = d.enforced_rules();
        assert_eq!(rules.len(), 1);
        // Held to its baseline rate (none: 1 a second) as one aggregate.
        assert!(
            rules[0].contains("statement = { rate = { limit = 1, window = \"1s\", key = [{ header = \"user-agent\" }], scope_down = { string_match"),
            "{}",
            rules[0]
        );
        assert!(rules[0].contains("action = \"block\"\nresponse = { status = 429"));
        let firewall = compile(&rules).expect("compiles").expect("a firewall");
        assert_eq!(firewall.counters().len(), 1);
        for t in 27..31 {
            ordinary(&mut d, 40, t as usize);
            tick(&mut d, t);
        }
        let event = d.events().next().unwrap();
        assert_eq!(
            (event.state, event.mitigation),
            (State::Ended, Mitigation::Lifted)
        );
        assert_eq!(
            (event.enforced, event.lifted),
            (Some(26), Some(29)),
            "three quiet ticks"
        );
        assert!(d.enforced_rules().is_empty());
        // The same signature again: enforced within its first surge
        // second, as soon as the second so far is over the threshold ...
        ordinary(&mut d, 40, 40);
        assert!(!d.rearm_early(40, 40), "no surge yet");
        for i in 0..200u32 {
            d.observe(&sample(
                [172, 16, (i % 250) as u8, 9],
                "python-requests/2.32",
            ));
        }
        assert!(d.rearm_early(40, 240));
        assert_eq!(d.enforced_rules().len(), 1);
        assert!(!d.rearm_early(40, 240), "once");
        // ... and the tick that ends that second finds it open.
        for i in 0..1800u32 {
            d.observe(&sample(
                [172, 16, (i % 250) as u8, 8],
                "python-requests/2.32",
            ));
        }
        tick(&mut d, 40);
        let again = d.events().last().unwrap();
        assert_eq!(
            (again.id, again.mitigation, again.enforced),
            (2, Mitigation::Enforced, Some(40))
        );
        assert_eq!(d.enforced_rules().len(), 1);
    }

    #[test]
    fn a_saved_baseline_restores_the_learning_and_the_shares() {
        let d = learned();
        let saved = d.saved_baseline(99);
        let json = serde_json::to_string(&saved).unwrap();
        let mut fresh = Detector::new(quick());
        fresh.restore(&serde_json::from_str(&json).unwrap());
        let (a, b) = (fresh.status(), d.status());
        assert_eq!(
            (a.learning, a.learned_seconds, a.reference_rps),
            (b.learning, b.learned_seconds, b.reference_rps)
        );
        assert_eq!(fresh.baseline.shares.len(), d.baseline.shares.len());
        for (value, share) in &d.baseline.shares {
            assert!(
                (fresh.baseline.share(value) - share).abs() < 1e-9,
                "{value:?}"
            );
        }
        // And it detects at once, with the baseline's shares as evidence.
        flood_tick(&mut fresh, 200);
        flood_tick(&mut fresh, 201);
        assert_eq!(fresh.events().count(), 1);
    }

    /// A detector with `settings` that learned 25 ordinary ticks, then met
    /// four flood ticks.
    fn flooded(settings: Settings) -> Detector {
        let mut d = Detector::new(settings);
        for t in 0..25 {
            ordinary(&mut d, 40, t);
            tick(&mut d, t as u64);
        }
        for t in 25..29 {
            flood_tick(&mut d, t);
        }
        d
    }

    #[test]
    fn the_block_action_refuses_every_matching_request() {
        let d = flooded(Settings {
            action: Action::Block,
            ..quick()
        });
        let rules = d.enforced_rules();
        assert_eq!(rules.len(), 1);
        assert!(rules[0].contains("action = \"block\""), "{}", rules[0]);
        assert!(!rules[0].contains("rate"), "no allowance: {}", rules[0]);
        assert!(compile(&rules).unwrap().is_some());
    }

    #[test]
    fn count_mode_reports_a_count_rule_and_enforces_nothing() {
        let d = flooded(Settings {
            enforce: false,
            ..quick()
        });
        let event = d.events().next().unwrap();
        assert_eq!(event.mitigation, Mitigation::None);
        assert!(event
            .signature
            .as_ref()
            .unwrap()
            .rule
            .contains("action = \"count\""));
        assert!(d.enforced_rules().is_empty());
    }

    /// `n` samples of one look (the first ordinary client's agent and
    /// headers, a quarter of the baseline) from many sources, asking for
    /// `path`, answered `outcome`.
    fn common_look(d: &mut Detector, n: u32, path: &str, outcome: Outcome) {
        for i in 0..n {
            let mut sample = shaped(
                [(i % 100 + 100) as u8, (i / 100) as u8, 7, 1],
                BROWSERS[0],
                CLIENT_HEADERS[0],
            );
            sample.path = PathShape::of(path, "");
            sample.method = Method::of("POST");
            if outcome != Outcome::Fine {
                sample.status = 429;
            }
            sample.outcome = outcome;
            d.observe(&sample);
        }
    }

    #[test]
    fn strain_raises_sensitivity_and_lets_a_common_look_on_one_path_be_a_signature() {
        // 40 a second learned; 70 more of a common look on /login is
        // under 3x the whole: a surge of the new route alone, with no
        // signature, since without strain a path is never one.
        let mut calm = learned();
        for t in 25..30 {
            ordinary(&mut calm, 40, t);
            common_look(&mut calm, 70, "/login", Outcome::Fine);
            tick(&mut calm, t as u64);
        }
        let calm_event = calm.events().next().expect("the route's surge");
        assert_eq!(calm_event.route.as_deref(), Some("/login"));
        assert!(!calm_event.strained);
        assert_eq!(calm_event.signature, None);
        // The same, with the function saturated: an event in one tick,
        // its signature the path with the look.
        let mut d = learned();
        ordinary(&mut d, 40, 25);
        common_look(&mut d, 70, "/login", Outcome::Saturated);
        tick(&mut d, 25);
        let event = d.events().next().expect("an event under strain").clone();
        assert!(event.strained);
        let sig = event.signature.expect("a signature");
        assert_eq!(sig.attribute, "path_shape+header_shape");
        assert!(sig.value.starts_with("/login hs1-06-"), "{}", sig.value);
        assert!(sig
            .rule
            .contains("field = \"path_shape\", search = \"/login\""));
        assert!(compile(&[&sig.rule]).unwrap().is_some());
        // What changed, as evidence: the path, the method, the status.
        let changed: Vec<&str> = event.changes.iter().map(|c| c.attribute).collect();
        for attribute in ["path_shape", "method", "status"] {
            assert!(changed.contains(&attribute), "{changed:?}");
        }
        assert!(event.changes.len() <= MAX_CHANGES);
    }

    #[test]
    fn a_budget_burning_fast_is_strain() {
        // Under 3x (110 vs 40): nothing, until a budget burns fast.
        let mut d = learned();
        d.set_burning(true);
        assert!(d.status().budget_burning);
        ordinary(&mut d, 40, 25);
        common_look(&mut d, 70, "/login", Outcome::Fine);
        tick(&mut d, 25);
        let event = d.events().next().expect("an event under strain");
        assert!(event.strained);
        assert_eq!(
            event.signature.as_ref().map(|s| s.attribute),
            Some("path_shape+header_shape")
        );
    }

    #[test]
    fn a_crowd_on_one_new_path_is_never_a_signature_without_strain() {
        // 10x, all on /launch, ordinary variety: a launch.
        let mut d = learned();
        for t in 25..30 {
            for i in 0..400usize {
                let mut sample = shaped(
                    [100, (i % 250) as u8, (t % 250) as u8, 1],
                    BROWSERS[i % 4],
                    CLIENT_HEADERS[i % 4],
                );
                sample.path = PathShape::of("/launch", "");
                d.observe(&sample);
            }
            tick(&mut d, t as u64);
        }
        let event = d.events().next().expect("a surge");
        assert!(!event.strained);
        assert_eq!(event.signature, None);
        assert!(event.changes.iter().any(|c| c.attribute == "path_shape"));
    }

    /// Two requests a second of ordinary clients on /login.
    fn small_route(d: &mut Detector, t: usize) {
        for i in 0..2 {
            let mut sample = shaped(
                [10, (t % 50) as u8, 1, i],
                BROWSERS[(t + usize::from(i)) % 4],
                CLIENT_HEADERS[(t + usize::from(i)) % 4],
            );
            sample.path = PathShape::of("/login", "");
            d.observe(&sample);
        }
    }

    #[test]
    fn a_flood_on_a_small_route_is_seen_by_its_own_baseline() {
        let mut d = Detector::new(quick());
        for t in 0..25 {
            ordinary(&mut d, 40, t);
            small_route(&mut d, t);
            tick(&mut d, t as u64);
        }
        // 40 a second of a tool on /login: under 3x the whole, 20x the
        // route's own (under twice its threshold, so two seconds).
        let flood = |d: &mut Detector, t: usize| {
            ordinary(d, 40, t);
            small_route(d, t);
            for i in 0..40u32 {
                let mut sample = sample([(i + 1) as u8, 2, 3, 4], "flood/1.0");
                sample.path = PathShape::of("/login", "");
                d.observe(&sample);
            }
            tick(d, t as u64);
        };
        flood(&mut d, 25);
        assert_eq!(d.events().count(), 0, "one surge second is not an event");
        flood(&mut d, 26);
        let event = d.events().next().expect("the route's surge").clone();
        assert_eq!(event.route.as_deref(), Some("/login"));
        assert!((event.reference_rps - 2.0).abs() < 0.5, "{event:?}");
        assert_eq!(event.peak_rps, 42.0);
        let sig = event.signature.expect("a signature");
        assert_eq!(
            (sig.attribute, sig.value.as_str()),
            ("user_agent", "flood/1.0")
        );
        assert!(sig.coverage > 0.9, "{sig:?}");
        // Back to normal on the route: the event ends after the quiet ticks.
        for t in 27..31 {
            ordinary(&mut d, 40, t);
            small_route(&mut d, t);
            tick(&mut d, t as u64);
        }
        assert_eq!(d.events().next().unwrap().state, State::Ended);
    }

    #[test]
    fn a_new_user_agent_from_the_known_clients_is_theirs_not_a_signature() {
        // Every ordinary client updates its app at once and retries: 10x,
        // a user agent never seen, from the networks the baseline knows.
        let mut d = learned();
        for t in 25..28 {
            for i in 0..400usize {
                let j = i + t;
                d.observe(&shaped(
                    [10, (j % 50) as u8, 0, (j % 4) as u8],
                    "MyApp/2.0",
                    CLIENT_HEADERS[j % 4],
                ));
            }
            tick(&mut d, t as u64);
        }
        let event = d.events().next().expect("a surge");
        assert_eq!(event.signature, None, "{event:?}");
        // The same from strangers is a flood of one tool.
        let mut d = learned();
        for t in 25..28 {
            for i in 0..400u32 {
                d.observe(&sample([172, 20, (i % 250) as u8, 1], "MyApp/2.0"));
            }
            tick(&mut d, t as u64);
        }
        let sig = first_signature(&d);
        assert_eq!(sig.value, "MyApp/2.0");
        assert_eq!(sig.known_share, 0.0);
    }

    #[test]
    fn a_flood_that_ramps_up_under_the_threshold_is_judged_by_the_baseline_before_it() {
        let mut d = learned();
        // 30, then 60 a second of a tool: under 3x, so learned ...
        for (t, n) in [(25u64, 30u32), (26, 60), (27, 200), (28, 400), (29, 400)] {
            ordinary(&mut d, 40, t as usize);
            for i in 0..n {
                d.observe(&sample([172, 16, (i % 250) as u8, 1], "ramp/1.0"));
            }
            tick(&mut d, t);
        }
        let tool = Value::Agent(Agent::of(Some(b"ramp/1.0")));
        assert!(d.baseline.share(&tool) > 0.01, "the ramp was learned");
        // ... but not by the snapshots from before it.
        let sig = first_signature(&d);
        assert_eq!(
            (sig.attribute, sig.value.as_str(), sig.baseline_share),
            ("user_agent", "ramp/1.0", 0.0)
        );
    }

    #[test]
    fn every_attribute_is_saved_and_restored() {
        let mut d = learned();
        for t in 25..28 {
            common_look(&mut d, 5, "/items/7", Outcome::Failed);
            ordinary(&mut d, 40, t);
            tick(&mut d, t as u64);
        }
        let saved = d.saved_baseline(1);
        let json = serde_json::to_string(&saved).unwrap();
        let mut fresh = Detector::new(quick());
        fresh.restore(&serde_json::from_str(&json).unwrap());
        assert_eq!(fresh.baseline.shares.len(), d.baseline.shares.len());
        for (value, share) in &d.baseline.shares {
            assert!((fresh.baseline.share(value) - share).abs() < 1e-9);
        }
        assert!((fresh.baseline.strain - d.baseline.strain).abs() < 1e-12);
        assert!(d.baseline.strain > 0.0);
        for value in [
            Value::Path(PathShape::of("/items/1", "")),
            Value::Method(Method::of("POST")),
            Value::Status(429),
            Value::Key(KeyUse::None),
        ] {
            assert!(fresh.baseline.share(&value) > 0.0, "{value:?}");
        }
    }

    /// Bytes the detector holds: its tables' entries at their own size
    /// (HashMap slack of up to 2x included), events and remembered
    /// signatures with their text.
    fn held_bytes(d: &Detector) -> usize {
        let entry = std::mem::size_of::<(Value, (u64, u64))>() + 1;
        let tops = d
            .tops
            .iter()
            .map(|t| t.counts.capacity() * entry)
            .sum::<usize>();
        let shares = std::iter::once(&d.baseline.shares)
            .chain(&d.baseline.earlier)
            .map(|s| s.capacity() * (std::mem::size_of::<(Value, f64)>() + 1))
            .sum::<usize>();
        let events = d
            .events
            .iter()
            .map(|e| {
                std::mem::size_of::<Event>()
                    + e.signature
                        .as_ref()
                        .map_or(0, |s| s.value.capacity() + s.rule.capacity())
            })
            .sum::<usize>();
        let remembered = d.remembered.capacity() * std::mem::size_of::<(Value, u64)>();
        std::mem::size_of::<Detector>() + tops + shares + events + remembered
    }

    /// What one sample costs the detector thread. Run with
    /// `cargo test -p levee-shield --release --lib -- --ignored --nocapture observe_cost`.
    #[test]
    #[ignore = "a measurement: run in release with --ignored"]
    fn observe_cost() {
        let mut d = learned();
        let samples: Vec<Sample> = (0..20_000u32)
            .map(|i| {
                let mut s = shaped(
                    [10, (i % 50) as u8, (i % 7) as u8, 1],
                    BROWSERS[(i % 4) as usize],
                    CLIENT_HEADERS[(i % 4) as usize],
                );
                s.path = PathShape::of(&format!("/items/{i}"), "page=2");
                s
            })
            .collect();
        let start = std::time::Instant::now();
        for t in 0..50u64 {
            for s in &samples {
                d.observe(s);
            }
            tick(&mut d, 25 + t);
        }
        let per = start.elapsed().as_nanos() as f64 / (50.0 * 20_000.0);
        println!("{per:.0} ns per sample, tick included");
    }

    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
        let pages: usize = statm
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        pages * 4096
    }

    /// The issue's bound: at most 16 MiB at 1 M distinct addresses (and as
    /// many user agents, header shapes and path shapes), fed 20,000
    /// samples a second (four times the edge's sampling rate) while
    /// learning, then as a flood. Run with
    /// `cargo test -p levee-shield --release --lib -- --ignored --nocapture detector_memory`.
    #[test]
    #[ignore = "heavy: run in release with --ignored"]
    fn detector_memory_stays_bounded_at_a_million_distinct_sources() {
        let before = resident_bytes();
        let mut d = Detector::new(quick());
        let mut headers = http::HeaderMap::new();
        for t in 0..100u64 {
            for i in 0..20_000u64 {
                let n = t * 20_000 + i;
                let client = if n % 2 == 0 {
                    IpAddr::from(std::net::Ipv4Addr::from(n as u32 * 2_654_435_761))
                } else {
                    IpAddr::from(std::net::Ipv6Addr::from(u128::from(n) << 64 | 1))
                };
                if i % 1000 == 0 {
                    headers.insert(
                        http::HeaderName::from_bytes(format!("x-{n}").as_bytes()).unwrap(),
                        http::HeaderValue::from_static("v"),
                    );
                }
                // A distinct path shape per sample: letters, not digits.
                let path: String = format!("/{n:x}")
                    .chars()
                    .map(|c| char::from(b'g' + c.to_digit(16).unwrap_or(0) as u8))
                    .collect();
                d.observe(&Sample {
                    client,
                    agent: Agent::of(Some(format!("agent/{n}").as_bytes())),
                    shape: Shape::of(&headers),
                    path: PathShape::of(&format!("/{path}"), ""),
                    method: Method::of("GET"),
                    status: 200,
                    key: KeyUse::None,
                    outcome: Outcome::Fine,
                });
            }
            // Learning for 20 ticks, then five times the rate: an event.
            d.tick(t, if t < 20 { 20_000 } else { 100_000 });
        }
        let held = held_bytes(&d);
        let grown = resident_bytes().saturating_sub(before);
        println!(
            "2,000,000 distinct samples (1,000,000 IPv4 + 1,000,000 IPv6 sources, as many agents and path shapes): detector holds {:.2} MiB by its tables, process grew {:.2} MiB; {} baseline values, {} events",
            held as f64 / 1048576.0,
            grown as f64 / 1048576.0,
            d.baseline.shares.len(),
            d.events.len()
        );
        assert!(d.baseline.shares.len() <= 2 * BASELINE_VALUES * TOPS);
        assert!(held <= 16 << 20, "{held}");
        assert!(grown <= 16 << 20, "{grown}");
    }
}
