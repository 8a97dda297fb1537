//! Usage plans, API keys and usage on the admin API. Bodies are JSON and
//! strict (unknown fields are refused); errors are [`AdminError`]s with the
//! store's status (404 unknown, 409 exists or in use, 400 invalid). A key's
//! secret appears in exactly two answers: the one that creates the key and
//! the one that rotates it. Store writes hit SQLite, so they run off the
//! async workers.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use levee_store::{period, PlanSpec, StoreError};
use serde_json::json;

use super::error::AdminError;
use super::AdminState;

/// The routes this module serves.
pub(super) fn routes() -> axum::Router<AdminState> {
    axum::Router::new()
        .route("/admin/plans", get(list_plans).post(create_plan))
        .route(
            "/admin/plans/{name}",
            get(get_plan).put(update_plan).delete(delete_plan),
        )
        .route("/admin/keys", get(list_keys).post(create_key))
        .route("/admin/keys/{id}", get(get_key).delete(delete_key))
        .route("/admin/keys/{id}/disable", post(disable_key))
        .route("/admin/keys/{id}/enable", post(enable_key))
        .route("/admin/keys/{id}/rotate", post(rotate_key))
        .route("/admin/usage", get(usage))
}

type Answer = Result<Response, AdminError>;

fn ok(status: StatusCode, body: serde_json::Value) -> Answer {
    Ok((status, axum::Json(body)).into_response())
}

/// A strict JSON body, or the 400 that says why not.
fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    serde_json::from_slice(body)
        .map_err(|e| AdminError::bad_request(format!("invalid JSON body: {e}")))
}

/// Runs a store write off the async workers.
async fn blocking<T: Send + 'static>(
    state: &AdminState,
    work: impl FnOnce(&levee_store::Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, AdminError> {
    let store = std::sync::Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || work(&store)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(AdminError::internal("store task failed")),
    }
}

async fn list_plans(State(state): State<AdminState>) -> Answer {
    ok(StatusCode::OK, json!({ "plans": state.store.plans() }))
}

async fn get_plan(State(state): State<AdminState>, Path(name): Path<String>) -> Answer {
    let plan = state
        .store
        .plan(&name)
        .ok_or_else(|| AdminError::not_found(format!("no plan `{name}`")))?;
    ok(StatusCode::OK, json!({ "plan": plan }))
}

async fn create_plan(State(state): State<AdminState>, body: Bytes) -> Answer {
    let spec: PlanSpec = parse(&body)?;
    let plan = blocking(&state, move |s| s.create_plan(spec)).await?;
    ok(StatusCode::CREATED, json!({ "plan": plan }))
}

async fn update_plan(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Answer {
    let spec: PlanSpec = parse(&body)?;
    if spec.name != name {
        return Err(AdminError::bad_request(
            "the body's name must match the path",
        ));
    }
    let plan = blocking(&state, move |s| s.update_plan(spec)).await?;
    ok(StatusCode::OK, json!({ "plan": plan }))
}

async fn delete_plan(State(state): State<AdminState>, Path(name): Path<String>) -> Answer {
    blocking(&state, move |s| s.delete_plan(&name)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_keys(State(state): State<AdminState>) -> Answer {
    ok(StatusCode::OK, json!({ "keys": state.store.keys() }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    plan: String,
}

async fn create_key(State(state): State<AdminState>, body: Bytes) -> Answer {
    let new: NewKey = parse(&body)?;
    let (key, secret) = blocking(&state, move |s| s.create_key(&new.name, &new.plan)).await?;
    ok(StatusCode::CREATED, json!({ "key": key, "secret": secret }))
}

async fn get_key(State(state): State<AdminState>, Path(id): Path<String>) -> Answer {
    let key = state
        .store
        .key(&id)
        .ok_or_else(|| AdminError::not_found(format!("no key `{id}`")))?;
    ok(StatusCode::OK, json!({ "key": key }))
}

async fn delete_key(State(state): State<AdminState>, Path(id): Path<String>) -> Answer {
    blocking(&state, move |s| s.delete_key(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_enabled(state: AdminState, id: String, enabled: bool) -> Answer {
    let key = blocking(&state, move |s| s.set_key_enabled(&id, enabled)).await?;
    ok(StatusCode::OK, json!({ "key": key }))
}

async fn disable_key(State(state): State<AdminState>, Path(id): Path<String>) -> Answer {
    set_enabled(state, id, false).await
}

async fn enable_key(State(state): State<AdminState>, Path(id): Path<String>) -> Answer {
    set_enabled(state, id, true).await
}

async fn rotate_key(State(state): State<AdminState>, Path(id): Path<String>) -> Answer {
    let (key, secret) = blocking(&state, move |s| s.rotate_key(&id)).await?;
    ok(StatusCode::OK, json!({ "key": key, "secret": secret }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    key: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// Longest span one usage query may cover.
const MAX_USAGE_DAYS: i64 = 366;

fn day(text: Option<&str>, default: i64) -> Result<i64, AdminError> {
    match text {
        None => Ok(default),
        Some(t) => period::parse_day(t)
            .ok_or_else(|| AdminError::bad_request(format!("`{t}` is not a date like 2026-11-28"))),
    }
}

async fn usage(State(state): State<AdminState>, RawQuery(raw): RawQuery) -> Answer {
    // Parsed here rather than by axum's extractor, whose rejection is plain
    // text: every answer of this API is JSON.
    let q: UsageQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| AdminError::bad_request(format!("invalid query: {e}")))?;
    let today = period::unix_day(state.clock.now());
    let to = day(q.to.as_deref(), today)?;
    let from = day(q.from.as_deref(), to - 29)?;
    if from > to || to - from >= MAX_USAGE_DAYS {
        return Err(AdminError::bad_request(format!(
            "`from` must not be after `to`, and the span at most {MAX_USAGE_DAYS} days"
        )));
    }
    let rows = blocking(&state, move |s| s.usage(q.key.as_deref(), from, to)).await?;
    ok(StatusCode::OK, json!({ "usage": rows }))
}
