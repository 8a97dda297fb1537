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
//! run into each other. Every part is bounded by the request head, which the
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
    let mut key = route_prefix(route_key);
    key.push_str(class.as_str());
    key.push(' ');
    key.push_str(uri.path());
    push_query(&mut key, uri.query().unwrap_or(""), &policy.query);
    for name in &policy.headers {
        key.push_str(" h:");
        key.push_str(name);
        let mut values = headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_some() {
            key.push('=');
            for (i, v) in values.enumerate() {
                if i > 0 {
                    key.push_str("%2C");
                }
                encode_into(&mut key, &v.as_bytes().to_ascii_lowercase());
            }
        }
    }
    push_cookies(&mut key, headers, &policy.cookies);
    key
}

/// A query pair (`name=value`, raw) decoded, if its decoded name is listed.
/// The key and [`keyed_request`] both decide with this, so what the function
/// sees is exactly what the key holds.
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

/// Every `name=value` cookie crumb of `headers` as (crumb, name, value),
/// raw bytes; crumbs without `=` are not cookies and are left out.
fn crumbs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8], &[u8])> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|h| h.as_bytes().split(|&b| b == b';'))
        .filter_map(|c| {
            let c = c.trim_ascii();
            let eq = c.iter().position(|&b| b == b'=')?;
            Some((c, &c[..eq], &c[eq + 1..]))
        })
}

/// What the function sees of a cached request: only the query parameters and
/// cookies that are in the cache key (as CloudFront forwards them), so an
/// answer shared with other clients cannot depend on what they never sent.
pub(crate) fn keyed_request(
    policy: &CachePolicy,
    uri: &Uri,
    headers: &HeaderMap,
) -> (Uri, HeaderMap) {
    let query: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|pair| listed_pair(pair, &policy.query).is_some())
        .collect();
    let path_and_query = if query.is_empty() {
        uri.path().to_string()
    } else {
        format!("{}?{}", uri.path(), query.join("&"))
    };
    let uri = Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .unwrap_or_else(|_| uri.clone());
    let kept: Vec<&[u8]> = crumbs(headers)
        .filter(|(_, name, _)| policy.cookies.iter().any(|k| k.as_bytes() == *name))
        .map(|(crumb, _, _)| crumb)
        .collect();
    let mut headers = headers.clone();
    headers.remove(http::header::COOKIE);
    if !kept.is_empty() {
        // Crumbs came from valid header values, so their join is one too.
        if let Ok(v) = http::HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
            headers.insert(http::header::COOKIE, v);
        }
    }
    (uri, headers)
}

fn push_query(key: &mut String, query: &str, listed: &[String]) {
    if listed.is_empty() || query.is_empty() {
        return;
    }
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query
        .split('&')
        .filter_map(|pair| listed_pair(pair, listed))
        .collect();
    if pairs.is_empty() {
        return;
    }
    pairs.sort();
    for (i, (name, value)) in pairs.iter().enumerate() {
        key.push(if i == 0 { '?' } else { '&' });
        encode_into(key, name);
        key.push('=');
        encode_into(key, value);
    }
}

fn push_cookies(key: &mut String, headers: &HeaderMap, listed: &[String]) {
    for name in listed {
        key.push_str(" c:");
        key.push_str(name);
        let mut values: Vec<&[u8]> = crumbs(headers)
            .filter(|(_, n, _)| *n == name.as_bytes())
            .map(|(_, _, v)| v)
            .collect();
        if values.is_empty() {
            continue;
        }
        values.sort_unstable();
        key.push('=');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            encode_into(key, v);
        }
    }
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
        let p = policy(&["a"], &[], &["theme"]);
        let cases: &[(&str, &[&[u8]])] = &[
            // An escaped listed name is the same name: kept, not dropped.
            ("/x?%61=evil&b=1", &[]),
            ("/x?a=1&a=2&b=%zz", &[b"theme=dark; x=\xc3\xa9"]),
            ("/x", &[b"theme=dark", b"theme; other=1"]),
        ];
        for (uri, cookies) in cases {
            let uri: Uri = uri.parse().unwrap();
            let mut headers = HeaderMap::new();
            for c in *cookies {
                headers.append(
                    http::header::COOKIE,
                    http::HeaderValue::from_bytes(c).unwrap(),
                );
            }
            let (seen_uri, seen) = keyed_request(&p, &uri, &headers);
            let key = |u: &Uri, h: &HeaderMap| build("GET /x", MethodClass::Get, u, h, &p);
            assert_eq!(key(&seen_uri, &seen), key(&uri, &headers), "{uri}");
            // Nothing beyond the key reaches the function.
            assert!(!seen_uri.query().unwrap_or("").contains('b'), "{seen_uri}");
            for v in seen.get_all(http::header::COOKIE) {
                for crumb in v.as_bytes().split(|&b| b == b';') {
                    assert!(crumb.trim_ascii().starts_with(b"theme="), "{v:?}");
                }
            }
        }
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
