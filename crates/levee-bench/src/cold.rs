//! Cold starts. The process's own start: spawn `hello-fn` directly with the
//! Lambda environment and time spawn → its first `GET .../invocation/next` on
//! a bench listener. Through Levee: the first request to a never-invoked
//! function (cold) and the second one (warm), timed by a keep-alive client.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

const BOUND: Duration = Duration::from_secs(10);

/// Spawn → first `next` request head fully received, in microseconds.
pub async fn own_start(hello_fn: &Path, dir: &Path) -> anyhow::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let api = listener.local_addr()?.to_string();
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(hello_fn)
        .current_dir(dir)
        .env_clear()
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", "own-start"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
            ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/own-start"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let head = tokio::time::timeout(BOUND, async {
        let (mut s, _) = listener.accept().await?;
        let mut buf = Vec::new();
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await? {
                0 => break,
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
        anyhow::Ok(buf)
    })
    .await;
    let us = t0.elapsed().as_secs_f64() * 1e6;
    child.kill().await?;
    let head = head.context("hello-fn did not call next within 10 s")??;
    if !head.starts_with(b"GET /2018-06-01/runtime/invocation/next") {
        bail!(
            "unexpected first request: {}",
            String::from_utf8_lossy(&head)
        );
    }
    Ok(us)
}

/// One keep-alive HTTP/1.1 connection, for timing single requests.
#[derive(Debug)]
pub struct Client {
    send: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Client {
            send,
            host: addr.to_string(),
        })
    }

    /// `GET path`; returns the body and the time to the full response (µs).
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(Bytes, f64)> {
        let req = hyper::Request::get(path)
            .header("host", &self.host)
            .header(
                "authorization",
                format!("Bearer {}", crate::levee::ADMIN_TOKEN),
            )
            .body(Empty::new())?;
        let t0 = Instant::now();
        let exchange = async {
            self.send.ready().await?;
            let resp = self.send.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(BOUND, exchange)
            .await
            .with_context(|| format!("GET {path} took over 10 s"))??;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        if !status.is_success() {
            bail!("GET {path}: {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok((body, us))
    }
}
