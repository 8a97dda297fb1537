//! `[auto_mitigation]`: automatic attack detection. Raw shape and its
//! validation only; the edge runs the detector. Must never accept a value
//! outside the bounds stated here.

use std::time::Duration;

use serde::Deserialize;

use crate::problems::Found;
use crate::values::whole_seconds;

/// `learn_for`: 10 s to 7 days, default 10 minutes.
const LEARN_FOR: (Duration, Duration) = (Duration::from_secs(10), Duration::from_secs(7 * 86_400));
/// `quiet_for`: 1 s to 1 hour, default 60 s.
const QUIET_FOR: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

/// What the detector does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoMode {
    /// Nothing is sampled.
    Off,
    /// Events and the rules that would match them are reported; nothing
    /// is refused.
    Count,
    /// Signatures become throttling rules after one tick of counting, and
    /// are lifted when their event ends.
    Enforce,
}

/// What an enforced signature's rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoAction {
    /// The matching requests held to twice their baseline rate, the rest
    /// answered 429.
    Throttle,
    /// Every matching request refused with 403.
    Block,
}

/// How large a surge must be: a tick's rate over this many times the
/// learned rate (low 5, medium 3, high 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    Low,
    Medium,
    High,
}

impl Sensitivity {
    pub fn factor(self) -> f64 {
        match self {
            Sensitivity::Low => 5.0,
            Sensitivity::Medium => 3.0,
            Sensitivity::High => 2.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AutoMitigation {
    pub mode: AutoMode,
    pub action: AutoAction,
    pub sensitivity: Sensitivity,
    /// Seconds of ordinary traffic learned before anything is declared.
    pub learn_for: Duration,
    /// How long a surge must have been over before its event ends.
    pub quiet_for: Duration,
    /// Route keys automatic rules never refuse (declared routes).
    pub exempt_routes: Vec<String>,
    /// Client networks automatic rules never refuse.
    pub exempt_sources: Vec<ipnet::IpNet>,
    /// Where each event is POSTed when it opens, changes mitigation or ends.
    pub webhook: Option<String>,
}

impl Default for AutoMitigation {
    fn default() -> Self {
        Self {
            mode: AutoMode::Enforce,
            action: AutoAction::Throttle,
            sensitivity: Sensitivity::Medium,
            learn_for: Duration::from_secs(600),
            quiet_for: Duration::from_secs(60),
            exempt_routes: Vec::new(),
            exempt_sources: Vec::new(),
            webhook: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAutoMitigation {
    mode: Option<String>,
    action: Option<String>,
    sensitivity: Option<String>,
    learn_for: Option<String>,
    quiet_for: Option<String>,
    #[serde(default)]
    exempt_routes: Vec<String>,
    #[serde(default)]
    exempt_sources: Vec<String>,
    webhook: Option<String>,
}

/// Most entries in each exempt list.
const MAX_EXEMPT: usize = 1000;

/// Validates `[auto_mitigation]`; `route_keys` are the declared routes.
pub(crate) fn auto_mitigation(
    raw: RawAutoMitigation,
    route_keys: &[String],
    f: &mut Found,
) -> AutoMitigation {
    let d = AutoMitigation::default();
    let mode = match raw.mode.as_deref() {
        None | Some("enforce") => AutoMode::Enforce,
        Some("count") => AutoMode::Count,
        Some("off") => AutoMode::Off,
        Some(other) => {
            f.push(
                "mode",
                format!("must be \"enforce\", \"count\" or \"off\", not `{other}`"),
            );
            d.mode
        }
    };
    let action = match raw.action.as_deref() {
        None | Some("throttle") => AutoAction::Throttle,
        Some("block") => AutoAction::Block,
        Some(other) => {
            f.push(
                "action",
                format!("must be \"throttle\" or \"block\", not `{other}`"),
            );
            d.action
        }
    };
    let sensitivity = match raw.sensitivity.as_deref() {
        None | Some("medium") => Sensitivity::Medium,
        Some("low") => Sensitivity::Low,
        Some("high") => Sensitivity::High,
        Some(other) => {
            f.push(
                "sensitivity",
                format!("must be \"low\", \"medium\" or \"high\", not `{other}`"),
            );
            d.sensitivity
        }
    };
    for (key, len) in [
        ("exempt_routes", raw.exempt_routes.len()),
        ("exempt_sources", raw.exempt_sources.len()),
    ] {
        if len > MAX_EXEMPT {
            f.push(key, format!("at most {MAX_EXEMPT} entries, not {len}"));
        }
    }
    let at = |key: &str, i: usize| crate::problems::KeyPath::of(key).index(i);
    for (i, route) in raw.exempt_routes.iter().enumerate().take(MAX_EXEMPT) {
        if !route_keys.contains(route) {
            f.push(
                at("exempt_routes", i),
                format!("no route `{route}` in [[routes]]"),
            );
        }
    }
    let mut exempt_sources = Vec::new();
    for (i, text) in raw.exempt_sources.iter().enumerate().take(MAX_EXEMPT) {
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => exempt_sources.push(net),
            Err(_) => f.push(
                at("exempt_sources", i),
                format!("`{text}` is not an address or a CIDR network"),
            ),
        }
    }
    let webhook = raw
        .webhook
        .and_then(|w| match crate::budgets::check_webhook(&w) {
            Ok(()) => Some(w),
            Err(message) => {
                f.push("webhook", message);
                None
            }
        });
    AutoMitigation {
        webhook,
        exempt_routes: raw.exempt_routes.into_iter().take(MAX_EXEMPT).collect(),
        exempt_sources,
        mode,
        action,
        sensitivity,
        learn_for: whole_seconds(
            "learn_for",
            raw.learn_for.as_deref(),
            d.learn_for,
            LEARN_FOR.0,
            LEARN_FOR.1,
            f,
        ),
        quiet_for: whole_seconds(
            "quiet_for",
            raw.quiet_for.as_deref(),
            d.quiet_for,
            QUIET_FOR.0,
            QUIET_FOR.1,
            f,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (AutoMitigation, Found) {
        let raw: RawAutoMitigation = toml_edit::de::from_str(text).expect("parses");
        Found::collect(|f| auto_mitigation(raw, &["GET /healthz".to_string()], f))
    }

    #[test]
    fn exemptions_name_declared_routes_and_real_networks() {
        let (a, found) = parse(
            "exempt_routes = [\"GET /healthz\"]\nexempt_sources = [\"10.0.0.0/8\", \"2001:db8::1\"]",
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(a.exempt_routes, ["GET /healthz"]);
        assert_eq!(a.exempt_sources.len(), 2);
        let (_, found) = parse(
            "exempt_routes = [\"GET /nope\"]\nexempt_sources = [\"10.0.0.0/33\"]\nwebhook = \"https://x/\"",
        );
        assert_eq!(
            found.keys(),
            ["exempt_routes[0]", "exempt_sources[0]", "webhook"]
        );
        let (a, found) = parse("webhook = \"http://127.0.0.1:9/hook\"");
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(a.webhook.as_deref(), Some("http://127.0.0.1:9/hook"));
    }

    #[test]
    fn defaults_and_every_bad_value_named_by_key() {
        let (a, found) = parse("");
        assert!(found.is_empty());
        assert_eq!(a, AutoMitigation::default());
        assert_eq!(a.mode, AutoMode::Enforce, "enforce by default");
        let (a, found) = parse(
            "mode = \"off\"\naction = \"block\"\nsensitivity = \"high\"\nlearn_for = \"30s\"\nquiet_for = \"5s\"",
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(
            (
                a.mode,
                a.action,
                a.sensitivity.factor(),
                a.learn_for.as_secs()
            ),
            (AutoMode::Off, AutoAction::Block, 2.0, 30)
        );
        let (_, found) = parse(
            "mode = \"block\"\naction = \"ban\"\nsensitivity = \"max\"\nlearn_for = \"1s\"\nquiet_for = \"1.5s\"",
        );
        assert_eq!(
            found.keys(),
            ["mode", "action", "sensitivity", "learn_for", "quiet_for"]
        );
        assert!(found.messages()[0].contains("\"enforce\", \"count\" or \"off\""));
    }
}
