//! Prometheus metrics: the recorder, `render()` for `/metrics`, and one
//! function per event so the edge never names a metric or label itself.
//!
//! Owns: every metric name and label below and the rule that labels have
//! bounded cardinality — a route is its route key (from config), a function
//! its configured name, a status its numeric code (100..=599, else
//! "other"), a decision one of [`Decision`], an outcome one of [`OUTCOMES`]
//! (else "other"), a budget its config name. Must never take a label from
//! request text (no client IPs, no raw paths): a label longer than
//! [`MAX_LABEL_LEN`] becomes "other".
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `levee_requests_total` | counter | route, status, decision |
//! | `levee_invocations_total` | counter | function, outcome |
//! | `levee_cold_starts_total` | counter | function |
//! | `levee_invocation_duration_seconds` | histogram | function |
//! | `levee_spend_usd_total` | gauge (only grows) | function |
//! | `levee_budget_consumed_ratio` | gauge | budget |
//! | `levee_budget_alerts_total` | counter | budget, kind, threshold |
//! | `levee_auto_events_total` | counter | — |
//! | `levee_auto_active_rules` | gauge | — |
//! | `levee_auto_reference_rps` | gauge | — |
//! | `levee_auto_samples_dropped_total` | counter | — |
//! | `levee_connections_refused_total` | counter | listener, reason |
//! | `levee_tls_handshakes_total` | counter | listener, outcome |
//! | `process_resident_memory_bytes` | gauge | — |
//!
//! `levee_spend_usd_total` is cumulative USD since the process started; it
//! is exported as a gauge because the `metrics` crate's counters are
//! integers and spend is fractional cents. `rate()` over it works as for a
//! counter except across restarts.
//!
//! Recording before [`install`] is a no-op (the `metrics` crate's default).

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::error::MeterError;
use levee_common::sync::lock;

/// Longest label value; longer ones are replaced by "other".
pub const MAX_LABEL_LEN: usize = 256;
/// Invocation outcomes with their own label value.
pub const OUTCOMES: &[&str] = &["success", "error", "timeout", "crashed", "throttled"];
/// Histogram buckets for invocation duration, seconds: 1 ms … 900 s
/// (Lambda's longest timeout).
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0,
];

/// How often histogram samples are drained into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
static INSTALL: Mutex<()> = Mutex::new(());

/// What the edge decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allowed,
    FirewallBlocked,
    Throttled,
    OverQuota,
    Cached,
    OverBudget,
    NotFound,
    TooLarge,
    /// No, unknown or disabled API key.
    Forbidden,
    /// The route's authorizer refused the token or its scopes.
    Unauthorized,
    /// A CORS preflight, answered at the edge.
    Preflight,
    /// A request body slower than the minimum rate.
    SlowClient,
    /// A request the edge refuses as HTTP (CONNECT/TRACE, an unmet
    /// `Expect`, a bad transfer coding, too many headers), or whose body or
    /// event it cannot read.
    Malformed,
    /// An async route's queue is full (503).
    QueueFull,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::FirewallBlocked => "firewall_blocked",
            Decision::Throttled => "throttled",
            Decision::OverQuota => "over_quota",
            Decision::Cached => "cached",
            Decision::OverBudget => "over_budget",
            Decision::NotFound => "not_found",
            Decision::Forbidden => "forbidden",
            Decision::Unauthorized => "unauthorized",
            Decision::Preflight => "preflight",
            Decision::SlowClient => "slow_client",
            Decision::TooLarge => "too_large",
            Decision::Malformed => "malformed",
            Decision::QueueFull => "queue_full",
        }
    }
}

/// Installs the Prometheus recorder as the process's global recorder.
/// Idempotent: a second call returns `Ok` and changes nothing. Fails only if
/// some other recorder was installed first.
pub fn install() -> Result<(), MeterError> {
    let _guard = lock(&INSTALL);
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("levee_invocation_duration_seconds".into()),
            DURATION_BUCKETS,
        )
        .map_err(|e| MeterError::Metrics(e.to_string()))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| MeterError::Metrics(e.to_string()))?;
    // A recorder built without the exporter's own runner keeps every
    // histogram sample until upkeep drains it into the buckets; without this
    // an unscraped server would grow by ~16 B per invocation forever.
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            upkeep.run_upkeep();
        })
        .map_err(|e| MeterError::Metrics(format!("starting the upkeep thread: {e}")))?;
    // Under the install lock nobody else can have set it.
    let _ = HANDLE.set(handle);
    describe();
    Ok(())
}

fn describe() {
    metrics::describe_counter!(
        "levee_requests_total",
        "Requests by route, status and edge decision"
    );
    metrics::describe_counter!("levee_invocations_total", "Function invocations by outcome");
    metrics::describe_counter!(
        "levee_cold_starts_total",
        "Invocations that started a new instance"
    );
    metrics::describe_histogram!(
        "levee_invocation_duration_seconds",
        metrics::Unit::Seconds,
        "Function run time"
    );
    metrics::describe_gauge!("levee_spend_usd_total", "Metered spend in USD since start");
    metrics::describe_gauge!(
        "levee_budget_consumed_ratio",
        "Budget spend / limit in the current period"
    );
    metrics::describe_counter!("levee_budget_alerts_total", "Budget alerts raised");
    metrics::describe_gauge!(
        "process_resident_memory_bytes",
        metrics::Unit::Bytes,
        "Resident memory of the levee process (not its function instances)"
    );
}

/// The Prometheus text exposition; empty before [`install`].
pub fn render() -> String {
    let Some(handle) = HANDLE.get() else {
        return String::new();
    };
    // Read at scrape time: the process's memory is what an operator watches
    // under a flood, and one small /proc read per scrape costs nothing.
    if let Some(bytes) = resident_bytes() {
        metrics::gauge!("process_resident_memory_bytes").set(bytes as f64);
    }
    handle.render()
}

/// This process's resident set size (the `VmRSS` line of
/// `/proc/self/status`, in kB); None where there is no procfs.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

fn label(s: &str) -> String {
    if s.len() > MAX_LABEL_LEN {
        "other".to_owned()
    } else {
        s.to_owned()
    }
}

fn status_label(status: u16) -> String {
    if (100..=599).contains(&status) {
        status.to_string()
    } else {
        "other".to_owned()
    }
}

/// One request answered by the edge. `route` is the matched route key, or
/// `None` (labelled "none") when nothing matched.
pub fn request(route: Option<&str>, status: u16, decision: Decision) {
    metrics::counter!(
        "levee_requests_total",
        "route" => label(route.unwrap_or("none")),
        "status" => status_label(status),
        "decision" => decision.as_str(),
    )
    .increment(1);
}

/// One finished invocation ([`crate::Meters::record`] calls this).
pub fn invocation(function: &str, outcome: &str, duration: Duration, cold: bool) {
    let function = label(function);
    let outcome = OUTCOMES
        .iter()
        .find(|o| **o == outcome)
        .copied()
        .unwrap_or("other");
    metrics::counter!(
        "levee_invocations_total",
        "function" => function.clone(),
        "outcome" => outcome,
    )
    .increment(1);
    if cold {
        metrics::counter!("levee_cold_starts_total", "function" => function.clone()).increment(1);
    }
    metrics::histogram!("levee_invocation_duration_seconds", "function" => function)
        .record(duration.as_secs_f64());
}

/// Adds an invocation's cost to the function's spend.
pub fn spend(function: &str, usd: f64) {
    if usd.is_finite() && usd > 0.0 {
        metrics::gauge!("levee_spend_usd_total", "function" => label(function)).increment(usd);
    }
}

/// A budget's spend / limit in its current period.
pub fn budget_ratio(budget: &str, ratio: f64) {
    if ratio.is_finite() {
        metrics::gauge!("levee_budget_consumed_ratio", "budget" => label(budget)).set(ratio);
    }
}

/// A budget alert raised; `kind` is "actual" or "forecast", `threshold` the
/// fraction of the limit (at most 10 per kind per budget: bounded).
pub fn budget_alert(budget: &str, kind: &'static str, threshold: f64) {
    metrics::counter!(
        "levee_budget_alerts_total",
        "budget" => label(budget),
        "kind" => kind,
        "threshold" => threshold.to_string(),
    )
    .increment(1);
}

/// A connection closed at accept by the connection guard. `listener` is
/// one of `edge`, `edge_tls`, `redirect`, `admin`; `reason` the key whose
/// bound refused it (`max_connections`, `max_handshakes`, …).
pub fn connection_refused(listener: &'static str, reason: &'static str) {
    metrics::counter!(
        "levee_connections_refused_total",
        "listener" => listener,
        "reason" => reason,
    )
    .increment(1);
}

/// A TLS handshake that ended: `outcome` is `done`, `failed` (not TLS, no
/// shared version or cipher, a client certificate refused, …) or
/// `timeout` (`handshake_timeout`).
pub fn tls_handshake(listener: &'static str, outcome: &'static str) {
    metrics::counter!(
        "levee_tls_handshakes_total",
        "listener" => listener,
        "outcome" => outcome,
    )
    .increment(1);
}

/// Automatic attack detection, once a second: events opened since the
/// last tick, rules in force, the learned rate, and samples dropped since
/// start.
pub fn auto_mitigation(new_events: u64, active_rules: usize, reference_rps: f64, dropped: u64) {
    metrics::counter!("levee_auto_events_total").increment(new_events);
    metrics::gauge!("levee_auto_active_rules").set(active_rules as f64);
    if reference_rps.is_finite() {
        metrics::gauge!("levee_auto_reference_rps").set(reference_rps);
    }
    metrics::counter!("levee_auto_samples_dropped_total").absolute(dropped);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value on the first exposition line starting with `prefix`.
    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn render_shows_every_metric_after_recording() {
        install().unwrap();
        install().unwrap(); // idempotent
        request(Some("GET /m/{id}"), 200, Decision::Allowed);
        request(Some("GET /m/{id}"), 200, Decision::Allowed);
        request(None, 404, Decision::NotFound);
        request(Some("GET /m/{id}"), 1000, Decision::Throttled);
        invocation("metric-fn", "success", Duration::from_millis(3), true);
        invocation(
            "metric-fn",
            "weird-outcome",
            Duration::from_millis(3),
            false,
        );
        spend("metric-fn", 0.25);
        budget_ratio("metric-budget", 0.5);
        budget_alert("metric-budget", "actual", 0.5);
        let text = render();
        assert_eq!(
            value(
                &text,
                r#"levee_requests_total{route="GET /m/{id}",status="200",decision="allowed"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"levee_requests_total{route="none",status="404",decision="not_found"}"#
            ),
            Some(1.0)
        );
        assert!(text.contains(r#"status="other",decision="throttled""#));
        assert_eq!(
            value(
                &text,
                r#"levee_invocations_total{function="metric-fn",outcome="success"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"levee_invocations_total{function="metric-fn",outcome="other"}"#
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&text, r#"levee_cold_starts_total{function="metric-fn"}"#),
            Some(1.0)
        );
        assert_eq!(
            value(
                &text,
                r#"levee_invocation_duration_seconds_bucket{function="metric-fn",le="0.005"}"#
            ),
            Some(2.0)
        );
        assert_eq!(
            value(&text, r#"levee_spend_usd_total{function="metric-fn"}"#),
            Some(0.25)
        );
        assert_eq!(
            value(
                &text,
                r#"levee_budget_consumed_ratio{budget="metric-budget"}"#
            ),
            Some(0.5)
        );
        assert_eq!(
            value(
                &text,
                r#"levee_budget_alerts_total{budget="metric-budget",kind="actual",threshold="0.5"}"#
            ),
            Some(1.0)
        );
        let rss = value(&text, "process_resident_memory_bytes ").unwrap_or(0.0);
        assert!(rss > 1e6, "a test process holds more than 1 MB: {text}");
    }

    #[test]
    fn vm_rss_is_read_in_kilobytes() {
        let status = "Name:\tlevee\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(label(&"x".repeat(MAX_LABEL_LEN + 1)), "other");
        assert_eq!(status_label(99), "other");
        assert_eq!(status_label(503), "503");
    }
}
