//! `[[routes]]`: which function answers which route, and the route-level
//! options (body limit, API keys, async delivery to a queue).
//!
//! Owns the rules between a route and the rest of the file: its function
//! must be declared, routes must not overlap, an async route must name a
//! declared queue. The route key grammar is `route`'s; a route's `throttle`
//! and `cache` tables are checked by `guard` and `cache`. Must never build
//! the router itself: the edge does, from what this returns.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cache::CachePolicy;
use crate::guard::Throttle;
use crate::problems::{Found, KeyPath};
use crate::queues::QueueConfig;
use crate::route::{self, Candidate, ParsedRoute, Route};
use crate::values::{listing, RawSize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    route: String,
    function: String,
    #[serde(default)]
    api_key_required: bool,
    #[serde(default, rename = "async")]
    is_async: bool,
    queue: Option<String>,
    max_body: Option<RawSize>,
    authorizer: Option<String>,
    #[serde(default)]
    authorization_scopes: Vec<String>,
    /// Validated separately, so its problems get their own key paths.
    #[serde(default, rename = "throttle")]
    _throttle: Option<serde::de::IgnoredAny>,
    /// Validated separately, like `throttle`.
    #[serde(default, rename = "cache")]
    _cache: Option<serde::de::IgnoredAny>,
    /// Validated separately, like `throttle`.
    #[serde(default, rename = "cors")]
    _cors: Option<serde::de::IgnoredAny>,
}

/// A route's function and body limit, checked before its `throttle` and
/// `cache` tables so problems keep the file's order. `declared` holds every
/// function the file declares, valid or not, so a route to a broken
/// function is not reported as a route to a missing one. Keys are relative
/// to the route.
pub(crate) fn target(
    raw: &mut RawRoute,
    declared: &[String],
    authorizers: &[String],
    found: &mut Found,
) -> Option<u64> {
    crate::authorizers::route_authorization(
        raw.authorizer.as_deref(),
        &raw.authorization_scopes,
        authorizers,
        found,
    );
    if !declared.contains(&raw.function) {
        let names = if declared.is_empty() {
            "none".to_owned()
        } else {
            listing(declared.iter().map(String::as_str))
        };
        found.push(
            "function",
            format!("no function named `{}` (declared: {names})", raw.function),
        );
    }
    crate::functions::max_body(raw.max_body.take(), "max_body", found)
}

/// The route itself, once its parts are checked; `None` when its key is
/// not a route.
pub(crate) fn route(
    raw: RawRoute,
    max_body_bytes: Option<u64>,
    throttle: Option<Throttle>,
    cache: Option<CachePolicy>,
    cors: Option<crate::cors::Cors>,
    found: &mut Found,
) -> Option<Route> {
    match ParsedRoute::parse(&raw.route) {
        Ok(key) => Some(Route {
            route_key: key.route_key(),
            method: key.method,
            path: key.path,
            matchit_path: key.matchit_path,
            function: raw.function,
            max_body_bytes,
            throttle,
            api_key_required: raw.api_key_required,
            cache,
            is_async: raw.is_async,
            queue: raw.queue,
            authorizer: raw.authorizer,
            authorization_scopes: raw.authorization_scopes,
            cors,
        }),
        Err(e) => {
            found.push("route", e);
            None
        }
    }
}

/// Routes a request could not tell apart; `routes` are the valid routes
/// with their index in the file, keys relative to `[[routes]]`.
pub(crate) fn overlaps(routes: &[(usize, Route)], found: &mut Found) {
    let candidates: Vec<Candidate<'_>> = routes
        .iter()
        .map(|(index, route)| Candidate {
            index: *index,
            method: route.method,
            matchit_path: &route.matchit_path,
            route_key: &route.route_key,
        })
        .collect();
    for (position, message) in route::overlaps(&candidates) {
        found.push(
            KeyPath::default()
                .index(candidates[position].index)
                .key("route"),
            message,
        );
    }
}

/// Routes with `async = true` must name a declared queue; keys relative to
/// `[[routes]]`.
pub(crate) fn async_routes(
    routes: &[(usize, Route)],
    queues: &BTreeMap<String, QueueConfig>,
    found: &mut Found,
) {
    for (i, r) in routes {
        let at = KeyPath::default().index(*i);
        match (&r.queue, r.is_async) {
            (None, true) => found.push(
                at.key("queue"),
                "an async route names the queue it fills: queue = \"NAME\"",
            ),
            (Some(q), _) if !queues.contains_key(q) => {
                found.push(at.key("queue"), format!("no queue `{q}` in [queues]"))
            }
            (Some(q), true) if queues[q].fifo.is_some() => found.push(
                at.key("queue"),
                format!(
                    "`{q}` is a FIFO queue, and a FIFO message needs a MessageGroupId an \
                     HTTP request doesn't carry; an async route fills a standard queue"
                ),
            ),
            (Some(_), false) => {
                found.push(at.key("async"), "`queue` is only for `async = true` routes")
            }
            _ => {}
        }
    }
}
