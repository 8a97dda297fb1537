//! Reading what the run cost from levee's admin API: the sum of every
//! function's invocations (`/admin/functions`) and today's spend
//! (`/admin/costs`). It owns only reads; it must never change the target.

use std::time::Duration;

use crate::client::fetch;
use crate::error::DrillError;
use crate::plan::AdminApi;

/// Bound on one admin read.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A point-in-time reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Sum of `instances.invocations` over every function.
    pub invocations: u64,
    /// Today's spend in USD over every function; None if metering is off.
    pub spend_usd: Option<f64>,
}

async fn get_json(api: &AdminApi, path: &str) -> Result<(u16, serde_json::Value), DrillError> {
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\nconnection: close\r\n\r\n",
        api.addr, api.token
    );
    let err = |reason: String| DrillError::Admin {
        url: format!("{}{path}", api.url.trim_end_matches('/')),
        reason,
    };
    let (status, body) = fetch(api.addr, req.as_bytes(), ADMIN_TIMEOUT)
        .await
        .map_err(err)?;
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

/// Sums `functions[].instances.invocations`.
pub fn invocations_of(doc: &serde_json::Value) -> Option<u64> {
    let fns = doc.get("functions")?.as_array()?;
    Some(
        fns.iter()
            .filter_map(|f| f.get("instances")?.get("invocations")?.as_u64())
            .sum(),
    )
}

/// Sums `costs[].usd`.
pub fn spend_of(doc: &serde_json::Value) -> Option<f64> {
    let rows = doc.get("costs")?.as_array()?;
    Some(rows.iter().filter_map(|r| r.get("usd")?.as_f64()).sum())
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
    Ok(Reading {
        invocations,
        spend_usd,
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
    }
}
