//! The Lambda Runtime API (2018-06-01) served to one instance.
//!
//! Each instance gets its own listener on 127.0.0.1 and `AWS_LAMBDA_RUNTIME_API`
//! points at it (the variable must be a bare `host:port`, so a per-instance
//! path prefix is not an option). The server only ever hands out invocations
//! queued for its own instance, and accepts a response or error only for the
//! invocation it handed out last. It must never wait on anything but the
//! instance's own queue, and it bounds every body it reads.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use levee_common::sync::lock;

/// Largest response a function may return (Lambda's 6 MB + 100 B, from the
/// Runtime Interface Emulator's `MaxPayloadSize`).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024 + 100;
/// Most bytes of an oversized response read (and discarded) before the
/// connection is given up.
const MAX_DRAIN_BYTES: usize = 4 * MAX_RESPONSE_BYTES;
/// Connections one instance may hold open to its Runtime API at once; real
/// runtimes use one or two, and a function must not make the server hold
/// an unbounded number of connection tasks.
pub const MAX_API_CONNECTIONS: usize = 8;
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
    /// Set when a runtime's `next` takes this invocation. Until then no
    /// function code has seen it, so if the instance dies first the
    /// invocation may run on another one.
    pub taken: Arc<AtomicBool>,
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
    task: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RuntimeApi {
    /// Serves on `listener` (bound where the instance can reach it) until
    /// dropped.
    pub(crate) fn start(
        listener: TcpListener,
        function_arn: &str,
        deliveries: mpsc::Receiver<Delivery>,
        init: oneshot::Sender<InitSignal>,
        log_request_id: Arc<Mutex<Option<Arc<str>>>>,
    ) -> Self {
        let state = Arc::new(ApiState {
            function_arn: HeaderValue::from_str(function_arn)
                .unwrap_or_else(|_| HeaderValue::from_static("arn:aws:lambda")),
            deliveries: tokio::sync::Mutex::new(deliveries),
            current: Mutex::new(Current::default()),
            init: Mutex::new(Some(init)),
            log_request_id,
        });
        let task = tokio::spawn(accept_loop(listener, state));
        Self { task }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<ApiState>) {
    // Connection tasks live in the set, so aborting this task ends them all.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                if connections.len() >= MAX_API_CONNECTIONS {
                    drop(stream);
                    continue;
                }
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
    let not_found = || {
        api_error(
            StatusCode::NOT_FOUND,
            "InvalidRequest",
            "unknown Runtime API path",
        )
    };
    let endpoint = match rest {
        "invocation/next" => Endpoint::Next,
        "init/error" => Endpoint::InitError,
        _ => match rest
            .strip_prefix("invocation/")
            .and_then(|t| t.rsplit_once('/'))
        {
            Some((id, "response")) if !id.is_empty() => Endpoint::Response(id.to_owned()),
            Some((id, "error")) if !id.is_empty() => Endpoint::Error(id.to_owned()),
            _ => return not_found(),
        },
    };
    let wanted = match endpoint {
        Endpoint::Next => Method::GET,
        _ => Method::POST,
    };
    if req.method() != wanted {
        return api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "method not allowed",
        );
    }
    match endpoint {
        Endpoint::Next => next(state).await,
        Endpoint::InitError => init_error(state, req).await,
        Endpoint::Response(id) => response(state, &id, req).await,
        Endpoint::Error(id) => error(state, &id, req).await,
    }
}

/// The four Runtime API endpoints.
enum Endpoint {
    Next,
    InitError,
    Response(String),
    Error(String),
}

async fn next(state: &ApiState) -> Response<Body> {
    if let Some(init) = lock(&state.init).take() {
        let _ = init.send(InitSignal::Ready);
    }
    if lock(&state.current).request_id.is_some() {
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
    d.taken.store(true, Ordering::Release);
    {
        let mut current = lock(&state.current);
        current.request_id = Some(Arc::clone(&d.request_id));
        current.reply = Some(d.reply);
    }
    *lock(&state.log_request_id) = Some(Arc::clone(&d.request_id));

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
    let current = lock(&state.current);
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
        let mut current = lock(&state.current);
        if current.request_id.as_deref() != Some(id) {
            drop(current);
            return check_id(state, id);
        }
        current.last_done = current.request_id.take();
        current.reply.take()
    };
    *lock(&state.log_request_id) = None;
    if let Some(reply) = reply {
        let _ = reply.send(outcome);
    }
    Ok(())
}

async fn response(state: &ApiState, id: &str, req: Request<Incoming>) -> Response<Body> {
    if let Err(e) = check_id(state, id) {
        return e.response();
    }
    let mode = req.headers().get("lambda-runtime-function-response-mode");
    let streaming = mode.is_some();
    let integration = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(HTTP_INTEGRATION));
    if let Some(mode) = mode {
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
    match read_capped(req.into_body(), MAX_RESPONSE_BYTES).await {
        Ok(Capped::Whole(body, trailers)) => {
            let outcome = if streaming {
                streamed(body, trailers.as_ref(), integration)
            } else {
                Outcome::Response(body)
            };
            match finish(state, id, outcome) {
                Ok(()) => accepted(),
                Err(e) => e.response(),
            }
        }
        Ok(Capped::Over(size)) => too_large(state, id, size),
        Err(()) => api_error(
            StatusCode::BAD_REQUEST,
            "TruncatedHTTPRequest",
            "response body ended early",
        ),
    }
}

/// The content type of a streamed HTTP-integration answer: a JSON prelude
/// (`statusCode`, `headers`, `cookies`), 8 NUL bytes, then the body.
const HTTP_INTEGRATION: &[u8] = b"application/vnd.awslambda.http-integration-response";

/// What a streamed answer means: an error if the runtime reported one in
/// the trailers (mid-stream), else the answer, with an HTTP-integration
/// prelude turned into the payload-2.0 document the edge maps.
fn streamed(body: Bytes, trailers: Option<&http::HeaderMap>, integration: bool) -> Outcome {
    if let Some(t) = trailers {
        if let Some(error_type) = t.get("lambda-runtime-function-error-type") {
            // Runtimes base64 the error document in this trailer.
            let doc = t
                .get("lambda-runtime-function-error-body")
                .and_then(|v| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(v.as_bytes())
                        .ok()
                })
                .unwrap_or_default();
            let error_type = error_type.to_str().ok().map(str::to_owned);
            return Outcome::Error(error_from(error_type, Bytes::from(doc)));
        }
    }
    if !integration {
        return Outcome::Response(body);
    }
    match integration_payload(&body) {
        Some(payload) => Outcome::Response(payload),
        None => Outcome::Error(FunctionError {
            error_type: "Runtime.InvalidStreamingResponse".into(),
            error_message:
                "an http-integration response needs a JSON prelude and 8 NUL bytes before its body"
                    .into(),
            body: Bytes::new(),
        }),
    }
}

/// `{prelude}` + 8 NUL + body → `{statusCode, headers, cookies, body (base64),
/// isBase64Encoded}`; None if the prelude is missing or not a JSON object.
fn integration_payload(raw: &[u8]) -> Option<Bytes> {
    use base64::Engine as _;
    let at = raw.windows(8).position(|w| w == [0u8; 8])?;
    let prelude: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&raw[..at]).ok()?;
    let mut doc: serde_json::Map<String, serde_json::Value> = prelude
        .into_iter()
        .filter(|(k, _)| matches!(k.as_str(), "statusCode" | "headers" | "cookies"))
        .collect();
    let body = base64::engine::general_purpose::STANDARD.encode(&raw[at + 8..]);
    doc.insert("body".into(), body.into());
    doc.insert("isBase64Encoded".into(), true.into());
    serde_json::to_vec(&doc).ok().map(Bytes::from)
}

/// A body read with a cap.
enum Capped {
    /// The whole body, and its trailers if it had any.
    Whole(Bytes, Option<http::HeaderMap>),
    /// Over the cap; the size seen (at least cap + 1).
    Over(usize),
}

/// Reads at most `cap` bytes. Past the cap the rest is read and discarded,
/// up to [`MAX_DRAIN_BYTES`] in all, so a runtime that sent an oversized
/// response still sees a clean 413 on a healthy connection (runtimes such as
/// `lambda_runtime` give up when their upload breaks) instead of a reset.
async fn read_capped(mut body: Incoming, cap: usize) -> Result<Capped, ()> {
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ())?;
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                // Trailers are bounded by hyper's header limits.
                trailers = frame.into_trailers().ok().or(trailers);
                continue;
            }
        };
        seen = seen.saturating_add(data.len());
        if seen <= cap {
            kept.extend_from_slice(&data);
        } else {
            kept = bytes::BytesMut::new();
            if seen > MAX_DRAIN_BYTES {
                break;
            }
        }
    }
    Ok(if seen <= cap {
        Capped::Whole(kept.freeze(), trailers)
    } else {
        Capped::Over(seen)
    })
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
    let Some(init) = lock(&state.init).take() else {
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
    error_from(header_type, body)
}

/// An error from its document (JSON with `errorType`, `errorMessage`; kept
/// only if it is JSON) and the type a header or trailer named.
fn error_from(header_type: Option<String>, body: Bytes) -> FunctionError {
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
    use std::net::{Ipv4Addr, SocketAddr};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request on a fresh connection; returns (status, body).
    async fn serve(
        arn: &str,
        rx: mpsc::Receiver<Delivery>,
        init: oneshot::Sender<InitSignal>,
    ) -> (RuntimeApi, SocketAddr) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        (
            RuntimeApi::start(listener, arn, rx, init, Arc::default()),
            addr,
        )
    }

    async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{method} /2018-06-01/runtime/{path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let status = raw[9..12].parse().unwrap();
        let body = raw.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    #[tokio::test]
    async fn answers_are_accepted_only_for_the_invocation_in_flight() {
        let (tx, rx) = mpsc::channel(1);
        let (init_tx, init_rx) = oneshot::channel();
        let (_api, addr) = serve("arn:aws:lambda:us-east-1:0:function:f", rx, init_tx).await;
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(Delivery {
            request_id: Arc::from("req-1"),
            payload: Bytes::from_static(b"{\"k\":1}"),
            deadline_ms: 1,
            client_context: None,
            reply: reply_tx,
            taken: Arc::default(),
        })
        .await
        .unwrap();

        let (status, body) = call(addr, "GET", "invocation/next", "").await;
        assert_eq!((status, body.as_str()), (200, "{\"k\":1}"));
        assert!(
            matches!(init_rx.await, Ok(InitSignal::Ready)),
            "first next ends init"
        );

        let (status, body) = call(addr, "POST", "invocation/other/response", "1").await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("InvalidRequestID"));

        let (status, _) = call(addr, "POST", "invocation/req-1/response", "\"done\"").await;
        assert_eq!(status, 202);
        match reply_rx.await {
            Ok(Outcome::Response(b)) => assert_eq!(&b[..], b"\"done\""),
            other => panic!("unexpected outcome {other:?}"),
        }

        let (status, body) = call(addr, "POST", "invocation/req-1/error", "{}").await;
        assert_eq!(
            status, 403,
            "a second answer is an invalid transition: {body}"
        );
        let (status, _) = call(addr, "POST", "init/error", "{}").await;
        assert_eq!(status, 403, "init error after init");
        let (status, _) = call(addr, "GET", "nope", "").await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn error_documents_from_every_real_client_are_read() {
        let (_tx, rx) = mpsc::channel(1);
        let (init_tx, init_rx) = oneshot::channel();
        let (_api, addr) = serve("arn", rx, init_tx).await;
        // awslambdaric's init error shape (with requestId and stackTrace).
        let doc = r#"{"errorMessage":"No module named 'x'","errorType":"Runtime.ImportModuleError","requestId":"","stackTrace":[]}"#;
        let (status, _) = call(addr, "POST", "init/error", doc).await;
        assert_eq!(status, 202);
        match init_rx.await {
            Ok(InitSignal::Failed(e)) => {
                assert_eq!(e.error_type, "Runtime.ImportModuleError");
                assert_eq!(e.error_message, "No module named 'x'");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Starts an API with one invocation (`req-1`) taken by `next`.
    async fn in_flight() -> (
        (RuntimeApi, SocketAddr),
        oneshot::Receiver<Outcome>,
        mpsc::Sender<Delivery>,
    ) {
        let (tx, rx) = mpsc::channel(1);
        let (init_tx, _init_rx) = oneshot::channel();
        let (api, addr) = serve("arn", rx, init_tx).await;
        let (reply_tx, reply_rx) = oneshot::channel();
        tx.send(Delivery {
            request_id: Arc::from("req-1"),
            payload: Bytes::from_static(b"{}"),
            deadline_ms: 1,
            client_context: None,
            reply: reply_tx,
            taken: Arc::default(),
        })
        .await
        .unwrap();
        assert_eq!(call(addr, "GET", "invocation/next", "").await.0, 200);
        ((api, addr), reply_rx, tx)
    }

    /// A streamed `/response` with `chunk` as its one chunk and `trailers`.
    async fn stream(addr: SocketAddr, content_type: &str, chunk: &[u8], trailers: &str) -> u16 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = format!(
            "POST /2018-06-01/runtime/invocation/req-1/response HTTP/1.1\r\nhost: x\r\nconnection: close\r\nlambda-runtime-function-response-mode: streaming\r\ncontent-type: {content_type}\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
            chunk.len()
        )
        .into_bytes();
        req.extend_from_slice(chunk);
        req.extend_from_slice(format!("\r\n0\r\n{trailers}\r\n").as_bytes());
        s.write_all(&req).await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        raw[9..12].parse().unwrap()
    }

    #[tokio::test]
    async fn a_streamed_error_in_the_trailers_is_an_error() {
        let ((_api, addr), reply, _tx) = in_flight().await;
        // base64 of {"errorType":"Boom","errorMessage":"mid-stream"}
        let doc = "eyJlcnJvclR5cGUiOiJCb29tIiwiZXJyb3JNZXNzYWdlIjoibWlkLXN0cmVhbSJ9";
        let trailers = format!(
            "lambda-runtime-function-error-type: Boom\r\nlambda-runtime-function-error-body: {doc}\r\n"
        );
        assert_eq!(stream(addr, "text/plain", b"partial", &trailers).await, 202);
        match reply.await {
            Ok(Outcome::Error(e)) => {
                assert_eq!(
                    (e.error_type.as_str(), e.error_message.as_str()),
                    ("Boom", "mid-stream")
                );
            }
            other => panic!("a mid-stream error is not a success: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_streamed_http_integration_answer_is_mapped_from_its_prelude() {
        let ((_api, addr), reply, _tx) = in_flight().await;
        let mut chunk = br#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["c=1"]}"#.to_vec();
        chunk.extend_from_slice(&[0; 8]);
        chunk.extend_from_slice(b"hello \x00 body");
        let ct = "application/vnd.awslambda.http-integration-response";
        assert_eq!(stream(addr, ct, &chunk, "").await, 202);
        let Ok(Outcome::Response(doc)) = reply.await else {
            panic!("not a response");
        };
        let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(v["statusCode"], 201);
        assert_eq!(v["headers"]["x-a"], "1");
        assert_eq!(v["cookies"][0], "c=1");
        assert_eq!(v["isBase64Encoded"], true);
        use base64::Engine as _;
        let body = base64::engine::general_purpose::STANDARD
            .decode(v["body"].as_str().unwrap())
            .unwrap();
        assert_eq!(body, b"hello \x00 body");
        assert!(integration_payload(b"no prelude here").is_none());
        assert!(integration_payload(b"[1]\0\0\0\0\0\0\0\0x").is_none());
    }

    #[test]
    fn trace_ids_look_like_xray_headers() {
        let t = trace_id("6f1a1c2e-1c3b-4c8d-9e0f-112233445566", 1_700_000_000_000);
        assert!(
            t.starts_with("Root=1-6553f100-6f1a1c2e1c3b4c8d9e0f1122;Parent=6f1a1c2e1c3b4c8d;"),
            "{t}"
        );
    }
}
