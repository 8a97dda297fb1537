//! Text transformations applied to a field value before matching.
//!
//! Owns the byte-level decoders. Each transformation is one linear pass whose
//! output is never longer than its input, so a chain of at most
//! [`MAX_TRANSFORMS`] costs at most that many copies of the field. Must never
//! panic or loop on malformed input: a broken `%` escape or entity is kept
//! verbatim, which is also what attackers cannot exploit to hide a payload
//! (the undecoded bytes are still inspected).

use std::borrow::Cow;

use super::config::TransformConfig;

/// At most this many transformations per statement (AWS WAF's limit).
pub const MAX_TRANSFORMS: usize = 10;

/// Applies `ts` in order. Borrows when the chain is empty.
pub fn apply<'a>(ts: &[TransformConfig], input: &'a [u8]) -> Cow<'a, [u8]> {
    let mut cur = Cow::Borrowed(input);
    for t in ts {
        let next = match t {
            TransformConfig::Lowercase => {
                if cur.iter().any(u8::is_ascii_uppercase) {
                    Some(cur.to_ascii_lowercase())
                } else {
                    None
                }
            }
            TransformConfig::UrlDecode => url_decode(&cur),
            TransformConfig::HtmlEntityDecode => html_entity_decode(&cur),
            TransformConfig::CompressWhitespace => compress_whitespace(&cur),
        };
        if let Some(n) = next {
            cur = Cow::Owned(n);
        }
    }
    cur
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `%XX` to the byte, `+` to space (form encoding, as ModSecurity's urlDecode);
/// malformed escapes are kept. `None` when nothing changes.
fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    percent_decode(s, true)
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in
/// query strings). A broken escape is kept as written. `None` when there was
/// nothing to decode, so callers can keep borrowing the input. Shared with
/// the edge's event builder so both read a request the same way.
pub fn percent_decode(s: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    if !s.iter().any(|&b| b == b'%' || (plus_is_space && b == b'+')) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'%' => match (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// Named entities worth decoding for attack detection; anything else is kept.
const NAMED: &[(&[u8], char)] = &[
    (b"lt", '<'),
    (b"gt", '>'),
    (b"amp", '&'),
    (b"quot", '"'),
    (b"apos", '\''),
    (b"nbsp", '\u{a0}'),
    (b"sol", '/'),
    (b"lpar", '('),
    (b"rpar", ')'),
    (b"colon", ':'),
    (b"semi", ';'),
    (b"equals", '='),
    (b"tab", '\t'),
    (b"newline", '\n'),
];

/// Longest entity body we try to decode (`&#x0000003c;` style padding beyond
/// this is kept verbatim): bounds the look-ahead per `&`.
const MAX_ENTITY: usize = 12;

/// `&name;`, `&#DDD;` and `&#xHH;` (semicolon optional for numeric forms, as
/// browsers accept). `None` when nothing changes.
fn html_entity_decode(s: &[u8]) -> Option<Vec<u8>> {
    if !s.contains(&b'&') {
        return None;
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'&' {
            if let Some((c, used)) = entity(s.get(i + 1..).unwrap_or_default()) {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                i += 1 + used;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    Some(out)
}

/// Decodes one entity after `&`; returns the char and the bytes consumed.
fn entity(s: &[u8]) -> Option<(char, usize)> {
    if let Some(rest) = s.strip_prefix(b"#") {
        let (digits, radix, skip) = match rest.first() {
            Some(b'x' | b'X') => (rest.get(1..).unwrap_or_default(), 16, 2),
            _ => (rest, 10, 1),
        };
        let n = digits
            .iter()
            .take(MAX_ENTITY)
            .take_while(|b| (**b as char).is_digit(radix))
            .count();
        if n == 0 {
            return None;
        }
        let text = std::str::from_utf8(digits.get(..n)?).ok()?;
        let v = u32::from_str_radix(text, radix).ok()?;
        // Invalid code points become U+FFFD, as browsers do.
        let c = char::from_u32(v).unwrap_or('\u{fffd}');
        let semi = usize::from(digits.get(n) == Some(&b';'));
        return Some((c, skip + n + semi));
    }
    let n = s
        .iter()
        .take(MAX_ENTITY)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    if s.get(n) != Some(&b';') {
        return None;
    }
    let name = s.get(..n)?;
    NAMED
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|&(_, c)| (c, n + 1))
}

/// Tab, LF, VT, FF, CR, space and NBSP (0xA0, and its UTF-8 form) become one
/// space per run (AWS `COMPRESS_WHITE_SPACE`). `None` when nothing changes.
fn compress_whitespace(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut in_ws = false;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        let ws_len = match b {
            b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0xa0 => 1,
            0xc2 if s.get(i + 1) == Some(&0xa0) => 2,
            _ => 0,
        };
        if ws_len > 0 {
            if !in_ws {
                out.push(b' ');
            }
            in_ws = true;
            i += ws_len;
        } else {
            out.push(b);
            in_ws = false;
            i += 1;
        }
    }
    (out.as_slice() != s).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TransformConfig::*;

    fn t(ts: &[TransformConfig], s: &str) -> String {
        String::from_utf8_lossy(&apply(ts, s.as_bytes())).into_owned()
    }

    #[test]
    fn each_transformation() {
        assert_eq!(t(&[Lowercase], "SeLeCT ÄB"), "select Äb");
        assert_eq!(t(&[UrlDecode], "a%20b+c%3Cd%zz%4"), "a b c<d%zz%4");
        assert_eq!(
            t(
                &[HtmlEntityDecode],
                "&lt;x&gt;&#60;&#x3C;&#X3c&amp;&bogus;&#;&LT;"
            ),
            "<x><<<&&bogus;&#;<"
        );
        assert_eq!(
            t(&[CompressWhitespace], "a \t\r\n b\u{a0}\u{a0}c  "),
            "a b c "
        );
        assert!(matches!(
            apply(&[Lowercase, UrlDecode], b"plain"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn order_matters() {
        // Double encoding: decoding once leaves %3C, twice gives '<'.
        assert_eq!(t(&[UrlDecode], "%253C"), "%3C");
        assert_eq!(t(&[UrlDecode, UrlDecode], "%253C"), "<");
        // Lowercase after decode catches %53ELECT; before decode it cannot.
        assert_eq!(t(&[UrlDecode, Lowercase], "%53ELECT"), "select");
        assert_eq!(t(&[Lowercase, UrlDecode], "%53ELECT"), "Select");
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let evil: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        let all = [Lowercase, UrlDecode, HtmlEntityDecode, CompressWhitespace];
        let out = apply(&all, &evil);
        assert!(out.len() <= evil.len());
        for tail in [
            &b"%"[..],
            b"%4",
            b"&",
            b"&#",
            b"&#x",
            b"&#99999999999;",
            b"&#x110000;",
            b"\xc2",
        ] {
            let _ = apply(&all, tail);
        }
        assert_eq!(t(&[HtmlEntityDecode], "&#x110000;"), "\u{fffd}");
    }
}
