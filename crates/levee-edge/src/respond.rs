//! Every response the edge makes up itself (as opposed to mapping a function's
//! answer) is built here, so the public text of each failure lives in one
//! place and never carries platform internals.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use levee_runtime::InvokeError;
use serde_json::json;

/// Seconds a throttled client is told to wait.
pub const RETRY_AFTER_SECS: u32 = 1;

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

/// 404 for a request that matches no route.
pub fn not_found() -> Response<Bytes> {
    message(StatusCode::NOT_FOUND, "Not Found")
}

/// 413 for a body over the route's limit.
pub fn too_large(limit: u64) -> Response<Bytes> {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        &json!({ "message": "Request Entity Too Large", "limit_bytes": limit }),
    )
}

/// 400 for a request the edge cannot read.
pub fn bad_request(text: &str) -> Response<Bytes> {
    message(StatusCode::BAD_REQUEST, text)
}

/// The response for an invocation that failed, by kind:
/// throttled 429 (with `Retry-After` and the limit that was hit), timeout 504,
/// everything the function or its instance did wrong 502, platform trouble 503.
pub fn invoke_error(function: &str, err: &InvokeError) -> Response<Bytes> {
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

/// 502 for a function answer that breaks the payload 2.0 response rules.
pub fn bad_function_response(detail: &str) -> Response<Bytes> {
    json(
        StatusCode::BAD_GATEWAY,
        &json!({
            "message": "Bad Gateway",
            "errorType": "Function.InvalidResponse",
            "errorMessage": detail,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
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
