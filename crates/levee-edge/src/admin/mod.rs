//! The admin listener: the platform's control plane, kept off the public
//! edge. [`auth`] decides who may use it; [`invoke`] is the Lambda Invoke
//! API; the status endpoints (functions, firewall counters, reload) live
//! here. Every handler answers JSON (errors through [`error::AdminError`],
//! and [`error::shape_errors`] for axum's own rejections); none of them may
//! block a runtime worker.

pub mod auth;
mod error;
pub mod invoke;
mod keys;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use levee_runtime::Scheduler;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::billing::Billing;
use crate::cache::{EdgeCache, Purge};
use crate::clock::Clock;
use crate::invocation::Invoke;
use crate::shield::ShieldHandle;
use axum::extract::RawQuery;
use error::AdminError;
use levee_meter::{CostBy, CostPeriod};
use levee_queue::Queues;

/// Re-reads the config and swaps the shield; `Ok` says what changed, `Err`
/// why nothing did.
pub type Reload = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// What the admin handlers share.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) shield: Arc<ShieldHandle>,
    pub(crate) reload: Reload,
    pub(crate) events: Arc<Semaphore>,
    pub(crate) store: Arc<levee_store::Store>,
    pub(crate) clock: Clock,
    pub(crate) cache: Arc<EdgeCache>,
    pub(crate) billing: Option<Arc<Billing>>,
    pub(crate) invoker: Arc<dyn Invoke>,
    pub(crate) queues: Arc<Queues>,
    pub(crate) base_url: Arc<str>,
    token: Arc<str>,
    watch: Option<Arc<crate::watch::Watch>>,
}

/// Everything the admin listener serves from.
pub struct Admin {
    /// The function pools.
    pub scheduler: Arc<Scheduler>,
    /// The shield in force.
    pub shield: Arc<ShieldHandle>,
    /// How to reload the shield from the config file.
    pub reload: Reload,
    /// The admin token (see [`auth`]).
    pub token: String,
    /// Keys, plans and usage.
    pub store: Arc<levee_store::Store>,
    /// The clock quotas and usage days are read with.
    pub clock: Clock,
    /// The edge cache, for stats and purges.
    pub cache: Arc<EdgeCache>,
    /// Meters and budgets, unless metering is off (for costs and budgets).
    pub billing: Option<Arc<Billing>>,
    /// How the Invoke API runs functions: the edge's own invoker.
    pub invoker: Arc<dyn Invoke>,
    /// Durable queues, served with the SQS JSON protocol on `POST /`.
    pub queues: Arc<Queues>,
    /// This listener's own URL (`http://host:port`), for queue URLs.
    pub base_url: String,
    /// Automatic attack detection, unless it is off.
    pub watch: Option<Arc<crate::watch::Watch>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

/// The admin API as an axum router. Everything but `/healthz` needs the
/// admin token.
pub fn router(admin: Admin) -> axum::Router {
    let state = AdminState {
        scheduler: admin.scheduler,
        shield: admin.shield,
        reload: admin.reload,
        events: Arc::new(Semaphore::new(invoke::MAX_PENDING_EVENTS)),
        store: admin.store,
        clock: admin.clock,
        cache: admin.cache,
        billing: admin.billing,
        invoker: admin.invoker,
        queues: Arc::clone(&admin.queues),
        base_url: Arc::from(admin.base_url.as_str()),
        token: Arc::from(admin.token),
        watch: admin.watch,
    };
    axum::Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invoke::invoke),
        )
        .route("/admin/functions", get(functions))
        .route("/admin/firewall", get(firewall))
        .route("/admin/shield/auto", get(auto_mitigation))
        .route("/admin/reload", post(reload_rules))
        .route("/admin/cache", get(cache_stats))
        .route("/metrics", get(metrics))
        .route("/admin/costs", get(costs))
        .route("/admin/budgets", get(budgets))
        .route("/admin/queues", get(queue_list))
        .route("/admin/queues/{name}/peek", get(queue_peek))
        .route("/admin/queues/{name}/messages", post(queue_send))
        .route("/admin/cache/purge", post(cache_purge))
        .route(HEALTH, get(|| async { "ok" }))
        .route("/openapi.json", get(openapi))
        .merge(keys::routes())
        // The token layer below covers the fallback too: a stranger gets
        // 401 for every path, so unknown ones do not reveal which exist.
        .fallback(not_found)
        .with_state(state.clone())
        // The SQS JSON API (POST / with X-Amz-Target), behind the same token.
        .merge(levee_queue::sqs_router(admin.queues, admin.base_url))
        .layer(axum::middleware::from_fn_with_state(state, require_token))
        // Outermost, so it also shapes the token check's 401 on the Invoke API.
        .layer(axum::middleware::from_fn(error::shape_errors))
}

/// The description of this API, kept true by the API contract check
/// (schemathesis, in `scripts/test`).
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// The one path open without the token.
const HEALTH: &str = "/healthz";

fn presented_token_ok(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    auth::authorized(header, token)
}

async fn not_found() -> AdminError {
    AdminError::not_found("Not Found")
}

/// 401 with nothing else for a missing or wrong token.
async fn require_token(
    State(state): State<AdminState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().path() == HEALTH || presented_token_ok(req.headers(), &state.token) {
        next.run(req).await
    } else {
        unauthorized()
    }
}

fn unauthorized() -> Response {
    let mut r = AdminError::new(StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    r.headers_mut().insert(
        axum::http::header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    r
}

async fn functions(State(state): State<AdminState>) -> Response {
    let list: Vec<_> = state
        .scheduler
        .stats()
        .into_iter()
        .map(|(name, stats)| json!({ "name": name, "instances": stats }))
        .collect();
    axum::Json(json!({ "functions": list })).into_response()
}

/// Per-rule counters of the firewall in force.
async fn firewall(State(state): State<AdminState>) -> Response {
    let shield = state.shield.load();
    let rules = shield
        .firewall
        .as_ref()
        .map(|f| f.counters())
        .unwrap_or_default();
    axum::Json(json!({ "rules": rules })).into_response()
}

/// What automatic attack detection sees: learning or ready, the learned
/// and current rates, and its events with their signatures and rules.
async fn auto_mitigation(State(state): State<AdminState>) -> Response {
    let report = match &state.watch {
        Some(watch) => watch.report(),
        None => json!({ "mode": "off", "events": [] }),
    };
    axum::Json(report).into_response()
}

/// Prometheus text exposition.
async fn metrics() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        levee_meter::metrics::render(),
    )
        .into_response()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CostQuery {
    by: Option<String>,
    period: Option<String>,
}

fn metering_off() -> Response {
    AdminError::not_found("metering is off ([metering] enabled = false)").into_response()
}

/// Spend by function, route or key, this day or month.
async fn costs(State(state): State<AdminState>, RawQuery(raw): RawQuery) -> Response {
    let Some(billing) = state.billing.clone() else {
        return metering_off();
    };
    let bad = |m: String| AdminError::bad_request(m).into_response();
    let q: CostQuery = match serde_urlencoded::from_str(raw.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return bad(format!("invalid query: {e}")),
    };
    let by = match q.by.as_deref().unwrap_or("function") {
        "function" => CostBy::Function,
        "route" => CostBy::Route,
        "key" => CostBy::Key,
        other => return bad(format!("`by` is function, route or key, not `{other}`")),
    };
    let period = match q.period.as_deref().unwrap_or("day") {
        "day" => CostPeriod::Day,
        "month" => CostPeriod::Month,
        other => return bad(format!("`period` is day or month, not `{other}`")),
    };
    // costs() flushes and reads SQLite: off the async workers.
    let rows =
        tokio::task::spawn_blocking(move || billing.meters().costs(by, period, billing.now()))
            .await;
    match rows {
        Ok(rows) => axum::Json(json!({ "costs": rows })).into_response(),
        Err(_) => AdminError::internal("costs task failed").into_response(),
    }
}

/// Every budget's spend, forecast and state.
async fn budgets(State(state): State<AdminState>) -> Response {
    let Some(billing) = state.billing.clone() else {
        return metering_off();
    };
    axum::Json(json!({ "budgets": billing.budgets().status(billing.now()) })).into_response()
}

/// Every queue with its approximate counts.
async fn queue_list(State(state): State<AdminState>) -> Response {
    let (queues, base) = (Arc::clone(&state.queues), Arc::clone(&state.base_url));
    match tokio::task::spawn_blocking(move || queues.list(&base)).await {
        Ok(Ok(list)) => axum::Json(json!({ "queues": list })).into_response(),
        Ok(Err(e)) => AdminError::from(e).into_response(),
        Err(_) => AdminError::internal("queue list task failed").into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PeekQuery {
    max: Option<usize>,
}

/// Most messages one peek returns.
const MAX_PEEK: usize = 1000;

/// A read-only look at a queue's next messages (visibility and receive
/// counts untouched).
async fn queue_peek(
    State(state): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let Ok(q) = serde_urlencoded::from_str::<PeekQuery>(raw.as_deref().unwrap_or("")) else {
        return AdminError::bad_request("invalid query").into_response();
    };
    let max = q.max.unwrap_or(10).clamp(1, MAX_PEEK);
    let queues = Arc::clone(&state.queues);
    match tokio::task::spawn_blocking(move || queues.peek(&name, max)).await {
        Ok(Ok(list)) => axum::Json(json!({ "messages": list })).into_response(),
        Ok(Err(e)) => AdminError::from(e).into_response(),
        Err(_) => AdminError::internal("queue peek task failed").into_response(),
    }
}

/// Sends the request body as one message.
async fn queue_send(
    State(state): State<AdminState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    body: bytes::Bytes,
) -> Response {
    match state.queues.send(&name, body, Default::default()).await {
        Ok(sent) => (
            StatusCode::CREATED,
            axum::Json(json!({ "messageId": sent.message_id, "md5OfBody": sent.md5_of_body })),
        )
            .into_response(),
        Err(e) => AdminError::from(e).into_response(),
    }
}

async fn cache_stats(State(state): State<AdminState>) -> Response {
    axum::Json(json!({ "cache": state.cache.stats() })).into_response()
}

/// `{"all": true}`, `{"route": "GET /x"}` or `{"prefix": "<key prefix>"}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    all: Option<bool>,
    route: Option<String>,
    prefix: Option<String>,
}

async fn cache_purge(State(state): State<AdminState>, body: bytes::Bytes) -> Response {
    let bad = |m: &str| AdminError::bad_request(m).into_response();
    let Ok(req) = serde_json::from_slice::<PurgeRequest>(&body) else {
        return bad("expected {\"all\": true}, {\"route\": \"GET /x\"} or {\"prefix\": \"…\"}");
    };
    let purge = match (req.all, req.route, req.prefix) {
        (Some(true), None, None) => Purge::All,
        (None, Some(route), None) => Purge::Route(route),
        (None, None, Some(prefix)) => Purge::KeyPrefix(prefix),
        _ => return bad("give exactly one of all (true), route or prefix"),
    };
    axum::Json(json!({ "purged": state.cache.purge(purge) })).into_response()
}

async fn reload_rules(State(state): State<AdminState>) -> Response {
    // Reading and compiling rules is blocking work (files, 100k-entry IP sets).
    let reload = Arc::clone(&state.reload);
    match tokio::task::spawn_blocking(move || reload()).await {
        Ok(Ok(done)) => axum::Json(json!({ "reloaded": true, "message": done })).into_response(),
        Ok(Err(why)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "reloaded": false, "message": why })),
        )
            .into_response(),
        Err(_) => AdminError::internal("reload task failed").into_response(),
    }
}
