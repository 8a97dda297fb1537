//! The edge cache (CloudFront's job in front of Lambda): a flood of cacheable
//! requests costs no invocations.
//!
//! This module owns the request-level flow — hit, 304, stale-while-revalidate,
//! collapsed miss, stale-if-error, store — and the shared store and counters.
//! The decisions it follows live in pure submodules: [`key`] (what names an
//! answer), [`freshness`] (what may be stored, for how long), [`conditional`]
//! (304s), [`compress`] (codings). [`entry`] is one stored answer, [`store`]
//! the bounded moka store, [`collapse`] the in-flight table.
//!
//! It must never invoke a function other than through the [`Fetch`] it is
//! handed, never let one key's misses invoke the function more than once at
//! a time, and never hold memory beyond `[cache] max_bytes` plus the answers
//! in flight.
//!
//! Decisions:
//! - **Which requests apply** ([`EdgeCache::applies`]): the route lists the
//!   method (GET/HEAD only), and the request carries no `Authorization`
//!   unless the route keys on it (CloudFront's rule: an unkeyed credential
//!   would let one client's answer reach another), and no `Range` (answers
//!   are stored whole) unless keyed.
//! - **GET and HEAD share an entry**; a HEAD miss fills a separate HEAD-only
//!   entry (its body is unknown) that GET never uses.
//! - **Collapsing**: the first miss of a key spawns the fill (so a client that
//!   disconnects does not cancel it for the others) and waits for it; later
//!   identical misses wait, at most [`MAX_WAITERS`] of them, each at most
//!   [`COLLAPSE_WAIT`]. Past either bound, or if the fill dies, a waiter gets
//!   a stale copy within stale-if-error, else 503 with `Retry-After` — never
//!   its own invocation, so a failing or slow function is not stampeded.
//!   Waiters are told `X-Cache: Hit` (their request cost no invocation).
//!   An answer only for its requester (`Set-Cookie`, `private`, `Vary`
//!   outside the key) is not shared: then each waiter invokes for itself.
//! - **stale-if-error** covers platform failures (`Err`: throttled, timeout,
//!   crash) and 5xx answers from the function; the stale copy is kept and the
//!   failure not stored.
//! - **stale-while-revalidate**: one background fill per key, sharing the
//!   in-flight table with misses.
//! - Responses with `Set-Cookie` are never stored or shared.

mod collapse;
mod compress;
mod conditional;
mod entry;
mod freshness;
mod key;
mod store;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use levee_config::{CachePolicy, CacheSettings};
use serde::Serialize;
use tokio::time::Instant;

pub use collapse::{COLLAPSE_WAIT, MAX_WAITERS};
pub use entry::XCache;
pub(crate) use key::keyed_request;

use collapse::{Join, Lead, Outcome, Snapshot};
use entry::{Entry, Fill};
use freshness::Verdict;
use key::MethodClass;
use store::Store;

/// The longest the request that started a fill waits for it: past Lambda's
/// 15-minute maximum function timeout, so only a fill that hangs beyond any
/// invocation's own timeout ends here (503), never a slow but live one.
pub const LEADER_WAIT: Duration = Duration::from_secs(15 * 60 + 30);

/// The invocation for one request, boxed so a background refresh can own it.
pub type Fetch = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Fetched> + Send>> + Send + Sync>;

/// What the invocation produced: `Ok` is the function's mapped answer (any
/// status; 404 and 5xx are cacheable only as negative entries), `Err` means
/// the platform could not get an answer (throttled 429, timeout 504, crash or
/// error 502, 503) — eligible for stale-if-error; the response is what to
/// send if no stale copy exists.
pub type Fetched = Result<Response<Bytes>, Response<Bytes>>;

/// What to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// Every entry.
    All,
    /// Every entry of one route, by its route key (`GET /items/{id}`).
    Route(String),
    /// Every entry whose key starts with this (see [`key`] for the format).
    KeyPrefix(String),
}

/// Counters and sizes, for the admin listener and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Entries stored (approximate until moka's pending tasks run).
    pub entries: u64,
    /// Bytes stored, as weighed (bodies in all codings, headers, key).
    pub bytes: u64,
    /// The bound on `bytes`.
    pub max_bytes: u64,
    /// Requests answered from a fresh entry without waiting.
    pub hits: u64,
    /// Requests that started a fill (one invocation each).
    pub misses: u64,
    /// Requests answered with a stale entry.
    pub stale: u64,
    /// Requests that waited on another's fill instead of invoking.
    pub collapsed: u64,
    /// Waiters turned away (bound, timeout, failed fill) with 503.
    pub rejected: u64,
    /// Background refreshes started (stale-while-revalidate).
    pub refreshes: u64,
    /// Answers stored (positive and negative).
    pub stores: u64,
    /// Of `stores`, negative (404/error) answers.
    pub negative_stores: u64,
    /// Waiters that invoked for themselves because the answer was personal.
    pub passes: u64,
    /// Cacheable answers not stored for exceeding `max_object`.
    pub too_big: u64,
    /// Compressions run (one per coding per stored object).
    pub compressions: u64,
    /// Entries removed by purges.
    pub purged: u64,
    /// Fills running now.
    pub in_flight: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    collapsed: AtomicU64,
    rejected: AtomicU64,
    refreshes: AtomicU64,
    stores: AtomicU64,
    negative_stores: AtomicU64,
    passes: AtomicU64,
    too_big: AtomicU64,
    compressions: AtomicU64,
    purged: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// The edge cache; one per server, shared by all routes via `Arc`.
#[derive(Debug)]
pub struct EdgeCache {
    store: Store,
    flights: collapse::Flights,
    settings: CacheSettings,
    counters: Counters,
}

/// Who is being answered from a fill's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Leader,
    Waiter,
}

impl EdgeCache {
    /// A cache bounded by `settings.max_bytes`.
    pub fn new(settings: &CacheSettings) -> Arc<EdgeCache> {
        Arc::new(EdgeCache {
            store: Store::new(settings.max_bytes),
            flights: collapse::Flights::default(),
            settings: *settings,
            counters: Counters::default(),
        })
    }

    /// Whether this request may use the cache at all: its method is one the
    /// route caches, and it carries no `Authorization` or `Range` the route
    /// does not key on (see the module docs).
    pub fn applies(&self, policy: &CachePolicy, method: &Method, headers: &HeaderMap) -> bool {
        let keyed = |name: &header::HeaderName| policy.headers.iter().any(|h| h == name.as_str());
        policy.methods.iter().any(|m| m == method.as_str())
            && [header::AUTHORIZATION, header::RANGE]
                .iter()
                .all(|h| !headers.contains_key(h) || keyed(h))
    }

    /// Serves one request (see the module docs for the flow and bounds).
    pub async fn serve(
        self: &Arc<Self>,
        route_key: &str,
        policy: &CachePolicy,
        parts: &http::request::Parts,
        fetch: Fetch,
    ) -> Response<Bytes> {
        let now = Instant::now();
        let head = parts.method == Method::HEAD;
        let build = |class| key::build(route_key, class, &parts.uri, &parts.headers, policy);
        let get_key = build(MethodClass::Get);
        let head_key = head.then(|| build(MethodClass::Head));
        // GET-filled entries serve both methods; HEAD-filled ones only HEAD
        // (and they live under their own key, which GET never reads).
        let found: Vec<Arc<Entry>> = [Some(&get_key), head_key.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|k| self.store.get(k))
            .collect();
        if let Some(e) = found.iter().find(|e| e.fresh(now)) {
            bump(&self.counters.hits);
            return e.render(&parts.method, &parts.headers, now, XCache::Hit);
        }
        // A request fills the entry of its own class.
        let fill_key = head_key.unwrap_or(get_key);
        if let Some(e) = found.iter().find(|e| e.within_revalidate(now)) {
            self.refresh(fill_key, policy, head, Arc::clone(e), fetch);
            bump(&self.counters.stale);
            return e.render(&parts.method, &parts.headers, now, XCache::Stale);
        }
        let stale = found.into_iter().find(|e| e.within_if_error(now));
        self.fill(fill_key, policy, parts, fetch, stale).await
    }

    /// Removes entries; returns how many.
    pub fn purge(&self, purge: Purge) -> u64 {
        let n = match purge {
            Purge::All => self.store.remove_prefix(""),
            Purge::Route(route) => self.store.remove_prefix(&key::route_prefix(&route)),
            Purge::KeyPrefix(prefix) => self.store.remove_prefix(&prefix),
        };
        self.counters.purged.fetch_add(n, Ordering::Relaxed);
        n
    }

    /// A snapshot of the counters and sizes.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            entries: self.store.entries(),
            bytes: self.store.bytes(),
            max_bytes: self.settings.max_bytes,
            hits: get(&c.hits),
            misses: get(&c.misses),
            stale: get(&c.stale),
            collapsed: get(&c.collapsed),
            rejected: get(&c.rejected),
            refreshes: get(&c.refreshes),
            stores: get(&c.stores),
            negative_stores: get(&c.negative_stores),
            passes: get(&c.passes),
            too_big: get(&c.too_big),
            compressions: get(&c.compressions),
            purged: get(&c.purged),
            in_flight: self.flights.in_flight() as u64,
        }
    }

    /// Runs the store's pending evictions now (normally amortised over
    /// requests); for tests and the admin listener's exact numbers.
    pub fn run_pending_tasks(&self) {
        self.store.run_pending_tasks();
    }

    /// A miss: lead a fill, or wait on the one running.
    async fn fill(
        self: &Arc<Self>,
        key: String,
        policy: &CachePolicy,
        parts: &http::request::Parts,
        fetch: Fetch,
        stale: Option<Arc<Entry>>,
    ) -> Response<Bytes> {
        let head = parts.method == Method::HEAD;
        match self.flights.join(&key, true) {
            Join::Lead(lead, ticket) => {
                // A fill may have finished between our lookup and the join.
                if let Some(e) = self.store.get(&key).filter(|e| e.fresh(Instant::now())) {
                    lead.finish(Outcome::Entry {
                        entry: Arc::clone(&e),
                        stale: false,
                    });
                    bump(&self.counters.hits);
                    return e.render(&parts.method, &parts.headers, Instant::now(), XCache::Hit);
                }
                bump(&self.counters.misses);
                self.spawn_fill(lead, key, policy.clone(), head, stale.clone(), fetch);
                match ticket.wait(LEADER_WAIT).await {
                    Ok(outcome) => self.answer(&outcome, parts, Role::Leader),
                    Err(_) => self.unavailable(parts, stale),
                }
            }
            Join::Wait(ticket) => {
                bump(&self.counters.collapsed);
                match ticket.wait(COLLAPSE_WAIT).await {
                    Ok(outcome) if matches!(*outcome, Outcome::Personal(_)) => {
                        bump(&self.counters.passes);
                        let mut resp = fetch().await.unwrap_or_else(|e| e);
                        XCache::Miss.stamp(&mut resp);
                        resp
                    }
                    Ok(outcome) => self.answer(&outcome, parts, Role::Waiter),
                    Err(_) => self.unavailable(parts, stale),
                }
            }
            Join::Full => self.unavailable(parts, stale),
        }
    }

    /// Starts one background refresh of `key` unless a fill is running.
    fn refresh(
        self: &Arc<Self>,
        key: String,
        policy: &CachePolicy,
        head: bool,
        stale: Arc<Entry>,
        fetch: Fetch,
    ) {
        if let Join::Lead(lead, _nobody_waits) = self.flights.join(&key, false) {
            bump(&self.counters.refreshes);
            self.spawn_fill(lead, key, policy.clone(), head, Some(stale), fetch);
        }
    }

    /// Runs `fetch` in its own task (a disconnecting client does not cancel
    /// it for the others) and hands its outcome to the waiters.
    fn spawn_fill(
        self: &Arc<Self>,
        lead: Lead,
        key: String,
        policy: CachePolicy,
        head: bool,
        stale: Option<Arc<Entry>>,
        fetch: Fetch,
    ) {
        let cache = Arc::clone(self);
        tokio::spawn(async move {
            let fetched = fetch().await;
            // Storing a compressible answer gzips and brotlis it (up to
            // milliseconds per MB): on a blocking thread, not an async worker
            // that also serves other requests.
            let compresses = policy.compress
                && matches!(&fetched, Ok(r) if r.body().len() as u64 >= cache.settings.compress_min_bytes);
            let outcome = if compresses {
                let c = Arc::clone(&cache);
                tokio::task::spawn_blocking(move || c.settle(&key, &policy, head, stale, fetched))
                    .await
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "storing a cache entry failed");
                        Outcome::Shared(Snapshot::new(crate::respond::message(
                            StatusCode::BAD_GATEWAY,
                            "Bad Gateway",
                        )))
                    })
            } else {
                cache.settle(&key, &policy, head, stale, fetched)
            };
            lead.finish(outcome);
        });
    }

    /// Turns what the function did into an outcome, storing it if allowed.
    fn settle(
        &self,
        key: &str,
        policy: &CachePolicy,
        head: bool,
        stale: Option<Arc<Entry>>,
        fetched: Fetched,
    ) -> Outcome {
        let now = Instant::now();
        let stale = stale.filter(|e| e.within_if_error(now));
        let failed = match &fetched {
            Err(_) => true,
            Ok(resp) => resp.status().is_server_error(),
        };
        if let (true, Some(entry)) = (failed, stale) {
            return Outcome::Entry { entry, stale: true };
        }
        let resp = match fetched {
            Ok(resp) => resp,
            Err(resp) => return Outcome::Shared(Snapshot::new(resp)),
        };
        match freshness::judge(resp.status(), resp.headers(), policy, SystemTime::now()) {
            Verdict::Private(why) => {
                tracing::trace!(key, why, "answer not shared");
                Outcome::Personal(Mutex::new(Some(resp)))
            }
            Verdict::Share => Outcome::Shared(Snapshot::new(resp)),
            Verdict::Store { .. } if resp.body().len() as u64 > policy.max_object_bytes => {
                bump(&self.counters.too_big);
                Outcome::Shared(Snapshot::new(resp))
            }
            Verdict::Store { ttl, negative } => {
                let fill = Fill {
                    ttl,
                    negative,
                    head_only: head,
                    stale_while_revalidate: policy.stale_while_revalidate,
                    stale_if_error: policy.stale_if_error,
                    compress_min: policy.compress.then_some(self.settings.compress_min_bytes),
                };
                let (parts, body) = resp.into_parts();
                let entry = Arc::new(Entry::new(
                    &parts,
                    body,
                    fill,
                    now,
                    &self.counters.compressions,
                ));
                self.store.insert(key, Arc::clone(&entry));
                bump(&self.counters.stores);
                if negative {
                    bump(&self.counters.negative_stores);
                }
                Outcome::Entry {
                    entry,
                    stale: false,
                }
            }
        }
    }

    /// The answer one request gets from a fill's outcome.
    fn answer(
        &self,
        outcome: &Outcome,
        parts: &http::request::Parts,
        role: Role,
    ) -> Response<Bytes> {
        let now = Instant::now();
        match outcome {
            Outcome::Entry { entry, stale } => {
                let label = match (stale, role) {
                    (true, _) => {
                        bump(&self.counters.stale);
                        XCache::Stale
                    }
                    (false, Role::Leader) => XCache::Miss,
                    (false, Role::Waiter) => XCache::Hit,
                };
                entry.render(&parts.method, &parts.headers, now, label)
            }
            Outcome::Shared(snapshot) => {
                let mut resp = snapshot.to_response();
                XCache::Miss.stamp(&mut resp);
                resp
            }
            Outcome::Personal(slot) => {
                let taken = slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take();
                // Only the leader reaches here, once; a missing answer would
                // be a bug, answered as a failed fill rather than a panic.
                let mut resp = taken.unwrap_or_else(unavailable_response);
                XCache::Miss.stamp(&mut resp);
                resp
            }
        }
    }

    /// A request that could not wait for a fill: stale if allowed, else 503.
    fn unavailable(
        &self,
        parts: &http::request::Parts,
        stale: Option<Arc<Entry>>,
    ) -> Response<Bytes> {
        let now = Instant::now();
        if let Some(e) = stale.filter(|e| e.within_if_error(now)) {
            bump(&self.counters.stale);
            return e.render(&parts.method, &parts.headers, now, XCache::Stale);
        }
        bump(&self.counters.rejected);
        let mut resp = unavailable_response();
        XCache::Miss.stamp(&mut resp);
        resp
    }
}

fn unavailable_response() -> Response<Bytes> {
    let mut resp = crate::respond::message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    resp.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(crate::respond::RETRY_AFTER_SECS),
    );
    resp
}

#[cfg(test)]
mod tests;
