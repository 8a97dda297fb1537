//! Maps a function's raw output to the HTTP answer, by the API Gateway HTTP API
//! **payload format 2.0** response rules.
//!
//! This module owns only the interpretation of the bytes a function POSTed to
//! `/runtime/invocation/{id}/response`. It is pure (no I/O, no logging, no
//! clock) and must never panic on any input: every malformed or hostile
//! payload becomes a [`MappingError`], whose `Display` text is safe to send to
//! a client (it never echoes function output, only field names and, for a bad
//! status, the number).
//!
//! Rules (AWS 2.0, plus the decisions marked *Levee*):
//! - **Structured**: the output is a JSON object with a `statusCode` key →
//!   `statusCode` must be an integer in `200..=599` (a `null` or any other
//!   value is [`MappingError::BadStatus`]; *Levee*: 1xx too, because an
//!   interim status is not a final answer: a 101 would switch protocols with
//!   no `upgrade`, and any other 1xx leaves the client without one); `headers` is an object whose string
//!   values are used as-is, numbers and booleans are stringified, `null`
//!   values are skipped (*Levee*), arrays/objects are
//!   [`MappingError::BadHeader`]; `cookies` is an array of strings, each
//!   becoming one `set-cookie` header; `body` is a string (absent or `null` →
//!   empty); `isBase64Encoded` (bool, `null` = false) decodes `body` from
//!   standard base64, padding optional (invalid → [`MappingError::BadBase64`]).
//!   `multiValueHeaders` and unknown keys are ignored. A field of the wrong
//!   JSON type is [`MappingError::BadField`]. No `content-type` is added when
//!   the function sets none (*Levee*).
//! - **Bare JSON**: valid JSON that is not an object with `statusCode` → 200,
//!   `content-type: application/json`; for a JSON string the body is the
//!   string's (unescaped) content, for any other value the body is the output
//!   exactly as the function returned it (no re-serialisation).
//! - **Empty output** (nothing, or only JSON whitespace) → 200 with an empty
//!   body and no `content-type` (*Levee*; AWS never sees an empty payload, a
//!   function "returning nothing" sends `null`, which is bare JSON).
//! - **Not JSON** → [`MappingError::NotJson`] (API Gateway answers 500; the
//!   caller picks the status). This includes objects repeating a known key
//!   (`statusCode`, `headers`, `cookies`, `body`, `isBase64Encoded`). Values
//!   that are skipped (unknown keys, arrays/objects where a scalar belongs)
//!   are validated without recursion, so deep nesting cannot overflow the
//!   stack.
//! - Header names and values must be valid HTTP: a value may contain no
//!   control characters other than tab (so no CR/LF, no response splitting),
//!   otherwise [`MappingError::BadHeader`].
//! - *Levee*: framing and hop-by-hop headers set by the function
//!   (`content-length`, `transfer-encoding`, `connection`, `keep-alive`,
//!   `proxy-connection`, `te`, `trailer`, `upgrade`) are dropped: the HTTP
//!   server owns framing, and honouring them could desynchronise the
//!   connection.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, Response, StatusCode};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Why a function's output could not be mapped to an HTTP answer.
///
/// `Display` texts are safe to show to a client.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    /// The output is not valid JSON.
    #[error("the function returned a response that is not valid JSON")]
    NotJson,
    /// `statusCode` is not an integer in `200..=599`. The payload describes
    /// the offending value (a number or a JSON type name only).
    #[error("the function returned an invalid statusCode ({0})")]
    BadStatus(String),
    /// A header name or value is not valid HTTP. The payload is the header
    /// name, escaped and truncated.
    #[error("the function returned an invalid header: {0}")]
    BadHeader(String),
    /// `isBase64Encoded` is true but `body` is not valid base64.
    #[error("the function returned a body that is not valid base64")]
    BadBase64,
    /// A response field has the wrong JSON type (the field name).
    #[error("the function returned an invalid {0} field")]
    BadField(&'static str),
}

/// Maps a function's raw output (the bytes it POSTed to /response) to the HTTP
/// answer by the 2.0 rules. See the module documentation for the rules.
pub fn map_response(payload: &[u8]) -> Result<Response<Bytes>, MappingError> {
    let first = payload
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match first {
        None => Ok(Response::new(Bytes::new())),
        Some(b'{') => {
            let mut out: Structured<'_> =
                serde_json::from_slice(payload).map_err(|_| MappingError::NotJson)?;
            match out.status_code.take() {
                Some(status) => structured(status, out),
                None => Ok(bare(Bytes::copy_from_slice(payload))),
            }
        }
        Some(b'"') => {
            let s: CowStr<'_> =
                serde_json::from_slice(payload).map_err(|_| MappingError::NotJson)?;
            Ok(bare(match s.0 {
                Cow::Borrowed(s) => Bytes::copy_from_slice(s.as_bytes()),
                Cow::Owned(s) => Bytes::from(s),
            }))
        }
        Some(_) => {
            serde_json::from_slice::<IgnoredAny>(payload).map_err(|_| MappingError::NotJson)?;
            Ok(bare(Bytes::copy_from_slice(payload)))
        }
    }
}

fn bare(body: Bytes) -> Response<Bytes> {
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn structured(status: Scalar<'_>, out: Structured<'_>) -> Result<Response<Bytes>, MappingError> {
    let status = match status {
        // 1xx are interim answers the HTTP server cannot send as the final one
        // (101 would switch protocols, the rest leave the client waiting or
        // the HTTP/2 stream malformed), so only 2xx..5xx are a function's.
        Scalar::U64(n) if (200..=599).contains(&n) => {
            // In range, so `from_u16` cannot fail; map defensively anyway.
            StatusCode::from_u16(n as u16).map_err(|_| MappingError::BadStatus(n.to_string()))?
        }
        Scalar::U64(n) => return Err(MappingError::BadStatus(n.to_string())),
        Scalar::I64(n) => return Err(MappingError::BadStatus(n.to_string())),
        other => return Err(MappingError::BadStatus(other.kind().to_owned())),
    };

    let is_base64 = match out.is_base64_encoded {
        None | Some(Scalar::Null) => false,
        Some(Scalar::Bool(b)) => b,
        Some(_) => return Err(MappingError::BadField("isBase64Encoded")),
    };

    let body = match out.body {
        None | Some(Scalar::Null) => Bytes::new(),
        Some(Scalar::Str(s)) if is_base64 => Bytes::from(
            BASE64
                .decode(s.as_bytes())
                .map_err(|_| MappingError::BadBase64)?,
        ),
        Some(Scalar::Str(Cow::Borrowed(s))) => Bytes::copy_from_slice(s.as_bytes()),
        Some(Scalar::Str(Cow::Owned(s))) => Bytes::from(s),
        Some(_) => return Err(MappingError::BadField("body")),
    };

    let headers_in = match out.headers {
        None | Some(HeadersField::Null) => Vec::new(),
        Some(HeadersField::Map(h)) => h,
        Some(HeadersField::Invalid) => return Err(MappingError::BadField("headers")),
    };
    let cookies = match out.cookies {
        None | Some(CookiesField::Null) => Vec::new(),
        Some(CookiesField::List(c)) => c,
        Some(CookiesField::Invalid) => return Err(MappingError::BadField("cookies")),
    };

    let mut headers = HeaderMap::with_capacity(headers_in.len() + cookies.len());
    for (name, value) in headers_in {
        let name_str: &str = &name.0;
        let header = HeaderName::from_bytes(name_str.as_bytes())
            .map_err(|_| MappingError::BadHeader(describe_name(name_str)))?;
        let value = match value {
            Scalar::Null => continue,
            Scalar::Str(s) => header_value(s),
            Scalar::Bool(b) => Ok(HeaderValue::from_static(if b { "true" } else { "false" })),
            Scalar::U64(n) => Ok(HeaderValue::from(n)),
            Scalar::I64(n) => Ok(HeaderValue::from(n)),
            Scalar::F64(n) => header_value(Cow::Owned(n.to_string())),
            Scalar::Composite => Err(()),
        }
        .map_err(|()| MappingError::BadHeader(describe_name(name_str)))?;
        if is_framing(&header) {
            continue;
        }
        headers.append(header, value);
    }
    for cookie in cookies {
        let value = header_value(cookie.0)
            .map_err(|()| MappingError::BadHeader(SET_COOKIE.as_str().to_owned()))?;
        headers.append(SET_COOKIE, value);
    }

    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// Standard alphabet; accepts input with or without `=` padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn header_value(s: Cow<'_, str>) -> Result<HeaderValue, ()> {
    match s {
        Cow::Borrowed(s) => HeaderValue::from_bytes(s.as_bytes()).map_err(|_| ()),
        Cow::Owned(s) => HeaderValue::from_maybe_shared(Bytes::from(s)).map_err(|_| ()),
    }
}

/// Headers owned by the HTTP server, never taken from the function.
fn is_framing(name: &HeaderName) -> bool {
    use http::header::{CONNECTION, CONTENT_LENGTH, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
    name == CONTENT_LENGTH
        || name == TRANSFER_ENCODING
        || name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// A header name made safe to display: escaped and at most 64 characters.
fn describe_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .flat_map(char::escape_default)
        .take(64)
        .collect();
    if out.is_empty() {
        out.push_str("(empty name)");
    }
    out
}

// ---------------------------------------------------------------------------
// Lenient deserialisation: every known field accepts any JSON value so that
// an object *without* `statusCode` never fails to parse (it is bare JSON, and
// its other keys are arbitrary); type checks happen only in `structured`.

#[derive(Deserialize)]
struct Structured<'a> {
    #[serde(rename = "statusCode", borrow, default, deserialize_with = "present")]
    status_code: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    headers: Option<HeadersField<'a>>,
    #[serde(borrow, default)]
    cookies: Option<CookiesField<'a>>,
    #[serde(borrow, default)]
    body: Option<Scalar<'a>>,
    #[serde(rename = "isBase64Encoded", borrow, default)]
    is_base64_encoded: Option<Scalar<'a>>,
}

/// Wraps a present key in `Some` even when its value is `null`.
fn present<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Scalar<'a>>, D::Error> {
    Scalar::deserialize(d).map(Some)
}

/// A JSON string, borrowed from the input when it has no escapes.
struct CowStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(PhantomData))
    }
}

/// Any JSON value; arrays and objects are skipped and only recorded as such.
enum Scalar<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Composite,
}

impl Scalar<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "boolean",
            Scalar::U64(_) | Scalar::I64(_) => "integer",
            Scalar::F64(_) => "non-integer number",
            Scalar::Str(_) => "string",
            Scalar::Composite => "array or object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Scalar<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::I64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::F64(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Composite)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Composite)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// The `headers` field: an object of scalars, or something invalid.
enum HeadersField<'a> {
    Null,
    Map(Vec<(CowStr<'a>, Scalar<'a>)>),
    Invalid,
}

impl<'de: 'a, 'a> Deserialize<'de> for HeadersField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Lenient::<Vec<(CowStr<'a>, Scalar<'a>)>>::deserialize(d)? {
            Lenient::Null => Ok(HeadersField::Null),
            Lenient::Value(v) => Ok(HeadersField::Map(v)),
            Lenient::Invalid => Ok(HeadersField::Invalid),
        }
    }
}

/// The `cookies` field: an array of strings, or something invalid.
enum CookiesField<'a> {
    Null,
    List(Vec<CowStr<'a>>),
    Invalid,
}

impl<'de: 'a, 'a> Deserialize<'de> for CookiesField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Lenient::<Vec<CowStr<'a>>>::deserialize(d)? {
            Lenient::Null => Ok(CookiesField::Null),
            Lenient::Value(v) => Ok(CookiesField::List(v)),
            Lenient::Invalid => Ok(CookiesField::Invalid),
        }
    }
}

/// Result of leniently reading a map (as entries) or a sequence of strings:
/// any other shape, or a wrong element type, yields `Invalid` after the value
/// has been fully consumed (so parsing of the enclosing object continues).
enum Lenient<T> {
    Null,
    Value(T),
    Invalid,
}

/// Visitor methods shared by the `Lenient` visitors: `null` → `Null`, any
/// other scalar → `Invalid`.
macro_rules! lenient_scalars {
    () => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Lenient::Null)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Lenient::Null)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Lenient::Invalid)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Lenient::Invalid)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Lenient::Invalid)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Lenient::Invalid)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Lenient::Invalid)
        }
    };
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<Vec<(CowStr<'a>, Scalar<'a>)>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Lenient<Vec<(CowStr<'a>, Scalar<'a>)>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(64));
                while let Some(entry) = a.next_entry::<CowStr<'a>, Scalar<'a>>()? {
                    out.push(entry);
                }
                Ok(Lenient::Value(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient::Invalid)
            }
            lenient_scalars!();
        }
        d.deserialize_any(V(PhantomData))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<Vec<CowStr<'a>>> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Lenient<Vec<CowStr<'a>>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(64));
                let mut valid = true;
                while let Some(item) = a.next_element::<Scalar<'a>>()? {
                    match item {
                        Scalar::Str(s) if valid => out.push(CowStr(s)),
                        _ => valid = false,
                    }
                }
                Ok(if valid {
                    Lenient::Value(out)
                } else {
                    Lenient::Invalid
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Lenient::Invalid)
            }
            lenient_scalars!();
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(payload: &str) -> Response<Bytes> {
        map_response(payload.as_bytes()).unwrap()
    }

    fn err(payload: &[u8]) -> MappingError {
        map_response(payload).unwrap_err()
    }

    fn header<'r>(r: &'r Response<Bytes>, name: &str) -> Option<&'r str> {
        r.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn full_object() {
        let r = ok(r#"{
            "statusCode": 201,
            "headers": {"Content-Type": "text/plain", "X-Num": 42, "X-Neg": -1,
                        "X-Float": 1.5, "X-Bool": true, "X-Null": null},
            "multiValueHeaders": {"x-mv": ["a", "b"]},
            "body": "hi \"there\"\n",
            "isBase64Encoded": false,
            "somethingElse": [1, {"a": 2}]
        }"#);
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.body().as_ref(), b"hi \"there\"\n");
        assert_eq!(header(&r, "content-type"), Some("text/plain"));
        assert_eq!(header(&r, "x-num"), Some("42"));
        assert_eq!(header(&r, "x-neg"), Some("-1"));
        assert_eq!(header(&r, "x-float"), Some("1.5"));
        assert_eq!(header(&r, "x-bool"), Some("true"));
        assert!(r.headers().get("x-null").is_none());
        assert!(r.headers().get("x-mv").is_none());
        assert_eq!(r.headers().len(), 5);
    }

    #[test]
    fn minimal_structured_has_empty_body_and_no_content_type() {
        for p in [
            r#"{"statusCode": 204}"#,
            r#"{"statusCode": 204, "body": null, "headers": null, "cookies": null, "isBase64Encoded": null}"#,
        ] {
            let r = ok(p);
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
            assert!(r.body().is_empty());
            assert!(r.headers().is_empty());
        }
    }

    #[test]
    fn bare_object_and_array_and_scalars() {
        for p in [
            r#"{"message": "hi", "headers": [1], "body": 5}"#,
            " [1, 2, {\"statusCode\": 500}] \n",
            "42",
            "-3.5e2",
            "null",
            "true",
        ] {
            let r = ok(p);
            assert_eq!(r.status(), StatusCode::OK, "{p}");
            assert_eq!(header(&r, "content-type"), Some("application/json"), "{p}");
            assert_eq!(r.body().as_ref(), p.as_bytes(), "{p}");
            assert_eq!(r.headers().len(), 1);
        }
    }

    #[test]
    fn bare_string_body_is_its_content() {
        let r = ok(r#""hello \"world\" \u00e9""#);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(r.body().as_ref(), "hello \"world\" é".as_bytes());
        let r = ok(r#"  "plain"  "#);
        assert_eq!(r.body().as_ref(), b"plain");
    }

    #[test]
    fn empty_output_is_200_empty() {
        for p in ["", "  \r\n\t"] {
            let r = ok(p);
            assert_eq!(r.status(), StatusCode::OK);
            assert!(r.body().is_empty());
            assert!(r.headers().is_empty());
        }
    }

    #[test]
    fn cookies_become_set_cookie_headers() {
        let r = ok(
            r#"{"statusCode": 200, "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
                "headers": {"set-cookie": "c=3"}}"#,
        );
        let cookies: Vec<_> = r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(cookies, ["c=3", "a=1; Path=/", "b=2; HttpOnly"]);
    }

    #[test]
    fn base64_body() {
        let r = ok(r#"{"statusCode": 200, "body": "AAH/gA==", "isBase64Encoded": true}"#);
        assert_eq!(r.body().as_ref(), &[0, 1, 255, 128]);
        // Padding is optional.
        let r = ok(r#"{"statusCode": 200, "body": "AAH/gA", "isBase64Encoded": true}"#);
        assert_eq!(r.body().as_ref(), &[0, 1, 255, 128]);
        // Not decoded when the flag is false.
        let r = ok(r#"{"statusCode": 200, "body": "AAH/gA==", "isBase64Encoded": false}"#);
        assert_eq!(r.body().as_ref(), b"AAH/gA==");
        // Escaped JSON string still decodes.
        let r = ok(r#"{"statusCode": 200, "body": "aGk\u003d", "isBase64Encoded": true}"#);
        assert_eq!(r.body().as_ref(), b"hi");
    }

    #[test]
    fn invalid_base64() {
        for b in ["not base64!", "aGk=\n", "A", "aGk==", "aGk=x"] {
            let p = format!(
                r#"{{"statusCode": 200, "body": "{}", "isBase64Encoded": true}}"#,
                b.escape_default()
            );
            assert!(matches!(err(p.as_bytes()), MappingError::BadBase64), "{b}");
        }
    }

    #[test]
    fn invalid_status() {
        for (p, shown) in [
            (r#"{"statusCode": 99}"#, "99"),
            (r#"{"statusCode": 100}"#, "100"),
            (r#"{"statusCode": 101}"#, "101"),
            (r#"{"statusCode": 103}"#, "103"),
            (r#"{"statusCode": 199}"#, "199"),
            (r#"{"statusCode": 600}"#, "600"),
            (r#"{"statusCode": -200}"#, "-200"),
            (r#"{"statusCode": 200.0}"#, "non-integer number"),
            (r#"{"statusCode": "200"}"#, "string"),
            (r#"{"statusCode": null}"#, "null"),
            (r#"{"statusCode": [200]}"#, "array or object"),
            (
                r#"{"statusCode": 18446744073709551616}"#,
                "non-integer number",
            ),
        ] {
            match err(p.as_bytes()) {
                MappingError::BadStatus(s) => assert_eq!(s, shown, "{p}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        assert_eq!(ok(r#"{"statusCode": 200}"#).status().as_u16(), 200);
        assert_eq!(ok(r#"{"statusCode": 599}"#).status().as_u16(), 599);
    }

    #[test]
    fn invalid_headers() {
        for p in [
            r#"{"statusCode": 200, "headers": {"x-a": "ok\r\nx-injected: 1"}}"#,
            r#"{"statusCode": 200, "headers": {"x-a": "line\nbreak"}}"#,
            r#"{"statusCode": 200, "headers": {"x-a": "nul\u0000"}}"#,
            r#"{"statusCode": 200, "headers": {"bad name": "v"}}"#,
            r#"{"statusCode": 200, "headers": {"": "v"}}"#,
            r#"{"statusCode": 200, "headers": {"x\r\ny": "v"}}"#,
            r#"{"statusCode": 200, "headers": {"x-a": ["1", "2"]}}"#,
            r#"{"statusCode": 200, "headers": {"x-a": {"b": 1}}}"#,
            r#"{"statusCode": 200, "cookies": ["a=1\r\nx: y"]}"#,
        ] {
            let e = err(p.as_bytes());
            assert!(matches!(e, MappingError::BadHeader(_)), "{p}: {e:?}");
            let shown = e.to_string();
            assert!(!shown.contains('\r') && !shown.contains('\n'), "{shown}");
        }
        // Non-ASCII (obs-text) values are valid HTTP and kept as bytes.
        let r = ok(r#"{"statusCode": 200, "headers": {"x-a": "café"}}"#);
        assert_eq!(r.headers()["x-a"].as_bytes(), "café".as_bytes());
    }

    #[test]
    fn wrong_field_types() {
        for (p, field) in [
            (r#"{"statusCode": 200, "headers": "x"}"#, "headers"),
            (r#"{"statusCode": 200, "headers": [["a", "b"]]}"#, "headers"),
            (r#"{"statusCode": 200, "cookies": "a=1"}"#, "cookies"),
            (r#"{"statusCode": 200, "cookies": ["a=1", 2]}"#, "cookies"),
            (r#"{"statusCode": 200, "body": {"a": 1}}"#, "body"),
            (r#"{"statusCode": 200, "body": 12}"#, "body"),
            (
                r#"{"statusCode": 200, "isBase64Encoded": "true"}"#,
                "isBase64Encoded",
            ),
        ] {
            match err(p.as_bytes()) {
                MappingError::BadField(f) => assert_eq!(f, field, "{p}"),
                other => panic!("{p}: {other:?}"),
            }
        }
    }

    #[test]
    fn framing_headers_are_dropped() {
        let r = ok(r#"{"statusCode": 200, "body": "0123456789", "headers": {
            "Content-Length": "3", "Transfer-Encoding": "chunked", "Connection": "close",
            "Keep-Alive": "timeout=5", "x-kept": "1"}}"#);
        assert_eq!(r.headers().len(), 1);
        assert_eq!(header(&r, "x-kept"), Some("1"));
    }

    #[test]
    fn not_json() {
        for p in [
            &b"hello"[..],
            b"{",
            b"{\"statusCode\": 200",
            b"{\"statusCode\": 200} trailing",
            b"[1,]",
            b"\"unterminated",
            b"\"bad \xff utf8\"",
            b"{\"statusCode\": 200, \"statusCode\": 201}",
            b"nul",
            b"\xef\xbb\xbf{}",
        ] {
            assert!(matches!(err(p), MappingError::NotJson), "{p:?}");
        }
    }

    #[test]
    fn hostile_inputs_never_panic() {
        // Deep nesting: skipped values are validated iteratively (no stack
        // overflow), so deeply nested but valid JSON is still JSON.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(map_response(deep.as_bytes()).unwrap().body().len(), 200_000);
        let unbalanced = "[".repeat(100_000);
        assert!(matches!(err(unbalanced.as_bytes()), MappingError::NotJson));
        for field in ["x", "statusCode", "headers", "body", "cookies"] {
            let p = format!(
                r#"{{"{field}": {}1{}, "statusCode": 200}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            );
            let _ = map_response(p.as_bytes());
        }
        let p = format!(
            r#"{{"statusCode": 200, "headers": {{"a": {}1{}}}}}"#,
            "{\"k\":".repeat(100_000),
            "}".repeat(100_000)
        );
        assert!(matches!(err(p.as_bytes()), MappingError::BadHeader(_)));
        // Huge body and many headers.
        let big = "a".repeat(8 << 20);
        let p = format!(r#"{{"statusCode": 200, "body": "{big}"}}"#);
        assert_eq!(map_response(p.as_bytes()).unwrap().body().len(), 8 << 20);
        let headers: Vec<String> = (0..10_000).map(|i| format!(r#""x-{i}": "{i}""#)).collect();
        let p = format!(
            r#"{{"statusCode": 200, "headers": {{{}}}}}"#,
            headers.join(",")
        );
        assert_eq!(map_response(p.as_bytes()).unwrap().headers().len(), 10_000);
        // Very long header name.
        let p = format!(
            r#"{{"statusCode": 200, "headers": {{"{}": "v"}}}}"#,
            "x".repeat(100_000)
        );
        let _ = map_response(p.as_bytes());
        // A long invalid name is truncated in the message.
        let p = format!(
            r#"{{"statusCode": 200, "headers": {{"{}\n": "v"}}}}"#,
            "y".repeat(1_000)
        );
        let e = err(p.as_bytes()).to_string();
        assert!(e.len() < 200, "{e}");
        // Arbitrary bytes, including every single byte value.
        for b in 0..=255u8 {
            let _ = map_response(&[b]);
            let _ = map_response(&[b'{', b]);
            let _ = map_response(&[b'"', b, b'"']);
        }
        let junk: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let _ = map_response(&junk);
    }

    #[test]
    fn error_texts_do_not_echo_function_output() {
        let e = err(br#"{"statusCode": 200, "body": "c2VjcmV0!", "isBase64Encoded": true}"#);
        assert!(!e.to_string().contains("c2VjcmV0"));
        let e = err(b"secret-token not json");
        assert!(!e.to_string().contains("secret"));
        let e = err(br#"{"statusCode": "secret"}"#);
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
