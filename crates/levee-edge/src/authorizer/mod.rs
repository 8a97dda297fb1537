//! The authorizer stage: a route that names an authorizer admits only
//! requests whose identity source holds a JWT it accepts (401), with one
//! of the route's scopes (403). It runs after the throttles and before API
//! keys, the cache and billing, so a refused caller costs no invocation.
//!
//! Owns the authorizers' key sets (`jwks.rs`: files and URLs) and their
//! refresh; the decisions are in `jwt.rs`. Must never log a token or a
//! claim, and never wait on a fetch in a request.

pub mod jwks;
pub mod jwt;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use levee_config::{Authorizer, IdentitySource, JwksSource};
use tokio::sync::Notify;

use self::jwks::JwksLoadError;
use self::jwt::{Denied, Expect, KeySet, Verified};

/// Least time between two fetches of one URL: a flood of tokens naming
/// unknown key ids costs the issuer one request per this.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);

/// Every configured authorizer, by name.
#[derive(Debug, Default)]
pub struct Authorizers(HashMap<String, Arc<JwtAuthorizer>>);

/// One JWT authorizer.
#[derive(Debug)]
pub struct JwtAuthorizer {
    source: IdentitySource,
    expect: Expect,
    keys: ArcSwap<KeySet>,
    /// Set for `jwks_url`: wakes the refresher early.
    refetch: Option<Arc<Notify>>,
}

/// Why the authorizers could not start.
#[derive(Debug, thiserror::Error)]
#[error("authorizers.{name}: {source}")]
pub struct AuthorizerError {
    name: String,
    #[source]
    source: JwksLoadError,
}

impl Authorizers {
    /// Reads every JWKS file, fetches every URL once (a URL that does not
    /// answer leaves its authorizer refusing every token until a refresh
    /// succeeds) and starts the refreshers. Needs a Tokio runtime.
    pub async fn start(
        config: &BTreeMap<String, Authorizer>,
    ) -> Result<Authorizers, AuthorizerError> {
        let mut by_name = HashMap::new();
        for (name, a) in config {
            let fail = |source| AuthorizerError {
                name: name.clone(),
                source,
            };
            let expect = Expect {
                issuer: a.jwt.issuer.clone(),
                audiences: a.jwt.audience.clone(),
            };
            let authorizer = match &a.jwt.jwks {
                JwksSource::File(path) => Arc::new(JwtAuthorizer {
                    source: a.identity_source.clone(),
                    expect,
                    keys: ArcSwap::from_pointee(jwks::read_file(path).map_err(fail)?),
                    refetch: None,
                }),
                JwksSource::Url { url, ca, refresh } => {
                    let tls = match url.starts_with("https://") {
                        true => Some(jwks::tls_client(ca.as_deref()).map_err(fail)?),
                        false => None,
                    };
                    let keys = jwks::fetch(url, tls.as_ref()).await.unwrap_or_else(|e| {
                        tracing::warn!(authorizer = %name, error = %e, "JWKS not fetched; refusing tokens until it is");
                        KeySet::default()
                    });
                    let refetch = Arc::new(Notify::new());
                    let authorizer = Arc::new(JwtAuthorizer {
                        source: a.identity_source.clone(),
                        expect,
                        keys: ArcSwap::from_pointee(keys),
                        refetch: Some(Arc::clone(&refetch)),
                    });
                    tokio::spawn(refresher(
                        name.clone(),
                        Arc::clone(&authorizer),
                        url.clone(),
                        tls,
                        *refresh,
                        refetch,
                    ));
                    authorizer
                }
            };
            by_name.insert(name.clone(), authorizer);
        }
        Ok(Authorizers(by_name))
    }

    /// The authorizer a route names.
    pub fn get(&self, name: &str) -> Option<Arc<JwtAuthorizer>> {
        self.0.get(name).cloned()
    }

    /// Re-reads the JWKS files of `config`'s authorizers that this server
    /// runs; all are read before any is swapped, so a bad file changes
    /// nothing. Returns how many were re-read.
    pub fn reload(&self, config: &BTreeMap<String, Authorizer>) -> Result<usize, String> {
        let mut next = Vec::new();
        for (name, a) in config {
            let (Some(running), JwksSource::File(path)) = (self.0.get(name), &a.jwt.jwks) else {
                continue;
            };
            let keys = jwks::read_file(path).map_err(|e| format!("authorizers.{name}: {e}"))?;
            next.push((running, keys));
        }
        let count = next.len();
        for (running, keys) in next {
            running.keys.store(Arc::new(keys));
        }
        Ok(count)
    }
}

impl JwtAuthorizer {
    /// Whether the request's token is accepted now and holds one of
    /// `scopes` (none listed: any token).
    pub fn authorize(
        &self,
        headers: &http::HeaderMap,
        uri: &http::Uri,
        scopes: &[String],
    ) -> Result<Verified, Denied> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let value = match &self.source {
            IdentitySource::Header(name) => headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(std::borrow::Cow::Borrowed),
            IdentitySource::Query(name) => uri.query().and_then(|q| {
                serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                    .ok()?
                    .into_iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| std::borrow::Cow::Owned(v))
            }),
        };
        let token = value
            .as_deref()
            .and_then(jwt::token_of)
            .ok_or(Denied::Missing)?;
        let verified = jwt::verify(token, &self.keys.load(), &self.expect, now);
        if verified == Err(Denied::UnknownKey) {
            if let Some(refetch) = &self.refetch {
                // The issuer may have rotated its keys; the refresher looks
                // again (at most once per MIN_REFETCH). This request is
                // refused either way: it never waits on a fetch.
                refetch.notify_one();
            }
        }
        let verified = verified?;
        jwt::authorize_scopes(&verified, scopes)?;
        Ok(verified)
    }

    /// Keys in the current set.
    pub fn keys(&self) -> usize {
        self.keys.load().len()
    }
}

/// Fetches `url` every `refresh`, and when woken, never twice within
/// [`MIN_REFETCH`]; a failed fetch keeps the last set.
async fn refresher(
    name: String,
    authorizer: Arc<JwtAuthorizer>,
    url: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    refresh: Duration,
    wake: Arc<Notify>,
) {
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(refresh) => {}
            () = wake.notified() => {
                let since = last.elapsed();
                if since < MIN_REFETCH {
                    tokio::time::sleep(MIN_REFETCH - since).await;
                }
            }
        }
        last = Instant::now();
        match jwks::fetch(&url, tls.as_ref()).await {
            Ok(keys) => {
                tracing::debug!(authorizer = %name, keys = keys.len(), "JWKS refreshed");
                authorizer.keys.store(Arc::new(keys));
            }
            Err(e) => {
                tracing::warn!(authorizer = %name, error = %e, "JWKS refresh failed; keeping the last keys")
            }
        }
    }
}
