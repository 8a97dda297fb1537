//! CORS as API Gateway HTTP APIs do it: preflight `OPTIONS` requests are
//! answered at the edge, without an invocation, and every answer on a route
//! with CORS carries the `Access-Control-*` headers its configuration says
//! (the function's own are dropped, as API Gateway ignores them).
//!
//! Pure: a policy, the request's headers in, headers or a response out.
//! Must never echo an origin it does not allow.

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use levee_config::Cors;

/// Most headers a preflight may ask for; more are refused.
const MAX_REQUESTED_HEADERS: usize = 100;

/// A route's CORS configuration with its header values made once.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Vec<String>,
    methods: Vec<String>,
    headers: Vec<String>,
    credentials: bool,
    allow_methods: Option<HeaderValue>,
    allow_headers: Option<HeaderValue>,
    expose: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
}

fn joined(list: &[String]) -> Option<HeaderValue> {
    (!list.is_empty())
        .then(|| HeaderValue::from_str(&list.join(",")).ok())
        .flatten()
}

impl CorsPolicy {
    /// The policy for a validated configuration.
    pub fn new(c: &Cors) -> CorsPolicy {
        CorsPolicy {
            any_origin: c.allow_origins.iter().any(|o| o == "*"),
            origins: c.allow_origins.clone(),
            methods: c.allow_methods.clone(),
            headers: c.allow_headers.clone(),
            credentials: c.allow_credentials,
            allow_methods: joined(&c.allow_methods),
            allow_headers: joined(&c.allow_headers),
            expose: joined(&c.expose_headers),
            max_age: c.max_age.map(|d| HeaderValue::from(d.as_secs())),
        }
    }

    /// The `Origin` to name in the answer, when it is allowed.
    pub fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(http::header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        let listed = self.origins.iter().any(|o| o.eq_ignore_ascii_case(text));
        (self.any_origin || listed).then(|| origin.clone())
    }

    /// Puts this policy's headers on an answer: the function's own
    /// `Access-Control-*` are dropped first; `origin` is the allowed
    /// `Origin` of the request, if any.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        for name in [
            ACCESS_CONTROL_ALLOW_ORIGIN,
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            ACCESS_CONTROL_EXPOSE_HEADERS,
            ACCESS_CONTROL_ALLOW_METHODS,
            ACCESS_CONTROL_ALLOW_HEADERS,
            ACCESS_CONTROL_MAX_AGE,
        ] {
            headers.remove(name);
        }
        // The answer differs by origin unless every origin gets `*`.
        if !self.any_origin || self.credentials {
            headers.append(VARY, HeaderValue::from_static("origin"));
        }
        let Some(origin) = origin else { return };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.origin_value(origin));
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(expose) = &self.expose {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }

    fn origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// The answer to a preflight (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`): 204, with the `Access-Control-*`
    /// headers only when the origin, the method and every requested header
    /// are allowed — a browser then refuses the real request itself.
    pub fn preflight(&self, request: &HeaderMap) -> Response<Bytes> {
        let mut resp = Response::new(Bytes::new());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let allowed = self
            .allowed_origin(request)
            .filter(|_| self.method_allowed(request) && self.requested_headers_allowed(request));
        if !self.any_origin || self.credentials {
            resp.headers_mut()
                .append(VARY, HeaderValue::from_static("origin"));
        }
        let Some(origin) = allowed else {
            return resp;
        };
        let h = resp.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.origin_value(&origin));
        if self.credentials {
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        // `*` lists answer with what was asked for: a wildcard means nothing
        // to a browser sending credentials.
        let asked = |name| request.get(name).cloned();
        let methods = if self.methods.iter().any(|m| m == "*") {
            asked(http::header::ACCESS_CONTROL_REQUEST_METHOD)
        } else {
            self.allow_methods.clone()
        };
        let headers = if self.headers.iter().any(|h| h == "*") {
            asked(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
        } else {
            self.allow_headers.clone()
        };
        if let Some(m) = methods {
            h.insert(ACCESS_CONTROL_ALLOW_METHODS, m);
        }
        if let Some(v) = headers {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(age) = &self.max_age {
            h.insert(ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        resp
    }

    fn method_allowed(&self, request: &HeaderMap) -> bool {
        let Some(method) = request
            .get(http::header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
        else {
            return false;
        };
        self.methods.iter().any(|m| m == "*" || m == method)
    }

    fn requested_headers_allowed(&self, request: &HeaderMap) -> bool {
        let Some(value) = request.get(http::header::ACCESS_CONTROL_REQUEST_HEADERS) else {
            return true;
        };
        let Ok(text) = value.to_str() else {
            return false;
        };
        if self.headers.iter().any(|h| h == "*") {
            return true;
        }
        let asked: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        asked.len() <= MAX_REQUESTED_HEADERS
            && asked
                .iter()
                .all(|a| self.headers.iter().any(|h| h.eq_ignore_ascii_case(a)))
    }
}

/// Whether a request is a CORS preflight: `OPTIONS` with an `Origin` and
/// the method it asks for, which is returned.
pub fn preflight_method(method: &http::Method, headers: &HeaderMap) -> Option<http::Method> {
    if method != http::Method::OPTIONS || !headers.contains_key(http::header::ORIGIN) {
        return None;
    }
    let asked = headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
    http::Method::from_bytes(asked.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::new(&Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: vec!["GET".into(), "PUT".into()],
            allow_headers: vec!["authorization".into(), "x-trace".into()],
            expose_headers: vec!["x-request-cost".into()],
            max_age: Some(Duration::from_secs(600)),
            allow_credentials: credentials,
        })
    }

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn preflights_name_the_origin_only_when_all_is_allowed() {
        let p = policy(&["https://app.test"], true);
        let ok = p.preflight(&request(&[
            ("origin", "https://app.test"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "Authorization, X-Trace"),
        ]));
        assert_eq!(ok.status(), 204);
        let h = ok.headers();
        assert_eq!(h["access-control-allow-origin"], "https://app.test");
        assert_eq!(h["access-control-allow-methods"], "GET,PUT");
        assert_eq!(h["access-control-allow-headers"], "authorization,x-trace");
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["vary"], "origin");
        for refused in [
            request(&[
                ("origin", "https://evil.test"),
                ("access-control-request-method", "GET"),
            ]),
            request(&[
                ("origin", "https://app.test"),
                ("access-control-request-method", "DELETE"),
            ]),
            request(&[
                ("origin", "https://app.test"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-other"),
            ]),
        ] {
            let r = p.preflight(&refused);
            assert_eq!(r.status(), 204);
            assert!(r.headers().get("access-control-allow-origin").is_none());
        }
    }

    #[test]
    fn answers_lose_the_functions_cors_headers_and_get_the_policys() {
        let p = policy(&["*"], false);
        let mut h = request(&[
            ("access-control-allow-origin", "https://anyone.test"),
            ("access-control-allow-credentials", "true"),
        ]);
        let origin = p.allowed_origin(&request(&[("origin", "https://x.test")]));
        p.decorate(origin.as_ref(), &mut h);
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(h.get("access-control-allow-credentials").is_none());
        assert_eq!(h["access-control-expose-headers"], "x-request-cost");
        assert!(h.get("vary").is_none(), "every origin gets the same answer");
        let listed = policy(&["https://app.test"], false);
        let mut h = HeaderMap::new();
        let origin = listed.allowed_origin(&request(&[("origin", "https://evil.test")]));
        listed.decorate(origin.as_ref(), &mut h);
        assert!(h.get("access-control-allow-origin").is_none());
        assert_eq!(h["vary"], "origin");
    }

    #[test]
    fn only_options_with_origin_and_a_method_is_a_preflight() {
        let h = request(&[
            ("origin", "https://a.test"),
            ("access-control-request-method", "POST"),
        ]);
        assert_eq!(
            preflight_method(&http::Method::OPTIONS, &h),
            Some(http::Method::POST)
        );
        assert_eq!(preflight_method(&http::Method::GET, &h), None);
        let no_origin = request(&[("access-control-request-method", "POST")]);
        assert_eq!(preflight_method(&http::Method::OPTIONS, &no_origin), None);
    }
}
