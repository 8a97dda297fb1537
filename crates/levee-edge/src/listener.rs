//! Accepting connections and speaking HTTP/1.1 and HTTP/2 on them.
//!
//! Owns sockets and connection lifetimes (including graceful shutdown); knows
//! nothing about what a request means. The connection guard of the shield
//! (per-IP caps, slow-client timeouts) belongs here as it lands; for now the
//! listener bounds the time to read request headers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::pipeline::Edge;

/// Time a client gets to send a complete request head (slowloris bound).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests before closing.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `edge` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(listener: TcpListener, edge: Arc<Edge>, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let edge = Arc::clone(&edge);
        let svc = hyper::service::service_fn(move |req| {
            let edge = Arc::clone(&edge);
            async move { Ok::<_, std::convert::Infallible>(respond_with(edge, req, peer).await) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

async fn respond_with(
    edge: Arc<Edge>,
    req: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> http::Response<Full<bytes::Bytes>> {
    edge.handle(req, peer).await.map(Full::new)
}
