//! Cache keys: which parts of a request name a cached answer.
//!
//! Owns the key format (purge by prefix matches on it) and its canonical
//! encoding. Pure: it never touches the store or the clock. It must never put
//! an unlisted query parameter, header or cookie into a key, or random query
//! strings would turn every request into a miss.
//!
//! # Format
//!
//! ```text
//! {route_key} {GET|HEAD} {path}[?{name}={value}&...][ h:{header}[={value}]]...[ c:{cookie}[={value}]]...
//! ```
//!
//! - `route_key` is the route's normalised key, e.g. `GET /items/{id}`.
//! - The class is `GET` for both GET and HEAD requests, so they share an
//!   entry; `HEAD` only names entries filled by a HEAD request (whose body is
//!   unknown), which only HEAD requests may use.
//! - `path` is the raw request path, as the client sent it.
//! - Only the route's listed query parameters appear, percent-decoded (`+` is
//!   a space) and re-encoded canonically (unreserved bytes literal, every
//!   other byte `%XX` upper-case), sorted by name then value; `?` is left out
//!   when none is present. A malformed escape such as `%zz` is kept as bytes,
//!   so `%zz` and `%25zz` share a key.
//! - Each listed header appears, in name order: ` h:name` when absent,
//!   ` h:name=value` with the values joined by `,`, lower-cased and encoded
//!   like query values.
//! - Each listed cookie likewise as ` c:name` / ` c:name=v1,v2` (values
//!   encoded, sorted).
//!
//! Nothing but the separators is ever a literal space, so the fields cannot
//! run into each other. [`keyed_request`] gives the function the same parts
//! in the same canonical form, so two requests that share a key are the
//! same request to the function. Every part is bounded by the request head, which the
//! connection guard caps (`max_header_bytes`).

use http::{HeaderMap, Uri};
use levee_config::CachePolicy;

/// Which entries a request may use and fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MethodClass {
    /// GET, and HEAD looking for a GET-filled entry.
    Get,
    /// Entries filled by HEAD requests (no body known).
    Head,
}

impl MethodClass {
    fn as_str(self) -> &'static str {
        match self {
            MethodClass::Get => "GET",
            MethodClass::Head => "HEAD",
        }
    }
}

/// The prefix shared by every key of `route_key` (for purge by route).
pub(crate) fn route_prefix(route_key: &str) -> String {
    format!("{route_key} ")
}

/// The key of a request, in the format documented above.
pub(crate) fn build(
    route_key: &str,
    class: MethodClass,
    uri: &Uri,
    headers: &HeaderMap,
    policy: &CachePolicy,
) -> String {
    let keyed = Keyed::of(policy, uri, headers);
    let mut key = route_prefix(route_key);
    key.push_str(class.as_str());
    key.push(' ');
    key.push_str(uri.path());
    if !keyed.query.is_empty() {
        key.push('?');
        key.push_str(&keyed.query_string());
    }
    for (name, values) in &keyed.headers {
        key.push_str(" h:");
        key.push_str(name);
        if !values.is_empty() {
            key.push('=');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    key.push_str("%2C");
                }
                encode_into(&mut key, v);
            }
        }
    }
    for (name, values) in &keyed.cookies {
        key.push_str(" c:");
        key.push_str(name);
        if !values.is_empty() {
            key.push('=');
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    key.push(',');
                }
                encode_into(&mut key, v);
            }
        }
    }
    key
}

/// What the function sees of a cached request: the path, and of everything
/// else only what the key holds (as CloudFront forwards only its cache key),
/// in the key's canonical form, so an answer shared with other clients
/// cannot depend on what they never sent, nor on the order or spelling in
/// which they sent it:
/// - the listed query parameters, decoded and re-encoded canonically and
///   sorted by name then value (`?b=2&a=x+y` is seen as `?a=x%20y&b=2`);
/// - the listed headers, lower-cased, in arrival order; no other header, not
///   even `Host` (`domainName` is then `localhost`) or `User-Agent`;
/// - the listed cookies, one `Cookie` header, sorted by name then value.
///
/// That is the fixed set: no header reaches the function unless the route
/// lists it. A function that needs the host lists `host` in `headers`.
pub(crate) fn keyed_request(
    policy: &CachePolicy,
    uri: &Uri,
    headers: &HeaderMap,
) -> (Uri, HeaderMap) {
    let keyed = Keyed::of(policy, uri, headers);
    let path_and_query = if keyed.query.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), keyed.query_string())
    };
    let uri = Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .unwrap_or_else(|_| uri.clone());
    let mut seen = HeaderMap::new();
    for (name, values) in &keyed.headers {
        let Ok(name) = http::HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for v in values {
            // Lower-cased bytes of a valid header value are a valid value.
            if let Ok(v) = http::HeaderValue::from_bytes(v) {
                seen.append(name.clone(), v);
            }
        }
    }
    let crumbs: Vec<Vec<u8>> = keyed
        .cookies
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| [name.as_bytes(), b"=", v].concat())
        })
        .collect();
    if !crumbs.is_empty() {
        // Crumbs came from valid header values, so their join is one too.
        if let Ok(v) = http::HeaderValue::from_bytes(&crumbs.join(&b"; "[..])) {
            seen.insert(http::header::COOKIE, v);
        }
    }
    (uri, seen)
}

/// The parts of a request its key holds, canonical. The key is their
/// rendering and the function's view is built from them, so the two cannot
/// disagree.
struct Keyed<'a> {
    /// Listed query pairs, decoded, sorted by name then value.
    query: Vec<(Vec<u8>, Vec<u8>)>,
    /// Each listed header (in name order) with its values lower-cased, in
    /// arrival order; none when absent.
    headers: Vec<(&'a str, Vec<Vec<u8>>)>,
    /// Each listed cookie (in name order) with its raw values, sorted.
    cookies: Vec<(&'a str, Vec<&'a [u8]>)>,
}

impl<'a> Keyed<'a> {
    fn of(policy: &'a CachePolicy, uri: &Uri, headers: &'a HeaderMap) -> Keyed<'a> {
        let mut query: Vec<(Vec<u8>, Vec<u8>)> = if policy.query.is_empty() {
            Vec::new()
        } else {
            uri.query()
                .unwrap_or("")
                .split('&')
                .filter_map(|pair| listed_pair(pair, &policy.query))
                .collect()
        };
        query.sort();
        let headers_seen = policy
            .headers
            .iter()
            .map(|name| {
                let values = headers
                    .get_all(name.as_str())
                    .iter()
                    .map(|v| v.as_bytes().to_ascii_lowercase())
                    .collect();
                (name.as_str(), values)
            })
            .collect();
        let cookies = policy
            .cookies
            .iter()
            .map(|name| {
                let mut values: Vec<&[u8]> = crumbs(headers)
                    .filter(|(n, _)| *n == name.as_bytes())
                    .map(|(_, v)| v)
                    .collect();
                values.sort_unstable();
                (name.as_str(), values)
            })
            .collect();
        Keyed {
            query,
            headers: headers_seen,
            cookies,
        }
    }

    /// The listed query pairs as `name=value&...`, canonically encoded.
    fn query_string(&self) -> String {
        let mut out = String::new();
        for (i, (name, value)) in self.query.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            encode_into(&mut out, name);
            out.push('=');
            encode_into(&mut out, value);
        }
        out
    }
}

/// A query pair (`name=value`, raw) decoded, if its decoded name is listed.
fn listed_pair(pair: &str, listed: &[String]) -> Option<(Vec<u8>, Vec<u8>)> {
    if pair.is_empty() {
        return None;
    }
    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
    let name = decode(name);
    // `listed` is sorted by the config loader.
    listed
        .binary_search_by(|l| l.as_bytes().cmp(&name))
        .ok()
        .map(|_| (name, decode(value)))
}

/// Every `name=value` cookie crumb of `headers` as (name, value), raw bytes;
/// crumbs without `=` are not cookies and are left out.
fn crumbs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|h| h.as_bytes().split(|&b| b == b';'))
        .filter_map(|c| {
            let c = c.trim_ascii();
            let eq = c.iter().position(|&b| b == b'=')?;
            Some((&c[..eq], &c[eq + 1..]))
        })
}

/// Percent-decodes form style: `+` is a space; a malformed escape stays as
/// its bytes.
fn decode(text: &str) -> Vec<u8> {
    levee_shield::firewall::percent_decode(text.as_bytes(), true)
        .unwrap_or_else(|| text.as_bytes().to_vec())
}

/// Appends `bytes` with every byte but RFC 3986's unreserved ones escaped.
fn encode_into(key: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            key.push(char::from(b));
        } else {
            key.push('%');
            key.push(char::from(HEX[usize::from(b >> 4)]));
            key.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_sees_exactly_what_the_key_holds() {
        let p = policy(&["a", "value"], &["accept-language"], &["theme"]);
        type Headers<'a> = &'a [(&'a str, &'a [u8])];
        let cases: &[(&str, Headers)] = &[
            // An escaped listed name is the same name: kept, not dropped.
            ("/x?%61=evil&b=1", &[("host", b"evil.example")]),
            (
                "/x?a=1&a=2&b=%zz",
                &[
                    ("cookie", b"theme=dark; x=\xc3\xa9"),
                    ("x-forwarded-host", b"evil"),
                ],
            ),
            (
                "/x",
                &[
                    ("cookie", b"theme=dark"),
                    ("cookie", b"theme; other=1"),
                    ("accept-language", b"EN-gb"),
                ],
            ),
        ];
        for (uri, pairs) in cases {
            let uri: Uri = uri.parse().unwrap();
            let mut headers = HeaderMap::new();
            for (n, v) in *pairs {
                headers.append(
                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    http::HeaderValue::from_bytes(v).unwrap(),
                );
            }
            let (seen_uri, seen) = keyed_request(&p, &uri, &headers);
            let key = |u: &Uri, h: &HeaderMap| build("GET /x", MethodClass::Get, u, h, &p);
            assert_eq!(key(&seen_uri, &seen), key(&uri, &headers), "{uri}");
            // The view of the view is the view: it is already canonical.
            assert_eq!(
                keyed_request(&p, &seen_uri, &seen),
                (seen_uri.clone(), seen.clone())
            );
            // Nothing beyond the key reaches the function.
            assert!(!seen_uri.query().unwrap_or("").contains('b'), "{seen_uri}");
            for name in seen.keys() {
                assert!(
                    ["accept-language", "cookie"].contains(&name.as_str()),
                    "{name}"
                );
            }
            for v in seen.get_all(http::header::COOKIE) {
                for crumb in v.as_bytes().split(|&b| b == b';') {
                    assert!(crumb.trim_ascii().starts_with(b"theme="), "{v:?}");
                }
            }
        }
    }

    #[test]
    fn requests_sharing_a_key_are_seen_alike() {
        let p = policy(&["a", "value"], &["accept-language"], &["theme"]);
        let view = |uri: &str, pairs: &[(&str, &str)]| {
            let mut headers = HeaderMap::new();
            for (n, v) in pairs {
                headers.append(
                    http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(v).unwrap(),
                );
            }
            let uri: Uri = uri.parse().unwrap();
            let key = build("GET /x", MethodClass::Get, &uri, &headers, &p);
            let (u, h) = keyed_request(&p, &uri, &headers);
            (key, u.to_string(), h)
        };
        let one = view(
            "/x?value=1&value=2&a=x+y",
            &[("accept-language", "EN"), ("cookie", "theme=b; theme=a")],
        );
        let two = view(
            "/x?a=x%20y&value=2&value=%31",
            &[
                ("accept-language", "en"),
                ("cookie", "theme=a"),
                ("cookie", "theme=b"),
            ],
        );
        assert_eq!(one.0, two.0, "one key");
        assert_eq!(one.1, "/x?a=x%20y&value=1&value=2");
        assert_eq!((&one.1, &one.2), (&two.1, &two.2), "so one view");
        assert_eq!(one.2["cookie"], "theme=a; theme=b");
        assert_eq!(one.2["accept-language"], "en");
    }

    fn policy(query: &[&str], headers: &[&str], cookies: &[&str]) -> CachePolicy {
        let v = |l: &[&str]| {
            let mut v: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        CachePolicy {
            query: v(query),
            headers: v(headers),
            cookies: v(cookies),
            ..CachePolicy::default()
        }
    }

    fn key_of(uri: &str, headers: &[(&str, &str)], p: &CachePolicy) -> String {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        let uri: Uri = uri.parse().expect("uri");
        build("GET /items/{id}", MethodClass::Get, &uri, &map, p)
    }

    /// A small xorshift so the test needs no rand crate and is repeatable.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_unlisted_query_strings_never_change_the_key() {
        let p = policy(&["page"], &[], &[]);
        let base = key_of("/items/7?page=2", &[], &p);
        assert_eq!(base, "GET /items/{id} GET /items/7?page=2");
        let mut s = 0x9E37_79B9_7F4A_7C15;
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789%+-_.=&";
        for _ in 0..10_000 {
            let len = (next(&mut s) % 40) as usize;
            let junk: String = (0..len)
                .map(|_| char::from(alphabet[(next(&mut s) % alphabet.len() as u64) as usize]))
                .collect();
            // Junk may itself spell `page=`; keep it out by renaming.
            let junk = junk.replace("page", "pag_");
            let uri = format!("/items/7?{junk}&page=2&x{}={}", next(&mut s), next(&mut s));
            if uri.parse::<Uri>().is_err() {
                continue;
            }
            assert_eq!(key_of(&uri, &[], &p), base, "{uri}");
        }
        let none = policy(&[], &[], &[]);
        assert_eq!(
            key_of("/items/7?cb=123", &[], &none),
            key_of("/items/7", &[], &none)
        );
    }

    #[test]
    fn listed_params_are_order_independent_and_canonical() {
        let p = policy(&["a", "b"], &[], &[]);
        let k = key_of("/items/1?b=2&a=x%20y&a=1", &[], &p);
        assert_eq!(k, "GET /items/{id} GET /items/1?a=1&a=x%20y&b=2");
        assert_eq!(key_of("/items/1?a=1&b=2&a=x+y", &[], &p), k);
        assert_eq!(key_of("/items/1?a=%31&a=x%20y&b=%32", &[], &p), k);
        assert_ne!(key_of("/items/1?a=1&b=3&a=x+y", &[], &p), k);
        // An escaped name is the same name.
        assert_eq!(
            key_of("/items/1?%61=1&a=x+y&b=2", &[], &p),
            k,
            "decoded names match"
        );
        // Malformed escapes do not panic.
        assert_eq!(
            key_of("/items/1?a=%zz&a=%2", &[], &p),
            "GET /items/{id} GET /items/1?a=%252&a=%25zz"
        );
    }

    #[test]
    fn listed_headers_and_cookies_enter_lowercased_and_sorted() {
        let p = policy(&[], &["accept-language", "x-tenant"], &["session", "theme"]);
        let k = key_of(
            "/items/1",
            &[
                ("Accept-Language", "EN-gb"),
                ("cookie", "theme=dark; other=1"),
                ("cookie", "session=a b"),
                ("user-agent", "ignored"),
            ],
            &p,
        );
        assert_eq!(
            k,
            "GET /items/{id} GET /items/1 h:accept-language=en-gb h:x-tenant c:session=a%20b c:theme=dark"
        );
        let other = key_of(
            "/items/1",
            &[
                ("accept-language", "en-GB"),
                ("cookie", "session=a b;theme=dark"),
            ],
            &p,
        );
        assert_eq!(other, k);
        // A present-but-empty header differs from an absent one.
        assert_ne!(
            key_of("/items/1", &[("x-tenant", "")], &p),
            key_of("/items/1", &[], &p)
        );
        assert!(k.starts_with(&route_prefix("GET /items/{id}")));
    }

    #[test]
    fn head_entries_have_their_own_class() {
        let p = policy(&[], &[], &[]);
        let uri: Uri = "/x".parse().expect("uri");
        let g = build("ANY /x", MethodClass::Get, &uri, &HeaderMap::new(), &p);
        let h = build("ANY /x", MethodClass::Head, &uri, &HeaderMap::new(), &p);
        assert_eq!(g, "ANY /x GET /x");
        assert_eq!(h, "ANY /x HEAD /x");
    }
}
