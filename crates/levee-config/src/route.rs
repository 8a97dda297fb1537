//! Route keys: API Gateway's `METHOD /path` grammar, its translation to
//! the router's path syntax, overlap detection, and the [`Route`] model.
//!
//! Must never accept two routes the edge's router could not tell apart:
//! conflicts are whatever matchit refuses.

use std::collections::HashMap;
use std::fmt;

const MAX_PATH_LEN: usize = 1024;

/// The method half of an API Gateway route key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteMethod {
    /// Matches every method, like API Gateway's `ANY`.
    Any,
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

impl RouteMethod {
    /// Every method but `Any`: the methods a request can actually carry.
    const CONCRETE: [RouteMethod; 7] = [
        RouteMethod::Get,
        RouteMethod::Post,
        RouteMethod::Put,
        RouteMethod::Patch,
        RouteMethod::Delete,
        RouteMethod::Head,
        RouteMethod::Options,
    ];

    /// The upper-case spelling used in route keys, e.g. `"GET"` or `"ANY"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteMethod::Any => "ANY",
            RouteMethod::Get => "GET",
            RouteMethod::Post => "POST",
            RouteMethod::Put => "PUT",
            RouteMethod::Patch => "PATCH",
            RouteMethod::Delete => "DELETE",
            RouteMethod::Head => "HEAD",
            RouteMethod::Options => "OPTIONS",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        std::iter::once(RouteMethod::Any)
            .chain(Self::CONCRETE)
            .find(|method| method.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for RouteMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[routes]]` entry: an HTTP route bound to a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Normalised API Gateway `routeKey`, e.g. `"GET /hello/{name}"`.
    pub route_key: RouteKey,
    pub method: RouteMethod,
    /// API Gateway syntax, e.g. `"/hello/{name}"` or `"/files/{proxy+}"`.
    pub path: String,
    /// The same path in matchit 0.8 syntax: `{proxy+}` becomes `{*proxy}`.
    pub matchit_path: String,
    pub function: String,
    /// Per-route body limit from `max_body`; overrides the function's.
    pub max_body_bytes: Option<u64>,
    /// Per-route token bucket (`throttle = { rate = 10, burst = 20 }`).
    pub throttle: Option<crate::guard::Throttle>,
    /// Clients must send a valid `x-api-key` (403 otherwise).
    pub api_key_required: bool,
    /// Edge caching for this route, if on.
    pub cache: Option<crate::cache::CachePolicy>,
    /// `async = true`: the request is queued (202) and a function drains
    /// the queue in batches.
    pub is_async: bool,
    /// The queue an async route fills.
    pub queue: Option<String>,
    /// The `[authorizers.NAME]` that admits callers, if any.
    pub authorizer: Option<String>,
    /// A token must hold one of these (403 otherwise).
    pub authorization_scopes: Vec<String>,
    /// This route's CORS, instead of `[cors]`.
    pub cors: Option<crate::cors::Cors>,
}

/// The parts of a validated `route` string.
#[derive(Debug)]
pub(crate) struct ParsedRoute {
    pub(crate) method: RouteMethod,
    pub(crate) path: String,
    pub(crate) matchit_path: String,
}

impl ParsedRoute {
    pub(crate) fn parse(text: &str) -> Result<ParsedRoute, String> {
        let mut words = text.split_whitespace();
        let (Some(method), Some(path), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!(
                "`{text}` is not a route; write \"METHOD /path\", e.g. \"GET /hello/{{name}}\""
            ));
        };
        let method = RouteMethod::parse(method).ok_or_else(|| {
            format!(
                "unknown method `{method}`; use GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY"
            )
        })?;
        let matchit_path = matchit_path(path)?;
        Ok(ParsedRoute {
            method,
            path: path.to_owned(),
            matchit_path,
        })
    }

    pub(crate) fn route_key(&self) -> RouteKey {
        RouteKey(format!("{} {}", self.method, self.path))
    }
}

/// A route's normalised API Gateway `routeKey` (`"GET /hello/{name}"`):
/// made only from a route that parsed, so one in hand is valid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteKey(String);

impl RouteKey {
    /// Parses and normalises `"METHOD /path"`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<RouteKey, String> {
        ParsedRoute::parse(text).map(|p| p.route_key())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for RouteKey {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for RouteKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RouteKey {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RouteKey {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Validates an API Gateway path and translates it to matchit syntax.
fn matchit_path(path: &str) -> Result<String, String> {
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "path is {} bytes long; the limit is {MAX_PATH_LEN}",
            path.len()
        ));
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "path `{path}` contains `?` or `#`; routes match the path only"
        ));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("path `{path}` must start with `/`"));
    };
    if rest.is_empty() {
        return Ok("/".to_owned());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let mut translated = String::with_capacity(path.len() + 1);
    let mut params: Vec<&str> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        translated.push('/');
        if segment.is_empty() {
            return Err(format!(
                "path `{path}` has an empty segment (`//` or a trailing `/`)"
            ));
        }
        let Some(inner) = segment.strip_prefix('{') else {
            if let Some(bad) = segment
                .chars()
                .find(|c| matches!(c, '{' | '}') || c.is_control())
            {
                return Err(format!(
                    "segment `{segment}` of path `{path}` contains {bad:?}; a segment is literal text or a whole `{{name}}`"
                ));
            }
            translated.push_str(segment);
            continue;
        };
        let Some(inner) = inner.strip_suffix('}') else {
            return Err(format!(
                "segment `{segment}` of path `{path}` must be a whole `{{name}}` parameter"
            ));
        };
        let (name, greedy) = match inner.strip_suffix('+') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "parameter `{segment}` of path `{path}` needs a name of letters, digits and `_`"
            ));
        }
        if greedy && i + 1 != segments.len() {
            return Err(format!(
                "greedy parameter `{segment}` must be the last segment of path `{path}`"
            ));
        }
        if params.contains(&name) {
            return Err(format!("parameter `{name}` appears twice in path `{path}`"));
        }
        params.push(name);
        translated.push_str(if greedy { "{*" } else { "{" });
        translated.push_str(name);
        translated.push('}');
    }
    Ok(translated)
}

/// A route as seen by overlap detection.
#[derive(Debug)]
pub(crate) struct Candidate<'a> {
    pub(crate) index: usize,
    pub(crate) method: RouteMethod,
    pub(crate) matchit_path: &'a str,
    pub(crate) route_key: &'a str,
}

/// Finds routes that cannot be told apart from an earlier one, as
/// `(candidate index, message)`.
///
/// Conflicts are whatever matchit refuses, so the router the edge builds from
/// this config is guaranteed to accept it. A static segment beside a parameter
/// (`/a/b` and `/a/{x}`) is not a conflict: the most specific wins, as in API
/// Gateway.
pub(crate) fn overlaps(candidates: &[Candidate<'_>]) -> Vec<(usize, String)> {
    let mut routers: Vec<(RouteMethod, matchit::Router<()>, HashMap<&str, usize>)> =
        RouteMethod::CONCRETE
            .iter()
            .map(|&method| (method, matchit::Router::new(), HashMap::new()))
            .collect();
    let mut found: Vec<(usize, String)> = Vec::new();
    for (position, candidate) in candidates.iter().enumerate() {
        for (method, router, owners) in &mut routers {
            if candidate.method != RouteMethod::Any && candidate.method != *method {
                continue;
            }
            let message = match router.insert(candidate.matchit_path, ()) {
                Ok(()) => {
                    owners.insert(candidate.matchit_path, position);
                    continue;
                }
                Err(matchit::InsertError::Conflict { with }) => match owners.get(with.as_str()) {
                    Some(&owner) => format!(
                        "overlaps route `{}` (routes[{}])",
                        candidates[owner].route_key, candidates[owner].index
                    ),
                    None => format!("overlaps route `{method} {with}`"),
                },
                Err(other) => format!("cannot be routed: {other}"),
            };
            // An ANY route clashes in every method's router; say it once.
            if !found.iter().any(|(p, m)| *p == position && *m == message) {
                found.push((position, message));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_route_keys() {
        let key = ParsedRoute::parse("get /hello/{name}").unwrap();
        assert_eq!(key.method, RouteMethod::Get);
        assert_eq!(key.path, "/hello/{name}");
        assert_eq!(key.matchit_path, "/hello/{name}");
        assert_eq!(key.route_key(), "GET /hello/{name}");

        let key = ParsedRoute::parse("  Any   /files/{proxy+} ").unwrap();
        assert_eq!(key.method, RouteMethod::Any);
        assert_eq!(key.matchit_path, "/files/{*proxy}");
        assert_eq!(key.route_key(), "ANY /files/{proxy+}");

        let key = ParsedRoute::parse("OPTIONS /").unwrap();
        assert_eq!(key.matchit_path, "/");
        let key = ParsedRoute::parse("DELETE /{proxy+}").unwrap();
        assert_eq!(key.matchit_path, "/{*proxy}");
        let key = ParsedRoute::parse("PATCH /a/{id}/b-c.d/{rest+}").unwrap();
        assert_eq!(key.matchit_path, "/a/{id}/b-c.d/{*rest}");
    }

    #[test]
    fn method_spellings() {
        for method in std::iter::once(RouteMethod::Any).chain(RouteMethod::CONCRETE) {
            assert_eq!(RouteMethod::parse(method.as_str()), Some(method));
            assert_eq!(
                RouteMethod::parse(&method.as_str().to_lowercase()),
                Some(method)
            );
        }
        assert_eq!(RouteMethod::parse("TRACE"), None);
    }

    #[test]
    fn refuses_malformed_route_keys() {
        let long = format!("GET /{}", "a".repeat(MAX_PATH_LEN));
        let cases = [
            ("", "not a route"),
            ("GET", "not a route"),
            ("/hello", "not a route"),
            ("GET /a extra", "not a route"),
            ("FETCH /a", "unknown method"),
            ("GET hello", "must start with `/`"),
            ("GET /a?b=1", "`?` or `#`"),
            ("GET /a#top", "`?` or `#`"),
            ("GET /a//b", "empty segment"),
            ("GET /a/", "empty segment"),
            ("GET /a/{}", "needs a name"),
            ("GET /a/{b-c}", "needs a name"),
            ("GET /a/{+}", "needs a name"),
            ("GET /a/x{b}", "whole"),
            ("GET /a/{b}x", "whole"),
            ("GET /a/b}", "whole"),
            ("GET /a/\u{1}", "whole"),
            ("GET /{rest+}/a", "must be the last"),
            ("GET /{a}/{a}", "appears twice"),
            (long.as_str(), "limit is 1024"),
        ];
        for (input, reason) in cases {
            let err = ParsedRoute::parse(input).expect_err(input);
            assert!(err.contains(reason), "{input:?}: {err}");
        }
    }

    fn overlaps_of(keys: &[&str]) -> Vec<(usize, String)> {
        let parsed: Vec<ParsedRoute> = keys
            .iter()
            .map(|k| ParsedRoute::parse(k).unwrap())
            .collect();
        let route_keys: Vec<RouteKey> = parsed.iter().map(ParsedRoute::route_key).collect();
        let candidates: Vec<Candidate<'_>> = parsed
            .iter()
            .zip(&route_keys)
            .enumerate()
            .map(|(index, (key, route_key))| Candidate {
                index,
                method: key.method,
                matchit_path: &key.matchit_path,
                route_key,
            })
            .collect();
        overlaps(&candidates)
    }

    #[test]
    fn same_method_same_path_overlaps() {
        assert_eq!(
            overlaps_of(&["GET /x", "GET /x"]),
            vec![(1, "overlaps route `GET /x` (routes[0])".to_owned())]
        );
    }

    #[test]
    fn differently_named_parameters_overlap() {
        assert_eq!(
            overlaps_of(&["GET /x/{a}", "GET /x/{b}"]),
            vec![(1, "overlaps route `GET /x/{a}` (routes[0])".to_owned())]
        );
        assert_eq!(
            overlaps_of(&["POST /f/{proxy+}", "POST /f/{name}"]),
            vec![(
                1,
                "overlaps route `POST /f/{proxy+}` (routes[0])".to_owned()
            )]
        );
    }

    #[test]
    fn any_overlaps_every_method_once() {
        assert_eq!(
            overlaps_of(&["GET /x", "ANY /x"]),
            vec![(1, "overlaps route `GET /x` (routes[0])".to_owned())]
        );
        assert_eq!(
            overlaps_of(&["ANY /x", "DELETE /x"]),
            vec![(1, "overlaps route `ANY /x` (routes[0])".to_owned())]
        );
        assert_eq!(
            overlaps_of(&["ANY /x", "ANY /x"]),
            vec![(1, "overlaps route `ANY /x` (routes[0])".to_owned())]
        );
    }

    #[test]
    fn every_combination_of_valid_segments_is_handled_without_panicking() {
        let segments = ["a", "b", "{x}", "{y}", "{p+}", "a.b", ":c", "*"];
        let mut keys = vec!["ANY /".to_owned()];
        for first in segments {
            keys.push(format!("GET /{first}"));
            for second in segments {
                keys.push(format!("GET /{first}/{second}"));
                for third in segments {
                    keys.push(format!("ANY /{first}/{second}/{third}"));
                }
            }
        }
        let valid: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|key| ParsedRoute::parse(key).is_ok())
            .collect();
        assert!(valid.len() > 300, "only {} valid keys", valid.len());
        let forward = overlaps_of(&valid);
        let mut reversed = valid.clone();
        reversed.reverse();
        let backward = overlaps_of(&reversed);
        assert!(!forward.is_empty() && !backward.is_empty());
    }

    #[test]
    fn distinct_routes_do_not_overlap() {
        let keys = [
            "GET /x",
            "POST /x",
            "GET /a/b",
            "GET /a/{x}",
            "GET /a/{x}/c",
            "GET /files/{proxy+}",
            "GET /",
            "ANY /other",
        ];
        assert_eq!(overlaps_of(&keys), vec![]);
    }
}
