//! The report: a stable, versioned JSON schema (`schema_version`) and the
//! plain-text summary. It owns the shape that other tools read; it must never
//! change a field's meaning without bumping [`SCHEMA_VERSION`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to [`DrillReport`].
pub const SCHEMA_VERSION: u32 = 1;

/// Latency summary, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// One second of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondReport {
    /// Seconds since the start (by when the request started).
    pub second: u64,
    /// Requests started in that second.
    pub requests: u64,
    /// Of which 2xx.
    pub success: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// p90 latency, ms (absent in reports written before it was added).
    #[serde(default)]
    pub p90_ms: f64,
    /// p99 latency, ms.
    pub p99_ms: f64,
    /// Largest latency, ms (absent in reports written before it was added).
    #[serde(default)]
    pub max_ms: f64,
}

/// What one class of traffic saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassReport {
    /// Distinct source addresses used.
    pub sources: u32,
    /// Requests (slow scenarios: connections) made and finished.
    pub requests: u64,
    /// Requests not sent because the class was at its connection cap.
    pub skipped: u64,
    /// 2xx answers.
    pub success: u64,
    /// `success / requests` (0 when no requests).
    pub success_ratio: f64,
    /// Count per status code, or `connect-failed`, `timeout`, `closed`, `held`.
    pub statuses: BTreeMap<String, u64>,
    /// Latency of every request (slow scenarios: how long the connection lasted).
    pub latency_ms: LatencyMs,
    /// One entry per second of the run.
    pub series: Vec<SecondReport>,
}

/// What the run cost the target, read from levee's admin API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeveeImpact {
    /// Sum of every function's invocations before the run.
    pub invocations_before: u64,
    /// … and after.
    pub invocations_after: u64,
    /// After − before.
    pub invocations_caused: u64,
    /// Invocations caused minus legitimate 2xx answers (each of which took
    /// one invocation unless it was a cache hit): an upper bound on what the
    /// attack caused.
    pub invocations_caused_by_attack: u64,
    /// Spend today (USD, all functions) before the run; None if metering is off.
    pub spend_usd_before: Option<f64>,
    /// … and after.
    pub spend_usd_after: Option<f64>,
    /// After − before.
    pub spend_usd_caused: Option<f64>,
    /// Most live instances (all functions) seen by the once-a-second reading
    /// during the run. Absent in reports of schema 1 before it was added.
    #[serde(default)]
    pub instances_peak: u64,
    /// Most resident memory of the levee process seen by the same reading,
    /// bytes (function instances not included); None if `/metrics` did not say.
    #[serde(default)]
    pub memory_peak_bytes: Option<u64>,
    /// Automatic-mitigation events that opened during the run, oldest
    /// first (absent in reports written before they were added).
    #[serde(default)]
    pub auto_events: Vec<AutoMark>,
}

/// One automatic-mitigation event, as the drill saw it: times are seconds
/// after the run started, to the detector's one-second resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AutoMark {
    /// The event's id on the admin API.
    pub id: u64,
    /// When it opened.
    pub started_s: f64,
    /// What its signature matches (`user_agent`, `header_shape`,
    /// `prefix`), and the value; none for a surge with nothing to refuse.
    pub attribute: Option<String>,
    pub value: Option<String>,
    /// `none`, `counting`, `enforced` or `lifted`.
    pub mitigation: String,
    /// When its rule came into force: the time to mitigate.
    pub enforced_s: Option<f64>,
    /// When it was lifted.
    pub lifted_s: Option<f64>,
}

impl LeveeImpact {
    /// Spend caused, for people: dollars, or why there is no figure.
    pub fn spend_text(&self) -> String {
        self.spend_usd_caused
            .map_or("n/a (metering off)".to_string(), |u| format!("${u:.6}"))
    }

    /// Peak memory, for people: MiB, or "n/a".
    pub fn memory_text(&self) -> String {
        self.memory_peak_bytes.map_or("n/a".to_string(), |b| {
            format!("{:.1} MiB", b as f64 / 1048576.0)
        })
    }
}

/// The settings the run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Planned duration, seconds.
    pub duration_s: f64,
    /// Attack rate per second.
    pub rate: u32,
    /// Legitimate rate per second.
    pub legit_rate: u32,
    /// Attack connection cap.
    pub concurrency: u32,
    /// Per-request timeout, ms.
    pub timeout_ms: u64,
    /// Request cap.
    pub max_requests: u64,
}

/// One drill run's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The scenario's name.
    pub scenario: String,
    /// The target URL.
    pub target: String,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// How long the run took, seconds (attack plus draining).
    pub elapsed_s: f64,
    /// Settings.
    pub settings: Settings,
    /// Legitimate traffic.
    pub legit: ClassReport,
    /// Attack traffic.
    pub attack: ClassReport,
    /// What it cost, if `--admin` was given.
    pub levee: Option<LeveeImpact>,
    /// Anything the reader should know (e.g. a failed admin read).
    pub notes: Vec<String>,
}

impl DrillReport {
    /// Mean attack 2xx a second before second `at`, and from a second
    /// after it on (`at` is a whole Unix second, so the rule took hold
    /// somewhere in the second that follows it): what the attack cost
    /// before and after a rule came into force.
    pub fn attack_success_around(&self, at: f64) -> (f64, f64) {
        let mean = |seconds: Vec<u64>| {
            if seconds.is_empty() {
                0.0
            } else {
                seconds.iter().sum::<u64>() as f64 / seconds.len() as f64
            }
        };
        let series = &self.attack.series;
        let before = series
            .iter()
            .filter(|x| (x.second as f64) + 1.0 <= at)
            .map(|x| x.success)
            .collect();
        let after = series
            .iter()
            .filter(|x| x.second as f64 >= (at + 1.0).ceil())
            .map(|x| x.success)
            .collect();
        (mean(before), mean(after))
    }

    /// A short human summary.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "drill {} against {} for {:.1}s",
            self.scenario, self.target, self.elapsed_s
        );
        for (name, c) in [("legit", &self.legit), ("attack", &self.attack)] {
            let statuses: Vec<String> =
                c.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            let _ = writeln!(
                s,
                "  {name:<6} sources {:>5}  requests {:>8} ({:.0}/s)  2xx {:>8} ({:.2}%)  skipped {}  p50 {:.2}ms p90 {:.2}ms p99 {:.2}ms max {:.2}ms  [{}]",
                c.sources,
                c.requests,
                c.requests as f64 / self.settings.duration_s.max(1.0),
                c.success,
                c.success_ratio * 100.0,
                c.skipped,
                c.latency_ms.p50,
                c.latency_ms.p90,
                c.latency_ms.p99,
                c.latency_ms.max,
                statuses.join(" ")
            );
        }
        if let Some(l) = &self.levee {
            let _ = writeln!(
                s,
                "  levee  invocations caused {} (by the attack at most {})  spend caused {}  instances peak {}  memory peak {}",
                l.invocations_caused,
                l.invocations_caused_by_attack,
                l.spend_text(),
                l.instances_peak,
                l.memory_text()
            );
        }
        for e in self.levee.iter().flat_map(|l| &l.auto_events) {
            let signature = match (&e.attribute, &e.value) {
                (Some(a), Some(v)) => format!("{a} {v}"),
                _ => "no signature".to_string(),
            };
            let _ = write!(
                s,
                "  auto   event {} at {:+.0}s: {signature}, {}",
                e.id, e.started_s, e.mitigation
            );
            if let Some(at) = e.enforced_s {
                let (before, after) = self.attack_success_around(at);
                let _ = write!(
                    s,
                    ", in force at {at:+.0}s; attack 2xx/s before {before:.0}, after {after:.0}"
                );
            }
            let _ = writeln!(s);
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stats::{ClassStats, Outcome};

    /// A small report with known numbers.
    pub(crate) fn sample() -> DrillReport {
        let mut legit = ClassStats::new(3);
        let mut attack = ClassStats::new(3);
        for s in 0..3 {
            for i in 0..10 {
                legit.record(s, Outcome::Status(200), 1_000 + i * 100);
                attack.record(s, Outcome::Status(if i < 2 { 200 } else { 429 }), 300 + i);
            }
        }
        attack.record(1, Outcome::Timeout, 10_000_000);
        DrillReport {
            schema_version: SCHEMA_VERSION,
            scenario: "mixed".into(),
            target: "http://127.0.0.1:1/f?<x>".into(),
            started_unix_ms: 1,
            elapsed_s: 3.2,
            settings: Settings {
                duration_s: 3.0,
                rate: 10,
                legit_rate: 10,
                concurrency: 4,
                timeout_ms: 1000,
                max_requests: 100,
            },
            legit: legit.report(2),
            attack: attack.report(777),
            levee: Some(LeveeImpact {
                invocations_before: 5,
                invocations_after: 41,
                invocations_caused: 36,
                invocations_caused_by_attack: 6,
                spend_usd_before: None,
                spend_usd_after: None,
                spend_usd_caused: None,
                instances_peak: 3,
                memory_peak_bytes: Some(12 << 20),
                auto_events: vec![AutoMark {
                    id: 7,
                    started_s: 0.2,
                    attribute: Some("header_shape".into()),
                    value: Some("hs1-03-<x>".into()),
                    mitigation: "enforced".into(),
                    enforced_s: Some(1.0),
                    lifted_s: None,
                }],
            }),
            notes: vec!["a <note>".into()],
        }
    }

    #[test]
    fn json_round_trips_with_a_schema_version() {
        let r = sample();
        let text = serde_json::to_string(&r).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["attack"]["statuses"]["429"], 24);
        assert_eq!(v["attack"]["statuses"]["timeout"], 1);
        assert_eq!(v["legit"]["series"].as_array().unwrap().len(), 3);
        assert_eq!(v["levee"]["invocations_caused_by_attack"], 6);
        let back: DrillReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        let summary = r.summary();
        assert!(
            summary.contains("requests       30") && summary.contains("100.00%"),
            "{summary}"
        );
        assert!(
            summary.contains("instances peak 3  memory peak 12.0 MiB"),
            "{summary}"
        );
        assert!(
            summary.contains("auto   event 7 at +0s: header_shape hs1-03-<x>, enforced, in force at +1s; attack 2xx/s before 2, after 2"),
            "{summary}"
        );
        let mut older = v.clone();
        older["levee"]
            .as_object_mut()
            .unwrap()
            .remove("auto_events");
        let older: DrillReport = serde_json::from_value(older).unwrap();
        assert!(
            older.levee.unwrap().auto_events.is_empty(),
            "reports without marks load"
        );
        let old = text.replace(",\"instances_peak\":3,\"memory_peak_bytes\":12582912", "");
        assert_ne!(old, text);
        let old: DrillReport = serde_json::from_str(&old).unwrap();
        assert_eq!(
            old.levee.unwrap().instances_peak,
            0,
            "older reports still load"
        );
    }

    #[test]
    fn html_has_the_charts_and_the_numbers() {
        let r = sample();
        let html = crate::html::render(&r);
        assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
        assert_eq!(html.matches("<svg ").count(), 4, "four charts");
        assert_eq!(
            html.matches("<svg ").count(),
            html.matches("</svg>").count()
        );
        assert_eq!(
            html.matches("<table").count(),
            html.matches("</table>").count()
        );
        for needle in [
            "Throughput",
            "Latency over time",
            "Status mix",
            "Invocations vs requests",
            "<polyline",
            ">777<",
            ">31<",
            "attack 429",
            "&lt;x&gt;",
            "a &lt;note&gt;",
            "invocations caused",
            "<th>instances (peak)</th><td>3</td>",
            "<th>levee memory (peak)</th><td>12.0 MiB</td>",
            "Automatic mitigation",
            "<td>header_shape hs1-03-&lt;x&gt;</td><td>enforced</td><td>+1</td>",
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
        assert!(
            !html.contains("NaN") && !html.contains("inf"),
            "no non-finite coordinates"
        );
        assert!(!html.contains("<x>"), "text is escaped");
    }
}
