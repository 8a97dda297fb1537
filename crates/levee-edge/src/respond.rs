//! Every response the edge makes up itself (as opposed to mapping a function's
//! answer) is built here, from a [`Reject`], so the public text of each
//! failure lives in one place and never carries platform internals.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use levee_runtime::InvokeError;
use levee_shield::firewall::Verdict;
use serde_json::json;

use crate::billing::Refusal;
use crate::invocation::InvokeFailure;
use crate::reject::Reject;

/// Seconds a throttled client is told to wait.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The answer for `reject`.
pub fn reject(reject: Reject) -> Response<Bytes> {
    match reject {
        Reject::Malformed {
            status,
            message: text,
        } => message(status, text),
        Reject::Firewall(block) => blocked(block),
        Reject::NotFound => message(StatusCode::NOT_FOUND, "Not Found"),
        Reject::Throttled { limit, route, wait } => {
            let secs = retry_secs(wait);
            let mut body = json!({
                "message": "Too Many Requests",
                "limit": limit,
                "retry_after_seconds": secs,
            });
            if let Some(route) = route {
                body["route"] = route.into();
            }
            with_retry_after(json(StatusCode::TOO_MANY_REQUESTS, &body), secs)
        }
        Reject::Forbidden => message(StatusCode::FORBIDDEN, "Forbidden"),
        Reject::Unauthorized(denied) => unauthorized(denied),
        Reject::QuotaExhausted {
            quota,
            resets_at,
            now,
        } => with_retry_after(
            json(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({
                    "message": "Limit Exceeded: the API key's quota is exhausted",
                    "limit": "plan.quota",
                    "quota": quota,
                    "resets_at": rfc3339(resets_at),
                }),
            ),
            (resets_at - now).max(1) as u64,
        ),
        Reject::TooLarge { limit } => json(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({ "message": "Request Entity Too Large", "limit_bytes": limit }),
        ),
        Reject::SlowBody => message(
            StatusCode::REQUEST_TIMEOUT,
            "Request Timeout: the body arrived too slowly",
        ),
        Reject::Unreadable(text) => message(StatusCode::BAD_REQUEST, text),
        Reject::Invoke {
            function,
            failure: InvokeFailure::OverBudget(refusal),
        } => {
            tracing::debug!(function = %function, "over budget");
            over_budget(refusal)
        }
        Reject::Invoke {
            function,
            failure: InvokeFailure::Failed(e),
        } => invoke_error(&function, &e),
        Reject::BadFunctionResponse(detail) => json(
            StatusCode::BAD_GATEWAY,
            &json!({
                "message": "Bad Gateway",
                "errorType": "Function.InvalidResponse",
                "errorMessage": detail,
            }),
        ),
        Reject::QueueFull => with_retry_after(
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable: the route's queue is full",
            ),
            u64::from(RETRY_AFTER_SECS),
        ),
        Reject::QueueRefused(text) => message(StatusCode::BAD_REQUEST, &text),
        Reject::QueueFailed => message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

/// Whole seconds to wait, at least 1.
fn retry_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

fn with_retry_after(mut resp: Response<Bytes>, secs: u64) -> Response<Bytes> {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// A firewall rule's block, as the rule wrote it.
fn blocked(verdict: Verdict) -> Response<Bytes> {
    let Verdict::Block {
        rule,
        status,
        body,
        content_type,
        headers,
        retry_after,
    } = verdict
    else {
        return message(StatusCode::FORBIDDEN, "Forbidden");
    };
    tracing::debug!(rule = %rule, status, "firewall blocked a request");
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    for (name, value) in headers.iter() {
        resp.headers_mut().append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    match retry_after {
        Some(wait) => with_retry_after(resp, retry_secs(wait)),
        None => resp,
    }
}

/// A budget's refusal: 503 for `stop`, 429 for `throttle`, with JSON naming
/// the budget and when it resets.
fn over_budget(refusal: Refusal) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(refusal.body));
    *resp.status_mut() = refusal.status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    with_retry_after(resp, refusal.retry_after_secs)
}

/// Unix seconds as RFC 3339 UTC, for quota resets.
pub(crate) fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A JSON response with `status`.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// API Gateway's `{"message": ...}` shape.
pub fn message(status: StatusCode, text: &str) -> Response<Bytes> {
    json(status, &json!({ "message": text }))
}

/// API Gateway's answers for an authorizer's refusal: 401 `Unauthorized`
/// (with RFC 6750's `WWW-Authenticate` saying why: the reason, never the
/// token), 403 `Forbidden` for a missing scope or a function's no, and 500
/// when the authorizing function failed.
fn unauthorized(denied: crate::authorizer::Denied) -> Response<Bytes> {
    use crate::authorizer::Denied;
    let (status, text, challenge) = match denied {
        Denied::Scope => (
            StatusCode::FORBIDDEN,
            "Forbidden",
            Some("Bearer error=\"insufficient_scope\"".to_owned()),
        ),
        Denied::Refused => (StatusCode::FORBIDDEN, "Forbidden", None),
        Denied::Failed => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            None,
        ),
        Denied::Missing => (
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            Some("Bearer".to_owned()),
        ),
        other => (
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{other}\""
            )),
        ),
    };
    let mut resp = message(status, text);
    if let Some(v) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// `[tls] redirect`: 308 to the same path and query over HTTPS on `port`,
/// for the host the client asked for; 400 when it named none that could
/// go in a URL (a hostile `Host` never reaches `Location`).
pub fn https_redirect<B>(req: &http::Request<B>, port: u16) -> Response<Bytes> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .and_then(host_only);
    let Some(host) = host else {
        return message(
            StatusCode::BAD_REQUEST,
            "a redirect to HTTPS needs a Host header naming a host",
        );
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return message(
            StatusCode::BAD_REQUEST,
            "the request target cannot be redirected",
        );
    };
    let mut resp = message(StatusCode::PERMANENT_REDIRECT, "use HTTPS");
    resp.headers_mut().insert(header::LOCATION, location);
    resp
}

/// The host of a `Host` value without its port, when it is a DNS name, an
/// IPv4 address or a bracketed IPv6 address (RFC 3986 `host`, no
/// percent-encoding), at most 255 bytes.
fn host_only(value: &str) -> Option<&str> {
    let host = if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        let inner = &host[1..host.len() - 1];
        let ipv6 = inner.parse::<std::net::Ipv6Addr>().is_ok();
        (ipv6 && (rest.is_empty() || port_suffix(rest))).then_some(host)?
    } else {
        let host = match value.rsplit_once(':') {
            Some((host, port)) if port_suffix(&format!(":{port}")) => host,
            Some(_) => return None,
            None => value,
        };
        let dns = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        (dns && !host.is_empty()).then_some(host)?
    };
    (host.len() <= 255).then_some(host)
}

fn port_suffix(rest: &str) -> bool {
    rest.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The response for an invocation that failed, by kind:
/// throttled 429 (with `Retry-After` and the limit that was hit), timeout 504,
/// everything the function or its instance did wrong 502, platform trouble 503.
fn invoke_error(function: &str, err: &InvokeError) -> Response<Bytes> {
    match err {
        InvokeError::Throttled(limit) => {
            let mut resp = json(
                StatusCode::TOO_MANY_REQUESTS,
                &json!({
                    "message": "Too Many Requests",
                    "reason": limit.reason(),
                    "limit": limit.key(),
                    "value": limit.value(),
                    "function": function,
                }),
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            resp
        }
        InvokeError::Timeout(_) => json(
            StatusCode::GATEWAY_TIMEOUT,
            &json!({
                "message": "Endpoint request timed out",
                "errorType": err.error_type(),
                "errorMessage": err.error_message(),
            }),
        ),
        InvokeError::Unavailable(_) => {
            message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        _ => json(
            StatusCode::BAD_GATEWAY,
            &json!({
                "message": "Bad Gateway",
                "errorType": err.error_type(),
                "errorMessage": err.error_message(),
            }),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_host_path_and_query_and_refuse_hostile_hosts() {
        let to = |host: &str, target: &str, port: u16| {
            let req = http::Request::get(target)
                .header("host", host)
                .body(())
                .unwrap();
            let resp = https_redirect(&req, port);
            let location = resp
                .headers()
                .get(header::LOCATION)
                .map(|v| v.to_str().unwrap().to_owned());
            (resp.status().as_u16(), location)
        };
        assert_eq!(
            to("a.test:8080", "/p/q?x=1&y", 8443),
            (308, Some("https://a.test:8443/p/q?x=1&y".into()))
        );
        assert_eq!(
            to("a.test", "/", 443),
            (308, Some("https://a.test/".into()))
        );
        assert_eq!(
            to("[::1]:80", "/x", 8443),
            (308, Some("https://[::1]:8443/x".into()))
        );
        for hostile in [
            "evil.test/@x",
            "a b",
            "",
            "a.test:",
            "a.test:99999x",
            "[zz]",
            "a@b",
            "a.test:1:2",
        ] {
            assert_eq!(to(hostile, "/", 8443), (400, None), "{hostile:?}");
        }
        assert_eq!(to(&"a".repeat(256), "/", 8443), (400, None));
    }
    use levee_runtime::Limit;

    #[test]
    fn throttles_say_which_limit_and_when_to_retry() {
        let r = invoke_error(
            "hello",
            &InvokeError::Throttled(Limit::Reserved { limit: 10 }),
        );
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["limit"], "reserved_concurrency");
        assert_eq!(body["value"], 10);
        assert_eq!(body["function"], "hello");
    }

    #[test]
    fn statuses_by_failure_kind() {
        let t = invoke_error(
            "f",
            &InvokeError::Timeout(std::time::Duration::from_secs(3)),
        );
        assert_eq!(t.status(), 504);
        let c = invoke_error("f", &InvokeError::Crashed("exit status: 3".into()));
        assert_eq!(c.status(), 502);
        let body: serde_json::Value = serde_json::from_slice(c.body()).unwrap();
        assert_eq!(body["errorType"], "Runtime.ExitError");
        let u = invoke_error("f", &InvokeError::Unavailable("secret detail".into()));
        assert_eq!(u.status(), 503);
        assert!(!String::from_utf8_lossy(u.body()).contains("secret"));
    }
}
