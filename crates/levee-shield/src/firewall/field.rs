//! Field extraction: which bytes of the request a statement inspects.
//!
//! Owns the mapping from [`FieldConfig`] to request bytes. Works on raw bytes
//! throughout (header values and bodies need not be UTF-8). Must never
//! allocate per request except to URL-decode a query-argument *name* that
//! actually contains escapes, and must never treat a missing component as an
//! empty one: a missing header, cookie or argument does not match (AWS WAF).
//! Multi-valued components (repeated headers, cookies, arguments) match if
//! any value matches, so parameter pollution cannot hide a payload behind a
//! benign first value.

use http::HeaderName;

use super::config::FieldConfig;
use super::path_shape::PathShape;
use super::shape::Shape;
use super::RequestView;

/// A compiled field.
#[derive(Debug, Clone)]
pub enum Field {
    /// The method.
    Method,
    /// The raw path.
    Path,
    /// The raw query string.
    QueryString,
    /// Values of a query argument; the name is stored lowercase.
    QueryArg(Vec<u8>),
    /// Values of a header.
    Header(HeaderName),
    /// Values of a cookie (names are case-sensitive).
    Cookie(Vec<u8>),
    /// The inspected body prefix.
    Body,
    /// The request's header shape ([`Shape`]).
    HeaderShape,
    /// The request's path shape ([`PathShape`]).
    PathShape,
}

/// Room for a computed field's value while a rate key is built.
#[derive(Debug, Default)]
pub struct Scratch {
    shape: Shape,
    path: PathShape,
}

/// Bound on query-argument and cookie names accepted in config.
pub const MAX_NAME_LEN: usize = 256;

/// Outcome of visiting a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// The predicate accepted some value.
    Matched,
    /// No value, or none accepted.
    NotMatched,
    /// The field is the body and the body has not been read yet.
    NeedBody,
}

impl Field {
    /// Compiles a field; the error is a message for the field's key path.
    pub fn compile(cfg: &FieldConfig) -> Result<Field, String> {
        let name_ok = |n: &str| !n.is_empty() && n.len() <= MAX_NAME_LEN;
        Ok(match cfg {
            FieldConfig::Method => Field::Method,
            FieldConfig::Path => Field::Path,
            FieldConfig::QueryString => Field::QueryString,
            FieldConfig::Body => Field::Body,
            FieldConfig::HeaderShape => Field::HeaderShape,
            FieldConfig::PathShape => Field::PathShape,
            FieldConfig::QueryArg(n) if name_ok(n) => {
                Field::QueryArg(n.to_ascii_lowercase().into_bytes())
            }
            FieldConfig::Cookie(n) if name_ok(n) => Field::Cookie(n.as_bytes().to_vec()),
            FieldConfig::Header(n) => Field::Header(
                HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("`{n}` is not a valid header name"))?,
            ),
            FieldConfig::QueryArg(_) | FieldConfig::Cookie(_) => {
                return Err(format!("names must be 1..={MAX_NAME_LEN} bytes"))
            }
        })
    }

    /// Whether this field needs the body.
    pub fn is_body(&self) -> bool {
        matches!(self, Field::Body)
    }

    /// Calls `pred` on each value until it returns `true`.
    pub fn visit(
        &self,
        req: &RequestView<'_>,
        body_limit: usize,
        mut pred: impl FnMut(&[u8]) -> bool,
    ) -> Visit {
        let hit = |b: bool| if b { Visit::Matched } else { Visit::NotMatched };
        match self {
            Field::Method => hit(pred(req.method.as_bytes())),
            Field::Path => hit(pred(req.path.as_bytes())),
            Field::QueryString => hit(pred(req.query.as_bytes())),
            Field::Body => match req.body {
                None => Visit::NeedBody,
                Some(b) => hit(pred(b.get(..body_limit).unwrap_or(b))),
            },
            Field::Header(name) => {
                hit(req.headers.get_all(name).iter().any(|v| pred(v.as_bytes())))
            }
            Field::QueryArg(name) => hit(query_args(req.query.as_bytes(), name).any(pred)),
            Field::Cookie(name) => hit(cookies(req.headers, name).any(pred)),
            Field::HeaderShape => hit(pred(Shape::of(req.headers).as_bytes())),
            Field::PathShape => hit(pred(PathShape::of(req.path, req.query).as_bytes())),
        }
    }

    /// The first value, for rate-based aggregation keys. `None` for the
    /// body. A header or path shape is computed into `scratch`.
    pub fn first<'r>(&self, req: &RequestView<'r>, scratch: &'r mut Scratch) -> Option<&'r [u8]> {
        match self {
            Field::Method => Some(req.method.as_bytes()),
            Field::Path => Some(req.path.as_bytes()),
            Field::QueryString => Some(req.query.as_bytes()),
            Field::Body => None,
            Field::Header(name) => req.headers.get(name).map(|v| v.as_bytes()),
            Field::QueryArg(name) => query_args(req.query.as_bytes(), name).next(),
            Field::Cookie(name) => cookies(req.headers, name).next(),
            Field::HeaderShape => {
                scratch.shape = Shape::of(req.headers);
                Some(scratch.shape.as_bytes())
            }
            Field::PathShape => {
                scratch.path = PathShape::of(req.path, req.query);
                Some(scratch.path.as_bytes())
            }
        }
    }
}

/// Values of query argument `lower_name` (name URL-decoded, compared ASCII
/// case-insensitively); values are returned raw.
fn query_args<'q, 'n>(
    query: &'q [u8],
    lower_name: &'n [u8],
) -> impl Iterator<Item = &'q [u8]> + use<'q, 'n> {
    query.split(|&b| b == b'&').filter_map(move |pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (pair.get(..i)?, pair.get(i + 1..)?),
            None => (pair, &b""[..]),
        };
        name_eq(k, lower_name).then_some(v)
    })
}

fn name_eq(raw: &[u8], lower: &[u8]) -> bool {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return raw.eq_ignore_ascii_case(lower);
    }
    // Decoding only shrinks, so a raw name over 3x the wanted length cannot match.
    if raw.len() > lower.len().saturating_mul(3) {
        return false;
    }
    let decoded = super::transform::apply(&[super::config::TransformConfig::UrlDecode], raw);
    decoded.eq_ignore_ascii_case(lower)
}

/// Values of cookie `name` across all `Cookie` headers.
fn cookies<'h, 'n>(
    headers: &'h http::HeaderMap,
    name: &'n [u8],
) -> impl Iterator<Item = &'h [u8]> + use<'h, 'n> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|h| h.as_bytes().split(|&b| b == b';'))
        .filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let i = pair.iter().position(|&b| b == b'=')?;
            let (k, v) = (pair.get(..i)?, pair.get(i + 1..)?);
            (k.trim_ascii() == name).then_some(v.trim_ascii())
        })
}
