//! The `[firewall]` table of levee.toml, as serde structs.
//!
//! Owns the *shape* of the configuration only: every struct denies unknown
//! fields so a typo is an error, not a silently ignored rule. It must never
//! validate semantics (ranges, regex syntax, name uniqueness): that is
//! [`super::Firewall::compile`]'s job, which reports every problem with its
//! key path at once.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default number of body bytes inspected (AWS WAF's ALB value).
pub const DEFAULT_BODY_INSPECTION_BYTES: u32 = 8 * 1024;
/// Default number of distinct keys each rate-based rule and ban list tracks.
pub const DEFAULT_RATE_MAX_KEYS: usize = 1_000_000;

/// The `[firewall]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallConfig {
    /// What happens to a request no terminating rule decided.
    #[serde(default)]
    pub default_action: DefaultAction,
    /// Response for `default_action = "block"`; the 403 JSON default if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_response: Option<BlockResponseConfig>,
    /// Named IP sets: CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or bare addresses.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ip_sets: BTreeMap<String, Vec<String>>,
    /// The rules, in any order: they are evaluated by ascending `priority`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    /// How many leading body bytes body-inspecting rules see (max 65536).
    #[serde(default = "default_body_inspection_bytes")]
    pub body_inspection_bytes: u32,
    /// Distinct keys tracked per rate-based rule and per ban list.
    #[serde(default = "default_rate_max_keys")]
    pub rate_max_keys: usize,
}

fn default_body_inspection_bytes() -> u32 {
    DEFAULT_BODY_INSPECTION_BYTES
}

fn default_rate_max_keys() -> usize {
    DEFAULT_RATE_MAX_KEYS
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            default_action: DefaultAction::Allow,
            default_response: None,
            ip_sets: BTreeMap::new(),
            rules: Vec::new(),
            body_inspection_bytes: DEFAULT_BODY_INSPECTION_BYTES,
            rate_max_keys: DEFAULT_RATE_MAX_KEYS,
        }
    }
}

/// `default_action = "allow" | "block"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefaultAction {
    /// Let the request through.
    #[default]
    Allow,
    /// Answer with `default_response` (403 by default).
    Block,
}

/// One `[[firewall.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique, `[A-Za-z0-9_-]{1,128}`; shown in counters and block verdicts.
    pub name: String,
    /// Unique; lower runs first.
    pub priority: u32,
    /// What to do when the statement matches.
    pub action: ActionKind,
    /// `true` turns the rule into `count` without losing its configured action:
    /// the dry-run switch for trying a rule on live traffic.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// Custom block response; only valid with `action = "block"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<BlockResponseConfig>,
    /// Labels added to the request when the rule matches (any action).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Ban the client IP after it trips this (block) rule repeatedly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban: Option<BanConfig>,
    /// What the rule matches.
    pub statement: StatementConfig,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `action = "allow" | "block" | "count"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Terminating: let the request through, skip later rules.
    Allow,
    /// Terminating: answer with the rule's response.
    Block,
    /// Non-terminating: bump counters and add labels, then go on.
    Count,
}

/// A custom block response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockResponseConfig {
    /// 200..=599 (AWS WAF's range; 3xx with a `location` header redirects).
    #[serde(default = "default_block_status")]
    pub status: u16,
    /// Response body; at most 8 KiB. Defaults to `{"message":"Forbidden"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Defaults to `application/json` for the default body, otherwise
    /// `text/plain; charset=utf-8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Extra response headers (at most 16); framing headers are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

fn default_block_status() -> u16 {
    403
}

/// `ban = { after = 3, within = "1m", duration = "10m" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanConfig {
    /// Blocks by this rule (1..=1000) ...
    pub after: u32,
    /// ... within this period (1s..=1h) ...
    pub within: DurationConfig,
    /// ... ban the client IP for this long (1s..=7d).
    pub duration: DurationConfig,
}

/// One statement. Exactly one key per table, e.g. `{ ip_set = { name = "bad" } }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StatementConfig {
    /// The client (or forwarded) IP is in a named IP set.
    IpSet(IpSetStatementConfig),
    /// A field compared with a literal string.
    StringMatch(StringMatchConfig),
    /// A field matched by a regular expression (linear time).
    Regex(RegexMatchConfig),
    /// A field's length compared with a number.
    Size(SizeConstraintConfig),
    /// libinjection SQL-injection detection on a field.
    Sqli(DetectConfig),
    /// libinjection XSS detection on a field.
    Xss(DetectConfig),
    /// An earlier rule added exactly this label.
    Label(String),
    /// An earlier rule added a label starting with this namespace (e.g. `bots:`).
    LabelNamespace(String),
    /// All of the statements (2..=100).
    And(Vec<StatementConfig>),
    /// Any of the statements (2..=100).
    Or(Vec<StatementConfig>),
    /// The statement does not match.
    Not(Box<StatementConfig>),
    /// Rate-based: only allowed as a rule's top-level statement.
    Rate(RateStatementConfig),
}

/// `ip_set = { name = "office", source = "client" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpSetStatementConfig {
    /// A key of `[firewall.ip_sets]`.
    pub name: String,
    /// Which address to look up.
    #[serde(default, skip_serializing_if = "IpSource::is_client")]
    pub source: IpSource,
}

/// Which address an IP-set statement looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpSource {
    /// The client IP as resolved by the edge (trusted-proxy aware).
    #[default]
    Client,
    /// The first X-Forwarded-For hop; no match when absent.
    Forwarded,
}

impl IpSource {
    fn is_client(&self) -> bool {
        *self == IpSource::Client
    }
}

/// The part of the request a statement inspects. A missing component (no
/// such header, cookie or query argument) never matches, as in AWS WAF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FieldConfig {
    /// The HTTP method.
    Method,
    /// The raw, percent-encoded path.
    Path,
    /// The raw query string without `?`.
    QueryString,
    /// Every value of the named query argument (name compared
    /// case-insensitively after URL decoding); any value may match.
    QueryArg(String),
    /// Every value of the named header; any value may match.
    Header(String),
    /// Every value of the named cookie; any value may match.
    Cookie(String),
    /// The first `body_inspection_bytes` bytes of the body.
    Body,
    /// The header shape, `hs1-NN-HHHHHHHHHHHHHHHH`: the number and order
    /// of the header names (values not included), Levee's fingerprint of
    /// the client software.
    HeaderShape,
    /// The path shape: path segments holding a digit as `*`, query
    /// argument names without their values (`/items/*?id&page`).
    PathShape,
}

/// Text transformations, applied in the listed order before matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformConfig {
    /// ASCII `A-Z` to `a-z`.
    Lowercase,
    /// `%XX` and `+` decoding.
    UrlDecode,
    /// `&lt;`, `&#60;`, `&#x3c;` ... decoding.
    HtmlEntityDecode,
    /// Whitespace runs to one space.
    CompressWhitespace,
}

/// `string_match = { field = "path", search = "/admin", position = "starts_with" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatchConfig {
    /// What to inspect.
    pub field: FieldConfig,
    /// The literal to look for (1..=256 bytes).
    pub search: String,
    /// Where it must appear.
    #[serde(default)]
    pub position: PositionConfig,
    /// Transformations, in order (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<TransformConfig>,
}

/// Positional constraint of a string match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionConfig {
    /// The whole field equals the search string.
    Exactly,
    /// The field starts with it.
    StartsWith,
    /// The field ends with it.
    EndsWith,
    /// It appears anywhere.
    #[default]
    Contains,
    /// It appears delimited by non-word bytes (AWS `CONTAINS_WORD`).
    ContainsWord,
}

/// `regex = { field = { header = "user-agent" }, pattern = "(?i)curl" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexMatchConfig {
    /// What to inspect.
    pub field: FieldConfig,
    /// A `regex` crate pattern (at most 1024 bytes, compiled size bounded).
    pub pattern: String,
    /// Transformations, in order (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<TransformConfig>,
}

/// `size = { field = "query_string", op = "gt", size = 1024 }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeConstraintConfig {
    /// What to measure (bytes, after transformations).
    pub field: FieldConfig,
    /// The comparison: field length `op` size.
    pub op: SizeOp,
    /// The number compared with.
    pub size: u64,
    /// Transformations, in order (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<TransformConfig>,
}

/// Size comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// `sqli = { field = "query_string", transforms = ["url_decode"] }` (also `xss`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// What to inspect.
    pub field: FieldConfig,
    /// Transformations, in order (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<TransformConfig>,
}

/// `rate = { limit = 100, window = "1m", key = ["ip"], scope_down = {...} }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateStatementConfig {
    /// Requests allowed per key and window (1..=2_000_000_000).
    pub limit: u64,
    /// Window, 1s..=600s.
    pub window: DurationConfig,
    /// Aggregation key: 1..=5 parts, all of which must be present for the
    /// request to be counted (AWS: requests missing a key are not counted).
    #[serde(default = "default_rate_key")]
    pub key: Vec<RateKeyConfig>,
    /// Only requests matching this are counted (and limited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_down: Option<Box<StatementConfig>>,
}

fn default_rate_key() -> Vec<RateKeyConfig> {
    vec![RateKeyConfig::Ip]
}

/// One part of a rate-based aggregation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RateKeyConfig {
    /// The client IP.
    Ip,
    /// The first X-Forwarded-For hop.
    ForwardedIp,
    /// The API key the edge resolved.
    ApiKey,
    /// The raw path.
    Path,
    /// The HTTP method.
    Method,
    /// The raw query string.
    QueryString,
    /// The first value of a header.
    Header(String),
    /// The first value of a query argument.
    QueryArg(String),
    /// The first value of a cookie.
    Cookie(String),
    /// The header shape.
    HeaderShape,
    /// The path shape.
    PathShape,
}

/// A duration in the grammar of the rest of `levee.toml` (`"250ms"`, `"10s"`,
/// `"1m30s"`, `"1d"`: [`levee_common::parse_duration`]). A bare integer is
/// read as seconds, an older spelling kept working for existing rule files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationConfig(pub Duration);

impl DurationConfig {
    /// Parses the string form, saying what is wrong with anything else.
    pub fn parse(s: &str) -> Result<DurationConfig, String> {
        levee_common::parse_duration(s).map(DurationConfig)
    }
}

impl fmt::Display for DurationConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&levee_common::format_duration(self.0))
    }
}

impl Serialize for DurationConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = DurationConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like \"250ms\", \"10s\", \"1m30s\" or \"1d\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(DurationConfig(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(|v| DurationConfig(Duration::from_secs(v)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                DurationConfig::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}
