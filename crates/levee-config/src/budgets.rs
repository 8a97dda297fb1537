//! `[prices]`, `[budgets.NAME]` and `[metering]`: what an invocation costs,
//! how much a scope (everything, one function, one API key) may spend per
//! UTC day or month before an alert, a throttle or a stop, and whether
//! meters run at all.
//!
//! Owns the shape, defaults and ranges of those tables. Must never meter,
//! evaluate a budget or contact a webhook — levee-meter does that at run
//! time; this module only guarantees that what it returns is valid, so the
//! meter never re-checks it.

use serde::Deserialize;

use crate::problems::{Found, KeyPath};
use levee_common::name::BudgetName;

/// Lambda's x86 list price per million requests (us-east-1).
pub const DEFAULT_PER_MILLION_REQUESTS: f64 = 0.20;
/// Lambda's x86 list price per GB-second (us-east-1).
pub const DEFAULT_PER_GB_SECOND: f64 = 0.000_016_666_7;
/// Most budgets in a config file: each one is evaluated before every
/// invocation in its scope, so the list must stay short.
pub const MAX_BUDGETS: usize = 100;
/// Most thresholds in one `alerts` or `forecast_alerts` list.
pub const MAX_ALERTS: usize = 10;
/// Largest alert fraction: 10 = 1000 % of the limit. Beyond that an alert
/// can only be a typo (`80` meant as 80 %).
pub const MAX_ALERT_FRACTION: f64 = 10.0;
/// Largest limit: a billion currency units; beyond it f64 sums of tiny
/// per-invocation costs lose the cents.
pub const MAX_LIMIT: f64 = 1e9;
/// Fastest throttle a budget can set, requests per second.
pub const MAX_THROTTLE_RPS: f64 = 1e6;
/// Longest webhook URL.
pub const MAX_WEBHOOK_LEN: usize = 2048;
/// Highest price accepted per unit; a bigger number is a typo and would make
/// every budget fire on the first request.
const MAX_PRICE: f64 = 1e6;
/// Default actual-spend alert thresholds when `alerts` is omitted.
const DEFAULT_ALERTS: [f64; 2] = [0.8, 1.0];

/// `[prices]`: the price table meters use.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Prices {
    /// Currency units per 1,000,000 requests; ≥ 0, finite.
    pub per_million_requests: f64,
    /// Currency units per GB-second of billed duration; ≥ 0, finite.
    pub per_gb_second: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            per_million_requests: DEFAULT_PER_MILLION_REQUESTS,
            per_gb_second: DEFAULT_PER_GB_SECOND,
        }
    }
}

/// What a budget counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    /// Every invocation.
    All,
    /// Invocations of one configured function.
    Function(String),
    /// Invocations made with one API key (its id, `key_…`).
    Key(String),
}

/// A budget period, in UTC. Uppercase is accepted as for quota periods, so
/// one spelling works for both in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// 00:00 to 00:00 UTC.
    #[serde(alias = "DAY")]
    Day,
    /// The 1st 00:00 UTC to the next 1st.
    #[serde(alias = "MONTH")]
    Month,
}

/// What happens once the period's spend reaches the limit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetAction {
    /// Alert only; invocations go on.
    Alert,
    /// Cap the scope to `rps` invocations per second until the period ends.
    Throttle {
        /// Requests per second, in (0, [`MAX_THROTTLE_RPS`]].
        rps: f64,
    },
    /// Refuse every invocation in the scope (503) until the period ends.
    Stop,
}

/// A name as the string it is (levee-common has no serde).
fn as_str<S: serde::Serializer>(name: &impl AsRef<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(name.as_ref())
}

/// One `[budgets.NAME]`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Budget {
    /// The table key.
    #[serde(serialize_with = "as_str")]
    pub name: levee_common::name::BudgetName,
    pub scope: BudgetScope,
    pub period: BudgetPeriod,
    /// Currency units per period; > 0, finite, ≤ [`MAX_LIMIT`].
    pub limit: f64,
    /// Fractions of the limit; an alert fires once per period when actual
    /// spend reaches each. Sorted ascending, distinct, each in (0, 10].
    pub alerts: Vec<f64>,
    /// Same, against the forecast (spend projected to the period's end).
    pub forecast_alerts: Vec<f64>,
    pub action: BudgetAction,
    /// `http://host[:port][/path]`, validated; alerts are POSTed here.
    pub webhook: Option<String>,
}

impl BudgetScope {
    /// Whether an invocation of `function` with `key` counts here.
    pub fn covers(&self, function: &str, key: Option<&str>) -> bool {
        match self {
            BudgetScope::All => true,
            BudgetScope::Function(f) => f == function,
            BudgetScope::Key(k) => key == Some(k.as_str()),
        }
    }
}

impl BudgetPeriod {
    /// `day` or `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }
}

/// `[metering]`: `enabled = false` turns meters (and so budgets) off.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetering {
    pub(crate) enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrices {
    per_million_requests: Option<f64>,
    per_gb_second: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopeTable {
    function: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawScope {
    Word(String),
    Table(RawScopeTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottleAction {
    throttle: f64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawAction {
    Word(String),
    Table(RawThrottleAction),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    scope: Option<RawScope>,
    period: BudgetPeriod,
    limit: f64,
    alerts: Option<Vec<f64>>,
    #[serde(default)]
    forecast_alerts: Vec<f64>,
    action: Option<RawAction>,
    webhook: Option<String>,
}

fn price(key: &str, value: Option<f64>, default: f64, found: &mut Found) -> f64 {
    let Some(v) = value else { return default };
    if v.is_finite() && (0.0..=MAX_PRICE).contains(&v) {
        v
    } else {
        found.push(
            key,
            format!("must be a price between 0 and {MAX_PRICE}, not {v}"),
        );
        default
    }
}

/// Validates `[prices]`; a missing key keeps Lambda's list price.
pub(crate) fn prices(raw: RawPrices, found: &mut Found) -> Prices {
    let d = Prices::default();
    Prices {
        per_million_requests: price(
            "per_million_requests",
            raw.per_million_requests,
            d.per_million_requests,
            found,
        ),
        per_gb_second: price("per_gb_second", raw.per_gb_second, d.per_gb_second, found),
    }
}

/// Whether a config has too many budgets.
pub(crate) fn too_many(count: usize) -> Option<String> {
    (count > MAX_BUDGETS).then(|| format!("at most {MAX_BUDGETS} budgets"))
}

/// An API key id as the store makes them: `key_` and 16 hex digits.
fn plausible_key_id(id: &str) -> bool {
    id.len() == 20 && id.starts_with("key_") && id.bytes().skip(4).all(|b| b.is_ascii_hexdigit())
}

fn scope(raw: Option<RawScope>, function_names: &[String], found: &mut Found) -> BudgetScope {
    let hint = "must be \"all\", { function = \"NAME\" } or { key = \"key_…\" }";
    match raw {
        None => BudgetScope::All,
        Some(RawScope::Word(w)) if w == "all" => BudgetScope::All,
        Some(RawScope::Word(w)) => {
            found.push("scope", format!("{hint}, not \"{}\"", short(&w)));
            BudgetScope::All
        }
        Some(RawScope::Table(t)) => match (t.function, t.key) {
            (Some(f), None) => {
                if !function_names.contains(&f) {
                    found.push(
                        KeyPath::of("scope").key("function"),
                        format!("no function named \"{}\"", short(&f)),
                    );
                }
                BudgetScope::Function(f)
            }
            (None, Some(k)) => {
                if !plausible_key_id(&k) {
                    found.push(
                        KeyPath::of("scope").key("key"),
                        format!(
                            "\"{}\" is not an API key id (key_ and 16 hex digits; see `levee keys`)",
                            short(&k)
                        ),
                    );
                }
                BudgetScope::Key(k)
            }
            _ => {
                found.push("scope", format!("{hint} (exactly one of them)"));
                BudgetScope::All
            }
        },
    }
}

/// A fraction list: each in (0, 10], distinct, at most [`MAX_ALERTS`];
/// returned sorted.
fn fractions(key: &str, raw: Vec<f64>, found: &mut Found) -> Vec<f64> {
    if raw.len() > MAX_ALERTS {
        found.push(key, format!("at most {MAX_ALERTS} thresholds"));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, f) in raw.into_iter().enumerate() {
        if !(f.is_finite() && f > 0.0 && f <= MAX_ALERT_FRACTION) {
            found.push(
                KeyPath::of(key).index(i),
                format!(
                    "must be a fraction of the limit above 0 and at most {MAX_ALERT_FRACTION} \
                     (0.8 = 80 %), not {f}"
                ),
            );
        } else if out.contains(&f) {
            found.push(KeyPath::of(key).index(i), format!("{f} is listed twice"));
        } else {
            out.push(f);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

fn action(raw: Option<RawAction>, found: &mut Found) -> BudgetAction {
    match raw {
        None => BudgetAction::Alert,
        Some(RawAction::Word(w)) => match w.as_str() {
            "alert" => BudgetAction::Alert,
            "stop" => BudgetAction::Stop,
            _ => {
                found.push(
                    "action",
                    format!(
                        "must be \"alert\", \"stop\" or {{ throttle = N }} (requests/s), not \"{}\"",
                        short(&w)
                    ),
                );
                BudgetAction::Alert
            }
        },
        Some(RawAction::Table(t)) => {
            // Below the bucket's slowest refill it would silently clamp.
            let slowest = levee_shield::bucket::MIN_RATE;
            if t.throttle.is_finite() && (slowest..=MAX_THROTTLE_RPS).contains(&t.throttle) {
                BudgetAction::Throttle { rps: t.throttle }
            } else {
                found.push(
                    KeyPath::of("action").key("throttle"),
                    format!(
                        "must be requests per second from one a day ({slowest:.8}) to {MAX_THROTTLE_RPS}, not {}",
                        t.throttle
                    ),
                );
                BudgetAction::Alert
            }
        }
    }
}

/// Checks a webhook's `http://host[:port][/path]`: the alert sink speaks
/// cleartext only.
pub fn check_webhook(url: &str) -> Result<(), String> {
    if !url.starts_with("http://") {
        return Err("must start with http:// (the alert sink has no TLS client)".into());
    }
    check_url(url)
}

/// Checks `http(s)://host[:port][/path]` by hand: no user info, a host of
/// letters, digits, `.` and `-` (or a bracketed IPv6 address), a port in
/// 1..=65535, and a path without spaces or control characters.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > MAX_WEBHOOK_LEN {
        return Err(format!("longer than {MAX_WEBHOOK_LEN} bytes"));
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err("must start with http:// or https://".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("must not contain user info (user@host)".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some(end) = v6.find(']') else {
            return Err("an IPv6 host needs a closing ]".into());
        };
        let (addr, after) = v6.split_at(end);
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("the bracketed host is not an IPv6 address".into());
        }
        (addr, &after[1..])
    } else {
        match authority.find(':') {
            Some(i) => (&authority[..i], &authority[i..]),
            None => (authority, ""),
        }
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    if !authority.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err("the host may hold only letters, digits, '.' and '-'".into());
    }
    if !port.is_empty() {
        let digits = port.strip_prefix(':').unwrap_or("");
        match digits.parse::<u16>() {
            Ok(p) if p > 0 && digits.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err("the port must be a number from 1 to 65535".into()),
        }
    }
    if path.contains('#') {
        return Err("must not contain a #fragment".into());
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the path must not contain spaces or control characters".into());
    }
    Ok(())
}

/// Caller text quoted in a message: bounded so a huge value makes a short error.
fn short(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_default).collect();
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Validates one budget; `function_names` are the configured functions,
/// which a function scope must name.
pub(crate) fn budget(
    name: &str,
    raw: RawBudget,
    function_names: &[String],
    found: &mut Found,
) -> Option<Budget> {
    let checked = found.named(BudgetName::parse(name));
    let scope = scope(raw.scope, function_names, found);
    if !(raw.limit.is_finite() && raw.limit > 0.0 && raw.limit <= MAX_LIMIT) {
        found.push(
            "limit",
            format!(
                "must be an amount above 0 and at most {MAX_LIMIT}, not {}",
                raw.limit
            ),
        );
    }
    let alerts = fractions(
        "alerts",
        raw.alerts.unwrap_or_else(|| DEFAULT_ALERTS.to_vec()),
        found,
    );
    let forecast_alerts = fractions("forecast_alerts", raw.forecast_alerts, found);
    let action = action(raw.action, found);
    let webhook = raw.webhook.and_then(|w| match check_webhook(&w) {
        Ok(()) => Some(w),
        Err(message) => {
            found.push("webhook", message);
            None
        }
    });
    Some(Budget {
        name: checked?,
        scope,
        period: raw.period,
        limit: raw.limit,
        alerts,
        forecast_alerts,
        action,
        webhook,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawBudget {
        toml_edit::de::from_str(text).unwrap()
    }

    fn budget(name: &str, raw: RawBudget, function_names: &[String]) -> (Budget, Vec<String>) {
        let (budget, found) = Found::collect(|f| super::budget(name, raw, function_names, f));
        (budget.expect("a valid name"), found.keys())
    }

    fn funcs() -> Vec<String> {
        vec!["hello".to_string()]
    }

    #[test]
    fn a_full_budget_parses() {
        let (b, found) = budget(
            "daily-cap",
            raw(r#"
scope = { function = "hello" }
period = "day"
limit = 5.0
alerts = [1.0, 0.5, 0.8]
forecast_alerts = [1.0]
action = { throttle = 10 }
webhook = "http://127.0.0.1:9000/hook"
"#),
            &funcs(),
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(b.scope, BudgetScope::Function("hello".into()));
        assert_eq!(b.period, BudgetPeriod::Day);
        assert_eq!(b.alerts, [0.5, 0.8, 1.0]);
        assert_eq!(b.forecast_alerts, [1.0]);
        assert_eq!(b.action, BudgetAction::Throttle { rps: 10.0 });
        assert_eq!(b.webhook.as_deref(), Some("http://127.0.0.1:9000/hook"));
    }

    #[test]
    fn defaults_are_all_alert_and_two_thresholds() {
        let (b, found) = budget("m", raw("period = \"month\"\nlimit = 1"), &[]);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(b.scope, BudgetScope::All);
        assert_eq!(b.action, BudgetAction::Alert);
        assert_eq!(b.alerts, DEFAULT_ALERTS);
        assert!(b.forecast_alerts.is_empty());
        let (b, found) = budget(
            "s",
            raw("scope = \"all\"\nperiod = \"day\"\nlimit = 1\naction = \"stop\""),
            &[],
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(b.action, BudgetAction::Stop);
    }

    #[test]
    fn unknown_keys_and_periods_are_refused() {
        assert!(
            toml_edit::de::from_str::<RawBudget>("period = \"day\"\nlimit = 1\nlimt = 2").is_err()
        );
        assert!(toml_edit::de::from_str::<RawBudget>("period = \"week\"\nlimit = 1").is_err());
    }

    // Bad names are pinned in tests/error_text.rs: a badly named entry is
    // not built at all.
    #[test]
    fn every_bad_value_names_its_key() {
        let (_, found) = budget(
            "b",
            raw(r#"
scope = { function = "nope" }
period = "day"
limit = -1
alerts = [0.5, 0, 0.5, 80]
forecast_alerts = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
action = { throttle = 0 }
webhook = "https://example.com/hook"
"#),
            &funcs(),
        );
        assert_eq!(
            found,
            [
                "scope.function",
                "limit",
                "alerts[1]",
                "alerts[2]",
                "alerts[3]",
                "forecast_alerts",
                "action.throttle",
                "webhook"
            ]
        );
    }

    #[test]
    fn scopes_need_exactly_one_valid_target() {
        let (_, found) = budget(
            "k",
            raw("scope = { key = \"key_0123456789abcdef\" }\nperiod = \"day\"\nlimit = 1"),
            &[],
        );
        assert!(found.is_empty(), "{found:?}");
        let (_, found) = budget(
            "k",
            raw("scope = { key = \"alice\" }\nperiod = \"day\"\nlimit = 1"),
            &[],
        );
        assert_eq!(found[0], "scope.key");
        let (_, found) = budget(
            "k",
            raw("scope = { key = \"key_0123456789abcdef\", function = \"hello\" }\nperiod = \"day\"\nlimit = 1"),
            &funcs(),
        );
        assert_eq!(found[0], "scope");
        let (_, found) = budget(
            "k",
            raw("scope = \"everything\"\nperiod = \"day\"\nlimit = 1"),
            &[],
        );
        assert_eq!(found[0], "scope");
        let (_, found) = budget(
            "k",
            raw("action = \"halt\"\nperiod = \"day\"\nlimit = 1"),
            &[],
        );
        assert_eq!(found[0], "action");
    }

    #[test]
    fn webhooks_are_plain_http_urls() {
        for ok in [
            "http://127.0.0.1:9000/hook",
            "http://alerts.example.com/a/b?x=1",
            "http://[::1]:8080/",
            "http://localhost",
        ] {
            assert_eq!(check_webhook(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https://example.com/",
            "ftp://x/",
            "http://",
            "http://user@host/",
            "http://host:0/",
            "http://host:99999/",
            "http://host:12a/",
            "http://ho st/",
            "http://host/a b",
            "http://[nope]/",
            "http://host/#frag",
        ] {
            assert!(check_webhook(bad).is_err(), "{bad}");
        }
        let long = format!("http://h/{}", "a".repeat(MAX_WEBHOOK_LEN));
        assert!(check_webhook(&long).is_err());
    }

    #[test]
    fn prices_default_to_lambda_and_refuse_nonsense() {
        let (p, found) = Found::collect(|f| prices(RawPrices::default(), f));
        assert!(found.is_empty());
        assert_eq!(p, Prices::default());
        assert_eq!(p.per_million_requests, 0.20);
        let (p, found) = Found::collect(|f| {
            prices(
                RawPrices {
                    per_million_requests: Some(f64::NAN),
                    per_gb_second: Some(0.00001),
                },
                f,
            )
        });
        assert_eq!(found.keys(), ["per_million_requests"]);
        assert_eq!(p.per_million_requests, DEFAULT_PER_MILLION_REQUESTS);
        assert_eq!(p.per_gb_second, 0.00001);
    }

    #[test]
    fn too_many_budgets_is_a_problem() {
        assert!(too_many(MAX_BUDGETS).is_none());
        assert!(too_many(MAX_BUDGETS + 1).is_some());
    }
}
