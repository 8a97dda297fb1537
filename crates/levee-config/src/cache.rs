//! The edge cache's configuration: a route's `cache = { ... }` table (what
//! enters the cache key, how long answers stay fresh, stale windows, object
//! size, compression) and the top-level `[cache]` section (store size,
//! compression threshold). Raw shapes and their validation only; the edge's
//! `cache` module enforces them.
//!
//! This module must never accept a value it cannot bound: every duration,
//! size and list length has a stated range, so the edge never re-checks.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;

use crate::problems::{Found, KeyPath};
use crate::values::{checked_size, RawSize};
use levee_common::parse_duration;

/// Longest any TTL or stale window may be: a year. Longer would outlive any
/// deployment and is surely a typo.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest negative (404/5xx) caching: an hour. Errors should heal quickly.
const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(3600);
/// Largest single cached object: 64 MiB (Lambda's own response limit is 6 MB;
/// the store must hold many objects, so one may not be huge).
const MAX_OBJECT_BYTES: u64 = 64 << 20;
/// Smallest and largest store: 1 MiB..16 GiB (the machines have 24 GiB).
const STORE_BYTES: RangeInclusive<u64> = (1 << 20)..=(16 << 30);
/// Compression threshold bounds: 0 (compress everything) .. 16 MiB.
const COMPRESS_MIN: RangeInclusive<u64> = 0..=(16 << 20);
/// Most names in each of `query`, `headers`, `cookies`: a key built from more
/// would rarely hit, and each name costs work on every request.
const MAX_KEY_NAMES: usize = 32;
/// Longest name in those lists.
const MAX_NAME_LEN: usize = 256;

/// A route's cache policy, present when the route has a `cache` table
/// (and `enabled` is not false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    /// Answers are kept at least this long, even with `no-cache`, `no-store`,
    /// `private` or `max-age=0` (CloudFront's MinTTL). Default 0.
    pub min_ttl: Duration,
    /// Freshness when the function sends neither Cache-Control lifetimes nor
    /// Expires. Default 60 s.
    pub default_ttl: Duration,
    /// Cap on the function's `s-maxage` / `max-age` / `Expires`. Default 24 h.
    pub max_ttl: Duration,
    /// Query parameters that enter the key (case-sensitive, sorted, unique);
    /// all others are left out of the key.
    pub query: Vec<String>,
    /// Request headers that enter the key, lowercased, sorted, unique.
    pub headers: Vec<String>,
    /// Cookies that enter the key (case-sensitive, sorted, unique).
    pub cookies: Vec<String>,
    /// Methods served from the cache, upper-case: a subset of GET and HEAD.
    pub methods: Vec<String>,
    /// Freshness of 404s and function errors (4xx/5xx). Default 10 s, ≤ 1 h.
    pub negative_ttl: Duration,
    /// How long past expiry a stale answer may be served while one
    /// background refresh runs. Default 0 (off).
    pub stale_while_revalidate: Duration,
    /// How long past expiry a stale answer may be served when the function
    /// cannot answer (throttled, timing out, failing). Default 0 (off).
    pub stale_if_error: Duration,
    /// Largest body stored, bytes; larger answers pass through. Default 1 MiB.
    pub max_object_bytes: u64,
    /// Whether compressible answers are stored and served gzip/br too.
    /// Default true.
    pub compress: bool,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            min_ttl: Duration::ZERO,
            default_ttl: Duration::from_secs(60),
            max_ttl: Duration::from_secs(24 * 3600),
            query: Vec::new(),
            headers: Vec::new(),
            cookies: Vec::new(),
            methods: vec!["GET".into(), "HEAD".into()],
            negative_ttl: Duration::from_secs(10),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            max_object_bytes: 1 << 20,
            compress: true,
        }
    }
}

/// `[cache]`: the one store every route shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Total bytes of cached objects (bodies, all encodings, and headers).
    /// Default 256 MiB; 1 MiB..16 GiB.
    pub max_bytes: u64,
    /// Bodies smaller than this are never compressed. Default 1024 bytes.
    pub compress_min_bytes: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_bytes: 256 << 20,
            compress_min_bytes: 1024,
        }
    }
}

/// A route's `cache` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCachePolicy {
    pub(crate) enabled: Option<bool>,
    pub(crate) ttl: Option<String>,
    pub(crate) min_ttl: Option<String>,
    pub(crate) max_ttl: Option<String>,
    pub(crate) query: Option<Vec<String>>,
    pub(crate) headers: Option<Vec<String>>,
    pub(crate) cookies: Option<Vec<String>>,
    pub(crate) methods: Option<Vec<String>>,
    pub(crate) negative_ttl: Option<String>,
    pub(crate) stale_while_revalidate: Option<String>,
    pub(crate) stale_if_error: Option<String>,
    pub(crate) max_object: Option<RawSize>,
    pub(crate) compress: Option<bool>,
}

/// `[cache]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCacheSettings {
    pub(crate) max_bytes: Option<RawSize>,
    pub(crate) compress_min_bytes: Option<RawSize>,
}

fn duration(
    key: &str,
    text: Option<&str>,
    default: Duration,
    max: Duration,
    found: &mut Found,
) -> Duration {
    let Some(text) = text else { return default };
    match parse_duration(text) {
        Ok(d) if d <= max => d,
        Ok(_) => {
            found.push(key, format!("must be at most {max:?}, not `{text}`"));
            default
        }
        Err(e) => {
            found.push(key, format!("invalid duration: {e}"));
            default
        }
    }
}

/// Whether `s` is an RFC 9110 token (header and cookie names).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Validates one key list: bounded length, each name bounded and accepted by
/// `valid`, then normalised by `norm`, sorted and deduplicated (so the key
/// builder can rely on order).
fn names(
    key: &str,
    raw: Option<Vec<String>>,
    valid: fn(&str) -> bool,
    norm: fn(&str) -> String,
    what: &str,
    found: &mut Found,
) -> Vec<String> {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_KEY_NAMES {
        found.push(key, format!("at most {MAX_KEY_NAMES} names"));
        return Vec::new();
    }
    let mut out = BTreeSet::new();
    for (i, name) in raw.iter().enumerate() {
        if name.len() > MAX_NAME_LEN || !valid(name) {
            found.push(
                KeyPath::of(key).index(i),
                format!("`{name}` is not a valid {what} (at most {MAX_NAME_LEN} characters)"),
            );
        } else {
            out.insert(norm(name));
        }
    }
    out.into_iter().collect()
}

/// Validates a route's `cache` table; `None` when `enabled = false`.
pub(crate) fn cache_policy(raw: RawCachePolicy, f: &mut Found) -> Option<CachePolicy> {
    let d = CachePolicy::default();
    let min_ttl = duration("min_ttl", raw.min_ttl.as_deref(), d.min_ttl, MAX_TTL, f);
    let default_ttl = duration("ttl", raw.ttl.as_deref(), d.default_ttl, MAX_TTL, f);
    let max_ttl = duration("max_ttl", raw.max_ttl.as_deref(), d.max_ttl, MAX_TTL, f);
    if min_ttl > max_ttl {
        f.push("min_ttl", "must not exceed max_ttl");
    }
    // An unset `ttl` follows the bounds rather than failing against them.
    let default_ttl = match raw.ttl {
        None => default_ttl.clamp(min_ttl, max_ttl.max(min_ttl)),
        Some(_) if !(min_ttl..=max_ttl).contains(&default_ttl) && min_ttl <= max_ttl => {
            f.push("ttl", "must be between min_ttl and max_ttl");
            default_ttl
        }
        Some(_) => default_ttl,
    };
    let query = names(
        "query",
        raw.query,
        |s| !s.is_empty() && !s.chars().any(char::is_control),
        str::to_owned,
        "query parameter name",
        f,
    );
    let headers = names(
        "headers",
        raw.headers,
        is_token,
        str::to_ascii_lowercase,
        "header name",
        f,
    );
    let cookies = names(
        "cookies",
        raw.cookies,
        is_token,
        str::to_owned,
        "cookie name",
        f,
    );
    let methods = match raw.methods {
        None => d.methods,
        Some(list) => {
            let mut out = Vec::new();
            for (i, m) in list.iter().enumerate() {
                let up = m.to_ascii_uppercase();
                if up == "GET" || up == "HEAD" {
                    if !out.contains(&up) {
                        out.push(up);
                    }
                } else {
                    f.push(
                        KeyPath::of("methods").index(i),
                        format!("`{m}` cannot be cached; only GET and HEAD can"),
                    );
                }
            }
            if out.is_empty() && list.is_empty() {
                f.push("methods", "list GET, HEAD or both");
            }
            out
        }
    };
    let policy = CachePolicy {
        min_ttl,
        default_ttl,
        max_ttl,
        query,
        headers,
        cookies,
        methods,
        negative_ttl: duration(
            "negative_ttl",
            raw.negative_ttl.as_deref(),
            d.negative_ttl,
            MAX_NEGATIVE_TTL,
            f,
        ),
        stale_while_revalidate: duration(
            "stale_while_revalidate",
            raw.stale_while_revalidate.as_deref(),
            d.stale_while_revalidate,
            MAX_TTL,
            f,
        ),
        stale_if_error: duration(
            "stale_if_error",
            raw.stale_if_error.as_deref(),
            d.stale_if_error,
            MAX_TTL,
            f,
        ),
        max_object_bytes: checked_size(
            "max_object",
            raw.max_object,
            d.max_object_bytes,
            1..=MAX_OBJECT_BYTES,
            f,
        ),
        compress: raw.compress.unwrap_or(d.compress),
    };
    let on = raw.enabled.unwrap_or(true);
    on.then_some(policy)
}

/// Validates `[cache]`.
pub(crate) fn cache_settings(raw: RawCacheSettings, found: &mut Found) -> CacheSettings {
    let d = CacheSettings::default();
    CacheSettings {
        max_bytes: checked_size("max_bytes", raw.max_bytes, d.max_bytes, STORE_BYTES, found),
        compress_min_bytes: checked_size(
            "compress_min_bytes",
            raw.compress_min_bytes,
            d.compress_min_bytes,
            COMPRESS_MIN,
            found,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(raw: RawCachePolicy) -> (Option<CachePolicy>, Vec<String>) {
        let (policy, found) = Found::collect(|f| cache_policy(raw, f));
        (policy, found.keys())
    }

    fn settings(raw: RawCacheSettings) -> (CacheSettings, Vec<String>) {
        let (settings, found) = Found::collect(|f| cache_settings(raw, f));
        (settings, found.keys())
    }

    #[test]
    fn an_empty_table_turns_caching_on_with_defaults() {
        let (p, found) = policy(RawCachePolicy::default());
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(p, Some(CachePolicy::default()));
    }

    #[test]
    fn enabled_false_turns_it_off_but_still_validates() {
        let (p, found) = policy(RawCachePolicy {
            enabled: Some(false),
            ttl: Some("soon".into()),
            ..RawCachePolicy::default()
        });
        assert_eq!(p, None);
        assert_eq!(found, ["ttl"]);
    }

    #[test]
    fn the_full_example_parses() {
        let (p, found) = policy(RawCachePolicy {
            ttl: Some("60s".into()),
            min_ttl: Some("0s".into()),
            max_ttl: Some("1h".into()),
            query: Some(vec!["page".into(), "lang".into(), "page".into()]),
            headers: Some(vec!["Accept-Language".into()]),
            cookies: Some(vec![]),
            methods: Some(vec!["get".into(), "HEAD".into()]),
            negative_ttl: Some("10s".into()),
            stale_while_revalidate: Some("30s".into()),
            stale_if_error: Some("5m".into()),
            max_object: Some(RawSize::Text("1MiB".into())),
            compress: Some(false),
            enabled: None,
        });
        assert!(found.is_empty(), "{found:?}");
        let p = p.expect("enabled");
        assert_eq!(p.max_ttl, Duration::from_secs(3600));
        assert_eq!(p.query, ["lang", "page"]);
        assert_eq!(p.headers, ["accept-language"]);
        assert_eq!(p.methods, ["GET", "HEAD"]);
        assert_eq!(p.stale_if_error, Duration::from_secs(300));
        assert_eq!(p.max_object_bytes, 1 << 20);
        assert!(!p.compress);
    }

    #[test]
    fn bad_values_name_their_keys() {
        let (_, found) = policy(RawCachePolicy {
            ttl: Some("2h".into()),
            max_ttl: Some("1h".into()),
            headers: Some(vec!["bad header".into()]),
            cookies: Some(vec!["".into()]),
            methods: Some(vec!["POST".into()]),
            negative_ttl: Some("2h".into()),
            max_object: Some(RawSize::Bytes(-1)),
            stale_if_error: Some("9000h".into()),
            ..RawCachePolicy::default()
        });
        assert_eq!(
            found,
            [
                "ttl",
                "headers[0]",
                "cookies[0]",
                "methods[0]",
                "negative_ttl",
                "stale_if_error",
                "max_object"
            ]
        );
        let (_, found) = policy(RawCachePolicy {
            min_ttl: Some("2h".into()),
            max_ttl: Some("1h".into()),
            methods: Some(vec![]),
            query: Some((0..=MAX_KEY_NAMES).map(|i| i.to_string()).collect()),
            ..RawCachePolicy::default()
        });
        assert_eq!(found, ["min_ttl", "query", "methods"]);
    }

    #[test]
    fn an_unset_ttl_follows_the_bounds() {
        let (p, found) = policy(RawCachePolicy {
            max_ttl: Some("10s".into()),
            ..RawCachePolicy::default()
        });
        assert!(found.is_empty());
        assert_eq!(p.expect("on").default_ttl, Duration::from_secs(10));
        let (p, _) = policy(RawCachePolicy {
            min_ttl: Some("5m".into()),
            ..RawCachePolicy::default()
        });
        assert_eq!(p.expect("on").default_ttl, Duration::from_secs(300));
    }

    #[test]
    fn settings_default_and_bound() {
        let (s, found) = settings(RawCacheSettings::default());
        assert_eq!(s, CacheSettings::default());
        assert!(found.is_empty());
        let (s, found) = settings(RawCacheSettings {
            max_bytes: Some(RawSize::Text("64MiB".into())),
            compress_min_bytes: Some(RawSize::Bytes(0)),
        });
        assert!(found.is_empty());
        assert_eq!(s.max_bytes, 64 << 20);
        assert_eq!(s.compress_min_bytes, 0);
        let (s, found) = settings(RawCacheSettings {
            max_bytes: Some(RawSize::Text("17GiB".into())),
            compress_min_bytes: Some(RawSize::Text("lots".into())),
        });
        assert_eq!(s, CacheSettings::default());
        assert_eq!(found, ["max_bytes", "compress_min_bytes"]);
    }
}
