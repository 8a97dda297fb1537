//! The admin API's one error type, and the layer that keeps every error
//! answer in shape: JSON `{"message": …}` on the admin paths, Lambda's
//! service-error shape (`x-amzn-ErrorType` and `{"Type","Message","message"}`)
//! on the Invoke API. axum's own rejections (413 over the body limit, 405,
//! an undecodable path) are plain text or empty; [`shape_errors`] rewrites
//! them, so no handler has to remember. Every message is bounded
//! ([`levee_common::text::bound_message`]): input quoted back is cut, never echoed whole.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An admin API failure: the status and the message the client sees.
#[derive(Debug)]
pub(crate) struct AdminError {
    status: StatusCode,
    message: String,
}

impl AdminError {
    /// `message` may quote input between backticks; it is bounded here.
    pub(crate) fn new(status: StatusCode, message: impl AsRef<str>) -> Self {
        Self {
            status,
            message: levee_common::text::bound_message(message.as_ref()),
        }
    }

    pub(crate) fn bad_request(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl AsRef<str>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// A 500 whose cause goes to the log, not to the client.
    pub(crate) fn internal(what: &str) -> Self {
        tracing::error!("admin API: {what}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }
}

impl From<levee_store::StoreError> for AdminError {
    fn from(e: levee_store::StoreError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            return Self::internal(&format!("store failure: {e}"));
        }
        Self::new(status, e.to_string())
    }
}

impl From<levee_queue::QueueError> for AdminError {
    fn from(e: levee_queue::QueueError) -> Self {
        let status =
            StatusCode::from_u16(e.aws_code().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, e.to_string())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "message": self.message }))).into_response()
    }
}

/// Paths of the Lambda Invoke API, whose errors are Lambda-shaped.
const LAMBDA_PREFIX: &str = "/2015-03-31/";
/// Most of an unshaped error body read to reuse as its message; axum's
/// rejections are one short line.
const MAX_REJECTION_BYTES: usize = 4096;

/// The Lambda error code for a status the Invoke handler did not shape
/// itself (the token check, axum's rejections).
fn lambda_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "UnrecognizedClientException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        413 => "RequestTooLargeException",
        415 => "UnsupportedMediaTypeException",
        429 => "TooManyRequestsException",
        s if s >= 500 => "ServiceException",
        _ => "InvalidRequestContentException",
    }
}

/// Whether a response is already in the shape its path promises.
fn shaped(lambda: bool, resp: &Response) -> bool {
    let headers = resp.headers();
    if lambda {
        return headers.contains_key("x-amzn-errortype");
    }
    // The SQS API answers application/x-amz-json-1.0, or text/xml in the
    // Query protocol.
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.starts_with("application/json")
                || ct.starts_with("application/x-amz-json")
                || ct.starts_with("text/xml")
        })
}

/// Middleware, outermost: rewrites every error answer that is not in shape.
pub(crate) async fn shape_errors(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let lambda = req.uri().path().starts_with(LAMBDA_PREFIX);
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || shaped(lambda, &resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_BYTES).await {
        Ok(b) => message_of(&b),
        Err(_) => None,
    };
    let message = text.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let shaped = if lambda {
        super::invoke::service_error(status, lambda_error_type(status), &message)
    } else {
        AdminError::new(status, &message).into_response()
    };
    // Keep what the original said besides its body (`Allow` on a 405,
    // `WWW-Authenticate` on a 401).
    parts.headers.remove(header::CONTENT_LENGTH);
    let (new_parts, body) = shaped.into_parts();
    parts.headers.extend(new_parts.headers);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, body)
}

/// The message of an error body: its JSON `message`, else its text.
fn message_of(body: &[u8]) -> Option<String> {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        return v["message"].as_str().map(str::to_owned);
    }
    let text = String::from_utf8_lossy(body).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_codes_by_status() {
        assert_eq!(
            lambda_error_type(StatusCode::UNAUTHORIZED),
            "UnrecognizedClientException"
        );
        assert_eq!(
            lambda_error_type(StatusCode::METHOD_NOT_ALLOWED),
            "InvalidRequestContentException"
        );
        assert_eq!(
            lambda_error_type(StatusCode::BAD_GATEWAY),
            "ServiceException"
        );
    }

    #[test]
    fn messages_come_from_json_or_text_and_are_bounded() {
        assert_eq!(message_of(br#"{"message":"no"}"#).as_deref(), Some("no"));
        assert_eq!(
            message_of(b" length limit exceeded \n").as_deref(),
            Some("length limit exceeded")
        );
        assert_eq!(message_of(b""), None);
        let e = AdminError::not_found(format!("no key `{}`", "k".repeat(5000)));
        assert!(e.message.len() < 200, "{}", e.message);
    }
}
