//! The baseline: a plain hyper HTTP/1.1 server in the bench's own process
//! that answers every request with a fixed JSON body (the very bytes Levee's
//! echo route returns), so the difference to Levee is the platform.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Serves `body` on 127.0.0.1 until the returned task is aborted.
pub async fn start(body: Bytes) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            let svc = service_fn(move |_req| {
                let resp = Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()));
                async move { Ok::<_, Infallible>(resp.unwrap_or_default()) }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((addr, task))
}
