//! `[tls]` (HTTPS on the edge) and `[admin_tls]` (HTTPS on the admin
//! listener): which certificate files, which client CAs, and, for the edge,
//! where HTTPS listens and whether the cleartext listener only redirects.
//!
//! Owns the shape and the file rules (present, named at most once, within
//! the count bound). Must never parse a certificate: the edge's TLS module
//! loads them, at start, on reload and for `levee check`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::problems::{Found, KeyPath};
use crate::values::resolve;

const DEFAULT_TLS_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
/// Most certificates one listener chooses among by SNI: each handshake
/// may look at all of them.
pub const MAX_CERTIFICATES: usize = 64;

/// `[tls]`: the edge's HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Where HTTPS listens; default `127.0.0.1:8443`.
    pub listen: SocketAddr,
    /// `server.listen` answers every request with 308 to the same path on
    /// this listener instead of serving it.
    pub redirect: bool,
    /// The certificates and client CAs.
    pub identity: TlsIdentity,
}

/// What a TLS listener presents and whom it asks for a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsIdentity {
    /// Chosen by SNI among their names; the first is the default for a
    /// name none of them holds, or none.
    pub certificates: Vec<CertificateFiles>,
    /// PEM bundle of the CAs a client certificate must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// Whether a client without a certificate is refused (default) or served
    /// without one; only with `client_ca`.
    pub client_auth: ClientAuth,
}

/// One certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The leaf first, then its intermediates.
    pub cert: PathBuf,
    /// PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// `client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A verified client certificate is needed to finish the handshake.
    #[default]
    Required,
    /// A certificate, when sent, must verify; none is fine.
    Optional,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    listen: Option<SocketAddr>,
    redirect: Option<bool>,
    #[serde(default)]
    certificates: Vec<RawCertificate>,
    client_ca: Option<String>,
    client_auth: Option<ClientAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    cert: String,
    key: String,
}

/// Validates `[tls]`.
pub(crate) fn tls(raw: RawTls, base_dir: &Path, found: &mut Found) -> Tls {
    let listen = raw.listen.unwrap_or(DEFAULT_TLS_LISTEN);
    let redirect = raw.redirect.unwrap_or(false);
    Tls {
        listen,
        redirect,
        identity: identity(raw, base_dir, found),
    }
}

/// Validates `[admin_tls]`: the same keys but `listen` and `redirect`, since
/// the admin listener speaks HTTPS on `server.admin_listen` itself.
pub(crate) fn admin_tls(raw: RawTls, base_dir: &Path, found: &mut Found) -> TlsIdentity {
    if raw.listen.is_some() {
        found.push(
            "listen",
            "the admin listener speaks TLS on server.admin_listen; `listen` belongs in [tls]",
        );
    }
    if raw.redirect.is_some() {
        found.push(
            "redirect",
            "only the edge's cleartext listener can redirect; `redirect` belongs in [tls]",
        );
    }
    identity(raw, base_dir, found)
}

fn identity(raw: RawTls, base_dir: &Path, found: &mut Found) -> TlsIdentity {
    if raw.certificates.is_empty() {
        found.push(
            "certificates",
            "needs at least one certificate, e.g. certificates = [{ cert = \"site.pem\", key = \"site.key\" }]",
        );
    }
    if raw.certificates.len() > MAX_CERTIFICATES {
        found.push(
            "certificates",
            format!(
                "at most {MAX_CERTIFICATES} certificates, not {}",
                raw.certificates.len()
            ),
        );
    }
    let mut certificates = Vec::new();
    for (i, c) in raw.certificates.iter().enumerate() {
        let at = KeyPath::of("certificates").index(i);
        let cert = file(base_dir, &c.cert, &at.key("cert"), found);
        let key = file(base_dir, &c.key, &at.key("key"), found);
        if let (Some(cert), Some(key)) = (cert, key) {
            certificates.push(CertificateFiles { cert, key });
        }
    }
    let client_ca = raw
        .client_ca
        .as_deref()
        .and_then(|text| file(base_dir, text, &KeyPath::of("client_ca"), found));
    if raw.client_auth.is_some() && raw.client_ca.is_none() {
        found.push(
            "client_auth",
            "only means something with client_ca (the CAs client certificates must chain to)",
        );
    }
    TlsIdentity {
        certificates,
        client_ca,
        client_auth: raw.client_auth.unwrap_or_default(),
    }
}

/// A path that names a readable file now; its contents are the edge's to
/// judge.
fn file(base_dir: &Path, text: &str, at: &KeyPath, found: &mut Found) -> Option<PathBuf> {
    let path = resolve(base_dir, text, at, found)?;
    if !path.is_file() {
        found.push(at.clone(), format!("`{}` is not a file", path.display()));
        return None;
    }
    Some(path)
}
