//! Access-log lines, pure.
//!
//! Owns: the format of one line per request, as text or JSON; the edge
//! writes it with `tracing` target `levee::access`. Must never let request
//! text forge or break a line: control characters, quotes and backslashes in
//! the method, path, route, request id and key are escaped, and each is cut
//! to [`MAX_FIELD_CHARS`] characters (with `…`).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::metrics::Decision;

/// Longest piece of request text written to a line.
pub const MAX_FIELD_CHARS: usize = 2048;

/// One request, as the edge saw it.
#[derive(Debug, Clone, Copy)]
pub struct AccessEntry<'a> {
    pub time: SystemTime,
    pub client_ip: IpAddr,
    pub method: &'a str,
    pub path: &'a str,
    /// The matched route key; `None` when nothing matched.
    pub route: Option<&'a str>,
    pub status: u16,
    pub decision: Decision,
    /// From the request head read to the response head written.
    pub latency: Duration,
    pub request_id: &'a str,
    pub function: Option<&'a str>,
    pub key_id: Option<&'a str>,
    /// The firewall rule that refused the request (`auto-N` for an
    /// automatic one).
    pub rule: Option<&'a str>,
}

/// Line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccessFormat {
    /// `TIME IP "METHOD PATH" STATUS DECISION LATENCYms route="…" fn=… key=… req=… rule=…`
    #[default]
    Text,
    /// One JSON object.
    Json,
}

fn rfc3339(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Utc> = t.into();
    dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `s` cut to [`MAX_FIELD_CHARS`] characters.
fn cut(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_FIELD_CHARS).collect();
    if s.chars().nth(MAX_FIELD_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// `s` cut and escaped for the text format: no control characters, quotes
/// or backslashes survive, so a field can't end early or start a new line.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_FIELD_CHARS));
    for c in cut(s).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

#[derive(Serialize)]
struct JsonLine {
    time: String,
    client_ip: String,
    method: String,
    path: String,
    route: Option<String>,
    status: u16,
    decision: &'static str,
    latency_ms: f64,
    request_id: String,
    function: Option<String>,
    key_id: Option<String>,
    rule: Option<String>,
}

/// Formats one access-log line (no trailing newline).
pub fn access_line(e: &AccessEntry<'_>, format: AccessFormat) -> String {
    let latency_ms = e.latency.as_secs_f64() * 1000.0;
    match format {
        AccessFormat::Text => format!(
            "{} {} \"{} {}\" {} {} {:.3}ms route=\"{}\" fn={} key={} req={} rule={}",
            rfc3339(e.time),
            e.client_ip,
            text(e.method),
            text(e.path),
            e.status,
            e.decision.as_str(),
            latency_ms,
            text(e.route.unwrap_or("-")),
            text(e.function.unwrap_or("-")),
            text(e.key_id.unwrap_or("-")),
            text(e.request_id),
            text(e.rule.unwrap_or("-")),
        ),
        AccessFormat::Json => {
            let line = JsonLine {
                time: rfc3339(e.time),
                client_ip: e.client_ip.to_string(),
                method: cut(e.method),
                path: cut(e.path),
                route: e.route.map(cut),
                status: e.status,
                decision: e.decision.as_str(),
                latency_ms: (latency_ms * 1000.0).round() / 1000.0,
                request_id: cut(e.request_id),
                function: e.function.map(cut),
                key_id: e.key_id.map(cut),
                rule: e.rule.map(cut),
            };
            // Serializing plain strings and numbers can't fail; the fallback
            // keeps the no-panic rule without an unwrap.
            serde_json::to_string(&line).unwrap_or_else(|_| String::from("{}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(path: &'a str) -> AccessEntry<'a> {
        AccessEntry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_773_500_400_123),
            client_ip: "203.0.113.9".parse().unwrap(),
            method: "GET",
            path,
            route: Some("GET /hello/{name}"),
            status: 200,
            decision: Decision::Allowed,
            latency: Duration::from_micros(1_234),
            request_id: "req-1",
            function: Some("hello"),
            key_id: None,
            rule: None,
        }
    }

    #[test]
    fn text_lines_have_every_field() {
        let line = access_line(&entry("/hello/x"), AccessFormat::Text);
        assert_eq!(
            line,
            "2026-03-14T15:00:00.123Z 203.0.113.9 \"GET /hello/x\" 200 allowed 1.234ms \
             route=\"GET /hello/{name}\" fn=hello key=- req=req-1 rule=-"
        );
        let refused = AccessEntry {
            status: 429,
            decision: Decision::FirewallBlocked,
            rule: Some("auto-3"),
            ..entry("/hello/x")
        };
        assert!(access_line(&refused, AccessFormat::Text).ends_with(" req=req-1 rule=auto-3"));
        let v: serde_json::Value =
            serde_json::from_str(&access_line(&refused, AccessFormat::Json)).unwrap();
        assert_eq!(v["rule"], "auto-3");
    }

    #[test]
    fn hostile_paths_cannot_forge_lines() {
        let line = access_line(&entry("/a\"\n2026 fake \\ line"), AccessFormat::Text);
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""GET /a\"\n2026 fake \\ line""#), "{line}");
        let long = "x".repeat(MAX_FIELD_CHARS * 4);
        let line = access_line(&entry(&long), AccessFormat::Text);
        assert!(line.len() < MAX_FIELD_CHARS + 300);
        assert!(line.contains('…'));
    }

    #[test]
    fn json_lines_parse_back() {
        let line = access_line(&entry("/a\"\nb"), AccessFormat::Json);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["path"], "/a\"\nb");
        assert_eq!(v["status"], 200);
        assert_eq!(v["decision"], "allowed");
        assert_eq!(v["latency_ms"], 1.234);
        assert_eq!(v["key_id"], serde_json::Value::Null);
        assert_eq!(v["time"], "2026-03-14T15:00:00.123Z");
    }
}
