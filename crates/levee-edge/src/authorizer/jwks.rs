//! Where an authorizer's keys come from: a JWKS file read at start and on
//! reload, or a URL fetched (http or https, with a timeout and a size cap).
//!
//! Owns the I/O of key sets. Must never hold a request: a fetch runs in its
//! own task and the request path only reads the last set.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use super::jwt::{KeySet, MAX_JWKS_BYTES};

/// Longest a fetch may take, connect to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

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
    #[error("{what}")]
    Ca { what: String },
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
    crate::fetch::tls_client(ca).map_err(|what| JwksLoadError::Ca { what })
}

/// GETs `url` and parses the answer, within [`FETCH_TIMEOUT`] and
/// [`MAX_JWKS_BYTES`].
pub async fn fetch(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<KeySet, JwksLoadError> {
    let fail = |what: String| JwksLoadError::Fetch(format!("{url}: {what}"));
    let req = http::Request::get(url)
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "levee-jwks")
        .body(Full::new(Bytes::new()))
        .map_err(|e| fail(format!("request: {e}")))?;
    let answer = crate::fetch::send(req, tls, MAX_JWKS_BYTES, FETCH_TIMEOUT)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if answer.status != http::StatusCode::OK {
        return Err(fail(format!("answered {}", answer.status)));
    }
    KeySet::parse(&answer.body).map_err(|source| JwksLoadError::Parse {
        what: url.to_owned(),
        source,
    })
}
