//! Where an authorizer's keys come from: a JWKS file read at start and on
//! reload, or a URL fetched (http or https, with a timeout and a size cap).
//!
//! Owns the I/O of key sets. Must never hold a request: a fetch runs in its
//! own task and the request path only reads the last set.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::jwt::{KeySet, MAX_JWKS_BYTES};

/// Longest a fetch may take, connect to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The system's CA bundle (Debian's `ca-certificates`), for https URLs
/// without a `jwks_ca`.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Most CAs read from a bundle.
const MAX_CAS: usize = 1000;

/// Why a key set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksLoadError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Fetch(String),
    #[error("{what}: {source}")]
    Parse {
        what: String,
        #[source]
        source: super::jwt::JwksError,
    },
    #[error("{path}: {what}")]
    Ca { path: String, what: String },
}

/// Reads and parses a JWKS file, at most [`MAX_JWKS_BYTES`].
pub fn read_file(path: &Path) -> Result<KeySet, JwksLoadError> {
    let read = |source| JwksLoadError::Read {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > MAX_JWKS_BYTES as u64 {
        return Err(JwksLoadError::Parse {
            what: path.display().to_string(),
            source: super::jwt::JwksError::TooLarge,
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    KeySet::parse(&bytes).map_err(|source| JwksLoadError::Parse {
        what: path.display().to_string(),
        source,
    })
}

/// The TLS client for https JWKS URLs: `ca`, or the system's bundle.
pub fn tls_client(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, JwksLoadError> {
    let path = ca.unwrap_or(Path::new(SYSTEM_CAS));
    let bad = |what: String| JwksLoadError::Ca {
        path: path.display().to_string(),
        what,
    };
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

/// GETs `url` and parses the answer, within [`FETCH_TIMEOUT`] and
/// [`MAX_JWKS_BYTES`].
pub async fn fetch(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<KeySet, JwksLoadError> {
    let fail = |what: String| JwksLoadError::Fetch(format!("{url}: {what}"));
    let bytes = tokio::time::timeout(FETCH_TIMEOUT, get(url, tls))
        .await
        .map_err(|_| fail(format!("no answer within {FETCH_TIMEOUT:?}")))?
        .map_err(fail)?;
    KeySet::parse(&bytes).map_err(|source| JwksLoadError::Parse {
        what: url.to_owned(),
        source,
    })
}

async fn get(url: &str, tls: Option<&Arc<rustls::ClientConfig>>) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri
        .host()
        .ok_or("no host")?
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let req = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "levee-jwks")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    if https {
        let tls = tls.ok_or("an https URL needs a TLS client")?;
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("host: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        exchange(TokioIo::new(stream), req).await
    } else {
        exchange(TokioIo::new(tcp), req).await
    }
}

async fn exchange<I>(io: I, req: http::Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    if resp.status() != http::StatusCode::OK {
        return Err(format!("answered {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(body.to_bytes())
}
