//! TLS for the edge and admin listeners: certificates from PEM files chosen
//! by SNI, TLS 1.2 and 1.3 with ALPN for HTTP/2 and HTTP/1.1, optional
//! client certificates (mutual TLS), and what a verified client certificate
//! says, for `requestContext.authentication.clientCert`.
//!
//! Owns loading and checking the files (bounded in size and count) and the
//! swappable server config a reload replaces. Must never log key material
//! or a certificate's bytes, and never accept or time a connection: the
//! listener and the handshake guard do.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine as _;
use levee_config::{ClientAuth, TlsIdentity};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Largest PEM file read: a certificate chain, key or CA bundle past this
/// is a mistake or an attack on start-up memory.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;
/// Most certificates in one chain (leaf and intermediates).
pub const MAX_CHAIN: usize = 10;
/// Most CAs in a `client_ca` bundle.
pub const MAX_CLIENT_CAS: usize = 1000;
/// Most SNI names taken from one certificate.
const MAX_NAMES: usize = 1000;

/// Why a TLS identity could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_PEM_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path}: {what}")]
    Pem { path: String, what: String },
    #[error("{cert}: the private key in {key} does not belong to this certificate")]
    KeyMismatch { cert: String, key: String },
    #[error("{path}: {what}")]
    Rustls { path: String, what: String },
}

/// A listener's TLS settings, replaced whole by a reload; connections keep
/// the config they were accepted with.
#[derive(Debug)]
pub struct TlsHandle(ArcSwap<ServerConfig>);

impl TlsHandle {
    /// Loads `identity`'s files.
    pub fn load(identity: &TlsIdentity) -> Result<Arc<TlsHandle>, TlsError> {
        Ok(Arc::new(TlsHandle(ArcSwap::new(server_config(identity)?))))
    }

    /// The config new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.0.load_full()
    }

    /// Swaps in a config built by [`server_config`].
    pub fn replace(&self, next: Arc<ServerConfig>) {
        self.0.store(next);
    }
}

/// The rustls server config for `identity`: every certificate loaded and
/// matched with its key, the client CAs when set.
pub fn server_config(identity: &TlsIdentity) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut by_sni = SniCertificates::default();
    for files in &identity.certificates {
        let chain = certificates(&files.cert, MAX_CHAIN)?;
        let key_pem = read_pem(&files.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
            path: files.key.display().to_string(),
            what: format!("no private key found ({e})"),
        })?;
        let signing =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| TlsError::Rustls {
                    path: files.key.display().to_string(),
                    what: format!("unusable private key: {e}"),
                })?;
        let certified = CertifiedKey::new(chain, signing);
        if certified.keys_match().is_err() {
            return Err(TlsError::KeyMismatch {
                cert: files.cert.display().to_string(),
                key: files.key.display().to_string(),
            });
        }
        let names = names_of(&certified.cert[0]).map_err(|what| TlsError::Pem {
            path: files.cert.display().to_string(),
            what,
        })?;
        by_sni.add(names, Arc::new(certified));
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls {
            path: String::new(),
            what: e.to_string(),
        })?;
    let builder = match &identity.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in certificates(path, MAX_CLIENT_CAS)? {
                roots.add(ca).map_err(|e| TlsError::Rustls {
                    path: path.display().to_string(),
                    what: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match identity.client_auth {
                ClientAuth::Required => verifier,
                ClientAuth::Optional => verifier.allow_unauthenticated(),
            };
            let verifier = verifier.build().map_err(|e| TlsError::Rustls {
                path: path.display().to_string(),
                what: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(by_sni));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let shown = || path.display().to_string();
    let len = std::fs::metadata(path)
        .map_err(|source| TlsError::Read {
            path: shown(),
            source,
        })?
        .len();
    if len > MAX_PEM_BYTES {
        return Err(TlsError::TooLarge { path: shown() });
    }
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: shown(),
        source,
    })
}

/// Every certificate in a PEM file, at least one and at most `max`.
fn certificates(path: &Path, max: usize) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let bad = |what: String| TlsError::Pem {
        path: path.display().to_string(),
        what,
    };
    let mut out = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("unreadable PEM: {e}")))?;
        if out.len() == max {
            return Err(bad(format!("more than {max} certificates")));
        }
        out.push(cert);
    }
    if out.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    Ok(out)
}

/// The DNS names a leaf certificate answers for, lowercased: its
/// subjectAltName DNS entries, or its common name when it has none.
fn names_of(der: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("unreadable subjectAltName: {e}")),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    names.truncate(MAX_NAMES);
    Ok(names)
}

/// Certificates by the names they hold; a name none holds (or no SNI at
/// all) gets the first one configured. The first certificate holding a
/// name wins it.
#[derive(Debug, Default)]
struct SniCertificates {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniCertificates {
    fn add(&mut self, names: Vec<String>, cert: Arc<CertifiedKey>) {
        for name in names {
            self.by_name
                .entry(name)
                .or_insert_with(|| Arc::clone(&cert));
        }
        self.default.get_or_insert(cert);
    }

    fn lookup(&self, sni: &str) -> Option<&Arc<CertifiedKey>> {
        // rustls hands over SNI already validated as a DNS name; case is
        // the client's.
        let sni = sni.to_ascii_lowercase();
        if let Some(cert) = self.by_name.get(&sni) {
            return Some(cert);
        }
        // A wildcard covers exactly one label.
        let (_, parent) = sni.split_once('.')?;
        self.by_name.get(&format!("*.{parent}"))
    }
}

impl ResolvesServerCert for SniCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|sni| self.lookup(sni))
            .or(self.default.as_ref())
            .cloned()
    }
}

/// A verified client certificate as API Gateway reports it in
/// `requestContext.authentication.clientCert`, with its subject
/// alternative names besides.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClientCert {
    pub client_cert_pem: String,
    #[serde(rename = "subjectDN")]
    pub subject_dn: String,
    #[serde(rename = "issuerDN")]
    pub issuer_dn: String,
    pub serial_number: String,
    pub validity: Validity,
    /// `DNS:name`, `IP:address`, `URI:…`, `email:…`, as OpenSSL prints them.
    pub subject_alternative_names: Vec<String>,
}

/// `clientCert.validity`, in OpenSSL's format (`May 28 12:30:02 2019 GMT`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Validity {
    pub not_before: String,
    pub not_after: String,
}

impl ClientCert {
    /// What the handshake's verified leaf certificate says; `None` when it
    /// does not parse (rustls verified it, so that is not expected).
    pub fn of(der: &CertificateDer<'_>) -> Option<ClientCert> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let mut sans = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in san.value.general_names.iter().take(MAX_NAMES) {
                let shown = match name {
                    GeneralName::DNSName(d) => format!("DNS:{d}"),
                    GeneralName::RFC822Name(e) => format!("email:{e}"),
                    GeneralName::URI(u) => format!("URI:{u}"),
                    GeneralName::IPAddress(ip) => format!("IP:{}", ip_text(ip)),
                    _ => continue,
                };
                sans.push(shown);
            }
        }
        let validity = cert.validity();
        Some(ClientCert {
            client_cert_pem: pem(der),
            subject_dn: cert.subject().to_string(),
            issuer_dn: cert.issuer().to_string(),
            serial_number: cert.raw_serial_as_string(),
            validity: Validity {
                not_before: openssl_time(validity.not_before.timestamp()),
                not_after: openssl_time(validity.not_after.timestamp()),
            },
            subject_alternative_names: sans,
        })
    }
}

fn ip_text(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => std::net::Ipv4Addr::from(<[u8; 4]>::try_from(bytes).unwrap_or_default()).to_string(),
        16 => std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).unwrap_or_default()).to_string(),
        _ => "invalid".to_owned(),
    }
}

fn pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn openssl_time(unix_secs: i64) -> String {
    chrono::DateTime::from_timestamp(unix_secs, 0)
        .map(|t| t.format("%b %e %H:%M:%S %Y GMT").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Arc<CertifiedKey> {
        // Only identity matters to the lookup; the bytes are never parsed.
        Arc::new(CertifiedKey::new(
            vec![CertificateDer::from(vec![n])],
            Arc::new(NoKey),
        ))
    }

    #[derive(Debug)]
    struct NoKey;
    impl rustls::sign::SigningKey for NoKey {
        fn choose_scheme(
            &self,
            _offered: &[rustls::SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            None
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::ECDSA
        }
    }

    #[test]
    fn sni_picks_exact_then_one_label_wildcard_then_nothing() {
        let mut sni = SniCertificates::default();
        let (a, b) = (key(1), key(2));
        sni.add(vec!["a.test".into(), "*.b.test".into()], Arc::clone(&a));
        sni.add(vec!["a.test".into(), "x.b.test".into()], Arc::clone(&b));
        let got = |name: &str| sni.lookup(name).map(|c| c.cert[0].as_ref()[0]);
        assert_eq!(got("A.Test"), Some(1), "first certificate wins a name");
        assert_eq!(got("x.b.test"), Some(2), "exact beats wildcard");
        assert_eq!(got("y.b.test"), Some(1));
        assert_eq!(got("z.y.b.test"), None, "a wildcard covers one label");
        assert_eq!(got("b.test"), None);
        assert_eq!(sni.default.as_ref().map(|c| c.cert[0].as_ref()[0]), Some(1));
    }

    #[test]
    fn pem_wraps_at_64_columns() {
        let text = pem(&[0u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
    }

    #[test]
    fn times_read_as_openssl_prints_them() {
        assert_eq!(openssl_time(1_559_046_602), "May 28 12:30:02 2019 GMT");
        assert_eq!(openssl_time(1_628_156_164), "Aug  5 09:36:04 2021 GMT");
    }
}
