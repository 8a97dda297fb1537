//! One stored answer: built once from the function's response (headers
//! cleaned, ETag made, compressed forms made) and rendered per request
//! (coding chosen, `Age`, `X-Cache`, 304 or HEAD without a body).
//!
//! It owns what a stored object holds and how it is served; it must never
//! compress on the render path (only [`Entry::new`] compresses) and never
//! touch the store or the network.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use tokio::time::Instant;

use super::compress::{self, Coding};
use super::conditional;

/// Bytes an entry costs beyond its key, bodies and headers (the struct, the
/// map's own bookkeeping), so that a flood of tiny objects is bounded too.
const ENTRY_OVERHEAD: usize = 256;
/// Per-header overhead in the weight estimate (HeaderMap slot and indices).
const HEADER_OVERHEAD: usize = 32;

/// Headers that describe one response, not the object, so they are never
/// stored: hop-by-hop ones, lengths (recomputed), our own labels, and the
/// request id the pipeline stamps on each answer.
const NOT_STORED: [&str; 12] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "age",
    "x-cache",
    "etag",
    "apigw-requestid",
];

/// The `X-Cache` label of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XCache {
    /// Served from a stored, fresh entry (or collapsed onto another
    /// request's fresh answer).
    Hit,
    /// The function was invoked for this answer (or it could not be stored).
    Miss,
    /// Served past its freshness (stale-while-revalidate / stale-if-error).
    Stale,
}

impl XCache {
    fn value(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            XCache::Hit => "Hit",
            XCache::Miss => "Miss",
            XCache::Stale => "Stale",
        })
    }

    /// Sets the label on a response: the header for the client, and an
    /// extension for the edge's own metrics (a function could send the
    /// header itself; it cannot set an extension).
    pub(crate) fn stamp<B>(self, resp: &mut Response<B>) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-cache"), self.value());
        resp.extensions_mut().insert(self);
    }
}

/// How an entry is filled: the route's windows and the store's compression
/// threshold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fill {
    pub(crate) ttl: Duration,
    pub(crate) negative: bool,
    pub(crate) head_only: bool,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
    /// `None` when the route turned compression off.
    pub(crate) compress_min: Option<u64>,
}

/// A stored answer.
#[derive(Debug)]
pub(crate) struct Entry {
    status: StatusCode,
    headers: HeaderMap,
    identity: Bytes,
    gzip: Option<Bytes>,
    br: Option<Bytes>,
    /// The function's ETag, or a strong one hashed from the body.
    etag: HeaderValue,
    /// The same tag marked weak, sent with compressed forms (a coded body is
    /// another representation, so the strong tag would be a lie).
    weak_etag: HeaderValue,
    stored_at: Instant,
    fill: Fill,
}

impl Entry {
    /// Builds an entry, compressing compressible bodies once (each
    /// compression counted in `compressions`).
    pub(crate) fn new(
        parts: &http::response::Parts,
        body: Bytes,
        fill: Fill,
        now: Instant,
        compressions: &AtomicU64,
    ) -> Entry {
        let mut headers = parts.headers.clone();
        let etag = headers
            .get(header::ETAG)
            .cloned()
            .unwrap_or_else(|| strong_etag(&body));
        for name in NOT_STORED {
            headers.remove(name);
        }
        let already_coded = headers.contains_key(header::CONTENT_ENCODING);
        let worth = fill
            .compress_min
            .is_some_and(|min| body.len() as u64 >= min)
            && !already_coded
            && !fill.head_only
            && compress::compressible(headers.get(header::CONTENT_TYPE));
        let (gzip, br) = if worth {
            compressions.fetch_add(2, Ordering::Relaxed);
            (compress::gzip(&body), compress::brotli(&body))
        } else {
            (None, None)
        };
        if gzip.is_some() || br.is_some() {
            add_vary_accept_encoding(&mut headers);
        }
        let weak_etag = if etag.as_bytes().starts_with(b"W/") {
            etag.clone()
        } else {
            let mut w = b"W/".to_vec();
            w.extend_from_slice(etag.as_bytes());
            HeaderValue::from_bytes(&w).unwrap_or_else(|_| etag.clone())
        };
        Entry {
            status: parts.status,
            headers,
            identity: body,
            gzip,
            br,
            etag,
            weak_etag,
            stored_at: now,
            fill,
        }
    }

    /// Whether it is still fresh at `now`.
    pub(crate) fn fresh(&self, now: Instant) -> bool {
        self.age(now) < self.fill.ttl
    }

    /// Whether it may be served stale while one refresh runs.
    pub(crate) fn within_revalidate(&self, now: Instant) -> bool {
        self.within(now, self.fill.stale_while_revalidate)
    }

    /// Whether it may be served in place of a failed invocation.
    pub(crate) fn within_if_error(&self, now: Instant) -> bool {
        self.within(now, self.fill.stale_if_error)
    }

    /// Negative answers are never served stale: only a last *good* answer
    /// replaces a failure.
    fn within(&self, now: Instant, window: Duration) -> bool {
        !self.fill.negative && self.age(now) < self.fill.ttl.saturating_add(window)
    }

    /// How long the store should keep it: freshness plus the longer stale
    /// window.
    pub(crate) fn keep_for(&self) -> Duration {
        let stale = if self.fill.negative {
            Duration::ZERO
        } else {
            self.fill
                .stale_while_revalidate
                .max(self.fill.stale_if_error)
        };
        self.fill.ttl.saturating_add(stale)
    }

    /// Bytes it costs in the store, with its key.
    pub(crate) fn weight(&self, key: &str) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + HEADER_OVERHEAD)
            .sum();
        let bodies = self.identity.len()
            + self.gzip.as_ref().map_or(0, Bytes::len)
            + self.br.as_ref().map_or(0, Bytes::len);
        let total = key.len() + headers + bodies + ENTRY_OVERHEAD + 2 * self.etag.len();
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    /// The answer for one request: a 304 when its condition matches, the
    /// negotiated coding otherwise, no body for HEAD.
    pub(crate) fn render(
        &self,
        method: &Method,
        req: &HeaderMap,
        now: Instant,
        label: XCache,
    ) -> Response<Bytes> {
        let coding = compress::negotiate(req, self.gzip.is_some(), self.br.is_some());
        let (body, etag) = match coding {
            Coding::Identity => (&self.identity, &self.etag),
            Coding::Gzip => (
                self.gzip.as_ref().unwrap_or(&self.identity),
                &self.weak_etag,
            ),
            Coding::Br => (self.br.as_ref().unwrap_or(&self.identity), &self.weak_etag),
        };
        let validators = !self.fill.negative;
        let mut resp = if validators
            && self.status == StatusCode::OK
            && conditional::not_modified(req, etag, self.headers.get(header::LAST_MODIFIED))
        {
            let mut resp = Response::new(Bytes::new());
            *resp.status_mut() = StatusCode::NOT_MODIFIED;
            // RFC 9110 §15.4.5: the headers a 200 would have carried that
            // describe caching and validation, and no body.
            for name in [
                header::CACHE_CONTROL,
                header::CONTENT_LOCATION,
                header::DATE,
                header::EXPIRES,
                header::LAST_MODIFIED,
                header::VARY,
            ] {
                for v in self.headers.get_all(&name) {
                    resp.headers_mut().append(name.clone(), v.clone());
                }
            }
            resp
        } else {
            let mut resp = Response::new(if *method == Method::HEAD {
                Bytes::new()
            } else {
                body.clone()
            });
            *resp.status_mut() = self.status;
            *resp.headers_mut() = self.headers.clone();
            if let Some(v) = coding.header() {
                resp.headers_mut().insert(header::CONTENT_ENCODING, v);
            }
            if *method == Method::HEAD {
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            }
            resp
        };
        let h = resp.headers_mut();
        if validators {
            h.insert(header::ETAG, etag.clone());
        }
        h.insert(header::AGE, HeaderValue::from(self.age(now).as_secs()));
        label.stamp(&mut resp);
        resp
    }
}

/// A strong ETag from two differently-seeded SipHashes of the body (128
/// bits: a collision would wrongly answer 304, so 64 bits felt thin).
fn strong_etag(body: &[u8]) -> HeaderValue {
    let half = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        body.hash(&mut h);
        h.finish()
    };
    let tag = format!("\"{:016x}{:016x}\"", half(1), half(2));
    HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Makes sure `Vary` names Accept-Encoding (compressed forms exist).
fn add_vary_accept_encoding(headers: &mut HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|n| n.trim().eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill() -> Fill {
        Fill {
            ttl: Duration::from_secs(60),
            negative: false,
            head_only: false,
            stale_while_revalidate: Duration::from_secs(30),
            stale_if_error: Duration::from_secs(300),
            compress_min: Some(1024),
        }
    }

    fn entry(body: &str, ct: &str, headers: &[(&str, &str)], fill: Fill) -> (Entry, u64) {
        let mut resp = Response::new(());
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).expect("ct"));
        for (n, v) in headers {
            resp.headers_mut().insert(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let (parts, ()) = resp.into_parts();
        let n = AtomicU64::new(0);
        let e = Entry::new(
            &parts,
            Bytes::from(body.to_owned()),
            fill,
            Instant::now(),
            &n,
        );
        (e, n.load(Ordering::Relaxed))
    }

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.insert(
                HeaderName::from_bytes(n.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        m
    }

    #[test]
    fn big_text_is_compressed_once_and_served_by_negotiation() {
        let body = "{\"greeting\":\"hello\"}".repeat(200);
        let (e, n) = entry(&body, "application/json", &[], fill());
        assert_eq!(n, 2, "gzip and br made at store time");
        let now = Instant::now();
        let br = e.render(
            &Method::GET,
            &req(&[("accept-encoding", "gzip, br")]),
            now,
            XCache::Hit,
        );
        assert_eq!(br.headers()["content-encoding"], "br");
        assert_eq!(br.headers()["vary"], "Accept-Encoding");
        assert!(br.headers()["etag"].as_bytes().starts_with(b"W/\""));
        assert!(br.body().len() < body.len());
        let gz = e.render(
            &Method::GET,
            &req(&[("accept-encoding", "gzip")]),
            now,
            XCache::Hit,
        );
        assert_eq!(gz.headers()["content-encoding"], "gzip");
        let plain = e.render(&Method::GET, &HeaderMap::new(), now, XCache::Miss);
        assert!(plain.headers().get("content-encoding").is_none());
        assert_eq!(plain.body(), body.as_bytes());
        assert_eq!(plain.headers()["x-cache"], "Miss");
        assert_eq!(plain.headers()["age"], "0");
        let head = e.render(&Method::HEAD, &HeaderMap::new(), now, XCache::Hit);
        assert!(head.body().is_empty());
        assert_eq!(
            head.headers()["content-length"],
            body.len().to_string().as_str()
        );
    }

    #[test]
    fn small_binary_and_precoded_bodies_are_not_compressed() {
        let big = "x".repeat(4096);
        for (body, ct, headers) in [
            ("small", "text/plain", &[][..]),
            (big.as_str(), "image/png", &[][..]),
            (
                big.as_str(),
                "text/plain",
                &[("content-encoding", "gzip")][..],
            ),
        ] {
            let (e, n) = entry(body, ct, headers, fill());
            assert_eq!(n, 0, "{ct} {headers:?}");
            let r = e.render(
                &Method::GET,
                &req(&[("accept-encoding", "br")]),
                Instant::now(),
                XCache::Hit,
            );
            assert!(r.headers().get("vary").is_none());
        }
        let off = Fill {
            compress_min: None,
            ..fill()
        };
        assert_eq!(entry(&big, "text/plain", &[], off).1, 0);
    }

    #[test]
    fn conditional_requests_get_304_without_a_body() {
        let (e, _) = entry(
            "hello",
            "text/plain",
            &[
                ("cache-control", "max-age=60"),
                ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ],
            fill(),
        );
        let now = Instant::now();
        let full = e.render(&Method::GET, &HeaderMap::new(), now, XCache::Hit);
        let tag = full.headers()["etag"].clone();
        assert!(tag.as_bytes().starts_with(b"\""), "generated strong tag");
        let r = e.render(
            &Method::GET,
            &req(&[("if-none-match", tag.to_str().expect("ascii"))]),
            now,
            XCache::Hit,
        );
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(r.body().is_empty());
        assert_eq!(r.headers()["etag"], tag);
        assert_eq!(r.headers()["cache-control"], "max-age=60");
        assert!(r.headers().get("age").is_some());
        let r = e.render(
            &Method::GET,
            &req(&[("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            now,
            XCache::Hit,
        );
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        let (e, _) = entry("x", "text/plain", &[("etag", "\"v1\"")], fill());
        let r = e.render(
            &Method::GET,
            &req(&[("if-none-match", "\"v2\"")]),
            now,
            XCache::Hit,
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["etag"], "\"v1\"");
    }

    #[test]
    fn windows_and_weight() {
        let (e, _) = entry("hello", "text/plain", &[], fill());
        let t0 = Instant::now();
        assert!(e.fresh(t0));
        let later = t0 + Duration::from_secs(61);
        assert!(!e.fresh(later));
        assert!(e.within_revalidate(later));
        assert!(!e.within_revalidate(t0 + Duration::from_secs(91)));
        assert!(e.within_if_error(t0 + Duration::from_secs(359)));
        assert_eq!(e.keep_for(), Duration::from_secs(360));
        assert!(e.weight("k") as usize > ENTRY_OVERHEAD + 5);
        let negative = Fill {
            negative: true,
            ..fill()
        };
        let (e, _) = entry("nope", "text/plain", &[], negative);
        assert!(!e.within_if_error(t0 + Duration::from_secs(61)));
        assert_eq!(e.keep_for(), Duration::from_secs(60));
    }
}
