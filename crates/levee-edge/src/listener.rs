//! Accepting connections and speaking HTTP/1.1 and HTTP/2 on them.
//!
//! Owns sockets and connection lifetimes: the connection guard's caps and
//! timeouts (see [`crate::guard`]), hyper's limits on request heads, and
//! graceful shutdown, in one accept loop that serves both the edge and the
//! admin router. Knows nothing about what a request means.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use levee_config::{AccessLog, Limits};
use levee_meter::access::{access_line, AccessEntry, AccessFormat};
use levee_meter::metrics;
use tokio::net::TcpListener;

use hyper_util::server::graceful::Watcher;

use crate::guard::{
    AtCap, ConnectionGuard, HandshakeGuard, InFlight, ResetOnClose, TimedStream, Timeouts,
};
use crate::pipeline::{Edge, RequestInfo};
use crate::tls::{ClientCert, TlsHandle};

/// How long shutdown waits for in-flight requests before closing.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the accept loop waits after a failed accept (no descriptors
/// left): the backlog holds the connections meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one warning per this about failing accepts, with the count.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// A bound socket and, when it speaks HTTPS, its TLS settings.
#[derive(Debug)]
pub struct Bound {
    pub socket: TcpListener,
    pub tls: Option<Arc<TlsHandle>>,
}

/// What one connection brings to every request on it.
#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    /// The verified client certificate (mutual TLS), parsed once.
    client_cert: Option<Arc<ClientCert>>,
}

/// Serves `edge` on `bound` until `shutdown` resolves, then drains.
pub async fn serve(
    bound: Bound,
    edge: Arc<Edge>,
    limits: &Limits,
    access_log: AccessLog,
    shutdown: impl Future<Output = ()>,
) {
    let label = if bound.tls.is_some() {
        "edge_tls"
    } else {
        "edge"
    };
    let per_connection = move |peer: Peer| {
        let edge = Arc::clone(&edge);
        hyper::service::service_fn(move |req| {
            let edge = Arc::clone(&edge);
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(respond_with(edge, req, peer, access_log).await) }
        })
    };
    serve_guarded(bound, label, limits, per_connection, shutdown).await;
}

/// Serves an axum router (the admin API) on `bound` behind the same
/// connection guard as the edge, with its own `limits`: the head is capped
/// and timed before any handler, the token check included, sees a byte.
pub async fn serve_router(
    bound: Bound,
    router: axum::Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) {
    let per_connection = move |_peer: Peer| TowerToHyperService::new(router.clone());
    serve_guarded(bound, "admin", limits, per_connection, shutdown).await;
}

/// Answers every request on the cleartext `socket` with 308 to the same
/// path and query on HTTPS port `https_port` (`[tls] redirect`), as
/// nginx's `return 308 https://$host$request_uri` does.
pub async fn serve_redirect(
    socket: TcpListener,
    https_port: u16,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) {
    let per_connection = move |_peer: Peer| {
        hyper::service::service_fn(move |req: Request<Incoming>| async move {
            Ok::<_, Infallible>(crate::respond::https_redirect(&req, https_port).map(Full::new))
        })
    };
    let bound = Bound { socket, tls: None };
    serve_guarded(bound, "redirect", limits, per_connection, shutdown).await;
}

/// The one accept loop: the guard's caps at accept, the handshake guard's
/// on TLS, its idle and send timeouts on the stream, hyper's head limits,
/// graceful drain. `service_for` makes the service for one connection.
async fn serve_guarded<S, B>(
    bound: Bound,
    label: &'static str,
    limits: &Limits,
    service_for: impl Fn(Peer) -> S + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = http::Response<B>>
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Bound { socket, tls } = bound;
    // Shared with the handshake tasks: a TLS connection's service is made
    // once its client certificate is known.
    let service_for = Arc::new(service_for);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper enforces the head timeout only when given a timer.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192) as usize)
        .max_headers(limits.max_headers as usize)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(Some(limits.h2_max_streams as usize));
    // Accepted sockets inherit the listener's send buffer. Capped, a client
    // that does not read cannot park a whole response in the kernel: the
    // write waits, and the send timeout ends the connection.
    let send_buffer = usize::try_from(limits.send_buffer).unwrap_or(usize::MAX);
    if let Err(e) = socket2::SockRef::from(&socket).set_send_buffer_size(send_buffer) {
        tracing::warn!(error = %e, "could not cap the send buffer (limits.send_buffer)");
    }
    let guard = ConnectionGuard::new(limits.max_connections, limits.max_connections_per_ip);
    let handshakes = Arc::new(HandshakeGuard::new(
        limits.max_handshakes,
        limits.max_handshakes_per_ip,
        limits.handshake_rate_per_ip,
    ));
    let timeouts = Timeouts {
        idle: limits.idle_timeout,
        send: limits.send_timeout,
        head: limits.header_timeout,
    };
    let handshake_timeout = limits.handshake_timeout;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (mut failed_accepts, mut last_warned) = (0u64, None::<std::time::Instant>);
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of
                    // spinning, and say so once per ACCEPT_WARN_EVERY.
                    failed_accepts += 1;
                    if last_warned.is_none_or(|t| t.elapsed() >= ACCEPT_WARN_EVERY) {
                        tracing::warn!(error = %e, failed = failed_accepts, "accept failed; retrying every 50 ms");
                        last_warned = Some(std::time::Instant::now());
                        failed_accepts = 0;
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Refused connections are closed before a byte is read: the cheapest
        // answer there is.
        let admitted = match guard.admit(addr.ip()) {
            Ok(a) => a,
            Err(full) => {
                tracing::debug!(peer = %addr, ?full, "connection refused");
                metrics::connection_refused(
                    label,
                    match full {
                        AtCap::Total => "max_connections",
                        AtCap::PerIp => "max_connections_per_ip",
                    },
                );
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(tls) = &tls else {
            let peer = Peer {
                addr,
                client_cert: None,
            };
            let served = connection(
                stream,
                timeouts,
                service_for(peer),
                &builder,
                graceful.watcher(),
            );
            tokio::spawn(async move {
                served.await;
                drop(admitted);
            });
            continue;
        };
        let handshaking = match handshakes.start(addr.ip()) {
            Ok(h) => h,
            Err(why) => {
                tracing::debug!(peer = %addr, ?why, "handshake refused");
                metrics::connection_refused(label, why.as_str());
                continue;
            }
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let service_for = Arc::clone(&service_for);
        tokio::spawn(async move {
            let accepted = tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await;
            drop(handshaking);
            let stream = match accepted {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    metrics::tls_handshake(label, "failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    metrics::tls_handshake(label, "timeout");
                    return;
                }
            };
            metrics::tls_handshake(label, "done");
            let client_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(ClientCert::of)
                .map(Arc::new);
            let peer = Peer { addr, client_cert };
            connection(stream, timeouts, service_for(peer), &builder, watcher).await;
            drop(admitted);
        });
    }
    drop(socket);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

/// Serves HTTP on one accepted stream (cleartext or TLS) with the guard's
/// timeouts, marking requests in flight for the idle timer; resolves when
/// the connection ends.
fn connection<I, S, B>(
    io: I,
    timeouts: Timeouts,
    inner: S,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) -> impl Future<Output = ()> + Send + 'static
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + ResetOnClose + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let in_flight = InFlight::default();
    let io = TimedStream::new(io, in_flight.clone(), timeouts);
    let svc = hyper::service::service_fn(move |req| {
        let token = in_flight.start();
        let answer = inner.call(req);
        async move {
            let resp = answer.await;
            drop(token);
            resp
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), svc).into_owned();
    let served = watcher.watch(conn);
    async move {
        let _ = served.await;
    }
}

async fn respond_with(
    edge: Arc<Edge>,
    req: http::Request<hyper::body::Incoming>,
    peer: Peer,
    access_log: AccessLog,
) -> http::Response<Answer> {
    let started = std::time::Instant::now();
    // The request line is kept only when it will be logged: the hot path
    // stays allocation-free with the access log off.
    let request_line =
        (access_log != AccessLog::Off).then(|| (req.method().clone(), req.uri().path().to_owned()));
    let method = req.method().clone();
    let (mut parts, mut body) = req.into_parts();
    if let Some(cert) = peer.client_cert {
        parts.extensions.insert(cert);
    }
    let h2 = parts.version == http::Version::HTTP_2;
    let resp = edge
        .handle(Request::from_parts(parts, &mut body), peer.addr)
        .await;
    if h2 && !hyper::body::Body::is_end_stream(&body) {
        drain_early(&mut body).await;
    }
    // hyper drops these bodies on HTTP/1.1 only; on HTTP/2 it would send them.
    let resp = crate::conformance::without_forbidden_body(&method, resp);
    if let Some(info) = resp.extensions().get::<RequestInfo>() {
        let status = resp.status().as_u16();
        metrics::request(info.route.as_deref(), status, info.decision);
        if let Some((method, path)) = &request_line {
            log_access(
                access_log,
                info,
                method,
                path,
                status,
                started.elapsed(),
                &resp,
            );
        }
    }
    resp.map(|answer| Answer {
        body: Full::new(answer),
        _request_body: h2.then_some(body),
    })
}

/// The most of an unread HTTP/2 request body read and dropped before an
/// early answer, and how long that may take: a client still sending (curl
/// sends the end of its body as a frame of its own) sees its stream
/// reset mid-upload otherwise, and reports a failure instead of the 413.
/// 64 KiB is the stream's initial flow-control window: a client cannot
/// send more without the edge asking for it.
const EARLY_DRAIN_BYTES: usize = 64 * 1024;
const EARLY_DRAIN_WAIT: Duration = Duration::from_millis(200);

/// Reads what is left of a request body, within [`EARLY_DRAIN_BYTES`] and
/// [`EARLY_DRAIN_WAIT`], and drops it.
async fn drain_early(body: &mut Incoming) {
    use http_body_util::BodyExt;
    let drain = async {
        let mut read = 0;
        while read <= EARLY_DRAIN_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(EARLY_DRAIN_WAIT, drain).await;
}

/// The edge's answer, holding on to the request's body until the answer is
/// sent. On HTTP/2 an early answer (413 before the whole body arrived)
/// must be followed by RST_STREAM(NO_ERROR), not CANCEL, or clients such as
/// curl report the stream as failed instead of showing the 413 (RFC 9113
/// §8.1); h2 picks NO_ERROR only when the body is dropped after the
/// response's end was sent, which is when hyper drops this.
#[derive(Debug)]
struct Answer {
    body: Full<bytes::Bytes>,
    /// Held, never read: dropped with the answer, after its end was sent.
    _request_body: Option<Incoming>,
}

impl hyper::body::Body for Answer {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// One access-log line, formatted only when the `levee::access` target is
/// enabled (formatting costs more than the check).
fn log_access(
    format: AccessLog,
    info: &RequestInfo,
    method: &http::Method,
    path: &str,
    status: u16,
    latency: Duration,
    resp: &http::Response<bytes::Bytes>,
) {
    let format = match format {
        AccessLog::Off => return,
        AccessLog::Text => AccessFormat::Text,
        AccessLog::Json => AccessFormat::Json,
    };
    if !tracing::enabled!(target: "levee::access", tracing::Level::INFO) {
        return;
    }
    let request_id = resp
        .headers()
        .get("apigw-requestid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    let line = access_line(
        &AccessEntry {
            time: std::time::SystemTime::now(),
            client_ip: info.client_ip,
            method: method.as_str(),
            path,
            route: info.route.as_deref(),
            status,
            decision: info.decision,
            latency,
            request_id,
            function: info.function.as_deref(),
            key_id: info.key_id.as_deref(),
            rule: info.rule.as_deref(),
        },
        format,
    );
    tracing::info!(target: "levee::access", "{line}");
}
