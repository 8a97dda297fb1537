//! `[authorizers.NAME]`: who may call a route, decided at the edge before
//! the invocation is paid for, as API Gateway HTTP API's authorizers are.
//! `type = "jwt"`: a JWT from the identity source, signed by a key of the
//! issuer's JWKS (a file, or a URL fetched and refreshed), with its issuer
//! and audience. `type = "lambda"`: a function of this file decides, its
//! answer cached per identity. Routes name one with `authorizer`; a JWT
//! authorizer's routes may require `authorization_scopes`.
//!
//! Owns the shape and its rules. Must never read a JWKS or fetch a URL: the
//! edge's authorizer does, at start and on reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::guard::duration;
use crate::problems::{Found, KeyPath};
use crate::values::resolve;

/// Most authorizers in one file.
const MAX_AUTHORIZERS: usize = 100;
/// Most audiences one authorizer accepts, and scopes one route requires.
pub const MAX_AUDIENCES: usize = 50;
pub const MAX_SCOPES: usize = 50;
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const REFRESH: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(86_400);
const DEFAULT_IDENTITY: &str = "$request.header.Authorization";

/// One authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorizer {
    /// `type = "jwt"`.
    Jwt {
        /// Where the token is read from.
        identity_source: IdentitySource,
        /// What a token must be.
        jwt: Jwt,
    },
    /// `type = "lambda"`.
    Lambda(LambdaAuthorizer),
}

/// A function that decides, called with API Gateway's payload 2.0
/// authorizer event and answering the "simple" response
/// (`{"isAuthorized": …, "context": {…}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaAuthorizer {
    /// A `[functions.NAME]` of this file.
    pub function: String,
    /// Every one must be present (401 otherwise, with no invocation); their
    /// values together are the cache key.
    pub identity_source: Vec<IdentitySource>,
    /// How long an answer is reused for the same identity; zero: never.
    pub ttl: Duration,
    /// Longest the function may take; past it the request is refused.
    pub timeout: Duration,
}

const DEFAULT_TTL: Duration = Duration::from_secs(300);
const TTL: std::ops::RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3600);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const TIMEOUT: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(30);
/// Most identity sources one Lambda authorizer reads.
const MAX_SOURCES: usize = 8;

/// API Gateway's identity source: `$request.header.NAME` or
/// `$request.querystring.NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A header, its name lowercased.
    Header(String),
    /// A query-string parameter.
    Query(String),
}

/// `type = "jwt"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwt {
    /// `iss`, exactly.
    pub issuer: String,
    /// Accepted `aud` (or `client_id`) values.
    pub audience: Vec<String>,
    /// Where the signing keys are.
    pub jwks: JwksSource,
}

/// `jwks` (a file) or `jwks_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// Read at start and on every reload.
    File(PathBuf),
    /// Fetched at start, every `refresh`, and when a token names a key id
    /// the set lacks (at most once per 10 s).
    Url {
        url: String,
        /// CAs for an `https` URL; default the system's bundle.
        ca: Option<PathBuf>,
        refresh: Duration,
    },
}

/// One identity source, or (Lambda authorizers) several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSources {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthorizer {
    #[serde(rename = "type")]
    kind: String,
    identity_source: Option<RawSources>,
    issuer: Option<String>,
    #[serde(default)]
    audience: Vec<String>,
    jwks: Option<String>,
    jwks_url: Option<String>,
    jwks_ca: Option<String>,
    jwks_refresh: Option<String>,
    function: Option<String>,
    ttl: Option<String>,
    timeout: Option<String>,
}

pub(crate) fn too_many(count: usize) -> Option<String> {
    (count > MAX_AUTHORIZERS).then(|| format!("at most {MAX_AUTHORIZERS} authorizers"))
}

/// Validates one `[authorizers.NAME]`; keys relative to its table.
/// `functions` are the file's declared functions.
pub(crate) fn authorizer(
    raw: RawAuthorizer,
    base_dir: &Path,
    functions: &[String],
    f: &mut Found,
) -> Option<Authorizer> {
    match raw.kind.as_str() {
        "jwt" => jwt(raw, base_dir, f),
        "lambda" => lambda(raw, functions, f).map(Authorizer::Lambda),
        other => {
            f.push(
                "type",
                format!("`{other}` is not an authorizer type; expected `jwt` or `lambda`"),
            );
            None
        }
    }
}

/// Keys that belong to the other type of authorizer.
fn only_for(kind: &str, keys: &[(&str, bool)], f: &mut Found) {
    for (key, set) in keys {
        if *set {
            f.push(*key, format!("only for `type = \"{kind}\"`"));
        }
    }
}

fn lambda(raw: RawAuthorizer, functions: &[String], f: &mut Found) -> Option<LambdaAuthorizer> {
    only_for(
        "jwt",
        &[
            ("issuer", raw.issuer.is_some()),
            ("audience", !raw.audience.is_empty()),
            ("jwks", raw.jwks.is_some()),
            ("jwks_url", raw.jwks_url.is_some()),
            ("jwks_ca", raw.jwks_ca.is_some()),
            ("jwks_refresh", raw.jwks_refresh.is_some()),
        ],
        f,
    );
    let function = match raw.function {
        Some(name) if functions.contains(&name) => Some(name),
        Some(name) => {
            f.push(
                "function",
                format!("no function named `{name}` in [functions]"),
            );
            None
        }
        None => {
            f.push(
                "function",
                "a Lambda authorizer names the function that decides, e.g. function = \"auth\"",
            );
            None
        }
    };
    let texts = match raw.identity_source {
        None => vec![DEFAULT_IDENTITY.to_owned()],
        Some(RawSources::One(one)) => vec![one],
        Some(RawSources::Many(many)) => many,
    };
    if texts.is_empty() || texts.len() > MAX_SOURCES {
        f.push(
            "identity_source",
            format!("needs 1 to {MAX_SOURCES} sources"),
        );
    }
    let sources: Option<Vec<IdentitySource>> =
        texts.iter().map(|t| identity_source(Some(t), f)).collect();
    let ttl = duration("ttl", raw.ttl.as_deref(), DEFAULT_TTL, TTL, f);
    let timeout = duration(
        "timeout",
        raw.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        TIMEOUT,
        f,
    );
    Some(LambdaAuthorizer {
        function: function?,
        identity_source: sources?,
        ttl,
        timeout,
    })
}

fn jwt(raw: RawAuthorizer, base_dir: &Path, f: &mut Found) -> Option<Authorizer> {
    only_for(
        "lambda",
        &[
            ("function", raw.function.is_some()),
            ("ttl", raw.ttl.is_some()),
            ("timeout", raw.timeout.is_some()),
        ],
        f,
    );
    let identity_source = match &raw.identity_source {
        None => identity_source(None, f),
        Some(RawSources::One(one)) => identity_source(Some(one), f),
        Some(RawSources::Many(_)) => {
            f.push(
                "identity_source",
                "a JWT authorizer reads one identity source",
            );
            None
        }
    };
    let issuer = match raw.issuer {
        Some(i) if !i.is_empty() => Some(i),
        _ => {
            f.push("issuer", "a JWT authorizer needs the `iss` it accepts, e.g. issuer = \"https://login.example.com/\"");
            None
        }
    };
    if raw.audience.is_empty() || raw.audience.len() > MAX_AUDIENCES {
        f.push(
            "audience",
            format!("needs 1 to {MAX_AUDIENCES} accepted audiences, e.g. audience = [\"my-api\"]"),
        );
    }
    let refresh = duration(
        "jwks_refresh",
        raw.jwks_refresh.as_deref(),
        DEFAULT_REFRESH,
        REFRESH,
        f,
    );
    let jwks = match (raw.jwks, raw.jwks_url) {
        (Some(file), None) => {
            for (key, set) in [
                ("jwks_ca", raw.jwks_ca.is_some()),
                ("jwks_refresh", raw.jwks_refresh.is_some()),
            ] {
                if set {
                    f.push(
                        key,
                        "only for `jwks_url`; a `jwks` file is read at start and on reload",
                    );
                }
            }
            resolve(base_dir, &file, &KeyPath::of("jwks"), f).map(JwksSource::File)
        }
        (None, Some(url)) => {
            if let Err(why) = crate::budgets::check_url(&url) {
                f.push("jwks_url", why);
            }
            if raw.jwks_ca.is_some() && !url.starts_with("https://") {
                f.push("jwks_ca", "only for an https:// jwks_url");
            }
            let ca = raw
                .jwks_ca
                .and_then(|ca| resolve(base_dir, &ca, &KeyPath::of("jwks_ca"), f));
            Some(JwksSource::Url { url, ca, refresh })
        }
        _ => {
            f.push(
                "jwks",
                "set exactly one of `jwks` (a JWKS file) and `jwks_url`",
            );
            None
        }
    };
    Some(Authorizer::Jwt {
        identity_source: identity_source?,
        jwt: Jwt {
            issuer: issuer?,
            audience: raw.audience,
            jwks: jwks?,
        },
    })
}

fn identity_source(text: Option<&str>, f: &mut Found) -> Option<IdentitySource> {
    let text = text.unwrap_or(DEFAULT_IDENTITY);
    let valid = |name: &str| {
        !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    let source = if let Some(h) = text.strip_prefix("$request.header.") {
        valid(h).then(|| IdentitySource::Header(h.to_ascii_lowercase()))
    } else if let Some(q) = text.strip_prefix("$request.querystring.") {
        valid(q).then(|| IdentitySource::Query(q.to_owned()))
    } else {
        None
    };
    if source.is_none() {
        f.push(
            "identity_source",
            "must be `$request.header.NAME` or `$request.querystring.NAME`",
        );
    }
    source
}

/// A route's `authorizer` and `authorization_scopes`: the authorizer must
/// be declared; scopes need one. Keys relative to the route.
pub(crate) fn route_authorization(
    authorizer: Option<&str>,
    scopes: &[String],
    declared: &[String],
    f: &mut Found,
) {
    match authorizer {
        Some(name) if !declared.iter().any(|d| d == name) => f.push(
            "authorizer",
            format!("no authorizer `{}` in [authorizers]", name),
        ),
        None if !scopes.is_empty() => f.push(
            "authorization_scopes",
            "scopes are checked by an authorizer; name one with `authorizer`",
        ),
        _ => {}
    }
    if scopes.len() > MAX_SCOPES || scopes.iter().any(|s| s.is_empty()) {
        f.push(
            "authorization_scopes",
            format!("at most {MAX_SCOPES} scopes, none empty"),
        );
    }
}

/// Scopes are a JWT's: a route whose authorizer is a function cannot
/// require them. Keys relative to `[[routes]]`.
pub(crate) fn scopes_need_jwt(
    routes: &[(usize, crate::route::Route)],
    authorizers: &std::collections::BTreeMap<String, Authorizer>,
    f: &mut Found,
) {
    for (i, r) in routes {
        let lambda = r
            .authorizer
            .as_ref()
            .and_then(|a| authorizers.get(a))
            .is_some_and(|a| matches!(a, Authorizer::Lambda(_)));
        if lambda && !r.authorization_scopes.is_empty() {
            f.push(
                KeyPath::default().index(*i).key("authorization_scopes"),
                "scopes are read from a JWT; a Lambda authorizer decides alone",
            );
        }
    }
}
