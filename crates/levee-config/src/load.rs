//! Turning text into a [`Config`], collecting every problem on the way.
//!
//! The document is parsed once with `toml_edit`, which keeps byte spans for
//! every key and value. Each section, function and route is then deserialized
//! on its own, so one typo does not hide the problems in the rest of the file,
//! and the spans place every problem on a line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{DeserializeOwned, IntoDeserializer as _};
use serde::Deserialize;
use toml_edit::{ImDocument, Item, Table, TableLike, Value};

use crate::error::{ConfigError, Problem};
use levee_shield::firewall::{Firewall, FirewallConfig};

use crate::budgets;
use crate::cache;
use crate::guard::{self, Throttle};
use crate::model::{AccessLog, Account, Config, Function, RuntimeKind, Server};
use crate::plans;
use crate::queues;
use crate::route::{self, Candidate, Route, RouteKey};
use levee_common::{parse_duration, parse_size};

const SECTIONS: [&str; 16] = [
    "server",
    "account",
    "functions",
    "routes",
    "limits",
    "admin_limits",
    "client_ip",
    "throttle",
    "firewall",
    "plans",
    "cache",
    "prices",
    "budgets",
    "metering",
    "queues",
    "event_sources",
];
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8081);
const DEFAULT_DATA_DIR: &str = ".levee";
const DEFAULT_CONCURRENCY: u32 = 100;
const CONCURRENCY: RangeInclusive<u32> = 1..=100_000;
const MAX_FUNCTION_NAME_LEN: usize = 64;
const DEFAULT_MEMORY_MB: u32 = 128;
const MEMORY_MB: RangeInclusive<u32> = 128..=10_240;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(900);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const IDLE_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 60 * 60);
/// Lambda's synchronous invocation payload limit.
const MAX_BODY_BYTES: u64 = 6 * 1024 * 1024;
/// Lambda's limit on the combined size of a function's variables.
const MAX_ENV_BYTES: usize = 4096;
/// Variables the Lambda runtime sets itself; a function overriding them would
/// lie to its own runtime client.
const RESERVED_ENV: [&str; 10] = [
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];
const RESERVED_ENV_PREFIX: &str = "AWS_LAMBDA_";
/// Deeper than any key this schema has; bounds the work spent on hostile nesting.
const MAX_LOCATE_DEPTH: usize = 8;
use levee_common::text::MAX_QUOTED_CHARS;
/// Keeps messages readable when a file declares thousands of functions.
const MAX_LISTED: usize = 20;

/// `[metering]`: `enabled = false` turns meters (and so budgets) off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetering {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    data_dir: Option<String>,
    access_log: Option<AccessLog>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    concurrency: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawRuntime {
    #[default]
    Process,
}

// Durations and sizes stay text here and are parsed during validation, so a
// bad one is reported alongside the function's other problems.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    #[serde(default)]
    runtime: RawRuntime,
    command: Vec<String>,
    handler: Option<String>,
    code: String,
    memory_mb: Option<u32>,
    timeout: Option<String>,
    reserved_concurrency: Option<u32>,
    #[serde(default)]
    provisioned: u32,
    idle_timeout: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    max_body: Option<RawSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    route: String,
    function: String,
    #[serde(default)]
    api_key_required: bool,
    #[serde(default, rename = "async")]
    is_async: bool,
    queue: Option<String>,
    max_body: Option<RawSize>,
    /// Validated separately, so its problems get their own key paths.
    #[serde(default, rename = "throttle")]
    _throttle: Option<serde::de::IgnoredAny>,
    /// Validated separately, like `throttle`.
    #[serde(default, rename = "cache")]
    _cache: Option<serde::de::IgnoredAny>,
}

/// `max_body` as written: `"6MB"` or a plain integer of bytes.
#[derive(Debug)]
pub(crate) enum RawSize {
    Text(String),
    Bytes(i64),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = RawSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"6MB\" or \"256KiB\", or a number of bytes")
            }

            fn visit_i64<E>(self, bytes: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(bytes))
            }

            fn visit_str<E>(self, text: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(text.to_owned()))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Validates a size key (`16384` or `"16KiB"`) against `range`; a problem
/// names `key` and the range, and leaves `default` in place.
pub(crate) fn checked_size(
    key: impl Into<String>,
    raw: Option<RawSize>,
    default: u64,
    range: RangeInclusive<u64>,
    found: &mut Vec<guard::Found>,
) -> u64 {
    let parsed = match raw {
        None => return default,
        Some(RawSize::Bytes(n)) => u64::try_from(n).map_err(|_| "must not be negative".into()),
        Some(RawSize::Text(s)) => parse_size(&s),
    };
    match parsed {
        Ok(n) if range.contains(&n) => n,
        Ok(n) => {
            found.push((
                key.into(),
                format!(
                    "must be between {} and {}, not {n} bytes",
                    binary_size(*range.start()),
                    binary_size(*range.end())
                ),
            ));
            default
        }
        Err(e) => {
            found.push((key.into(), format!("invalid size: {e}")));
            default
        }
    }
}

/// `8192` → `8KiB`, `1048576` → `1MiB`; other numbers as bytes.
fn binary_size(n: u64) -> String {
    match n {
        0 => "0 bytes".into(),
        n if n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Key(String),
    Index(usize),
}

/// Where a problem is, e.g. `functions.hello.env.FOO` or `routes[2].route`.
#[derive(Debug, Clone, Default)]
struct KeyPath(Vec<Segment>);

impl KeyPath {
    /// Parses a dotted path with indices, as other crates report them:
    /// `firewall.rules[2].statement.regex`.
    fn parse(text: &str) -> KeyPath {
        let mut path = KeyPath::default();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let mut pieces = part.split('[');
            if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
                path.0.push(Segment::Key(name.to_owned()));
            }
            for index in pieces {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    path.0.push(Segment::Index(i));
                }
            }
        }
        path
    }

    fn key(&self, name: &str) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(name.to_owned()));
        path
    }

    fn index(&self, index: usize) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    // A key is input: shown cut, so a 10 MB key name makes
                    // a short line, not a 10 MB one.
                    let shown: String = name.chars().take(MAX_QUOTED_CHARS).collect();
                    if bare {
                        f.write_str(&shown)?;
                    } else {
                        write!(f, "{shown:?}")?;
                    }
                    if name.chars().nth(MAX_QUOTED_CHARS).is_some() {
                        f.write_str("…")?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A position in the document; arrays of tables hold `Table`s and inline
/// arrays hold `Value`s, so one reference type cannot name every node.
#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Table(table) => table.span(),
            Node::Value(value) => value.span(),
        }
    }

    fn table_like(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Table(table) => Some(table),
            Node::Value(value) => value.as_inline_table().map(|t| t as &dyn TableLike),
        }
    }

    fn element(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(tables)) => tables.get(index).map(Node::Table),
            Node::Item(Item::Value(Value::Array(array))) | Node::Value(Value::Array(array)) => {
                array.get(index).map(Node::Value)
            }
            _ => None,
        }
    }

    /// The child at `segment` and the span that marks it: the key for table
    /// entries, the element itself for array entries.
    fn child(self, segment: &Segment) -> Option<(Node<'a>, Option<Range<usize>>)> {
        match segment {
            Segment::Key(name) => {
                let (key, item) = self.table_like()?.get_key_value(name)?;
                Some((Node::Item(item), key.span()))
            }
            Segment::Index(index) => {
                let node = self.element(*index)?;
                Some((node, node.span()))
            }
        }
    }

    fn children(self) -> Vec<(Segment, Node<'a>, Option<Range<usize>>)> {
        let segments: Vec<Segment> = match self.table_like() {
            Some(table) => table
                .iter()
                .map(|(name, _)| Segment::Key(name.to_owned()))
                .collect(),
            None => (0..)
                .map_while(|i| self.element(i).map(|_| Segment::Index(i)))
                .collect(),
        };
        segments
            .into_iter()
            .filter_map(|segment| {
                let (node, span) = self.child(&segment)?;
                Some((segment, node, span))
            })
            .collect()
    }

    fn to_item(self) -> Item {
        match self {
            Node::Item(item) => item.clone(),
            Node::Table(table) => Item::Table(table.clone()),
            Node::Value(value) => Item::Value(value.clone()),
        }
    }
}

fn covers(span: Option<&Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|span| span.start <= offset && offset < span.end.max(span.start + 1))
}

/// Extends `path` down to the deepest key or value under `node` whose span
/// holds `offset`, the spot a deserialization error points at.
fn locate(node: Node<'_>, offset: usize, path: &mut Vec<Segment>, depth: usize) -> bool {
    if depth >= MAX_LOCATE_DEPTH {
        return false;
    }
    for (segment, child, anchor) in node.children() {
        path.push(segment);
        if covers(anchor.as_ref(), offset)
            || locate(child, offset, path, depth + 1)
            || covers(child.span().as_ref(), offset)
        {
            return true;
        }
        path.pop();
    }
    false
}

/// `path` with symbolic links and `..` resolved as far as it exists: the
/// data dir may not have been created yet.
fn real_path(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

fn line_at(line_starts: &[usize], offset: usize) -> usize {
    line_starts.partition_point(|&start| start <= offset)
}

/// toml_edit messages span several lines; a problem is printed on one.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn listing<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let more = names.len().saturating_sub(MAX_LISTED);
    let mut text = names.take(MAX_LISTED).collect::<Vec<_>>().join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

fn valid_function_name(name: &str) -> bool {
    (1..=MAX_FUNCTION_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether two listeners could not both be bound.
fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

pub(crate) fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let line_starts = line_starts(text);
    let doc = ImDocument::parse(text).map_err(|e| {
        let problem = Problem {
            line: e.span().map(|span| line_at(&line_starts, span.start)),
            key: String::new(),
            message: levee_common::text::bound_message(&format!(
                "invalid TOML: {}",
                one_line(e.message())
            )),
        };
        ConfigError::new(origin, vec![problem])
    })?;
    let mut loader = Loader {
        doc: &doc,
        line_starts,
        base_dir,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let mut config = loader.config();
    let mut problems = loader.problems;
    if problems.is_empty() {
        config.warnings = loader.warnings;
        return Ok(config);
    }
    problems.sort_by_key(|problem| problem.line.unwrap_or(0));
    Err(ConfigError::new(origin, problems))
}

struct Loader<'a> {
    doc: &'a ImDocument<&'a str>,
    line_starts: Vec<usize>,
    base_dir: &'a Path,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl<'a> Loader<'a> {
    /// Builds the whole config; values that failed validation hold defaults,
    /// which is harmless because any problem discards the result.
    fn config(&mut self) -> Config {
        for (name, _) in self.doc.as_table().iter() {
            if !SECTIONS.contains(&name) {
                self.report(
                    &KeyPath::default().key(name),
                    format!(
                        "unknown field `{name}`, expected one of {}",
                        SECTIONS.map(|s| format!("`{s}`")).join(", ")
                    ),
                );
            }
        }
        let server = self.server();
        let account = self.account();
        // Checks against an out-of-range limit would only echo its problem.
        let limit = CONCURRENCY
            .contains(&account.concurrency)
            .then_some(account.concurrency);
        let (functions, declared) = self.functions(limit);
        self.code_outside_data_dir(&functions, &server.data_dir);
        if let Some(limit) = limit {
            self.total_reserved(&functions, limit);
        }
        let routes = self.routes(&declared);
        let limits = self.guarded("limits", guard::limits);
        let admin_limits = self.guarded("admin_limits", guard::admin_limits);
        if let Some(found) = guard::total_connections(&limits, &admin_limits) {
            self.report_found(&KeyPath::default().key("admin_limits"), vec![found]);
        }
        let client_ip = self.guarded("client_ip", guard::client_ip);
        let throttle = self.throttle(&KeyPath::default().key("throttle"));
        let firewall = self.firewall();
        let route_keys: Vec<String> = routes.iter().map(|r| r.route_key.clone()).collect();
        let plans = self.plans(&route_keys);
        let cache = self.guarded("cache", cache::cache_settings);
        let prices = self.guarded("prices", budgets::prices);
        let function_names: Vec<String> = functions.keys().cloned().collect();
        let budgets = self.budgets(&function_names);
        let metering = self
            .section::<RawMetering>("metering")
            .enabled
            .unwrap_or(true);
        let queues = self.queues();
        let timeouts: BTreeMap<String, Duration> = functions
            .iter()
            .map(|(n, f)| (n.clone(), f.timeout))
            .collect();
        let event_sources = self.event_sources(&queues, &timeouts);
        self.async_routes(&routes, &queues);
        Config {
            server,
            account,
            functions,
            routes,
            limits,
            admin_limits,
            client_ip,
            throttle,
            firewall,
            plans,
            cache,
            prices,
            budgets,
            metering,
            queues,
            event_sources,
            warnings: Vec::new(),
        }
    }

    fn line_of(&self, path: &KeyPath) -> Option<usize> {
        let mut node = Node::Item(self.doc.as_item());
        let mut line = None;
        for segment in &path.0 {
            let Some((child, span)) = node.child(segment) else {
                break;
            };
            if let Some(span) = span {
                line = Some(line_at(&self.line_starts, span.start));
            }
            node = child;
        }
        line
    }

    /// Records a problem at `path`, or at its nearest ancestor present in the
    /// file when the key itself was left out.
    /// The one place problems are made: messages quote input between
    /// backticks, and [`levee_common::text::bound_message`] keeps every quoted piece
    /// and the whole message short (check, reload and SIGHUP print them).
    fn report(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.push(self.line_of(path), path, &message.into());
    }

    fn push(&mut self, line: Option<usize>, path: &KeyPath, message: &str) {
        self.problems.push(Problem {
            line,
            key: path.to_string(),
            message: levee_common::text::bound_message(message),
        });
    }

    fn deserialize<T: DeserializeOwned>(&mut self, node: Node<'_>, path: &KeyPath) -> Option<T> {
        let Ok(value) = node.to_item().into_value() else {
            self.report(path, "expected a value");
            return None;
        };
        let error = match T::deserialize(value.into_deserializer()) {
            Ok(parsed) => return Some(parsed),
            Err(error) => error,
        };
        let mut at = path.clone();
        if let Some(span) = error.span() {
            locate(node, span.start, &mut at.0, 0);
        }
        let message = one_line(error.message());
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            at = at.key(field);
        }
        let line = match error.span() {
            Some(span) => Some(line_at(&self.line_starts, span.start)),
            None => self.line_of(&at),
        };
        self.push(line, &at, &message);
        None
    }

    fn section<T: DeserializeOwned + Default>(&mut self, name: &str) -> T {
        let doc = self.doc;
        let Some(item) = doc.as_table().get(name) else {
            return T::default();
        };
        let path = KeyPath::default().key(name);
        if !item.is_table_like() {
            self.report(&path, format!("expected a table, e.g. [{name}]"));
            return T::default();
        }
        self.deserialize(Node::Item(item), &path)
            .unwrap_or_default()
    }

    /// Makes `text` absolute against the config file's directory.
    fn resolve(&mut self, text: &str, path: &KeyPath) -> Option<PathBuf> {
        if text.is_empty() {
            self.report(path, "must not be empty");
            return None;
        }
        if text.contains('\0') {
            self.report(path, "must not contain a NUL character");
            return None;
        }
        let joined = self.base_dir.join(text);
        match std::path::absolute(&joined) {
            Ok(absolute) => Some(absolute),
            Err(e) => {
                self.report(
                    path,
                    format!("cannot make `{}` absolute: {e}", joined.display()),
                );
                None
            }
        }
    }

    /// An optional section validated by `check`, whose problems name keys
    /// inside the section.
    fn guarded<R: DeserializeOwned + Default, T>(
        &mut self,
        name: &str,
        check: fn(R) -> (T, Vec<guard::Found>),
    ) -> T {
        let raw: R = self.section(name);
        let (value, found) = check(raw);
        self.report_found(&KeyPath::default().key(name), found);
        value
    }

    /// Reports problems whose keys (`name`, `name[3]`, `scope.function`, or
    /// empty for the table itself) are relative to `base`.
    fn report_found(&mut self, base: &KeyPath, found: Vec<guard::Found>) {
        for (key, message) in found {
            let mut at = base.clone();
            at.0.extend(KeyPath::parse(&key).0);
            self.report(&at, message);
        }
    }

    /// A route's `cache = {…}`: `None` when absent or `enabled = false`.
    fn route_cache(&mut self, path: &KeyPath) -> Option<cache::CachePolicy> {
        let node = self.node_at(path)?;
        let raw: cache::RawCachePolicy = self.deserialize(node, path)?;
        let (policy, found) = cache::cache_policy(raw);
        self.report_found(path, found);
        policy
    }

    /// `[queues.NAME]`: durable queues.
    fn queues(&mut self) -> BTreeMap<String, queues::QueueConfig> {
        let mut out = BTreeMap::new();
        let path = KeyPath::default().key("queues");
        let Some(node) = self.node_at(&path) else {
            return out;
        };
        let Some(table) = node.table_like() else {
            self.report(&path, "expected a table of queues, e.g. [queues.orders]");
            return out;
        };
        if let Some(message) = queues::too_many_queues(table.len()) {
            self.report(&path, message);
            return out;
        }
        let names: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
        for name in &names {
            let at = path.key(name);
            let Some(queue_node) = self.node_at(&at) else {
                continue;
            };
            let Some(raw) = self.deserialize::<queues::RawQueue>(queue_node, &at) else {
                continue;
            };
            let (queue, found) = queues::queue(name, raw, &names);
            self.report_segments(&at, found);
            out.insert(name.clone(), queue);
        }
        out
    }

    /// `[[event_sources]]`: queue → function mappings.
    fn event_sources(
        &mut self,
        queues: &BTreeMap<String, queues::QueueConfig>,
        timeouts: &BTreeMap<String, Duration>,
    ) -> Vec<queues::EventSourceConfig> {
        let mut out = Vec::new();
        let path = KeyPath::default().key("event_sources");
        let Some(list) = self.node_at(&path) else {
            return out;
        };
        let count = (0..).map_while(|i| list.element(i)).count();
        if let Some(message) = queues::too_many_event_sources(count) {
            self.report(&path, message);
            return out;
        }
        for i in 0..count {
            let at = path.index(i);
            let Some(node) = list.element(i) else {
                continue;
            };
            let Some(raw) = self.deserialize::<queues::RawEventSource>(node, &at) else {
                continue;
            };
            let (source, found) = queues::event_source(raw, queues, timeouts);
            self.report_segments(&at, found);
            out.extend(source);
        }
        out
    }

    /// Routes with `async = true` must name a declared queue.
    fn async_routes(&mut self, routes: &[Route], queues: &BTreeMap<String, queues::QueueConfig>) {
        for (i, r) in routes.iter().enumerate() {
            let at = KeyPath::default().key("routes").index(i);
            match (&r.queue, r.is_async) {
                (None, true) => self.report(
                    &at.key("queue"),
                    "an async route names the queue it fills: queue = \"NAME\"",
                ),
                (Some(q), _) if !queues.contains_key(q) => {
                    self.report(&at.key("queue"), format!("no queue `{q}` in [queues]"))
                }
                (Some(_), false) => self.report(
                    &at.key("async"),
                    "`queue` is only for `async = true` routes",
                ),
                _ => {}
            }
        }
    }

    /// Reports problems whose keys are segments relative to `base`.
    fn report_segments(&mut self, base: &KeyPath, found: Vec<(Vec<String>, String)>) {
        for (keys, message) in found {
            let mut at = base.clone();
            for k in &keys {
                at = at.key(k);
            }
            self.report(&at, message);
        }
    }

    /// `[budgets.NAME]`: spend budgets.
    fn budgets(&mut self, function_names: &[String]) -> BTreeMap<String, budgets::Budget> {
        let mut out = BTreeMap::new();
        let path = KeyPath::default().key("budgets");
        let Some(node) = self.node_at(&path) else {
            return out;
        };
        let Some(table) = node.table_like() else {
            self.report(&path, "expected a table of budgets, e.g. [budgets.daily]");
            return out;
        };
        if let Some(message) = budgets::too_many(table.len()) {
            self.report(&path, message);
            return out;
        }
        let names: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
        for name in names {
            let at = path.key(&name);
            let Some(budget_node) = self.node_at(&at) else {
                continue;
            };
            let Some(raw) = self.deserialize::<budgets::RawBudget>(budget_node, &at) else {
                continue;
            };
            let (budget, found) = budgets::budget(&name, raw, function_names);
            self.report_found(&at, found);
            out.insert(name, budget);
        }
        out
    }

    /// `[plans.NAME]`: usage plans.
    fn plans(&mut self, route_keys: &[String]) -> BTreeMap<String, plans::Plan> {
        let mut out = BTreeMap::new();
        let path = KeyPath::default().key("plans");
        let Some(node) = self.node_at(&path) else {
            return out;
        };
        let Some(table) = node.table_like() else {
            self.report(&path, "expected a table of plans, e.g. [plans.basic]");
            return out;
        };
        if let Some(message) = plans::too_many(table.len()) {
            self.report(&path, message);
            return out;
        }
        let names: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
        for name in names {
            let at = path.key(&name);
            let Some(plan_node) = self.node_at(&at) else {
                continue;
            };
            let Some(raw) = self.deserialize::<plans::RawPlan>(plan_node, &at) else {
                continue;
            };
            let (plan, found) = plans::plan(&name, raw, route_keys);
            self.report_segments(&at, found);
            out.insert(name, plan);
        }
        out
    }

    /// `[firewall]`, checked by compiling it: every problem the compiler
    /// finds is placed on its line here.
    fn firewall(&mut self) -> Option<FirewallConfig> {
        let path = KeyPath::default().key("firewall");
        let node = self.node_at(&path)?;
        let config: FirewallConfig = self.deserialize(node, &path)?;
        if let Err(e) = Firewall::compile(&config) {
            for (key, message) in &e.problems {
                let mut at = KeyPath::parse(key);
                if !matches!(at.0.first(), Some(Segment::Key(k)) if k == "firewall") {
                    at.0.insert(0, Segment::Key("firewall".into()));
                }
                self.report(&at, message.clone());
            }
        }
        Some(config)
    }

    /// `[throttle]` at the top level, or `throttle = {…}` in a route.
    fn throttle(&mut self, path: &KeyPath) -> Option<Throttle> {
        let node = self.node_at(path)?;
        let raw: guard::RawThrottle = self.deserialize(node, path)?;
        match guard::throttle(raw) {
            Ok(t) => Some(t),
            Err((key, message)) => {
                self.report(&path.key(&key), message);
                None
            }
        }
    }

    fn node_at(&self, path: &KeyPath) -> Option<Node<'a>> {
        let mut node = Node::Item(self.doc.as_item());
        for segment in &path.0 {
            node = node.child(segment)?.0;
        }
        Some(node)
    }

    fn server(&mut self) -> Server {
        let raw: RawServer = self.section("server");
        let path = KeyPath::default().key("server");
        let listen = raw.listen.unwrap_or(DEFAULT_LISTEN);
        let admin_listen = raw.admin_listen.unwrap_or(DEFAULT_ADMIN_LISTEN);
        if collide(listen, admin_listen) {
            self.report(
                &path.key("admin_listen"),
                format!("{admin_listen} clashes with server.listen ({listen}); the admin API needs its own port"),
            );
        }
        if let Some(message) = crate::model::exposed_admin(admin_listen) {
            let at = path.key("admin_listen");
            self.warnings.push(Problem {
                line: self.line_of(&at),
                key: at.to_string(),
                message,
            });
        }
        let data_dir = raw.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR);
        let data_dir = self
            .resolve(data_dir, &path.key("data_dir"))
            .unwrap_or_default();
        Server {
            listen,
            admin_listen,
            data_dir,
            access_log: raw.access_log.unwrap_or_default(),
        }
    }

    fn account(&mut self) -> Account {
        let raw: RawAccount = self.section("account");
        let concurrency = raw.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !CONCURRENCY.contains(&concurrency) {
            self.report(
                &KeyPath::default().key("account").key("concurrency"),
                format!(
                    "must be between {} and {}, not {concurrency}",
                    CONCURRENCY.start(),
                    CONCURRENCY.end()
                ),
            );
        }
        Account { concurrency }
    }

    /// The valid functions, and the names of all declared ones so a route to
    /// a broken function is not reported as a route to a missing one.
    fn functions(&mut self, limit: Option<u32>) -> (BTreeMap<String, Function>, Vec<String>) {
        let mut functions = BTreeMap::new();
        let mut declared = Vec::new();
        let doc = self.doc;
        let Some(item) = doc.as_table().get("functions") else {
            return (functions, declared);
        };
        let path = KeyPath::default().key("functions");
        let Some(table) = item.as_table_like() else {
            self.report(
                &path,
                "expected a table of functions, e.g. [functions.hello]",
            );
            return (functions, declared);
        };
        for (name, item) in table.iter() {
            declared.push(name.to_owned());
            if let Some(function) = self.function(name, Node::Item(item), &path.key(name), limit) {
                functions.insert(name.to_owned(), function);
            }
        }
        (functions, declared)
    }

    fn function(
        &mut self,
        name: &str,
        node: Node<'_>,
        path: &KeyPath,
        limit: Option<u32>,
    ) -> Option<Function> {
        if !valid_function_name(name) {
            self.report(
                path,
                format!("a function name must be 1 to {MAX_FUNCTION_NAME_LEN} characters of A-Z, a-z, 0-9, `_` and `-`"),
            );
        }
        if node.table_like().is_none() {
            self.report(path, "expected a table, e.g. [functions.hello]");
            return None;
        }
        let raw: RawFunction = self.deserialize(node, path)?;
        let handler = match raw.handler {
            Some(handler) => {
                if handler.is_empty() || handler.contains('\0') {
                    self.report(
                        &path.key("handler"),
                        "must be non-empty and free of NUL characters",
                    );
                }
                handler
            }
            None => raw.command.last().cloned().unwrap_or_default(),
        };
        let command = self.command(raw.command, &path.key("command"));
        let code = self.code(&raw.code, &path.key("code"));
        let memory_mb = raw.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        if !MEMORY_MB.contains(&memory_mb) {
            self.report(
                &path.key("memory_mb"),
                format!(
                    "must be between {} and {} (MB), not {memory_mb}",
                    MEMORY_MB.start(),
                    MEMORY_MB.end()
                ),
            );
        }
        let timeout = self.duration(
            raw.timeout,
            &path.key("timeout"),
            DEFAULT_TIMEOUT,
            TIMEOUT,
            "1ms and 900s",
        );
        let idle_timeout = self.duration(
            raw.idle_timeout,
            &path.key("idle_timeout"),
            DEFAULT_IDLE_TIMEOUT,
            IDLE_TIMEOUT,
            "1s and 24h",
        );
        let provisioned = raw.provisioned;
        match (raw.reserved_concurrency, limit) {
            (Some(reserved), _) if provisioned > reserved => self.report(
                &path.key("provisioned"),
                format!("{provisioned} warm instances exceed reserved_concurrency ({reserved})"),
            ),
            (_, Some(limit)) if provisioned > limit => self.report(
                &path.key("provisioned"),
                format!("{provisioned} warm instances exceed account.concurrency ({limit})"),
            ),
            _ => {}
        }
        self.env(&raw.env, &path.key("env"));
        let max_body_bytes = self
            .size(raw.max_body, &path.key("max_body"))
            .unwrap_or(MAX_BODY_BYTES);
        Some(Function {
            name: name.to_owned(),
            runtime: match raw.runtime {
                RawRuntime::Process => RuntimeKind::Process,
            },
            command,
            handler,
            code,
            memory_mb,
            timeout,
            reserved_concurrency: raw.reserved_concurrency,
            provisioned,
            idle_timeout,
            env: raw.env,
            max_body_bytes,
        })
    }

    fn command(&mut self, mut command: Vec<String>, path: &KeyPath) -> Vec<String> {
        let mut valid = !command.is_empty();
        if !valid {
            self.report(path, "must name the program to run, e.g. [\"./hello-fn\"]");
        }
        for (i, arg) in command.iter().enumerate() {
            if arg.is_empty() || arg.contains('\0') {
                valid = false;
                self.report(
                    &path.index(i),
                    "must be non-empty and free of NUL characters",
                );
            }
        }
        // A bare name like `python3` is looked up on PATH; only paths are
        // tied to the config file's directory.
        if valid && command[0].contains('/') {
            let resolved = self
                .resolve(&command[0], &path.index(0))
                .map(|program| program.into_os_string().into_string());
            match resolved {
                Some(Ok(program)) => command[0] = program,
                Some(Err(program)) => self.report(
                    &path.index(0),
                    format!(
                        "resolves to a path that is not UTF-8: {}",
                        program.to_string_lossy()
                    ),
                ),
                None => {}
            }
        }
        command
    }

    fn code(&mut self, text: &str, path: &KeyPath) -> PathBuf {
        let Some(code) = self.resolve(text, path) else {
            return PathBuf::new();
        };
        match std::fs::metadata(&code) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => self.report(path, format!("`{}` is not a directory", code.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.report(
                    path,
                    format!("directory `{}` does not exist", code.display()),
                );
            }
            Err(e) => self.report(path, format!("cannot use `{}`: {e}", code.display())),
        }
        code
    }

    /// Staging copies each function's `code` into `data_dir`: a code
    /// directory that holds the data dir would copy itself into itself until
    /// paths grow too long.
    fn code_outside_data_dir(&mut self, functions: &BTreeMap<String, Function>, data_dir: &Path) {
        let data_dir = real_path(data_dir);
        for (name, function) in functions {
            let Ok(code) = function.code.canonicalize() else {
                continue;
            };
            if data_dir.starts_with(&code) {
                self.report(
                    &KeyPath::default().key("functions").key(name).key("code"),
                    format!(
                        "`{}` holds server.data_dir (`{}`), and each start copies `code` into the data dir; use a directory of its own, or move data_dir out of it",
                        code.display(),
                        data_dir.display()
                    ),
                );
            }
        }
    }

    fn duration(
        &mut self,
        text: Option<String>,
        path: &KeyPath,
        default: Duration,
        bounds: RangeInclusive<Duration>,
        bounds_text: &str,
    ) -> Duration {
        let Some(text) = text else {
            return default;
        };
        match parse_duration(&text) {
            Ok(duration) if bounds.contains(&duration) => duration,
            Ok(_) => {
                self.report(path, format!("must be between {bounds_text}, not `{text}`"));
                default
            }
            Err(e) => {
                self.report(path, format!("invalid duration: {e}"));
                default
            }
        }
    }

    fn size(&mut self, raw: Option<RawSize>, path: &KeyPath) -> Option<u64> {
        let parsed = match raw? {
            RawSize::Bytes(bytes) => u64::try_from(bytes)
                .map_err(|_| format!("`{bytes}` is negative; sizes must be positive")),
            RawSize::Text(text) => parse_size(&text),
        };
        match parsed {
            Ok(bytes) if bytes <= MAX_BODY_BYTES => Some(bytes),
            Ok(bytes) => {
                self.report(
                    path,
                    format!("{bytes} bytes is over the limit of 6MiB ({MAX_BODY_BYTES} bytes)"),
                );
                None
            }
            Err(e) => {
                self.report(path, format!("invalid size: {e}"));
                None
            }
        }
    }

    fn env(&mut self, env: &BTreeMap<String, String>, path: &KeyPath) {
        let mut total = 0usize;
        for (name, value) in env {
            let at = path.key(name);
            if RESERVED_ENV.contains(&name.as_str()) || name.starts_with(RESERVED_ENV_PREFIX) {
                self.report(&at, format!("`{name}` is reserved by the Lambda runtime"));
            } else if !valid_env_name(name) {
                self.report(
                    &at,
                    format!("`{name}` is not a valid variable name: use letters, digits and `_`, starting with a letter"),
                );
            }
            if value.contains('\0') {
                self.report(&at, "the value must not contain a NUL character");
            }
            total = total.saturating_add(name.len()).saturating_add(value.len());
        }
        if total > MAX_ENV_BYTES {
            self.report(
                path,
                format!("names and values total {total} bytes, over Lambda's limit of 4 KB ({MAX_ENV_BYTES} bytes)"),
            );
        }
    }

    fn total_reserved(&mut self, functions: &BTreeMap<String, Function>, limit: u32) {
        let reserved: Vec<String> = functions
            .values()
            .filter_map(|f| {
                f.reserved_concurrency
                    .map(|reserved| format!("{}={reserved}", f.name))
            })
            .collect();
        let total: u64 = functions
            .values()
            .filter_map(|f| f.reserved_concurrency)
            .map(u64::from)
            .sum();
        if total > u64::from(limit) {
            self.report(
                &KeyPath::default().key("account").key("concurrency"),
                format!(
                    "functions reserve {total} in total ({}), more than account.concurrency ({limit})",
                    listing(reserved.iter().map(String::as_str))
                ),
            );
        }
    }

    fn routes(&mut self, declared: &[String]) -> Vec<Route> {
        let doc = self.doc;
        let Some(item) = doc.as_table().get("routes") else {
            return Vec::new();
        };
        let path = KeyPath::default().key("routes");
        if !matches!(item, Item::ArrayOfTables(_) | Item::Value(Value::Array(_))) {
            self.report(&path, "expected an array of tables, e.g. [[routes]]");
            return Vec::new();
        }
        let list = Node::Item(item);
        let mut routes = Vec::new();
        let mut indices = Vec::new();
        for (index, node) in (0..).map_while(|i| list.element(i)).enumerate() {
            if let Some(route) = self.route(node, &path.index(index), declared) {
                routes.push(route);
                indices.push(index);
            }
        }
        let candidates: Vec<Candidate<'_>> = routes
            .iter()
            .zip(&indices)
            .map(|(route, &index)| Candidate {
                index,
                method: route.method,
                matchit_path: &route.matchit_path,
                route_key: &route.route_key,
            })
            .collect();
        for (position, message) in route::overlaps(&candidates) {
            let at = path.index(candidates[position].index).key("route");
            self.report(&at, message);
        }
        routes
    }

    fn route(&mut self, node: Node<'_>, path: &KeyPath, declared: &[String]) -> Option<Route> {
        if node.table_like().is_none() {
            self.report(path, "expected a table with `route` and `function`");
            return None;
        }
        let raw: RawRoute = self.deserialize(node, path)?;
        if !declared.contains(&raw.function) {
            let names = if declared.is_empty() {
                "none".to_owned()
            } else {
                listing(declared.iter().map(String::as_str))
            };
            self.report(
                &path.key("function"),
                format!("no function named `{}` (declared: {names})", raw.function),
            );
        }
        let max_body_bytes = self.size(raw.max_body, &path.key("max_body"));
        let throttle = self.throttle(&path.key("throttle"));
        let cache = self.route_cache(&path.key("cache"));
        match RouteKey::parse(&raw.route) {
            Ok(key) => Some(Route {
                route_key: key.route_key(),
                method: key.method,
                path: key.path,
                matchit_path: key.matchit_path,
                function: raw.function,
                max_body_bytes,
                throttle,
                api_key_required: raw.api_key_required,
                cache,
                is_async: raw.is_async,
                queue: raw.queue,
            }),
            Err(e) => {
                self.report(&path.key("route"), e);
                None
            }
        }
    }
}
