//! The Lambda Runtime API (2018-06-01) served to one instance.
//!
//! Each instance gets its own listener on 127.0.0.1 and `AWS_LAMBDA_RUNTIME_API`
//! points at it (the variable must be a bare `host:port`, so a per-instance
//! path prefix is not an option). The server only ever hands out invocations
//! queued for its own instance, and accepts a response or error only for the
//! invocation it handed out last. It must never wait on anything but the
//! instance's own queue, and it bounds every body it reads.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Largest response a function may return (Lambda's 6 MB + 100 B, from the
/// Runtime Interface Emulator's `MaxPayloadSize`).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 + 100;
/// Largest error or init-error document accepted.
pub const MAX_ERROR_BYTES: usize = 1024 * 1024;

/// One invocation on its way to the instance.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub request_id: Arc<str>,
    pub payload: Bytes,
    pub deadline_ms: u64,
    pub client_context: Option<String>,
    pub reply: oneshot::Sender<Outcome>,
}

/// What the instance said about an invocation.
#[derive(Debug)]
pub(crate) enum Outcome {
    Response(Bytes),
    Error(FunctionError),
    TooLarge(usize),
}

/// An error document from `/error` or `/init/error`.
#[derive(Debug, Clone)]
pub(crate) struct FunctionError {
    pub error_type: String,
    pub error_message: String,
    pub body: Bytes,
}

/// How initialisation ended, from the Runtime API's point of view.
#[derive(Debug)]
pub(crate) enum InitSignal {
    /// The runtime called `next` for the first time.
    Ready,
    /// The runtime reported `/runtime/init/error`.
    Failed(FunctionError),
}

#[derive(Debug, Default)]
struct Current {
    request_id: Option<Arc<str>>,
    reply: Option<oneshot::Sender<Outcome>>,
    last_done: Option<Arc<str>>,
}

#[derive(Debug)]
struct ApiState {
    function_arn: HeaderValue,
    deliveries: tokio::sync::Mutex<mpsc::Receiver<Delivery>>,
    current: Mutex<Current>,
    init: Mutex<Option<oneshot::Sender<InitSignal>>>,
    /// Shared with the log pump so log lines carry the request id.
    log_request_id: Arc<Mutex<Option<Arc<str>>>>,
}

/// A running Runtime API server; stops (and drops its connections) on drop.
#[derive(Debug)]
pub(crate) struct RuntimeApi {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub(crate) async fn start(
        function_arn: &str,
        deliveries: mpsc::Receiver<Delivery>,
        init: oneshot::Sender<InitSignal>,
        log_request_id: Arc<Mutex<Option<Arc<str>>>>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ApiState {
            function_arn: HeaderValue::from_str(function_arn)
                .unwrap_or_else(|_| HeaderValue::from_static("arn:aws:lambda")),
            deliveries: tokio::sync::Mutex::new(deliveries),
            current: Mutex::new(Current::default()),
            init: Mutex::new(Some(init)),
            log_request_id,
        });
        let task = tokio::spawn(accept_loop(listener, state));
        Ok(Self { addr, task })
    }

    /// The address to put in `AWS_LAMBDA_RUNTIME_API`.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<ApiState>) {
    // Connection tasks live in the set, so aborting this task ends them all.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                connections.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

type Body = Full<Bytes>;

async fn handle(state: &ApiState, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return api_error(
            StatusCode::NOT_FOUND,
            "InvalidRequest",
            "unknown Runtime API path",
        );
    };
    match (req.method(), rest) {
        (&Method::GET, "invocation/next") => next(state).await,
        (&Method::POST, "init/error") => init_error(state, req).await,
        (&Method::POST, rest) => match rest.strip_prefix("invocation/") {
            Some(tail) => match tail.rsplit_once('/') {
                Some((id, "response")) => response(state, id, req).await,
                Some((id, "error")) => error(state, id, req).await,
                _ => api_error(
                    StatusCode::NOT_FOUND,
                    "InvalidRequest",
                    "unknown Runtime API path",
                ),
            },
            None => api_error(
                StatusCode::NOT_FOUND,
                "InvalidRequest",
                "unknown Runtime API path",
            ),
        },
        _ => api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "method not allowed",
        ),
    }
}

async fn next(state: &ApiState) -> Response<Body> {
    if let Some(init) = state.init.lock().expect("init lock").take() {
        let _ = init.send(InitSignal::Ready);
    }
    if state
        .current
        .lock()
        .expect("current lock")
        .request_id
        .is_some()
    {
        return api_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "next called before the current invocation was answered",
        );
    }
    // Long poll: runtimes wait here without a timeout until work arrives.
    let delivery = state.deliveries.lock().await.recv().await;
    let Some(d) = delivery else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceShuttingDown",
            "instance is shutting down",
        );
    };
    {
        let mut current = state.current.lock().expect("current lock");
        current.request_id = Some(Arc::clone(&d.request_id));
        current.reply = Some(d.reply);
    }
    *state.log_request_id.lock().expect("log id lock") = Some(Arc::clone(&d.request_id));

    let mut resp = Response::new(Full::new(d.payload));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&d.request_id) {
        h.insert("lambda-runtime-aws-request-id", v);
    }
    h.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from(d.deadline_ms),
    );
    h.insert(
        "lambda-runtime-invoked-function-arn",
        state.function_arn.clone(),
    );
    if let Ok(v) = HeaderValue::from_str(&trace_id(&d.request_id, d.deadline_ms)) {
        h.insert("lambda-runtime-trace-id", v);
    }
    if let Some(v) = d
        .client_context
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        h.insert("lambda-runtime-client-context", v);
    }
    resp
}

/// An X-Ray style trace header derived from the request id (no X-Ray here,
/// but runtimes copy it into `_X_AMZN_TRACE_ID` and some code expects one).
fn trace_id(request_id: &str, deadline_ms: u64) -> String {
    let hex: String = request_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(24)
        .collect();
    format!(
        "Root=1-{:08x}-{hex:0<24};Parent={};Sampled=0",
        deadline_ms / 1000,
        &hex[..hex.len().min(16)]
    )
}

/// Why an answer for a request id was refused.
#[derive(Debug, Clone, Copy)]
enum IdError {
    /// An id this instance was never given (400 `InvalidRequestID`).
    Unknown,
    /// A second answer to the invocation already answered (403).
    AlreadyAnswered,
}

impl IdError {
    fn response(self) -> Response<Body> {
        match self {
            IdError::Unknown => api_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "invalid request id",
            ),
            IdError::AlreadyAnswered => api_error(
                StatusCode::FORBIDDEN,
                "InvalidStateTransition",
                "invocation already answered",
            ),
        }
    }
}

/// Checks `id` against the invocation in flight.
fn check_id(state: &ApiState, id: &str) -> Result<(), IdError> {
    let current = state.current.lock().expect("current lock");
    if current.request_id.as_deref() == Some(id) {
        Ok(())
    } else if current.last_done.as_deref() == Some(id) {
        Err(IdError::AlreadyAnswered)
    } else {
        Err(IdError::Unknown)
    }
}

/// Ends the invocation in flight with `outcome`, if `id` is still current.
fn finish(state: &ApiState, id: &str, outcome: Outcome) -> Result<(), IdError> {
    let reply = {
        let mut current = state.current.lock().expect("current lock");
        if current.request_id.as_deref() != Some(id) {
            drop(current);
            return check_id(state, id);
        }
        current.last_done = current.request_id.take();
        current.reply.take()
    };
    *state.log_request_id.lock().expect("log id lock") = None;
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
    Ok(())
}

async fn response(state: &ApiState, id: &str, req: Request<Incoming>) -> Response<Body> {
    if let Err(e) = check_id(state, id) {
        return e.response();
    }
    if let Some(mode) = req.headers().get("lambda-runtime-function-response-mode") {
        if mode.as_bytes() != b"streaming" {
            let _ = finish(
                state,
                id,
                Outcome::Error(FunctionError {
                    error_type: "Runtime.InvalidResponseModeHeader".into(),
                    error_message: "invalid Lambda-Runtime-Function-Response-Mode".into(),
                    body: Bytes::new(),
                }),
            );
            return api_error(
                StatusCode::BAD_REQUEST,
                "InvalidFunctionResponseMode",
                "response mode must be streaming or absent",
            );
        }
    }
    let declared = content_length(&req);
    if declared.is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return too_large(state, id, declared.unwrap_or(0) as usize);
    }
    match Limited::new(req.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
    {
        Ok(body) => match finish(state, id, Outcome::Response(body.to_bytes())) {
            Ok(()) => accepted(),
            Err(e) => e.response(),
        },
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            too_large(state, id, MAX_RESPONSE_BYTES + 1)
        }
        Err(_) => api_error(
            StatusCode::BAD_REQUEST,
            "TruncatedHTTPRequest",
            "response body ended early",
        ),
    }
}

fn too_large(state: &ApiState, id: &str, size: usize) -> Response<Body> {
    let _ = finish(state, id, Outcome::TooLarge(size));
    api_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        "response payload exceeded the 6291556 byte limit",
    )
}

async fn error(state: &ApiState, id: &str, req: Request<Incoming>) -> Response<Body> {
    if let Err(e) = check_id(state, id) {
        return e.response();
    }
    let err = read_error(req).await;
    match finish(state, id, Outcome::Error(err)) {
        Ok(()) => accepted(),
        Err(e) => e.response(),
    }
}

async fn init_error(state: &ApiState, req: Request<Incoming>) -> Response<Body> {
    let Some(init) = state.init.lock().expect("init lock").take() else {
        return api_error(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "init error after initialisation",
        );
    };
    let err = read_error(req).await;
    let _ = init.send(InitSignal::Failed(err));
    accepted()
}

/// Reads an error document leniently: real runtimes differ (Python sends
/// `stackTrace`, Node `trace`, Rust only type and message) and some send the
/// type only in `Lambda-Runtime-Function-Error-Type`.
async fn read_error(req: Request<Incoming>) -> FunctionError {
    let header_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_ERROR_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    #[derive(serde::Deserialize)]
    struct Doc {
        #[serde(rename = "errorType")]
        error_type: Option<String>,
        #[serde(rename = "errorMessage")]
        error_message: Option<String>,
    }
    let doc: Option<Doc> = serde_json::from_slice(&body).ok();
    let (body_type, message) = match doc {
        Some(d) => (d.error_type, d.error_message),
        None => (None, None),
    };
    FunctionError {
        error_type: body_type
            .filter(|t| !t.is_empty())
            .or(header_type)
            .unwrap_or_else(|| "Unhandled".into()),
        error_message: message.unwrap_or_default(),
        body: if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
            body
        } else {
            Bytes::new()
        },
    }
}

fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn accepted() -> Response<Body> {
    json(
        StatusCode::ACCEPTED,
        Bytes::from_static(br#"{"status":"OK"}"#),
    )
}

fn api_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "errorType": error_type, "errorMessage": message });
    json(status, Bytes::from(body.to_string()))
}

fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_look_like_xray_headers() {
        let t = trace_id("6f1a1c2e-1c3b-4c8d-9e0f-112233445566", 1_700_000_000_000);
        assert!(
            t.starts_with("Root=1-6553f100-6f1a1c2e1c3b4c8d9e0f1122;Parent=6f1a1c2e1c3b4c8d;"),
            "{t}"
        );
    }
}
