//! Whether a function's answer may be stored or shared, and for how long it
//! stays fresh: Cache-Control, Expires, Vary, Set-Cookie and the status,
//! within the route's min/max TTL.
//!
//! Pure: it decides from headers and a wall-clock `now` passed in, and must
//! never store, clock or log anything. The rules, in order:
//!
//! 1. `Set-Cookie` or `Cache-Control: private` → [`Verdict::Private`]: the
//!    answer belongs to one client and is given to no one else, not even to
//!    requests collapsed behind it.
//! 2. `Vary: *`, or `Vary` naming a header the route does not key on →
//!    `Private` too: a request with another value of that header would get the
//!    wrong variant. (We do not silently add headers to the key; the route's
//!    list is the key.) `Vary: Accept-Encoding` on an answer without
//!    `Content-Encoding` is ignored, since the cache negotiates encodings
//!    itself.
//! 3. `no-store` → [`Verdict::Share`]: handed to the requests collapsed behind
//!    it, never stored, whatever `min_ttl` says.
//! 4. Negative statuses (400, 403, 404, 405, 414, 500, 501, 502, 503, 504, as
//!    CloudFront caches errors) are stored for the route's `negative_ttl`
//!    (the function's lifetimes are not used for errors); other statuses that
//!    are not heuristically cacheable (RFC 9110 §15.1: 200, 203, 204, 300,
//!    301, 308, 410) are only shared.
//! 5. `no-cache` means "store but revalidate every time"; Levee cannot make a
//!    conditional request to a function, so such answers are only shared,
//!    unless the route's `min_ttl > 0` (CloudFront's MinTTL), which stores them
//!    for `min_ttl`.
//! 6. Lifetime: `s-maxage`, else `max-age`, else `Expires − Date` (or − now),
//!    else the route's default TTL; then clamped to `min_ttl..=max_ttl`. An
//!    invalid `max-age` or `Expires` means already stale (RFC 9111 §4.2.1,
//!    §5.3). A zero lifetime is only shared.
//!
//! The function's `Age` header is not subtracted (functions answer fresh),
//! and its `stale-while-revalidate` / `stale-if-error` directives are not
//! read: the route's windows are the only ones.

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, StatusCode};
use levee_config::CachePolicy;

/// What may be done with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Store it, fresh for `ttl`; `negative` for error answers (never served
    /// stale).
    Store { ttl: Duration, negative: bool },
    /// Give it to concurrent identical requests, but do not store it.
    Share,
    /// Give it only to the request that asked; the reason is for logs.
    Private(&'static str),
}

/// The Cache-Control directives the cache reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    /// Seconds; an invalid value reads as 0.
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
}

/// Parses every `Cache-Control` line; unknown directives are ignored.
pub(crate) fn directives(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for line in headers.get_all(header::CACHE_CONTROL) {
        let Ok(line) = line.to_str() else {
            // An unreadable Cache-Control may say anything; assume the worst.
            d.no_store = true;
            continue;
        };
        for item in line.split(',') {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (item.trim(), None),
            };
            let secs = || value.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            match name.to_ascii_lowercase().as_str() {
                "no-store" => d.no_store = true,
                // `no-cache="field"` and `private="field"` are read as the
                // unqualified directive: stricter, never wrong.
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "max-age" => d.max_age = Some(secs()),
                "s-maxage" => d.s_maxage = Some(secs()),
                _ => {}
            }
        }
    }
    d
}

/// Negative statuses stored for `negative_ttl` (CloudFront's error caching
/// list; 416 and 429 are never cached).
fn is_negative(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        400 | 403 | 404 | 405 | 414 | 500 | 501 | 502 | 503 | 504
    )
}

/// Statuses cacheable by default (RFC 9110 §15.1), less 206 (no ranges here)
/// and 404/405/414/501 (negative here).
fn is_positive(status: StatusCode) -> bool {
    matches!(status.as_u16(), 200 | 203 | 204 | 300 | 301 | 308 | 410)
}

/// Why `Vary` forbids sharing, if it does: `*`, or a header the key lacks.
fn vary_problem(headers: &HeaderMap, keyed: &[String]) -> Option<&'static str> {
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    for line in headers.get_all(header::VARY) {
        let Ok(line) = line.to_str() else {
            return Some("unreadable Vary");
        };
        for name in line.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return Some("Vary: *");
            }
            let lower = name.to_ascii_lowercase();
            if lower == "accept-encoding" && !encoded {
                continue;
            }
            if !keyed.contains(&lower) {
                return Some("Vary names a header outside the cache key");
            }
        }
    }
    None
}

/// The freshness lifetime the function asked for, before clamping; `None`
/// when it gave no lifetime at all.
fn requested_lifetime(d: &Directives, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(s) = d.s_maxage.or(d.max_age) {
        return Some(Duration::from_secs(s));
    }
    let expires = headers.get(header::EXPIRES)?;
    let date = |v: &http::HeaderValue| httpdate::parse_http_date(v.to_str().ok()?).ok();
    let Some(expires) = date(expires) else {
        return Some(Duration::ZERO);
    };
    let base = headers.get(header::DATE).and_then(date).unwrap_or(now);
    Some(expires.duration_since(base).unwrap_or(Duration::ZERO))
}

/// Judges one answer of the function for a route with `policy`.
pub(crate) fn judge(
    status: StatusCode,
    headers: &HeaderMap,
    policy: &CachePolicy,
    now: SystemTime,
) -> Verdict {
    if headers.contains_key(header::SET_COOKIE) {
        return Verdict::Private("Set-Cookie");
    }
    let d = directives(headers);
    if d.private {
        return Verdict::Private("Cache-Control: private");
    }
    if let Some(why) = vary_problem(headers, &policy.headers) {
        return Verdict::Private(why);
    }
    if d.no_store {
        return Verdict::Share;
    }
    if is_negative(status) {
        if (d.no_cache && policy.min_ttl.is_zero()) || policy.negative_ttl.is_zero() {
            return Verdict::Share;
        }
        return Verdict::Store {
            ttl: policy.negative_ttl,
            negative: true,
        };
    }
    if !is_positive(status) {
        return Verdict::Share;
    }
    let ttl = if d.no_cache {
        policy.min_ttl
    } else {
        requested_lifetime(&d, headers, now)
            .unwrap_or(policy.default_ttl)
            .clamp(policy.min_ttl, policy.max_ttl.max(policy.min_ttl))
    };
    if ttl.is_zero() {
        return Verdict::Share;
    }
    Verdict::Store {
        ttl,
        negative: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn policy() -> CachePolicy {
        CachePolicy {
            min_ttl: secs(0),
            default_ttl: secs(60),
            max_ttl: secs(3600),
            negative_ttl: secs(10),
            headers: vec!["accept-language".into()],
            ..CachePolicy::default()
        }
    }

    fn judge_with(status: u16, headers: &[(&str, &str)], p: &CachePolicy) -> Verdict {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        judge(StatusCode::from_u16(status).expect("status"), &map, p, now)
    }

    fn store(ttl: u64) -> Verdict {
        Verdict::Store {
            ttl: secs(ttl),
            negative: false,
        }
    }

    #[test]
    fn lifetimes_follow_each_directive() {
        let p = policy();
        assert_eq!(judge_with(200, &[], &p), store(60), "default ttl");
        assert_eq!(
            judge_with(200, &[("cache-control", "max-age=120")], &p),
            store(120)
        );
        assert_eq!(
            judge_with(
                200,
                &[("cache-control", "public, max-age=120, s-maxage=30")],
                &p
            ),
            store(30),
            "s-maxage beats max-age"
        );
        assert_eq!(
            judge_with(200, &[("cache-control", "max-age=999999")], &p),
            store(3600),
            "max clamp"
        );
        assert_eq!(
            judge_with(200, &[("cache-control", "max-age=0")], &p),
            Verdict::Share
        );
        assert_eq!(
            judge_with(200, &[("cache-control", "max-age=soon")], &p),
            Verdict::Share,
            "invalid max-age is stale"
        );
        let floor = CachePolicy {
            min_ttl: secs(5),
            ..policy()
        };
        assert_eq!(
            judge_with(200, &[("cache-control", "max-age=0")], &floor),
            store(5),
            "min clamp"
        );
    }

    #[test]
    fn expires_counts_from_date_or_now() {
        let p = policy();
        assert_eq!(
            judge_with(
                200,
                &[
                    ("expires", "Sun, 06 Nov 1994 08:51:37 GMT"),
                    ("date", "Sun, 06 Nov 1994 08:50:37 GMT")
                ],
                &p
            ),
            store(60)
        );
        assert_eq!(
            judge_with(200, &[("expires", "Sun, 06 Nov 1994 08:59:37 GMT")], &p),
            store(600)
        );
        assert_eq!(
            judge_with(200, &[("expires", "0")], &p),
            Verdict::Share,
            "invalid Expires is stale"
        );
        assert_eq!(
            judge_with(
                200,
                &[
                    ("expires", "Sun, 06 Nov 1994 08:59:37 GMT"),
                    ("cache-control", "max-age=7")
                ],
                &p
            ),
            store(7),
            "max-age beats Expires"
        );
    }

    #[test]
    fn no_store_private_and_cookies_are_never_stored() {
        let floor = CachePolicy {
            min_ttl: secs(30),
            ..policy()
        };
        for p in [policy(), floor] {
            assert_eq!(
                judge_with(200, &[("cache-control", "no-store, max-age=60")], &p),
                Verdict::Share
            );
            assert!(matches!(
                judge_with(200, &[("cache-control", "private, max-age=60")], &p),
                Verdict::Private(_)
            ));
            assert!(matches!(
                judge_with(200, &[("set-cookie", "a=b")], &p),
                Verdict::Private(_)
            ));
        }
    }

    #[test]
    fn no_cache_is_stored_only_under_a_min_ttl() {
        assert_eq!(
            judge_with(200, &[("cache-control", "no-cache")], &policy()),
            Verdict::Share
        );
        let floor = CachePolicy {
            min_ttl: secs(30),
            ..policy()
        };
        assert_eq!(
            judge_with(200, &[("cache-control", "no-cache, max-age=600")], &floor),
            store(30)
        );
    }

    #[test]
    fn vary_must_stay_within_the_key() {
        let p = policy();
        assert_eq!(
            judge_with(200, &[("vary", "Accept-Language")], &p),
            store(60)
        );
        assert_eq!(
            judge_with(200, &[("vary", "accept-encoding")], &p),
            store(60),
            "identity bodies: the cache negotiates"
        );
        assert!(matches!(
            judge_with(
                200,
                &[("vary", "accept-encoding"), ("content-encoding", "gzip")],
                &p
            ),
            Verdict::Private(_)
        ));
        assert!(matches!(
            judge_with(200, &[("vary", "accept-language, user-agent")], &p),
            Verdict::Private(_)
        ));
        assert!(matches!(
            judge_with(200, &[("vary", "*")], &p),
            Verdict::Private(_)
        ));
    }

    #[test]
    fn errors_are_negative_for_the_short_ttl() {
        let p = policy();
        let negative = Verdict::Store {
            ttl: secs(10),
            negative: true,
        };
        assert_eq!(judge_with(404, &[], &p), negative);
        assert_eq!(
            judge_with(500, &[("cache-control", "max-age=3600")], &p),
            negative
        );
        assert_eq!(
            judge_with(404, &[("cache-control", "no-store")], &p),
            Verdict::Share
        );
        assert_eq!(judge_with(429, &[], &p), Verdict::Share);
        assert_eq!(judge_with(302, &[], &p), Verdict::Share);
        let off = CachePolicy {
            negative_ttl: Duration::ZERO,
            ..policy()
        };
        assert_eq!(judge_with(404, &[], &off), Verdict::Share);
    }
}
