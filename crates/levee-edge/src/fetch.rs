//! Levee's own outbound HTTP: one request on one fresh HTTP/1.1 connection,
//! over http or https (rustls with the given CAs, or the system's bundle),
//! within a timeout and a cap on the answer's body. Used for JWKS URLs and
//! by the CLI's admin client.
//!
//! Must never follow a redirect, keep a connection, or read past the cap.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// The system's CA bundle (Debian's `ca-certificates`), for https without
/// CAs of its own.
pub const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Most CAs read from a bundle.
const MAX_CAS: usize = 1000;

/// An answer: its status and its whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: http::StatusCode,
    pub body: Bytes,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not an http:// or https:// URL: {0}")]
    Url(String),
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A TLS client trusting `ca` (a PEM bundle), or the system's bundle.
pub fn tls_client(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let path = ca.unwrap_or(Path::new(SYSTEM_CAS));
    let bad = |what: String| format!("{}: {what}", path.display());
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes).take(MAX_CAS) {
        let cert = cert.map_err(|e| bad(format!("unreadable PEM: {e}")))?;
        // A bundle may hold certificates webpki cannot use; skip those.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(bad("no usable CA certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Sends `req` (its URI absolute) and reads the answer, at most
/// `max_body` bytes, all within `timeout`. An https URI needs `tls`.
pub async fn send(
    req: http::Request<Full<Bytes>>,
    tls: Option<&Arc<rustls::ClientConfig>>,
    max_body: usize,
    timeout: Duration,
) -> Result<Answer, FetchError> {
    tokio::time::timeout(timeout, exchange(req, tls, max_body))
        .await
        .map_err(|_| FetchError::Timeout(timeout))?
}

async fn exchange(
    req: http::Request<Full<Bytes>>,
    tls: Option<&Arc<rustls::ClientConfig>>,
    max_body: usize,
) -> Result<Answer, FetchError> {
    let (mut parts, body) = req.into_parts();
    let uri = parts.uri.clone();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(FetchError::Url(uri.to_string())),
    };
    let host = uri
        .host()
        .ok_or_else(|| FetchError::Url(uri.to_string()))?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    // The request goes out in origin form, its authority in Host.
    if let Some(authority) = uri.authority() {
        let value = http::HeaderValue::from_str(authority.as_str())
            .map_err(|e| FetchError::Url(e.to_string()))?;
        parts.headers.insert(http::header::HOST, value);
    }
    parts.uri = uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .parse()
        .map_err(|e: http::uri::InvalidUri| FetchError::Url(e.to_string()))?;
    let req = http::Request::from_parts(parts, body);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(FetchError::Connect)?;
    if !https {
        return over(TokioIo::new(tcp), req, max_body).await;
    }
    let tls = tls.ok_or_else(|| FetchError::Tls("an https URL needs a TLS client".into()))?;
    let name = ServerName::try_from(host).map_err(|e| FetchError::Tls(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
        .connect(name, tcp)
        .await
        .map_err(|e| FetchError::Tls(e.to_string()))?;
    over(TokioIo::new(stream), req, max_body).await
}

async fn over<I>(
    io: I,
    req: http::Request<Full<Bytes>>,
    max_body: usize,
) -> Result<Answer, FetchError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let http = |e: &dyn std::fmt::Display| FetchError::Http(e.to_string());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| http(&e))?;
    // The connection's task ends when the answer is read and `sender` drops.
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| http(&e))?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| http(&format!("body: {e}")))?
        .to_bytes();
    Ok(Answer { status, body })
}
