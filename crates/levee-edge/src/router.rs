//! Route matching: `METHOD /path/{param}` → the function behind it.
//!
//! Built once from validated config (the config crate already refused
//! overlapping routes), then read-only on the hot path. A request that matches
//! nothing dies here with 404, before any other work is done for it.

use std::sync::Arc;

use http::Method;
use levee_config::{Route, RouteMethod};
use levee_runtime::{FunctionHandle, Scheduler};

/// What a matched route leads to.
#[derive(Debug)]
pub struct RouteTarget {
    /// API Gateway's `routeKey`, e.g. `GET /hello/{name}`.
    pub route_key: levee_config::RouteKey,
    /// The function's pool.
    pub function: FunctionHandle,
    /// Largest request body accepted on this route.
    pub max_body_bytes: u64,
    /// Clients must present a valid API key.
    pub api_key_required: bool,
    /// The route's cache policy, if caching is on.
    pub cache: Option<levee_config::CachePolicy>,
    /// For `async = true` routes: the queue the request goes to.
    pub queue: Option<String>,
    /// The authorizer that admits callers, and the scopes it requires.
    pub authorizer: Option<Arc<crate::authorizer::RouteAuthorizer>>,
    pub authorization_scopes: Vec<String>,
    /// The route's CORS (its own, else `[cors]`).
    pub cors: Option<Arc<crate::cors::CorsPolicy>>,
}

/// A matched route and its raw path parameters, in path order.
pub type Match = (Arc<RouteTarget>, Vec<(String, String)>);

/// One `matchit` tree per method; `ANY` routes are in every tree.
#[derive(Debug, Default)]
pub struct Router {
    by_method: Vec<(Method, matchit::Router<Arc<RouteTarget>>)>,
    any: matchit::Router<Arc<RouteTarget>>,
}

/// The methods a route can name besides `ANY`.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::HEAD,
    Method::OPTIONS,
];

/// A route whose function is unknown or whose path `matchit` refuses;
/// config validation should have caught it, so this is a platform bug.
#[derive(Debug, thiserror::Error)]
#[error("route `{route}`: {reason}")]
pub struct RouterError {
    route: String,
    reason: String,
}

impl Router {
    /// Builds the trees from the configured routes.
    pub fn build(
        routes: &[Route],
        scheduler: &Scheduler,
        authorizers: &crate::authorizer::Authorizers,
        api_cors: Option<&levee_config::Cors>,
    ) -> Result<Router, RouterError> {
        let api_cors = api_cors.map(|c| Arc::new(crate::cors::CorsPolicy::new(c)));
        let mut router = Router {
            by_method: METHODS
                .iter()
                .map(|m| (m.clone(), matchit::Router::new()))
                .collect(),
            any: matchit::Router::new(),
        };
        for r in routes {
            let err = |reason: String| RouterError {
                route: r.route_key.to_string(),
                reason,
            };
            let function = scheduler
                .function(&r.function)
                .ok_or_else(|| err(format!("no function named `{}`", r.function)))?;
            let authorizer = match &r.authorizer {
                Some(name) => Some(
                    authorizers
                        .get(name)
                        .ok_or_else(|| err(format!("no authorizer named `{name}`")))?,
                ),
                None => None,
            };
            let target = Arc::new(RouteTarget {
                route_key: r.route_key.clone(),
                function: function.clone(),
                max_body_bytes: r.max_body_bytes.unwrap_or(function.config().max_body_bytes),
                api_key_required: r.api_key_required,
                cache: r.cache.clone(),
                queue: r.queue.clone().filter(|_| r.is_async),
                authorizer,
                authorization_scopes: r.authorization_scopes.clone(),
                cors: match &r.cors {
                    Some(c) => Some(Arc::new(crate::cors::CorsPolicy::new(c))),
                    None => api_cors.clone(),
                },
            });
            let trees: Vec<&mut matchit::Router<_>> = match method_of(r.method) {
                Some(m) => router
                    .by_method
                    .iter_mut()
                    .filter(|(method, _)| *method == m)
                    .map(|(_, t)| t)
                    .collect(),
                None => std::iter::once(&mut router.any).collect(),
            };
            for tree in trees {
                tree.insert(r.matchit_path.clone(), Arc::clone(&target))
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        Ok(router)
    }

    /// The route for `method` and `path`, with the raw (still percent-encoded)
    /// path parameters. A method-specific route wins over `ANY`, as in API
    /// Gateway. HEAD is GET without the body (RFC 9110 §9.3.2), so a HEAD
    /// request without a HEAD route is answered by the GET route before
    /// `ANY`; the function sees `HEAD` and the listener sends no body.
    /// CONNECT and TRACE never get here (see [`crate::conformance`]).
    pub fn lookup(&self, method: &Method, path: &str) -> Option<Match> {
        let tree_of = |method: &Method| {
            self.by_method
                .iter()
                .find(|(m, _)| m == method)
                .and_then(|(_, tree)| tree.at(path).ok())
        };
        let specific = tree_of(method).or_else(|| {
            (*method == Method::HEAD)
                .then(|| tree_of(&Method::GET))
                .flatten()
        });
        let found = specific.or_else(|| self.any.at(path).ok())?;
        let params = found
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some((Arc::clone(found.value), params))
    }

    /// A route at `path` for whatever method: a preflight asking for a
    /// method no route has is still answered by the path's CORS.
    pub fn any_at(&self, path: &str) -> Option<Arc<RouteTarget>> {
        self.by_method
            .iter()
            .find_map(|(_, tree)| tree.at(path).ok())
            .or_else(|| self.any.at(path).ok())
            .map(|found| Arc::clone(found.value))
    }
}

fn method_of(m: RouteMethod) -> Option<Method> {
    Some(match m {
        RouteMethod::Any => return None,
        RouteMethod::Get => Method::GET,
        RouteMethod::Post => Method::POST,
        RouteMethod::Put => Method::PUT,
        RouteMethod::Patch => Method::PATCH,
        RouteMethod::Delete => Method::DELETE,
        RouteMethod::Head => Method::HEAD,
        RouteMethod::Options => Method::OPTIONS,
    })
}
