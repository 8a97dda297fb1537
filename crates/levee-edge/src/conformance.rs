//! The HTTP message rules the edge enforces itself, the same on HTTP/1.1 and
//! HTTP/2: which requests are refused before any other stage sees them, and
//! which answers carry no body.
//!
//! hyper parses both protocols but leaves some rules to the server: it counts
//! headers only on HTTP/1.1 (`[limits] max_headers`), accepts any `Expect`,
//! decodes `Transfer-Encoding: chunked, chunked` as one chunked body, hands
//! `CONNECT` and `TRACE` to the service, and sends an HTTP/2 response body
//! even for HEAD, 204 and 304. Pure: no I/O.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::reject::Reject;

/// Refuses a request the edge will not serve; `Ok` if it may go on through
/// the pipeline. `max_headers` is `[limits] max_headers`, counted
/// as header fields (a repeated name counts each time, as on HTTP/1.1).
pub(crate) fn check(
    method: &Method,
    headers: &HeaderMap,
    max_headers: usize,
) -> Result<(), Reject> {
    if headers.len() > max_headers {
        return Err(Reject::Malformed {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            message: "Request Header Fields Too Large",
        });
    }
    // `ANY` routes mean the methods a function can answer: CONNECT would ask
    // the edge to open a tunnel, TRACE to echo the request (credentials
    // included) back. Neither is a function's job.
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(Reject::Malformed {
            status: StatusCode::NOT_IMPLEMENTED,
            message: "Not Implemented: CONNECT and TRACE are not served",
        });
    }
    // RFC 9110 §10.1.1: 100-continue is the only expectation defined; a
    // server that cannot meet an expectation answers 417.
    if headers
        .get_all(header::EXPECT)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        return Err(Reject::Malformed {
            status: StatusCode::EXPECTATION_FAILED,
            message: "Expectation Failed: only 100-continue is supported",
        });
    }
    transfer_codings(headers)
}

/// RFC 9112 §6.1: a request's transfer codings must end in `chunked`, which
/// may appear once. hyper refuses `chunked` that is not last (400) but takes
/// `chunked, chunked` as one decoding, and passes other codings through
/// undecoded; the edge decodes nothing but `chunked`.
fn transfer_codings(headers: &HeaderMap) -> Result<(), Reject> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    let Some(first) = codings.next() else {
        return Ok(());
    };
    let mut chunked = usize::from(first.eq_ignore_ascii_case(b"chunked"));
    let mut other = chunked == 0;
    for c in codings {
        if c.eq_ignore_ascii_case(b"chunked") {
            chunked += 1;
        } else {
            other = true;
        }
    }
    if other {
        // §6.1: a coding the server does not understand gets 501.
        return Err(Reject::Malformed {
            status: StatusCode::NOT_IMPLEMENTED,
            message: "Not Implemented: the only transfer coding accepted is chunked",
        });
    }
    if chunked > 1 {
        return Err(Reject::Malformed {
            status: StatusCode::BAD_REQUEST,
            message: "Bad Request: chunked may be applied only once",
        });
    }
    Ok(())
}

/// The answer as sent: no body for HEAD, 204 or 304 (RFC 9110 §6.4.1), on
/// either protocol. A HEAD answer keeps the length its GET would have had.
pub(crate) fn without_forbidden_body(
    method: &Method,
    mut resp: Response<Bytes>,
) -> Response<Bytes> {
    let status = resp.status();
    let no_content = matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    if no_content {
        // 204 must not carry a length; a 304's would describe a body it
        // does not have, and HTTP/2 clients check lengths against DATA.
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    } else if *method == Method::HEAD && !resp.headers().contains_key(header::TRANSFER_ENCODING) {
        let len = HeaderValue::from(resp.body().len());
        resp.headers_mut()
            .entry(header::CONTENT_LENGTH)
            .or_insert(len);
    }
    if no_content || *method == Method::HEAD {
        *resp.body_mut() = Bytes::new();
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn status(method: &Method, pairs: &[(&str, &str)]) -> Option<u16> {
        check(method, &headers(pairs), 100)
            .err()
            .map(|r| crate::respond::reject(r).status().as_u16())
    }

    #[test]
    fn refuses_what_the_edge_does_not_serve() {
        assert_eq!(status(&Method::CONNECT, &[]), Some(501));
        assert_eq!(status(&Method::TRACE, &[]), Some(501));
        assert_eq!(status(&Method::GET, &[("expect", "100-continue")]), None);
        assert_eq!(status(&Method::GET, &[("expect", "100-Continue")]), None);
        assert_eq!(status(&Method::GET, &[("expect", "200-ok")]), Some(417));
        assert_eq!(
            status(&Method::GET, &[("expect", "100-continue"), ("expect", "x")]),
            Some(417)
        );
        let te = |v: &[&str]| {
            let pairs: Vec<(&str, &str)> = v.iter().map(|v| ("transfer-encoding", *v)).collect();
            status(&Method::POST, &pairs)
        };
        assert_eq!(te(&["chunked"]), None);
        assert_eq!(te(&["Chunked"]), None);
        assert_eq!(te(&["chunked, chunked"]), Some(400));
        assert_eq!(te(&["chunked", "chunked"]), Some(400));
        assert_eq!(te(&["gzip, chunked"]), Some(501));
        // Custom methods are a function's to answer.
        assert_eq!(status(&Method::from_bytes(b"PURGE").unwrap(), &[]), None);
    }

    #[test]
    fn counts_every_header_field() {
        let names: Vec<String> = (0..5).map(|i| format!("x-{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        assert!(check(&Method::GET, &headers(&pairs), 5).is_ok());
        let mut more = pairs.clone();
        more.push(("x-0", "again"));
        let r = crate::respond::reject(check(&Method::GET, &headers(&more), 5).unwrap_err());
        assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn head_204_and_304_carry_no_body() {
        let answer = |status: u16| {
            let mut r = Response::new(Bytes::from_static(b"hello"));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r
        };
        let head = without_forbidden_body(&Method::HEAD, answer(200));
        assert!(head.body().is_empty());
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "5");
        for code in [204, 304] {
            let mut r = answer(code);
            r.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(5));
            let r = without_forbidden_body(&Method::GET, r);
            assert!(r.body().is_empty(), "{code}");
            assert!(!r.headers().contains_key(header::CONTENT_LENGTH), "{code}");
        }
        let get = without_forbidden_body(&Method::GET, answer(200));
        assert_eq!(get.body().as_ref(), b"hello");
    }
}
