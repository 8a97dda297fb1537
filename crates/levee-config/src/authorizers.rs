//! `[authorizers.NAME]`: who may call a route, decided at the edge before
//! the invocation is paid for, as API Gateway HTTP API's authorizers are.
//! `type = "jwt"`: a JWT from the identity source, signed by a key of the
//! issuer's JWKS (a file, or a URL fetched and refreshed), with its issuer
//! and audience. Routes name one with `authorizer` and may require
//! `authorization_scopes`.
//!
//! Owns the shape and its rules. Must never read a JWKS or fetch a URL: the
//! edge's authorizer does, at start and on reload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
pub struct Authorizer {
    /// Where the token is read from.
    pub identity_source: IdentitySource,
    /// What a token must be.
    pub jwt: Jwt,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthorizer {
    #[serde(rename = "type")]
    kind: String,
    identity_source: Option<String>,
    issuer: Option<String>,
    #[serde(default)]
    audience: Vec<String>,
    jwks: Option<String>,
    jwks_url: Option<String>,
    jwks_ca: Option<String>,
    jwks_refresh: Option<String>,
}

pub(crate) fn too_many(count: usize) -> Option<String> {
    (count > MAX_AUTHORIZERS).then(|| format!("at most {MAX_AUTHORIZERS} authorizers"))
}

/// Validates one `[authorizers.NAME]`; keys relative to its table.
pub(crate) fn authorizer(raw: RawAuthorizer, base_dir: &Path, f: &mut Found) -> Option<Authorizer> {
    if raw.kind != "jwt" {
        f.push(
            "type",
            format!("`{}` is not an authorizer type; expected `jwt`", raw.kind),
        );
        return None;
    }
    let identity_source = identity_source(raw.identity_source.as_deref(), f);
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
    let refresh = match raw.jwks_refresh.as_deref() {
        None => DEFAULT_REFRESH,
        Some(text) => match levee_common::parse_duration(text) {
            Ok(d) if REFRESH.contains(&d) => d,
            _ => {
                f.push("jwks_refresh", "must be a duration from 10s to 24h");
                DEFAULT_REFRESH
            }
        },
    };
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
    Some(Authorizer {
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
