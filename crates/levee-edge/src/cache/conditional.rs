//! Conditional requests against a cached answer (RFC 9110 §13):
//! `If-None-Match` (weak comparison, `*`, lists) and, only when it is absent,
//! `If-Modified-Since` against the stored `Last-Modified`.
//!
//! Pure: it answers "may this be a 304?" and must never build responses or
//! read the store. Malformed conditions are ignored (the full answer is
//! always a correct reply); parsing is bounded by the request head, which the
//! connection guard caps.

use http::{header, HeaderMap, HeaderValue};

/// Whether the client's copy, described by `req`, is current for an answer
/// with `etag` (always present: the cache makes one if the function did not)
/// and `last_modified` (the function's, if it sent one).
pub(crate) fn not_modified(
    req: &HeaderMap,
    etag: &HeaderValue,
    last_modified: Option<&HeaderValue>,
) -> bool {
    let mut inm = req.get_all(header::IF_NONE_MATCH).iter().peekable();
    if inm.peek().is_some() {
        let ours = opaque(etag.as_bytes());
        return inm.any(|line| matches_any(line.as_bytes(), ours));
    }
    let (Some(since), Some(modified)) = (req.get(header::IF_MODIFIED_SINCE), last_modified) else {
        return false;
    };
    let date = |v: &HeaderValue| httpdate::parse_http_date(v.to_str().ok()?).ok();
    match (date(since), date(modified)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

/// An entity tag without its weakness marker: the part weak comparison uses.
fn opaque(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag).trim_ascii()
}

/// Whether one `If-None-Match` line (`*` or a list of tags) names `ours`.
fn matches_any(line: &[u8], ours: &[u8]) -> bool {
    let mut rest = line.trim_ascii();
    if rest == b"*" {
        return true;
    }
    loop {
        rest = rest.trim_ascii_start();
        while let Some(r) = rest.strip_prefix(b",") {
            rest = r.trim_ascii_start();
        }
        if rest.is_empty() {
            return false;
        }
        let body = rest.strip_prefix(b"W/").unwrap_or(rest);
        // A tag is a quoted string without inner quotes; anything else ends
        // the list (malformed), which reads as "no match".
        let Some(inner) = body.strip_prefix(b"\"") else {
            return false;
        };
        let Some(end) = inner.iter().position(|&b| b == b'"') else {
            return false;
        };
        if &body[..end + 2] == ours {
            return true;
        }
        rest = &inner[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    const TAG: HeaderValue = HeaderValue::from_static("\"abc\"");

    #[test]
    fn if_none_match_uses_weak_comparison() {
        let yes = [
            "\"abc\"",
            "W/\"abc\"",
            "*",
            "\"x\", \"abc\"",
            "\"x\",W/\"abc\"",
            " ,, \"abc\"",
        ];
        for v in yes {
            assert!(
                not_modified(&req(&[("if-none-match", v)]), &TAG, None),
                "{v}"
            );
        }
        let no = [
            "\"abcd\"",
            "\"ab\"",
            "abc",
            "\"x\", abc, \"abc\"",
            "",
            "W/",
            "\"abc",
        ];
        for v in no {
            assert!(
                !not_modified(&req(&[("if-none-match", v)]), &TAG, None),
                "{v}"
            );
        }
        let weak = HeaderValue::from_static("W/\"abc\"");
        assert!(not_modified(
            &req(&[("if-none-match", "\"abc\"")]),
            &weak,
            None
        ));
        assert!(not_modified(
            &req(&[("if-none-match", "\"q\""), ("if-none-match", "\"abc\"")]),
            &TAG,
            None
        ));
    }

    #[test]
    fn if_modified_since_compares_dates_and_yields_to_if_none_match() {
        let lm = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        let at = |d: &str| req(&[("if-modified-since", d)]);
        assert!(not_modified(
            &at("Sun, 06 Nov 1994 08:49:37 GMT"),
            &TAG,
            Some(&lm)
        ));
        assert!(not_modified(
            &at("Mon, 07 Nov 1994 08:49:37 GMT"),
            &TAG,
            Some(&lm)
        ));
        assert!(!not_modified(
            &at("Sat, 05 Nov 1994 08:49:37 GMT"),
            &TAG,
            Some(&lm)
        ));
        assert!(!not_modified(&at("yesterday"), &TAG, Some(&lm)));
        assert!(!not_modified(
            &at("Mon, 07 Nov 1994 08:49:37 GMT"),
            &TAG,
            None
        ));
        let both = req(&[
            ("if-modified-since", "Mon, 07 Nov 1994 08:49:37 GMT"),
            ("if-none-match", "\"other\""),
        ]);
        assert!(!not_modified(&both, &TAG, Some(&lm)), "If-None-Match wins");
    }
}
