//! Builds the API Gateway HTTP API **payload format 2.0** event for one request.
//!
//! This module owns the translation of an already-received, already-routed HTTP
//! request into the exact JSON document a Lambda function expects from API
//! Gateway (`version: "2.0"`). It is pure: no I/O, no clock reads (the caller
//! passes `now`), no global state, no logging.
//!
//! It must never:
//! - panic on any input (hostile header bytes, invalid UTF-8, odd URIs);
//! - alter the request it describes (`rawPath` / `rawQueryString` are passed
//!   through verbatim, still percent-encoded);
//! - leak platform internals into the event (only the fixed [`ACCOUNT_ID`] and
//!   [`API_ID`] identify the "API").
//!
//! Wire shape produced (field order as below; absent fields are omitted, never
//! `null`): `version`, `routeKey`, `rawPath`, `rawQueryString`, `cookies`
//! (omitted when none), `headers`, `queryStringParameters` (omitted when none),
//! `pathParameters` (omitted when none), `requestContext`, `body` (omitted when
//! the request body is empty), `isBase64Encoded`. `stageVariables` is never
//! emitted.
//!
//! The document is compatible with
//! [`aws_lambda_events::apigw::ApiGatewayV2httpRequest`] (the tests parse it
//! back with that type), but it is serialised from borrowed, purpose-built
//! structs instead: that type's header serialiser keeps only the first value of
//! a repeated header, always emits `stageVariables`, and emits v1/authorizer
//! fields (`httpMethod`, `type`, `methodArn`, …) that HTTP API 2.0 events do
//! not carry. Serialising borrowed data also avoids building a `HeaderMap`, a
//! `QueryMap` and a `HashMap` copy of the request on every invocation.
//!
//! Decisions beyond the AWS documentation:
//! - Header values that are not valid UTF-8 (obs-text) are converted lossily
//!   (U+FFFD); repeated headers are joined with `,` in arrival order.
//! - `cookies` come from every `Cookie` header, split on `;`, trimmed, empty
//!   pieces dropped. `Cookie` itself is not copied into `headers`.
//! - Query parameters are split on `&`, a piece without `=` has the value `""`,
//!   `+` decodes to a space, `%XX` is decoded; malformed escapes are kept
//!   literally, and a key/value whose decoding is not UTF-8 is kept raw.
//!   Repeated keys are joined with `,` in arrival order. Keys are emitted in
//!   byte order (JSON objects are unordered).
//! - Path parameters are percent-decoded (`+` stays `+`); a value whose
//!   decoding is not UTF-8 is kept raw.
//! - `domainName` is the `Host` header (or, for HTTP/2 without `Host`, the URI
//!   authority) without its port; `localhost` if neither is present.
//!   `domainPrefix` is its first dot-separated label.
//! - `sourceIp` is canonicalised (an IPv4-mapped IPv6 peer is shown as IPv4).
//! - `userAgent` is `""` when the request has no `User-Agent`.
//! - `timeEpoch` is milliseconds since the Unix epoch (0 for a clock before it).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Datelike, Timelike, Utc};
use http::header::{CONTENT_TYPE, COOKIE, HOST, USER_AGENT};
use http::{HeaderMap, Method, Uri, Version};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::authorizer::Granted;
use crate::tls::ClientCert;

/// The fixed AWS account id reported in `requestContext.accountId`.
pub const ACCOUNT_ID: &str = "000000000000";
/// The fixed API id reported in `requestContext.apiId`.
pub const API_ID: &str = "levee";

/// Everything [`build_event`] needs to know about one routed request.
#[derive(Debug)]
pub struct EventInput<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target in origin form (path and query) as received.
    pub uri: &'a Uri,
    /// The HTTP version the request arrived with.
    pub version: Version,
    /// The request headers as received.
    pub headers: &'a HeaderMap,
    /// The complete request body.
    pub body: &'a [u8],
    /// The peer address.
    pub source_ip: IpAddr,
    /// The matched route, e.g. `GET /hello/{name}` (or `$default`).
    pub route_key: &'a str,
    /// Path parameters captured by the router, still percent-encoded.
    pub path_params: &'a [(String, String)],
    /// The request id (also used as `requestContext.requestId`).
    pub request_id: &'a str,
    /// The time the request was received.
    pub now: SystemTime,
    /// The verified client certificate, on a mutual-TLS listener.
    pub client_cert: Option<&'a ClientCert>,
    /// What the route's authorizer let through.
    pub authorizer: Option<&'a Granted>,
}

/// Failure to build an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The event could not be serialised to JSON (not expected in practice).
    #[error("failed to serialise the request event")]
    Serialize(#[source] serde_json::Error),
}

/// Builds the API Gateway HTTP API payload 2.0 event as JSON bytes.
///
/// The output parses as [`aws_lambda_events::apigw::ApiGatewayV2httpRequest`];
/// see the module documentation for the exact shape and the decisions taken
/// where AWS leaves room.
pub fn build_event(input: &EventInput<'_>) -> Result<Vec<u8>, EventError> {
    let headers = input.headers;
    let raw_path = input.uri.path();
    let raw_query = input.uri.query().unwrap_or("");

    let epoch_ms = epoch_millis(input.now);
    let domain_name = domain_name(headers, input.uri);
    let user_agent = headers
        .get(USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .unwrap_or(Cow::Borrowed(""));

    let body = body(headers, input.body);

    let event = Event {
        version: "2.0",
        route_key: input.route_key,
        raw_path,
        raw_query_string: raw_query,
        cookies: Cookies(collect_cookies(headers)),
        headers: Headers(headers),
        query_string_parameters: QueryParams(parse_query(raw_query)),
        path_parameters: PathParams(input.path_params),
        request_context: RequestContext {
            account_id: ACCOUNT_ID,
            api_id: API_ID,
            domain_name,
            domain_prefix: domain_name.split('.').next().unwrap_or(domain_name),
            http: HttpDescription {
                method: input.method.as_str(),
                path: raw_path,
                protocol: protocol(input.version),
                source_ip: AsDisplay(input.source_ip.to_canonical()),
                user_agent,
            },
            request_id: input.request_id,
            route_key: input.route_key,
            authentication: input
                .client_cert
                .map(|client_cert| Authentication { client_cert }),
            authorizer: input.authorizer,
            stage: "$default",
            time: AsDisplay(ClfTime(epoch_ms)),
            time_epoch: epoch_ms,
        },
        is_base64_encoded: matches!(body, Some(Body::Base64(_))),
        body,
    };

    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 8)
        .sum();
    let capacity = 640
        + 2 * (raw_path.len() + raw_query.len())
        + header_bytes
        + input.body.len().div_ceil(3) * 4;
    let mut out = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut out, &event).map_err(EventError::Serialize)?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Wire structs (borrowed; serialised directly).

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    version: &'static str,
    route_key: &'a str,
    raw_path: &'a str,
    raw_query_string: &'a str,
    #[serde(skip_serializing_if = "Cookies::is_empty")]
    cookies: Cookies<'a>,
    headers: Headers<'a>,
    #[serde(skip_serializing_if = "QueryParams::is_empty")]
    query_string_parameters: QueryParams<'a>,
    #[serde(skip_serializing_if = "PathParams::is_empty")]
    path_parameters: PathParams<'a>,
    request_context: RequestContext<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Body<'a>>,
    is_base64_encoded: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext<'a> {
    account_id: &'static str,
    api_id: &'static str,
    domain_name: &'a str,
    domain_prefix: &'a str,
    http: HttpDescription<'a>,
    request_id: &'a str,
    route_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    authentication: Option<Authentication<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizer: Option<&'a Granted>,
    stage: &'static str,
    time: AsDisplay<ClfTime>,
    time_epoch: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Authentication<'a> {
    client_cert: &'a ClientCert,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpDescription<'a> {
    method: &'a str,
    path: &'a str,
    protocol: &'static str,
    source_ip: AsDisplay<IpAddr>,
    user_agent: Cow<'a, str>,
}

/// Serialises any `Display` value as a JSON string without an intermediate
/// `String`.
struct AsDisplay<T>(T);

impl<T: fmt::Display> Serialize for AsDisplay<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// The request body as it goes on the wire.
enum Body<'a> {
    Text(&'a str),
    Base64(&'a [u8]),
}

impl Serialize for Body<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Body::Text(t) => s.serialize_str(t),
            Body::Base64(b) => s.collect_str(&Base64Display::new(b, &STANDARD)),
        }
    }
}

struct Cookies<'a>(Vec<Cow<'a, str>>);

impl Cookies<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Cookies<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

/// All request headers except `Cookie`, repeated names joined with `,`.
struct Headers<'a>(&'a HeaderMap);

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for name in self.0.keys() {
            if name == COOKIE {
                continue;
            }
            let mut values = self.0.get_all(name).iter();
            let Some(first) = values.next() else {
                continue;
            };
            if values.next().is_none() {
                map.serialize_entry(name.as_str(), &String::from_utf8_lossy(first.as_bytes()))?;
            } else {
                map.serialize_entry(name.as_str(), &AsDisplay(JoinedValues(self.0, name)))?;
            }
        }
        map.end()
    }
}

/// `Display` of every value of one header, joined with `,`.
struct JoinedValues<'a>(&'a HeaderMap, &'a http::HeaderName);

impl fmt::Display for JoinedValues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.get_all(self.1).iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            f.write_str(&String::from_utf8_lossy(v.as_bytes()))?;
        }
        Ok(())
    }
}

/// Decoded query parameters, sorted by key (stable, so values of a repeated
/// key stay in arrival order).
struct QueryParams<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl QueryParams<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for QueryParams<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        let pairs = &self.0;
        let mut i = 0;
        while i < pairs.len() {
            let key = &pairs[i].0;
            let mut end = i + 1;
            while end < pairs.len() && pairs[end].0 == *key {
                end += 1;
            }
            if end == i + 1 {
                map.serialize_entry(key, &pairs[i].1)?;
            } else {
                map.serialize_entry(key, &AsDisplay(JoinedQuery(&pairs[i..end])))?;
            }
            i = end;
        }
        map.end()
    }
}

struct JoinedQuery<'p, 'a>(&'p [(Cow<'a, str>, Cow<'a, str>)]);

impl fmt::Display for JoinedQuery<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (_, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            f.write_str(v)?;
        }
        Ok(())
    }
}

struct PathParams<'a>(&'a [(String, String)]);

impl PathParams<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for PathParams<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, &percent_decode(v, false))?;
        }
        map.end()
    }
}

/// `dd/Mon/yyyy:HH:MM:SS +0000` (UTC), from epoch milliseconds.
struct ClfTime(i64);

impl fmt::Display for ClfTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let t: DateTime<Utc> = DateTime::from_timestamp_millis(self.0).unwrap_or_default();
        write!(
            f,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
            t.day(),
            MONTHS[t.month0() as usize % 12],
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

// ---------------------------------------------------------------------------
// Helpers.

fn epoch_millis(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `Host` (or URI authority) without the port.
fn domain_name<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> &'a str {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    match host {
        Some(h) => strip_port(strip_userinfo(h)),
        None => "localhost",
    }
}

fn strip_userinfo(h: &str) -> &str {
    h.rsplit_once('@').map_or(h, |(_, host)| host)
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        // IPv6 literal: keep up to and including the closing bracket.
        return match h.find(']') {
            Some(end) => &h[..=end],
            None => h,
        };
    }
    h.split_once(':').map_or(h, |(host, _)| host)
}

fn collect_cookies(headers: &HeaderMap) -> Vec<Cow<'_, str>> {
    let mut out = Vec::new();
    for value in headers.get_all(COOKIE) {
        match String::from_utf8_lossy(value.as_bytes()) {
            Cow::Borrowed(s) => out.extend(
                s.split(';')
                    .map(|c| c.trim_matches([' ', '\t']))
                    .filter(|c| !c.is_empty())
                    .map(Cow::Borrowed),
            ),
            Cow::Owned(s) => out.extend(
                s.split(';')
                    .map(|c| c.trim_matches([' ', '\t']))
                    .filter(|c| !c.is_empty())
                    .map(|c| Cow::Owned(c.to_owned())),
            ),
        }
    }
    out
}

fn parse_query(raw: &str) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// Decodes `%XX` (and `+` as a space when `plus` is set). Malformed escapes
/// are kept literally; a result that is not UTF-8 falls back to the input.
fn percent_decode(s: &str, plus: bool) -> Cow<'_, str> {
    match levee_shield::firewall::percent_decode(s.as_bytes(), plus) {
        None => Cow::Borrowed(s),
        Some(decoded) => String::from_utf8(decoded).map_or(Cow::Borrowed(s), Cow::Owned),
    }
}

fn body<'a>(headers: &HeaderMap, body: &'a [u8]) -> Option<Body<'a>> {
    if body.is_empty() {
        return None;
    }
    let textual = match headers.get(CONTENT_TYPE) {
        None => true,
        Some(ct) => is_textual(ct.as_bytes()),
    };
    if textual {
        if let Ok(text) = std::str::from_utf8(body) {
            return Some(Body::Text(text));
        }
    }
    Some(Body::Base64(body))
}

/// Whether a `Content-Type` value denotes text that may be sent unencoded.
fn is_textual(ct: &[u8]) -> bool {
    let Ok(ct) = std::str::from_utf8(ct) else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = media.split_once('/') else {
        return false;
    };
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let ends = |s: &str, suffix: &str| {
        s.len() >= suffix.len()
            && s.is_char_boundary(s.len() - suffix.len())
            && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    eq(kind, "text")
        || eq(sub, "json")
        || ends(sub, "+json")
        || eq(sub, "xml")
        || ends(sub, "+xml")
        || (eq(kind, "application") && (eq(sub, "javascript") || eq(sub, "x-www-form-urlencoded")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
    use base64::Engine as _;
    use http::HeaderValue;
    use serde_json::Value;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    /// 2020-03-12T19:03:58.123Z
    const T_MS: u64 = 1_584_039_838_123;

    struct Req {
        method: Method,
        uri: Uri,
        version: Version,
        headers: HeaderMap,
        body: Vec<u8>,
        source_ip: IpAddr,
        route_key: String,
        path_params: Vec<(String, String)>,
        now: SystemTime,
    }

    impl Req {
        fn new(uri: &str) -> Self {
            Req {
                method: Method::GET,
                uri: uri.parse().unwrap(),
                version: Version::HTTP_11,
                headers: HeaderMap::new(),
                body: Vec::new(),
                source_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                route_key: "GET /hello/{name}".into(),
                path_params: Vec::new(),
                now: UNIX_EPOCH + Duration::from_millis(T_MS),
            }
        }
        fn header(mut self, name: &'static str, value: &str) -> Self {
            self.headers
                .append(name, HeaderValue::from_str(value).unwrap());
            self
        }
        fn body(mut self, b: &[u8]) -> Self {
            self.body = b.to_vec();
            self
        }
        fn bytes(&self) -> Vec<u8> {
            build_event(&EventInput {
                method: &self.method,
                uri: &self.uri,
                version: self.version,
                headers: &self.headers,
                body: &self.body,
                source_ip: self.source_ip,
                route_key: &self.route_key,
                path_params: &self.path_params,
                request_id: "req-1",
                now: self.now,
                client_cert: None,
                authorizer: None,
            })
            .unwrap()
        }
        fn json(&self) -> Value {
            serde_json::from_slice(&self.bytes()).unwrap()
        }
    }

    #[test]
    fn top_level_shape() {
        let v = Req::new("/hello/world?x=1").json();
        assert_eq!(v["version"], "2.0");
        assert_eq!(v["routeKey"], "GET /hello/{name}");
        assert_eq!(v["rawPath"], "/hello/world");
        assert_eq!(v["rawQueryString"], "x=1");
        assert_eq!(v["isBase64Encoded"], false);
        let obj = v.as_object().unwrap();
        for absent in ["cookies", "body", "pathParameters", "stageVariables"] {
            assert!(!obj.contains_key(absent), "{absent} must be absent");
        }
        // No v1 / authorizer noise.
        for absent in ["httpMethod", "type", "methodArn", "resource", "path"] {
            assert!(!obj.contains_key(absent), "{absent} must be absent");
        }
        assert!(obj["headers"].as_object().unwrap().is_empty());
    }

    #[test]
    fn no_query_means_empty_raw_and_no_params() {
        let v = Req::new("/a").json();
        assert_eq!(v["rawQueryString"], "");
        assert!(v.get("queryStringParameters").is_none());
    }

    #[test]
    fn query_decoding_and_duplicate_joining() {
        let v = Req::new("/a?b=2&a=1&a=%20x%2By&c&d=&e=a+b&&f=%zz&g=%E2%82%AC&a=3").json();
        assert_eq!(
            v["rawQueryString"],
            "b=2&a=1&a=%20x%2By&c&d=&e=a+b&&f=%zz&g=%E2%82%AC&a=3"
        );
        let q = &v["queryStringParameters"];
        assert_eq!(q["a"], "1, x+y,3");
        assert_eq!(q["b"], "2");
        assert_eq!(q["c"], "");
        assert_eq!(q["d"], "");
        assert_eq!(q["e"], "a b");
        assert_eq!(q["f"], "%zz");
        assert_eq!(q["g"], "€");
        assert_eq!(q.as_object().unwrap().len(), 7);
    }

    #[test]
    fn query_invalid_utf8_after_decoding_is_kept_raw() {
        let v = Req::new("/a?k%FF=v%C3%28").json();
        assert_eq!(v["queryStringParameters"]["k%FF"], "v%C3%28");
    }

    #[test]
    fn cookies_extracted_and_cookie_header_not_in_headers() {
        let v = Req::new("/")
            .header("cookie", "a=1; b=2")
            .header("cookie", "c=3;d=4; ")
            .header("x-other", "y")
            .json();
        assert_eq!(
            v["cookies"],
            serde_json::json!(["a=1", "b=2", "c=3", "d=4"])
        );
        let h = v["headers"].as_object().unwrap();
        assert!(!h.contains_key("cookie"));
        assert_eq!(h["x-other"], "y");
    }

    #[test]
    fn headers_lowercased_and_joined() {
        let mut r = Req::new("/");
        r.headers.append("X-Multi", HeaderValue::from_static("one"));
        r.headers.append("x-multi", HeaderValue::from_static("two"));
        r.headers
            .append("Accept", HeaderValue::from_static("text/html"));
        r.headers
            .append("x-bin", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let v = r.json();
        let h = v["headers"].as_object().unwrap();
        assert_eq!(h["x-multi"], "one,two");
        assert_eq!(h["accept"], "text/html");
        assert_eq!(h["x-bin"], "caf\u{fffd}");
        assert!(h.keys().all(|k| k.chars().all(|c| !c.is_ascii_uppercase())));
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn text_body_sent_as_text() {
        for ct in [
            None,
            Some("text/plain; charset=utf-8"),
            Some("application/json"),
            Some("application/vnd.api+json"),
            Some("Application/XML"),
            Some("image/svg+xml"),
            Some("application/javascript"),
            Some("application/x-www-form-urlencoded"),
        ] {
            let mut r = Req::new("/").body("héllo \"x\"".as_bytes());
            if let Some(ct) = ct {
                r = r.header("content-type", ct);
            }
            let v = r.json();
            assert_eq!(v["body"], "héllo \"x\"", "{ct:?}");
            assert_eq!(v["isBase64Encoded"], false, "{ct:?}");
        }
    }

    #[test]
    fn binary_body_base64() {
        let data = [0u8, 159, 146, 150, 255, 10];
        // Invalid UTF-8 with a textual content type.
        let v = Req::new("/")
            .header("content-type", "text/plain")
            .body(&data)
            .json();
        assert_eq!(v["isBase64Encoded"], true);
        let decoded = STANDARD.decode(v["body"].as_str().unwrap()).unwrap();
        assert_eq!(decoded, data);
        // Valid UTF-8 with a binary content type.
        let v = Req::new("/")
            .header("content-type", "application/octet-stream")
            .body(b"plain")
            .json();
        assert_eq!(v["isBase64Encoded"], true);
        assert_eq!(v["body"], "cGxhaW4=");
        // No content type but invalid UTF-8.
        let v = Req::new("/").body(&data).json();
        assert_eq!(v["isBase64Encoded"], true);
    }

    #[test]
    fn empty_body_is_absent() {
        let v = Req::new("/")
            .header("content-type", "application/octet-stream")
            .json();
        assert!(v.get("body").is_none());
        assert_eq!(v["isBase64Encoded"], false);
    }

    #[test]
    fn path_params_decoded() {
        let mut r = Req::new("/hello/J%C3%BCrgen%20x+y");
        r.path_params = vec![
            ("name".into(), "J%C3%BCrgen%20x+y".into()),
            ("bad".into(), "%FF%FE".into()),
            ("plain".into(), "abc".into()),
        ];
        let v = r.json();
        let p = &v["pathParameters"];
        assert_eq!(p["name"], "Jürgen x+y");
        assert_eq!(p["bad"], "%FF%FE");
        assert_eq!(p["plain"], "abc");
        assert_eq!(v["rawPath"], "/hello/J%C3%BCrgen%20x+y");
    }

    #[test]
    fn time_format() {
        let v = Req::new("/").json();
        assert_eq!(v["requestContext"]["time"], "12/Mar/2020:19:03:58 +0000");
        assert_eq!(v["requestContext"]["timeEpoch"], T_MS);
        let mut r = Req::new("/");
        r.now = UNIX_EPOCH + Duration::from_secs(1_704_067_199); // 2023-12-31T23:59:59Z
        assert_eq!(
            r.json()["requestContext"]["time"],
            "31/Dec/2023:23:59:59 +0000"
        );
        r.now = UNIX_EPOCH - Duration::from_secs(5);
        let v = r.json();
        assert_eq!(v["requestContext"]["time"], "01/Jan/1970:00:00:00 +0000");
        assert_eq!(v["requestContext"]["timeEpoch"], 0);
    }

    #[test]
    fn request_context_fields() {
        let mut r = Req::new("/hello/world?q=1")
            .header("host", "api.example.com:8443")
            .header("user-agent", "curl/8.0");
        r.method = Method::POST;
        r.version = Version::HTTP_2;
        r.source_ip = IpAddr::V6(Ipv4Addr::new(10, 1, 2, 3).to_ipv6_mapped());
        let v = r.json();
        let c = &v["requestContext"];
        assert_eq!(c["accountId"], ACCOUNT_ID);
        assert_eq!(c["apiId"], API_ID);
        assert_eq!(c["domainName"], "api.example.com");
        assert_eq!(c["domainPrefix"], "api");
        assert_eq!(c["requestId"], "req-1");
        assert_eq!(c["routeKey"], "GET /hello/{name}");
        assert_eq!(c["stage"], "$default");
        assert_eq!(c["http"]["method"], "POST");
        assert_eq!(c["http"]["path"], "/hello/world");
        assert_eq!(c["http"]["protocol"], "HTTP/2.0");
        assert_eq!(c["http"]["sourceIp"], "10.1.2.3");
        assert_eq!(c["http"]["userAgent"], "curl/8.0");
        // Host is still passed through as a header.
        assert_eq!(v["headers"]["host"], "api.example.com:8443");
    }

    #[test]
    fn domain_name_fallbacks() {
        let v = Req::new("/").header("host", "[::1]:9000").json();
        assert_eq!(v["requestContext"]["domainName"], "[::1]");
        let v = Req::new("http://fn.local:8080/x").json();
        assert_eq!(v["requestContext"]["domainName"], "fn.local");
        assert_eq!(v["requestContext"]["domainPrefix"], "fn");
        let mut r = Req::new("/");
        r.source_ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        r.version = Version::HTTP_10;
        let v = r.json();
        assert_eq!(v["requestContext"]["domainName"], "localhost");
        assert_eq!(v["requestContext"]["http"]["sourceIp"], "::1");
        assert_eq!(v["requestContext"]["http"]["protocol"], "HTTP/1.0");
        assert_eq!(v["requestContext"]["http"]["userAgent"], "");
    }

    #[test]
    fn round_trip_with_aws_lambda_events() {
        let mut r = Req::new("/hello/w%20x?a=1&a=2&b=c")
            .header("host", "h.example.com")
            .header("cookie", "s=1; t=2")
            .header("x-dup", "1")
            .header("x-dup", "2")
            .header("content-type", "application/octet-stream")
            .body(&[1, 2, 3, 255]);
        r.method = Method::PUT;
        r.path_params = vec![("name".into(), "w%20x".into())];
        let e: ApiGatewayV2httpRequest = serde_json::from_slice(&r.bytes()).unwrap();
        assert_eq!(e.version.as_deref(), Some("2.0"));
        assert_eq!(e.route_key.as_deref(), Some("GET /hello/{name}"));
        assert_eq!(e.raw_path.as_deref(), Some("/hello/w%20x"));
        assert_eq!(e.raw_query_string.as_deref(), Some("a=1&a=2&b=c"));
        assert_eq!(e.cookies, Some(vec!["s=1".to_owned(), "t=2".to_owned()]));
        assert_eq!(e.headers.get("x-dup").unwrap(), "1,2");
        assert!(e.headers.get("cookie").is_none());
        assert_eq!(e.query_string_parameters.all("a"), Some(vec!["1", "2"]));
        assert_eq!(e.query_string_parameters.first("b"), Some("c"));
        assert_eq!(
            e.path_parameters.get("name").map(String::as_str),
            Some("w x")
        );
        assert!(e.stage_variables.is_empty());
        assert!(e.is_base64_encoded);
        assert_eq!(
            STANDARD.decode(e.body.unwrap()).unwrap(),
            vec![1, 2, 3, 255]
        );
        let c = e.request_context;
        assert_eq!(c.account_id.as_deref(), Some(ACCOUNT_ID));
        assert_eq!(c.apiid.as_deref(), Some(API_ID));
        assert_eq!(c.domain_name.as_deref(), Some("h.example.com"));
        assert_eq!(c.domain_prefix.as_deref(), Some("h"));
        assert_eq!(c.stage.as_deref(), Some("$default"));
        assert_eq!(c.request_id.as_deref(), Some("req-1"));
        assert_eq!(c.time_epoch, T_MS as i64);
        assert_eq!(c.http.method, Method::PUT);
        assert_eq!(c.http.path.as_deref(), Some("/hello/w%20x"));
        assert_eq!(c.http.protocol.as_deref(), Some("HTTP/1.1"));
        assert_eq!(c.http.source_ip.as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn hostile_inputs_never_panic_and_stay_valid_json() {
        let mut r = Req::new(
            "/%%%/%E2%82?%=%&&&=&%2=%G0&a=%\u{0}"
                .replace('\u{0}', "00")
                .as_str(),
        );
        r.headers
            .append("x-ctl", HeaderValue::from_bytes(b"\t\"\\\x80\xff").unwrap());
        r.headers
            .append("cookie", HeaderValue::from_bytes(b";;; \xff=1 ;").unwrap());
        r.headers.append(
            "content-type",
            HeaderValue::from_bytes(b"\xff/json").unwrap(),
        );
        r.headers.append("host", HeaderValue::from_static(":::"));
        r.path_params = vec![("p".into(), "%".into()), ("q".into(), "%F".into())];
        r.body = "{\"ok\":\"\u{1F600}\"}".into();
        let v = r.json();
        assert_eq!(v["pathParameters"]["p"], "%");
        assert_eq!(v["pathParameters"]["q"], "%F");
        assert_eq!(v["cookies"], serde_json::json!(["\u{fffd}=1"]));
        // Undecodable content type is treated as binary.
        assert_eq!(v["isBase64Encoded"], true);
        assert_eq!(v["requestContext"]["domainName"], "");

        // Many repeated query keys (sorting keeps this O(n log n)).
        let q: String = (0..6_000).map(|i| format!("k{}={i}&", i % 7)).collect();
        let v = Req::new(&format!("/?{q}")).json();
        assert_eq!(v["queryStringParameters"].as_object().unwrap().len(), 7);
        assert!(v["queryStringParameters"]["k0"]
            .as_str()
            .unwrap()
            .starts_with("0,7,14,"));
    }

    #[test]
    fn output_is_exactly_serde_json_text() {
        // Escaping of quotes/control characters in strings is handled by serde_json.
        let mut r = Req::new("/");
        r.route_key = "GET /\"quoted\"\n".into();
        let v = r.json();
        assert_eq!(v["routeKey"], "GET /\"quoted\"\n");
        assert_eq!(v["requestContext"]["routeKey"], "GET /\"quoted\"\n");
    }
}
