//! The authorizer stage: a route that names an authorizer admits only the
//! requests it accepts. A JWT authorizer checks the identity source's token
//! (401) and the route's scopes (403); a Lambda authorizer asks a function
//! with the payload 2.0 authorizer event and caches its answer per
//! identity. It runs after the throttles and before API keys, the cache
//! and billing, so a refused caller costs no invocation of the route's
//! function, and a flood of one bad token costs one of the authorizer's.
//!
//! Owns the authorizers' key sets (`jwks.rs`: files and URLs), their
//! refresh and the Lambda answers' cache; the token decisions are in
//! `jwt.rs`. Must never log a token, a claim or an authorizer's context,
//! and never wait on a JWKS fetch in a request.

pub mod jwks;
pub mod jwt;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use levee_config::{Authorizer, IdentitySource, JwksSource, LambdaAuthorizer};
use levee_runtime::{FunctionHandle, InvokeRequest, Scheduler};
use serde_json::{Map, Value};
use tokio::sync::{Notify, OnceCell};

use self::jwks::JwksLoadError;
use self::jwt::{Expect, KeySet, Verified};
use crate::event::{build_event, EventInput};
use crate::invocation::{Invoke, Tags};
use crate::reject::Reject;

/// Least time between two fetches of one URL: a flood of tokens naming
/// unknown key ids costs the issuer one request per this.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// Bytes of identity-source values a Lambda authorizer's cache holds, in
/// total (an identity is at most one request head, 1 MiB).
pub const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a request was not authorized: 401, but 403 for a missing scope or
/// a function's no, and 500 when the function failed, as API Gateway
/// answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no token in the identity source")]
    Missing,
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token's algorithm is not RS256, ES256 or EdDSA")]
    Algorithm,
    #[error("no key of the issuer matches the token's kid and algorithm")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    Issuer,
    #[error("the token's audience is not accepted")]
    Audience,
    #[error("the token has none of the route's scopes")]
    Scope,
    #[error("the authorizer said no")]
    Refused,
    #[error("the authorizer failed or timed out")]
    Failed,
}

/// What an authorizer let through, for `requestContext.authorizer`:
/// `{"jwt": {claims, scopes}}` or `{"lambda": {…context}}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Granted {
    /// Shared with the verification cache.
    Jwt(Arc<Verified>),
    /// Shared with the cached answer, not copied per request.
    Lambda(Arc<Map<String, Value>>),
}

impl serde::Serialize for Granted {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        match self {
            Granted::Jwt(v) => map.serialize_entry("jwt", &**v)?,
            Granted::Lambda(context) => map.serialize_entry("lambda", &**context)?,
        }
        map.end()
    }
}

/// The request an authorizer looks at.
#[derive(Debug)]
pub struct Ask<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub version: http::Version,
    pub headers: &'a http::HeaderMap,
    pub client_ip: std::net::IpAddr,
    pub route_key: &'a str,
    pub params: &'a [(String, String)],
    /// The route's `authorization_scopes` (JWT only).
    pub scopes: &'a [String],
}

/// Every configured authorizer, by name.
#[derive(Debug, Default)]
pub struct Authorizers(HashMap<String, Arc<RouteAuthorizer>>);

/// One authorizer.
#[derive(Debug)]
pub enum RouteAuthorizer {
    Jwt(JwtAuthorizer),
    Lambda(FunctionAuthorizer),
}

/// A JWT authorizer.
#[derive(Debug)]
pub struct JwtAuthorizer {
    source: IdentitySource,
    expect: Expect,
    /// Shared with the refresher, for `jwks_url`.
    keys: Arc<ArcSwap<KeySet>>,
    /// Set for `jwks_url`: wakes the refresher early.
    refetch: Option<Arc<Notify>>,
    /// Token → what verifying it against a key set gave, so a token seen
    /// again costs a lookup instead of a signature check (~20–60 µs).
    verified: moka::sync::Cache<Arc<str>, Arc<Checked>>,
}

/// One token's verification, valid only against the key set it was made
/// with (a reload or refetch makes a new set, and every entry stale).
#[derive(Debug)]
struct Checked {
    keys: Arc<KeySet>,
    outcome: Result<Arc<Verified>, Denied>,
}

/// Tokens remembered by each JWT authorizer, weighed at twice their length
/// (the token and its claims), for five minutes at most.
pub const VERIFIED_BYTES: u64 = 32 * 1024 * 1024;
const VERIFIED_FOR: Duration = Duration::from_secs(300);

fn verified_cache() -> moka::sync::Cache<Arc<str>, Arc<Checked>> {
    moka::sync::Cache::builder()
        .time_to_live(VERIFIED_FOR)
        .weigher(|token: &Arc<str>, _| u32::try_from(token.len() * 2).unwrap_or(u32::MAX))
        .max_capacity(VERIFIED_BYTES)
        .build()
}

/// A Lambda authorizer.
pub struct FunctionAuthorizer {
    function: FunctionHandle,
    sources: Vec<IdentitySource>,
    timeout: Duration,
    invoker: Arc<dyn Invoke>,
    /// Identity → the function's answer, for `ttl`; `None` when `ttl` is
    /// zero. One cell per identity, so concurrent requests with it wait for
    /// one invocation; a failure leaves the cell empty for the next.
    cache: Option<moka::sync::Cache<String, Arc<OnceCell<Verdict>>>>,
}

impl std::fmt::Debug for FunctionAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionAuthorizer")
            .field("function", &self.function.config().name)
            .field("sources", &self.sources)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A Lambda authorizer's answer.
#[derive(Debug, Clone)]
struct Verdict {
    authorized: bool,
    context: Arc<Map<String, Value>>,
}

/// Why the authorizers could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    #[error("authorizers.{name}: {source}")]
    Keys {
        name: String,
        #[source]
        source: JwksLoadError,
    },
    #[error("authorizers.{name}: no function named `{function}`")]
    NoFunction { name: String, function: String },
}

impl Authorizers {
    /// Reads every JWKS file, fetches every URL once (a URL that does not
    /// answer leaves its authorizer refusing every token until a refresh
    /// succeeds), starts the refreshers, and finds the Lambda authorizers'
    /// functions, invoked through `invoker` (metered and budgeted like any
    /// invocation). Needs a Tokio runtime.
    pub async fn start(
        config: &BTreeMap<String, Authorizer>,
        scheduler: &Scheduler,
        invoker: &Arc<dyn Invoke>,
    ) -> Result<Authorizers, AuthorizerError> {
        let mut by_name = HashMap::new();
        for (name, a) in config {
            let built = match a {
                Authorizer::Jwt {
                    identity_source,
                    jwt,
                } => RouteAuthorizer::Jwt(
                    JwtAuthorizer::start(name, identity_source, jwt)
                        .await
                        .map_err(|source| AuthorizerError::Keys {
                            name: name.clone(),
                            source,
                        })?,
                ),
                Authorizer::Lambda(l) => {
                    RouteAuthorizer::Lambda(FunctionAuthorizer::new(name, l, scheduler, invoker)?)
                }
            };
            by_name.insert(name.clone(), Arc::new(built));
        }
        Ok(Authorizers(by_name))
    }

    /// The authorizer a route names.
    pub fn get(&self, name: &str) -> Option<Arc<RouteAuthorizer>> {
        self.0.get(name).cloned()
    }

    /// Re-reads the JWKS files of `config`'s JWT authorizers that this
    /// server runs; all are read before any is swapped, so a bad file
    /// changes nothing. Returns how many were re-read.
    pub fn reload(&self, config: &BTreeMap<String, Authorizer>) -> Result<usize, String> {
        let mut next = Vec::new();
        for (name, a) in config {
            let (Some(running), Authorizer::Jwt { jwt, .. }) = (self.0.get(name), a) else {
                continue;
            };
            let (RouteAuthorizer::Jwt(running), JwksSource::File(path)) = (&**running, &jwt.jwks)
            else {
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

impl RouteAuthorizer {
    /// Whether the request may go on, and what to tell its function.
    pub async fn authorize(&self, ask: &Ask<'_>) -> Result<Granted, Reject> {
        match self {
            RouteAuthorizer::Jwt(j) => j
                .authorize(ask.headers, ask.uri, ask.scopes)
                .map(Granted::Jwt)
                .map_err(Reject::Unauthorized),
            RouteAuthorizer::Lambda(l) => l.authorize(ask).await,
        }
    }
}

/// The value of one identity source in a request.
fn identity_value<'a>(
    source: &IdentitySource,
    headers: &'a http::HeaderMap,
    uri: &http::Uri,
) -> Option<Cow<'a, str>> {
    match source {
        IdentitySource::Header(name) => headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .map(Cow::Borrowed),
        IdentitySource::Query(name) => uri.query().and_then(|q| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| Cow::Owned(v))
        }),
    }
    .filter(|v| !v.is_empty())
}

impl JwtAuthorizer {
    async fn start(
        name: &str,
        source: &IdentitySource,
        jwt: &levee_config::Jwt,
    ) -> Result<JwtAuthorizer, JwksLoadError> {
        let expect = Expect {
            issuer: jwt.issuer.clone(),
            audiences: jwt.audience.clone(),
        };
        let (url, ca, refresh) = match &jwt.jwks {
            JwksSource::File(path) => {
                return Ok(JwtAuthorizer {
                    source: source.clone(),
                    expect,
                    keys: Arc::new(ArcSwap::from_pointee(jwks::read_file(path)?)),
                    refetch: None,
                    verified: verified_cache(),
                })
            }
            JwksSource::Url { url, ca, refresh } => (url, ca, *refresh),
        };
        let tls = match url.starts_with("https://") {
            true => Some(jwks::tls_client(ca.as_deref())?),
            false => None,
        };
        let keys = jwks::fetch(url, tls.as_ref()).await.unwrap_or_else(|e| {
            tracing::warn!(authorizer = %name, error = %e, "JWKS not fetched; refusing tokens until it is");
            KeySet::default()
        });
        let refetch = Arc::new(Notify::new());
        let keys = Arc::new(ArcSwap::from_pointee(keys));
        tokio::spawn(refresher(
            name.to_owned(),
            Arc::clone(&keys),
            url.clone(),
            tls,
            refresh,
            Arc::clone(&refetch),
        ));
        Ok(JwtAuthorizer {
            source: source.clone(),
            expect,
            keys,
            refetch: Some(refetch),
            verified: verified_cache(),
        })
    }

    /// Whether the request's token is accepted now and holds one of
    /// `scopes` (none listed: any token).
    pub fn authorize(
        &self,
        headers: &http::HeaderMap,
        uri: &http::Uri,
        scopes: &[String],
    ) -> Result<Arc<Verified>, Denied> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let value = identity_value(&self.source, headers, uri);
        let token = value
            .as_deref()
            .and_then(jwt::token_of)
            .ok_or(Denied::Missing)?;
        let keys = self.keys.load_full();
        let verified = match self.verified.get(token) {
            Some(hit) if Arc::ptr_eq(&hit.keys, &keys) => hit.outcome.clone(),
            _ => {
                let outcome = jwt::verify(token, &keys, &self.expect, now).map(Arc::new);
                // A token not valid yet will be; every other outcome holds
                // for this key set (expiry is checked on every hit).
                if outcome != Err(Denied::NotYetValid) {
                    let checked = Checked {
                        keys: Arc::clone(&keys),
                        outcome: outcome.clone(),
                    };
                    self.verified.insert(Arc::from(token), Arc::new(checked));
                }
                outcome
            }
        };
        if verified == Err(Denied::UnknownKey) {
            if let Some(refetch) = &self.refetch {
                // The issuer may have rotated its keys; the refresher looks
                // again (at most once per MIN_REFETCH). This request is
                // refused either way: it never waits on a fetch.
                refetch.notify_one();
            }
        }
        let verified = verified?;
        verified.still_valid(now)?;
        jwt::authorize_scopes(&verified, scopes)?;
        Ok(verified)
    }
}

/// Fetches `url` every `refresh`, and when woken, never twice within
/// [`MIN_REFETCH`]; a failed fetch keeps the last set.
async fn refresher(
    name: String,
    keys: Arc<ArcSwap<KeySet>>,
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
            Ok(next) => {
                tracing::debug!(authorizer = %name, keys = next.len(), "JWKS refreshed");
                keys.store(Arc::new(next));
            }
            Err(e) => {
                tracing::warn!(authorizer = %name, error = %e, "JWKS refresh failed; keeping the last keys")
            }
        }
    }
}

impl FunctionAuthorizer {
    fn new(
        name: &str,
        config: &LambdaAuthorizer,
        scheduler: &Scheduler,
        invoker: &Arc<dyn Invoke>,
    ) -> Result<FunctionAuthorizer, AuthorizerError> {
        let function = scheduler
            .function(&config.function)
            .ok_or_else(|| AuthorizerError::NoFunction {
                name: name.to_owned(),
                function: config.function.clone(),
            })?
            .clone();
        let cache = (!config.ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .time_to_live(config.ttl)
                .weigher(|key: &String, _| u32::try_from(key.len()).unwrap_or(u32::MAX))
                .max_capacity(CACHE_BYTES)
                .build()
        });
        Ok(FunctionAuthorizer {
            function,
            sources: config.identity_source.clone(),
            timeout: config.timeout,
            invoker: Arc::clone(invoker),
            cache,
        })
    }

    async fn authorize(&self, ask: &Ask<'_>) -> Result<Granted, Reject> {
        // Every source must be there: a request without one is refused
        // before anything is invoked, as API Gateway does.
        let values: Vec<String> = self
            .sources
            .iter()
            .map(|s| identity_value(s, ask.headers, ask.uri).map(Cow::into_owned))
            .collect::<Option<_>>()
            .ok_or(Reject::Unauthorized(Denied::Missing))?;
        let verdict = match &self.cache {
            Some(cache) => {
                let cell = cache.get_with(identity_key(&values), || Arc::new(OnceCell::new()));
                cell.get_or_try_init(|| self.ask_function(ask, &values))
                    .await?
                    .clone()
            }
            None => self.ask_function(ask, &values).await?,
        };
        if verdict.authorized {
            Ok(Granted::Lambda(verdict.context))
        } else {
            Err(Reject::Unauthorized(Denied::Refused))
        }
    }

    /// One invocation of the authorizing function, within its timeout.
    async fn ask_function(&self, ask: &Ask<'_>, identity: &[String]) -> Result<Verdict, Reject> {
        let name = &self.function.config().name;
        let request_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
        let event = authorizer_event(ask, identity, &request_id)
            .ok_or(Reject::Unauthorized(Denied::Failed))?;
        let request = InvokeRequest {
            request_id: Arc::clone(&request_id),
            payload: Bytes::from(event),
            client_context: None,
            client: Some(ask.client_ip),
        };
        // The invocation runs to its end in a task of its own, so a slow
        // authorizer is still metered (and keeps its instance) after this
        // request stopped waiting for it.
        let (invoker, function) = (Arc::clone(&self.invoker), self.function.clone());
        let route = ask.route_key.to_owned();
        let invocation = tokio::spawn(async move {
            let tags = Tags {
                route: Some(&route),
                key: None,
            };
            invoker.invoke(&function, request, tags).await
        });
        let out = match tokio::time::timeout(self.timeout, invocation).await {
            Err(_) | Ok(Err(_)) => {
                tracing::warn!(authorizer_function = %name, request_id = %request_id, "authorizer timed out; refusing");
                return Err(Reject::Unauthorized(Denied::Failed));
            }
            Ok(Ok(Err(failure))) => return Err(Reject::invoke(name, failure)),
            Ok(Ok(Ok(out))) => out,
        };
        simple_response(&out.payload).ok_or_else(|| {
            tracing::warn!(authorizer_function = %name, request_id = %request_id, "authorizer answered no simple response; refusing");
            Reject::Unauthorized(Denied::Failed)
        })
    }
}

/// The cache key of an identity: each value with its length first, so no
/// two lists of values (a query value may hold any character) share a key.
fn identity_key(values: &[String]) -> String {
    let mut key = String::with_capacity(values.iter().map(|v| v.len() + 8).sum());
    for v in values {
        key.push_str(&v.len().to_string());
        key.push(':');
        key.push_str(v);
    }
    key
}

/// API Gateway's payload 2.0 authorizer event: the request's event without
/// its body, with `type`, `routeArn` and `identitySource`.
fn authorizer_event(ask: &Ask<'_>, identity: &[String], request_id: &str) -> Option<Vec<u8>> {
    let event = build_event(&EventInput {
        method: ask.method,
        uri: ask.uri,
        version: ask.version,
        headers: ask.headers,
        body: &[],
        source_ip: ask.client_ip,
        route_key: ask.route_key,
        path_params: ask.params,
        request_id,
        now: std::time::SystemTime::now(),
        client_cert: None,
        authorizer: None,
    })
    .ok()?;
    let Value::Object(mut event) = serde_json::from_slice(&event).ok()? else {
        return None;
    };
    event.remove("body");
    event.remove("isBase64Encoded");
    event.insert("type".into(), "REQUEST".into());
    event.insert(
        "routeArn".into(),
        format!(
            "arn:aws:execute-api:{}:{}:{}/$default/{}{}",
            levee_runtime::sandbox::REGION,
            crate::event::ACCOUNT_ID,
            crate::event::API_ID,
            ask.method,
            ask.uri.path()
        )
        .into(),
    );
    event.insert("identitySource".into(), identity.into());
    serde_json::to_vec(&event).ok()
}

/// `{"isAuthorized": bool, "context": {…}}`; anything else is no answer.
fn simple_response(payload: &[u8]) -> Option<Verdict> {
    let Value::Object(mut answer) = serde_json::from_slice(payload).ok()? else {
        return None;
    };
    let authorized = answer.get("isAuthorized")?.as_bool()?;
    let context = match answer.remove("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(c)) => c,
        Some(_) => return None,
    };
    Some(Verdict {
        authorized,
        context: Arc::new(context),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_with_the_same_characters_get_different_keys() {
        let key = |v: &[&str]| identity_key(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_ne!(key(&["a\nb", "c"]), key(&["a", "b\nc"]));
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_eq!(key(&["x", "y"]), key(&["x", "y"]));
    }

    #[test]
    fn simple_responses_are_read_and_anything_else_refused() {
        let v = simple_response(br#"{"isAuthorized": true, "context": {"tenant": "t1", "n": 2}}"#)
            .unwrap();
        assert!(v.authorized);
        assert_eq!(v.context["tenant"], "t1");
        assert!(
            !simple_response(br#"{"isAuthorized": false}"#)
                .unwrap()
                .authorized
        );
        for bad in [
            &br#"{"isAuthorized": "yes"}"#[..],
            br#"{"context": {}}"#,
            br#"{"isAuthorized": true, "context": 3}"#,
            b"[]",
            b"not json",
            b"",
        ] {
            assert!(
                simple_response(bad).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
