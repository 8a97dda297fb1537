//! Reading what the run cost from levee's admin API: the sum of every
//! function's invocations and live instances (`/admin/functions`), today's
//! spend (`/admin/costs`), levee's own memory (`/metrics`) and the events
//! of automatic mitigation (`/admin/shield/auto`). It owns only reads; it
//! must never change the target.

use std::time::Duration;

use crate::client::fetch;
use crate::error::DrillError;
use crate::plan::AdminApi;
use crate::report::AutoMark;

/// Bound on one admin read.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A point-in-time reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Sum of `instances.invocations` over every function.
    pub invocations: u64,
    /// Today's spend in USD over every function; None if metering is off.
    pub spend_usd: Option<f64>,
    /// Sum of `instances.live` over every function.
    pub live_instances: u64,
    /// Levee's resident memory (`process_resident_memory_bytes`); None if
    /// `/metrics` did not say.
    pub resident_bytes: Option<u64>,
}

async fn get(api: &AdminApi, path: &str) -> Result<(u16, Vec<u8>), DrillError> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        api.addr, api.token
    );
    let err = |reason: String| DrillError::Admin {
        url: format!("{}{path}", api.url.trim_end_matches('/')),
        reason,
    };
    fetch(api.addr, req.as_bytes(), ADMIN_TIMEOUT)
        .await
        .map_err(err)
}

async fn get_json(api: &AdminApi, path: &str) -> Result<(u16, serde_json::Value), DrillError> {
    let (status, body) = get(api, path).await?;
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

/// Sums `functions[].instances.invocations`.
pub fn invocations_of(doc: &serde_json::Value) -> Option<u64> {
    let fns = doc.get("functions")?.as_array()?;
    Some(
        fns.iter()
            .filter_map(|f| f.get("instances")?.get("invocations")?.as_u64())
            // Server-supplied numbers: saturate rather than overflow.
            .fold(0, u64::saturating_add),
    )
}

/// Sums `functions[].instances.live`.
pub fn live_instances_of(doc: &serde_json::Value) -> u64 {
    doc.get("functions")
        .and_then(|f| f.as_array())
        .map_or(0, |fns| {
            fns.iter()
                .filter_map(|f| f.get("instances")?.get("live")?.as_u64())
                .fold(0, u64::saturating_add)
        })
}

/// The `process_resident_memory_bytes` sample of a Prometheus exposition.
pub fn resident_bytes_of(exposition: &str) -> Option<u64> {
    let value = exposition
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))?;
    let bytes: f64 = value.trim().parse().ok()?;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// Sums `costs[].usd`.
pub fn spend_of(doc: &serde_json::Value) -> Option<f64> {
    let rows = doc.get("costs")?.as_array()?;
    Some(rows.iter().filter_map(|r| r.get("usd")?.as_f64()).sum())
}

/// Most automatic-mitigation events a report keeps (the admin API keeps
/// 100).
pub const MAX_AUTO_MARKS: usize = 100;

/// The automatic-mitigation events of `doc` (`/admin/shield/auto`) that
/// started at or after `since_ms` (Unix ms, the run's start), with their
/// times as seconds after it. Server-supplied: anything missing or odd is
/// left out, never trusted into a panic.
pub fn auto_marks_of(doc: &serde_json::Value, since_ms: u64) -> Vec<AutoMark> {
    let Some(events) = doc.get("events").and_then(|e| e.as_array()) else {
        return Vec::new();
    };
    // Events carry whole Unix seconds: one that opened in the run's first
    // second reads as just before it.
    let since_s = since_ms / 1000;
    let after = |v: &serde_json::Value| {
        v.as_u64()
            .map(|s| (s.saturating_mul(1000) as f64 - since_ms as f64) / 1000.0)
    };
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
    events
        .iter()
        .filter(|e| e.get("started").and_then(|s| s.as_u64()) >= Some(since_s))
        .take(MAX_AUTO_MARKS)
        .filter_map(|e| {
            let signature = e.get("signature");
            Some(AutoMark {
                id: e.get("id")?.as_u64()?,
                started_s: after(e.get("started")?)?,
                attribute: text(signature.and_then(|s| s.get("attribute"))),
                value: text(signature.and_then(|s| s.get("value"))),
                mitigation: text(e.get("mitigation"))?,
                enforced_s: e.get("enforced").and_then(after),
                lifted_s: e.get("lifted").and_then(after),
            })
        })
        .collect()
}

/// The automatic-mitigation events since `since_ms`; empty when the
/// target has none (or no detector).
pub async fn auto_marks(api: &AdminApi, since_ms: u64) -> Vec<AutoMark> {
    match get_json(api, "/admin/shield/auto").await {
        Ok((200, doc)) => auto_marks_of(&doc, since_ms),
        _ => Vec::new(),
    }
}

/// Reads invocations (required) and spend (optional: metering may be off).
pub async fn read(api: &AdminApi) -> Result<Reading, DrillError> {
    let (status, doc) = get_json(api, "/admin/functions").await?;
    let invocations = invocations_of(&doc)
        .filter(|_| status == 200)
        .ok_or_else(|| DrillError::Admin {
            url: api.url.clone(),
            reason: format!(
                "/admin/functions answered {status} without a functions list (wrong token?)"
            ),
        })?;
    let spend_usd = match get_json(api, "/admin/costs?by=function&period=day").await {
        Ok((200, doc)) => spend_of(&doc),
        _ => None,
    };
    let resident_bytes = match get(api, "/metrics").await {
        Ok((200, text)) => resident_bytes_of(&String::from_utf8_lossy(&text)),
        _ => None,
    };
    Ok(Reading {
        invocations,
        spend_usd,
        live_instances: live_instances_of(&doc),
        resident_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_functions_and_rows() {
        let f = serde_json::json!({"functions": [
            {"name": "a", "instances": {"invocations": 3}},
            {"name": "b", "instances": {"invocations": 4}},
            {"name": "c"}
        ]});
        assert_eq!(invocations_of(&f), Some(7));
        assert_eq!(invocations_of(&serde_json::json!({"message": "no"})), None);
        let c = serde_json::json!({"costs": [{"usd": 0.25}, {"usd": 0.5}]});
        assert_eq!(spend_of(&c), Some(0.75));
        let live = serde_json::json!({"functions": [
            {"instances": {"live": 2}}, {"instances": {"live": 5}}, {"name": "c"}
        ]});
        assert_eq!(live_instances_of(&live), 7);
    }

    #[test]
    fn auto_marks_are_the_run_s_events_in_seconds_after_its_start() {
        let doc = serde_json::json!({"events": [
            {"id": 1, "started": 999, "mitigation": "lifted"},
            {"id": 2, "started": 1002, "enforced": 1003, "mitigation": "enforced",
             "signature": {"attribute": "header_shape", "value": "hs1-03-00"}},
            {"id": 3, "started": 1005, "mitigation": "none", "signature": null},
            {"id": "x", "started": 1006, "mitigation": "none"},
            {"id": 4, "started": -1, "mitigation": "none"}
        ]});
        let marks = auto_marks_of(&doc, 1_000_500);
        assert_eq!(marks.len(), 2, "{marks:?}");
        assert_eq!(marks[0].id, 2);
        assert_eq!(marks[0].started_s, 1.5);
        assert_eq!(marks[0].enforced_s, Some(2.5));
        assert_eq!(marks[0].attribute.as_deref(), Some("header_shape"));
        assert_eq!(
            (marks[1].attribute.clone(), marks[1].enforced_s),
            (None, None)
        );
        assert!(auto_marks_of(&serde_json::json!({"message": "no"}), 0).is_empty());
    }

    #[test]
    fn reads_resident_memory_from_the_exposition() {
        let text = "# HELP process_resident_memory_bytes x\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 31457280\nlevee_x 1\n";
        assert_eq!(resident_bytes_of(text), Some(31_457_280));
        assert_eq!(
            resident_bytes_of("process_resident_memory_bytes NaN\n"),
            None
        );
        assert_eq!(resident_bytes_of("levee_x 1\n"), None);
    }
}
