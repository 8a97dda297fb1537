//! The Lambda Invoke API: `POST /2015-03-31/functions/{name}/invocations`
//! behaves like Lambda's so that `boto3.client("lambda", endpoint_url=...)`
//! works unmodified: function failures are 200 with `X-Amz-Function-Error`,
//! service errors carry both the `x-amzn-ErrorType` header and a JSON body.
//! Event invocations run in the background, bounded by
//! [`MAX_PENDING_EVENTS`].

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use levee_runtime::{function_arn, FunctionHandle, InvokeError, InvokeRequest};

use crate::invocation::{Fault, Invoke, InvokeFailure, Tags};
use serde_json::json;

use super::AdminState;

/// Largest synchronous payload (Lambda: 6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// Largest `Event` payload (Lambda: 1 MB).
pub const MAX_EVENT_PAYLOAD: usize = 1024 * 1024;
/// Largest decoded `X-Amz-Client-Context` (Lambda: 3583 bytes).
pub const MAX_CLIENT_CONTEXT: usize = 3583;
/// Most of a requested function name quoted back in a 404: the longest
/// real form (an ARN with a 64-character name and a qualifier) fits.
const MAX_QUOTED_NAME: usize = 170;
/// Event invocations accepted but not finished; more are refused with 429.
pub const MAX_PENDING_EVENTS: usize = 1000;
/// Attempts for an event invocation that is throttled.
const EVENT_THROTTLE_ATTEMPTS: u32 = 6;
/// Extra attempts for an event invocation whose function fails (Lambda: 2).
const EVENT_ERROR_RETRIES: u32 = 2;

#[derive(Debug, serde::Deserialize)]
pub(super) struct InvokeQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
}

/// Splits the forms Lambda accepts: `name`, `name:qualifier`,
/// `123456789012:function:name[:qualifier]` and the full ARN.
fn parse_function_name(raw: &str) -> Option<(&str, Option<&str>)> {
    let parts: Vec<&str> = raw.split(':').collect();
    let (name, qualifier) = match parts.as_slice() {
        [name] => (*name, None),
        [name, q] => (*name, Some(*q)),
        [_, "function", name] => (*name, None),
        [_, "function", name, q] => (*name, Some(*q)),
        ["arn", _, "lambda", _, _, "function", name] => (*name, None),
        ["arn", _, "lambda", _, _, "function", name, q] => (*name, Some(*q)),
        _ => return None,
    };
    (!name.is_empty() && name.len() <= 64).then_some((name, qualifier))
}

pub(super) async fn invoke(
    State(state): State<AdminState>,
    Path(raw_name): Path<String>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    // Parsed here rather than by axum's extractor, whose rejection is plain
    // text: the Invoke API answers errors in Lambda's JSON shape.
    let query: InvokeQuery = match serde_urlencoded::from_str(raw_query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => {
            return service_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!("invalid query string: {e}"),
            )
        }
    };
    let not_found = || {
        service_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!(
                "Function not found: {}",
                function_arn(&levee_common::text::quote(&raw_name, MAX_QUOTED_NAME))
            ),
        )
    };
    let Some((name, path_qualifier)) = parse_function_name(&raw_name) else {
        return not_found();
    };
    // Only the unpublished version exists here.
    let qualifier = path_qualifier.or(query.qualifier.as_deref());
    if qualifier.is_some_and(|q| q != "$LATEST") {
        return not_found();
    }
    let Some(function) = state.scheduler.function(name).cloned() else {
        return not_found();
    };

    let invocation_type = headers
        .get("x-amz-invocation-type")
        .map(|v| v.to_str().unwrap_or(""))
        .unwrap_or("RequestResponse");
    let limit = match invocation_type {
        "RequestResponse" | "DryRun" => MAX_SYNC_PAYLOAD,
        "Event" => MAX_EVENT_PAYLOAD,
        _ => {
            return service_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun",
            )
        }
    };
    let client_context = match headers.get("x-amz-client-context") {
        None => None,
        Some(v) => match decode_client_context(v.as_bytes()) {
            Some(c) => Some(c),
            None => {
                return service_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    "X-Amz-Client-Context must be base64-encoded JSON of at most 3583 bytes",
                )
            }
        },
    };
    let payload = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return service_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                &format!("Request must be smaller than {limit} bytes for the {invocation_type} invocation type"),
            )
        }
    };
    let payload = if payload.is_empty() {
        Bytes::from_static(b"{}")
    } else if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return service_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
    } else {
        payload
    };

    let request_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
    let req = InvokeRequest {
        request_id: Arc::clone(&request_id),
        payload,
        client_context,
        client: None,
    };
    let mut resp = match invocation_type {
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        "Event" => {
            let Ok(permit) = Arc::clone(&state.events).try_acquire_owned() else {
                return throttled("ConcurrentInvocationLimitExceeded");
            };
            let invoker = Arc::clone(&state.invoker);
            tokio::spawn(async move {
                run_event(&*invoker, &function, req).await;
                drop(permit);
            });
            StatusCode::ACCEPTED.into_response()
        }
        _ => match state.invoker.invoke(&function, req, Tags::default()).await {
            Ok(out) => payload_response(StatusCode::OK, out.payload),
            Err(InvokeFailure::OverBudget(_)) => throttled("BudgetExceeded"),
            Err(InvokeFailure::Failed(InvokeError::Throttled(limit))) => throttled(limit.reason()),
            Err(InvokeFailure::Failed(InvokeError::Unavailable(_))) => service_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "the function could not be started",
            ),
            Err(InvokeFailure::Failed(e)) => {
                let mut r = payload_response(StatusCode::OK, e.to_error_document());
                r.headers_mut().insert(
                    "x-amz-function-error",
                    HeaderValue::from_static("Unhandled"),
                );
                r
            }
        },
    };
    let h = resp.headers_mut();
    h.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// Runs an `Event` invocation with Lambda's retry behaviour, shortened:
/// throttles retry with backoff from 1 s (Lambda keeps trying for hours;
/// here [`EVENT_THROTTLE_ATTEMPTS`] attempts), function errors are retried
/// [`EVENT_ERROR_RETRIES`] times after 1 s and 2 s (Lambda: 1 and 2 minutes).
async fn run_event(invoker: &dyn Invoke, function: &FunctionHandle, req: InvokeRequest) {
    let name = &function.config().name;
    let (mut throttles, mut errors) = (0u32, 0u32);
    loop {
        let failure = match invoker.invoke(function, req.clone(), Tags::default()).await {
            Ok(_) => return,
            Err(failure) => failure,
        };
        match failure.fault() {
            // A throttle or a budget: queued work waits, with a back-off.
            _ if failure.may_succeed_later() && throttles + 1 < EVENT_THROTTLE_ATTEMPTS => {
                throttles += 1;
                tokio::time::sleep(Duration::from_secs(1 << (throttles - 1))).await;
            }
            Fault::Limit | Fault::Platform => {
                tracing::warn!(function = %name, request_id = %req.request_id, error = %failure, "event invocation dropped");
                return;
            }
            Fault::Function if errors < EVENT_ERROR_RETRIES => {
                errors += 1;
                tracing::info!(function = %name, request_id = %req.request_id, error = %failure, attempt = errors + 1, "retrying event invocation");
                tokio::time::sleep(Duration::from_secs(u64::from(errors))).await;
            }
            Fault::Function => {
                tracing::warn!(function = %name, request_id = %req.request_id, error = %failure, "event invocation failed after retries");
                return;
            }
        }
    }
}

fn decode_client_context(raw: &[u8]) -> Option<String> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    if decoded.len() > MAX_CLIENT_CONTEXT {
        return None;
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(&decoded).ok()?;
    String::from_utf8(decoded).ok()
}

fn payload_response(status: StatusCode, payload: Bytes) -> Response {
    let mut r = (status, payload).into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A Lambda service error: botocore reads the code from `x-amzn-ErrorType`
/// and the message from `message`/`Message`. The message is bounded: it may
/// quote input.
pub(super) fn service_error(
    status: StatusCode,
    error_type: &'static str,
    message: &str,
) -> Response {
    let message = levee_common::text::bound_message(message);
    let mut r = payload_response(
        status,
        Bytes::from(json!({ "Type": "User", "Message": message, "message": message }).to_string()),
    );
    r.headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    r
}

fn throttled(reason: &'static str) -> Response {
    let mut r = payload_response(
        StatusCode::TOO_MANY_REQUESTS,
        Bytes::from(
            json!({ "Type": "User", "message": "Rate Exceeded.", "Reason": reason }).to_string(),
        ),
    );
    let h = r.headers_mut();
    h.insert(
        "x-amzn-errortype",
        HeaderValue::from_static("TooManyRequestsException"),
    );
    h.insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from(crate::respond::RETRY_AFTER_SECS),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_name_forms() {
        assert_eq!(parse_function_name("hello"), Some(("hello", None)));
        assert_eq!(
            parse_function_name("hello:$LATEST"),
            Some(("hello", Some("$LATEST")))
        );
        assert_eq!(
            parse_function_name("123456789012:function:hello"),
            Some(("hello", None))
        );
        assert_eq!(
            parse_function_name("arn:aws:lambda:us-east-1:123456789012:function:hello:prod"),
            Some(("hello", Some("prod")))
        );
        assert_eq!(parse_function_name(""), None);
        assert_eq!(parse_function_name("a:b:c:d:e"), None);
        assert_eq!(parse_function_name(&"x".repeat(65)), None);
    }

    #[test]
    fn client_context_must_be_small_base64_json() {
        let ok = base64::engine::general_purpose::STANDARD.encode(r#"{"custom":{"a":1}}"#);
        assert_eq!(
            decode_client_context(ok.as_bytes()).as_deref(),
            Some(r#"{"custom":{"a":1}}"#)
        );
        let not_json = base64::engine::general_purpose::STANDARD.encode("nope");
        assert!(decode_client_context(not_json.as_bytes()).is_none());
        assert!(decode_client_context(b"%%%").is_none());
        let big =
            base64::engine::general_purpose::STANDARD.encode(format!("\"{}\"", "a".repeat(4000)));
        assert!(decode_client_context(big.as_bytes()).is_none());
    }
}
