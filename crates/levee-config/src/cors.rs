//! `[cors]` (every route) and a route's `cors = {…}` (that route, instead):
//! which browser origins may call, as API Gateway HTTP API's CORS
//! configuration says it.
//!
//! Owns the shape and its rules (origins are `*` or `scheme://host[:port]`,
//! credentials never with `*`). Must never build a header: the edge's
//! `cors.rs` answers preflights and decorates answers.

use std::time::Duration;

use serde::Deserialize;

use crate::problems::{Found, KeyPath};

/// Most entries in each list.
pub const MAX_CORS_ENTRIES: usize = 100;
const MAX_AGE: Duration = Duration::from_secs(86_400);

/// A CORS configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cors {
    /// `*`, or exact origins (`https://app.example.com`), lowercased.
    pub allow_origins: Vec<String>,
    /// Methods a preflight may ask for, uppercased; `*` for any.
    pub allow_methods: Vec<String>,
    /// Request headers a preflight may ask for, lowercased; `*` for any.
    pub allow_headers: Vec<String>,
    /// Response headers a page may read, lowercased.
    pub expose_headers: Vec<String>,
    /// How long a browser may keep a preflight's answer; none by default.
    pub max_age: Option<Duration>,
    /// `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    #[serde(default)]
    allow_origins: Vec<String>,
    #[serde(default)]
    allow_methods: Vec<String>,
    #[serde(default)]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    max_age: Option<String>,
    #[serde(default)]
    allow_credentials: bool,
}

/// Validates a CORS table; keys relative to it.
pub(crate) fn cors(raw: RawCors, f: &mut Found) -> Cors {
    if raw.allow_origins.is_empty() {
        f.push(
            "allow_origins",
            "needs at least one origin, e.g. allow_origins = [\"https://app.example.com\"] (or [\"*\"])",
        );
    }
    let lists = [
        ("allow_origins", &raw.allow_origins),
        ("allow_methods", &raw.allow_methods),
        ("allow_headers", &raw.allow_headers),
        ("expose_headers", &raw.expose_headers),
    ];
    for (key, list) in lists {
        if list.len() > MAX_CORS_ENTRIES {
            f.push(key, format!("at most {MAX_CORS_ENTRIES} entries"));
        }
    }
    for (i, origin) in raw.allow_origins.iter().enumerate() {
        if origin != "*" && !is_origin(origin) {
            f.push(
                KeyPath::of("allow_origins").index(i),
                format!("`{origin}` is not `*` or an origin such as https://app.example.com:8443 (no path)"),
            );
        }
    }
    for (key, list) in [
        ("allow_methods", &raw.allow_methods),
        ("allow_headers", &raw.allow_headers),
        ("expose_headers", &raw.expose_headers),
    ] {
        for (i, name) in list.iter().enumerate() {
            if name != "*" && (name.is_empty() || !name.bytes().all(is_token_byte)) {
                f.push(
                    KeyPath::of(key).index(i),
                    format!("`{name}` is not `*` or an HTTP token"),
                );
            }
        }
    }
    if raw.allow_credentials && raw.allow_origins.iter().any(|o| o == "*") {
        f.push(
            "allow_credentials",
            "browsers refuse credentials with `*` origins; list the origins",
        );
    }
    let max_age =
        raw.max_age
            .as_deref()
            .and_then(|text| match levee_common::parse_duration(text) {
                Ok(d) if d <= MAX_AGE => Some(d),
                _ => {
                    f.push("max_age", "must be a duration up to 24h, e.g. \"1h\"");
                    None
                }
            });
    Cors {
        allow_origins: raw
            .allow_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect(),
        allow_methods: raw
            .allow_methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect(),
        allow_headers: raw
            .allow_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        expose_headers: raw
            .expose_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        max_age,
        allow_credentials: raw.allow_credentials,
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `scheme://host[:port]`, as a browser sends it in `Origin`.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    scheme_ok && host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for ok in [
            "https://app.test",
            "http://localhost:3000",
            "https://[::1]:8443",
        ] {
            assert!(is_origin(ok), "{ok}");
        }
        for bad in [
            "app.test",
            "https://app.test/path",
            "https://",
            "https://a b",
            "https://a:0",
            "https://a:x",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
