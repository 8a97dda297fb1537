//! Content codings: which answers are worth compressing, which coding a
//! client gets (`Accept-Encoding` negotiation), and the compressors.
//!
//! Negotiation and the type check are pure. Compression runs once per stored
//! object, when it is stored, never per hit; this module must never be called
//! on the hit path except through [`negotiate`].

use std::io::Write;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue};

/// Brotli quality: 5 is the usual on-the-fly setting (nginx, Cloudflare use
/// 4–6): most of the ratio of 11 at a small fraction of its time, and a
/// stored object (≤ the route's `max_object`, at most 64 MiB) is compressed
/// once, so the bound on the work is one pass per store.
const BROTLI_QUALITY: u32 = 5;
/// Brotli window (log2 bytes); 22 is the library default.
const BROTLI_WINDOW: u32 = 22;
/// Most `Accept-Encoding` items read; more is abuse, and the rest is ignored.
const MAX_CODINGS: usize = 32;

/// A content coding the cache can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Identity,
    Gzip,
    Br,
}

impl Coding {
    /// The `Content-Encoding` value, `None` for identity.
    pub(crate) fn header(self) -> Option<HeaderValue> {
        match self {
            Coding::Identity => None,
            Coding::Gzip => Some(HeaderValue::from_static("gzip")),
            Coding::Br => Some(HeaderValue::from_static("br")),
        }
    }
}

/// Whether a `Content-Type` is text-like enough to shrink.
pub(crate) fn compressible(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/x-javascript"
                | "application/xml"
                | "application/wasm"
                | "application/x-www-form-urlencoded"
                | "image/svg+xml"
                | "image/x-icon"
        )
}

/// The coding to send, given the request headers and which compressed forms
/// exist. Highest q wins; on a tie br beats gzip beats identity; `q=0`
/// refuses a coding; `*` covers codings not named. Identity is the answer
/// when nothing else is acceptable, even if refused (a 406 helps nobody).
pub(crate) fn negotiate(req: &HeaderMap, have_gzip: bool, have_br: bool) -> Coding {
    if !(have_gzip || have_br) {
        return Coding::Identity;
    }
    // q-values in thousandths; None = not mentioned.
    let (mut gzip, mut br, mut star, mut identity) = (None, None, None, None);
    let items = req
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .take(MAX_CODINGS);
    for item in items {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| parse_q(v.trim()))
            })
            .unwrap_or(Some(1000))
            // An unreadable weight refuses the coding rather than guessing.
            .unwrap_or(0);
        let slot = match name.as_str() {
            "gzip" | "x-gzip" => &mut gzip,
            "br" => &mut br,
            "*" => &mut star,
            "identity" => &mut identity,
            _ => continue,
        };
        *slot = Some(q);
    }
    let gzip = if have_gzip {
        gzip.or(star).unwrap_or(0)
    } else {
        0
    };
    let br = if have_br { br.or(star).unwrap_or(0) } else { 0 };
    let identity = identity.unwrap_or(1);
    let best = gzip.max(br);
    if best == 0 || identity > best {
        Coding::Identity
    } else if br == best {
        Coding::Br
    } else {
        Coding::Gzip
    }
}

/// `0`, `0.5`, `1.000`: thousandths, `None` if malformed or above 1.
fn parse_q(v: &str) -> Option<u16> {
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match whole {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        let place = [100, 10, 1][i.min(2)];
        thousandths += u16::from(b - b'0') * place;
    }
    let q = whole * 1000 + thousandths;
    (q <= 1000).then_some(q)
}

/// gzip at the default level; `None` if it would not be smaller.
pub(crate) fn gzip(body: &[u8]) -> Option<Bytes> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 2),
        flate2::Compression::default(),
    );
    enc.write_all(body).ok()?;
    smaller(enc.finish().ok()?, body.len())
}

/// Brotli at [`BROTLI_QUALITY`]; `None` if it would not be smaller.
pub(crate) fn brotli(body: &[u8]) -> Option<Bytes> {
    let out = Vec::with_capacity(body.len() / 2);
    let mut enc = brotli::CompressorWriter::new(out, 4096, BROTLI_QUALITY, BROTLI_WINDOW);
    enc.write_all(body).ok()?;
    // `into_inner` finishes the stream (a plain flush would not).
    smaller(enc.into_inner(), body.len())
}

fn smaller(out: Vec<u8>, original: usize) -> Option<Bytes> {
    (out.len() < original).then(|| Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn ae(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(v).expect("value"),
        );
        m
    }

    #[test]
    fn negotiation_follows_q_values() {
        use Coding::*;
        let cases = [
            ("gzip, deflate, br", Br),
            ("gzip", Gzip),
            ("br;q=0.5, gzip;q=0.8", Gzip),
            ("br;q=0.8, gzip;q=0.8", Br),
            ("br;q=0, gzip", Gzip),
            ("br;q=0, gzip;q=0", Identity),
            ("*", Br),
            ("*;q=0.5, br;q=0", Gzip),
            ("identity", Identity),
            ("", Identity),
            ("gzip;q=1.5", Identity),
            ("gzip;q=abc", Identity),
            ("GZIP;Q=0.9", Gzip),
            ("identity;q=1, gzip;q=0.5", Identity),
            ("identity;q=0", Identity),
            ("identity;q=0, gzip;q=0.001", Gzip),
        ];
        for (header, want) in cases {
            assert_eq!(negotiate(&ae(header), true, true), want, "{header:?}");
        }
        assert_eq!(negotiate(&HeaderMap::new(), true, true), Identity);
        assert_eq!(negotiate(&ae("br, gzip"), true, false), Gzip);
        assert_eq!(negotiate(&ae("br"), true, false), Identity);
        assert_eq!(negotiate(&ae("br, gzip"), false, false), Identity);
    }

    #[test]
    fn only_text_like_types_compress() {
        let ct = |s: &'static str| compressible(Some(&HeaderValue::from_static(s)));
        assert!(ct("text/html; charset=utf-8"));
        assert!(ct("application/json"));
        assert!(ct("application/problem+json"));
        assert!(ct("image/svg+xml"));
        assert!(!ct("image/png"));
        assert!(!ct("application/octet-stream"));
        assert!(!compressible(None));
    }

    #[test]
    fn compressors_round_trip_and_skip_what_does_not_shrink() {
        let body = "hello levee ".repeat(500);
        let gz = gzip(body.as_bytes()).expect("shrinks");
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut back)
            .expect("gunzip");
        assert_eq!(back, body);
        let br = brotli(body.as_bytes()).expect("shrinks");
        let mut back = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut back)
            .expect("unbrotli");
        assert_eq!(back, body.as_bytes());
        assert!(gzip(b"x").is_none());
        assert!(brotli(b"").is_none());
    }
}
