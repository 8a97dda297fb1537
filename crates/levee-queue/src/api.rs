//! The SQS JSON API (`POST /`, `X-Amz-Target: AmazonSQS.<Action>`,
//! `application/x-amz-json-1.0`), so `boto3.client("sqs")` works.
//!
//! Owns: request parsing and bounds (bodies ≤ [`MAX_REQUEST_BYTES`], batch
//! rules), the mapping of [`QueueError`] to AWS-shaped errors (status,
//! `x-amzn-query-error`, `__type`), and response shapes per the reference
//! §5. Must never: authenticate (the admin router in front of it does),
//! echo request text unbounded in an error, or answer before the store has
//! committed.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::digest::md5_of_attributes;
use crate::error::{quote, AwsCode, QueueError, INVALID_PARAMETER};
use crate::model::{
    queue_arn, validate_queue_name, AttributeValue, MessageAttribute, MessageAttributes,
    NewMessage, QueueSettings, ReceiveOptions, ReceivedMessage, ACCOUNT_ID, MAX_MESSAGE_SIZE,
    MAX_VISIBILITY_SECS, MAX_WAIT_SECS,
};
use crate::moves::MoveTasks;
use crate::query;
use crate::queues::{queue_url, Queues};
use crate::recent::Recent;

/// Largest request body: ten 256 KiB messages, base64 attributes and JSON
/// escaping fit; more is refused before parsing.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;
/// SQS's limit on entries per batch request.
pub const MAX_API_BATCH: usize = 10;
/// SQS's limit on messages per ReceiveMessage.
pub const MAX_API_RECEIVE: i64 = 10;
/// Longest batch entry id (SQS's).
const MAX_ENTRY_ID: usize = 80;
/// Most queue URLs one ListQueues returns.
const MAX_LIST_RESULTS: usize = 1000;
/// The system attributes a receive can ask for.
const SYSTEM_ATTRIBUTES: [&str; 7] = [
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SenderId",
    "SentTimestamp",
    "MessageGroupId",
    "MessageDeduplicationId",
    "SequenceNumber",
];

#[derive(Debug)]
struct Api {
    queues: Arc<Queues>,
    base_url: String,
    moves: MoveTasks,
    attempts: Attempts,
    recent: Recent,
}

/// The SQS API on `POST /`. `base_url` (e.g. `http://127.0.0.1:8081`)
/// prefixes queue URLs. Merge it into an authenticated router; it does no
/// authentication of its own.
pub fn sqs_router(queues: Arc<Queues>, base_url: String) -> Router {
    Router::new()
        .route("/", post(handle))
        // Older clients post Query requests to the queue's own URL.
        .route("/000000000000/{queue}", post(handle_at_queue))
        .with_state(Arc::new(Api {
            queues,
            base_url,
            moves: MoveTasks::default(),
            attempts: Attempts::default(),
            recent: Recent::default(),
        }))
}

/// An AWS-shaped error answer.
#[derive(Debug)]
struct ApiError {
    code: AwsCode,
    message: String,
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        ApiError {
            code: e.aws_code(),
            message: e.to_string(),
        }
    }
}

impl ApiError {
    fn new(code: AwsCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMETER, message)
    }

    fn batch(query_code: &'static str, shape: &'static str, message: &str) -> Self {
        Self::new(AwsCode::sender(query_code, shape), message)
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn answer(status: StatusCode, body: Value, extra: Option<HeaderValue>) -> Response {
    let mut res = (status, body.to_string()).into_response();
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("x-amzn-requestid", v);
    }
    if let Some(q) = extra {
        h.insert("x-amzn-query-error", q);
    }
    res
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let fault = if self.code.sender_fault {
            "Sender"
        } else {
            "Receiver"
        };
        let query = HeaderValue::from_str(&format!("{};{fault}", self.code.query_code)).ok();
        let status =
            StatusCode::from_u16(self.code.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({
            "__type": format!("com.amazonaws.sqs#{}", self.code.shape),
            "message": self.message,
        });
        answer(status, body, query)
    }
}

async fn handle(State(api): State<Arc<Api>>, headers: HeaderMap, body: Body) -> Response {
    serve(&api, &headers, body, None).await
}

async fn handle_at_queue(
    State(api): State<Arc<Api>>,
    axum::extract::Path(queue): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let url = queue_url(&api.base_url, &queue);
    serve(&api, &headers, body, Some(url)).await
}

/// The JSON protocol names its action in `X-Amz-Target`; a request without
/// one speaks the Query protocol (the action is a form field).
async fn serve(api: &Api, headers: &HeaderMap, body: Body, at: Option<String>) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let e = ApiError::batch(
                "AWS.SimpleQueueService.BatchRequestTooLong",
                "BatchRequestTooLong",
                &format!("request bodies are limited to {MAX_REQUEST_BYTES} bytes"),
            );
            return match target {
                Some(_) => e.into_response(),
                None => e.into_query_response(),
            };
        }
    };
    match target {
        Some(target) => {
            let Some(action) = target.strip_prefix("AmazonSQS.") else {
                return ApiError::new(
                    AwsCode::sender("InvalidAction", "InvalidAction"),
                    "expected an X-Amz-Target header naming an AmazonSQS action",
                )
                .into_response();
            };
            match dispatch(api, action, &bytes).await {
                Ok(v) => answer(StatusCode::OK, v, None),
                Err(e) => e.into_response(),
            }
        }
        None => {
            let fields: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
            let Some((action, request)) = query::request(fields) else {
                return ApiError::new(
                    AwsCode::sender("MissingAction", "MissingAction"),
                    "expected an X-Amz-Target header (JSON protocol) or an Action form field (Query protocol)",
                )
                .into_query_response();
            };
            let request = query::with_queue_url(request, at);
            let json = serde_json::to_vec(&request).unwrap_or_default();
            match dispatch(api, &action, &json).await {
                Ok(v) => {
                    let xml = query::response(&action, &v, &request_id());
                    xml_answer(StatusCode::OK, xml)
                }
                Err(e) => e.into_query_response(),
            }
        }
    }
}

fn xml_answer(status: StatusCode, xml: String) -> Response {
    let mut res = (status, xml).into_response();
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml"),
    );
    res
}

impl ApiError {
    /// The error as the Query protocol's XML document.
    fn into_query_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // The one text AWS words differently in the Query protocol.
        let message = match self.code.shape {
            "QueueDoesNotExist" => "The specified queue does not exist for this wsdl version.",
            _ => &self.message,
        };
        let xml = query::error(
            self.code.sender_fault,
            self.code.query_code,
            message,
            &request_id(),
        );
        xml_answer(status, xml)
    }
}

async fn dispatch(api: &Api, action: &str, b: &[u8]) -> Result<Value, ApiError> {
    match action {
        "CreateQueue" => create_queue(api, parse(b)?).await,
        "GetQueueUrl" => get_queue_url(api, parse(b)?),
        "ListQueues" => list_queues(api, parse(b)?),
        "DeleteQueue" => {
            let r: UrlOnly = parse(b)?;
            let name = name_of(&r.queue_url)?;
            api.queues.delete_queue(&name).await?;
            api.recent.deleted(&name, now_ms());
            Ok(json!({}))
        }
        "PurgeQueue" => {
            let r: UrlOnly = parse(b)?;
            let name = name_of(&r.queue_url)?;
            if api.queues.settings(&name).is_none() {
                return Err(QueueError::not_found(&name).into());
            }
            api.recent.purge(&name, now_ms())?;
            api.queues.purge(&name).await?;
            Ok(json!({}))
        }
        "GetQueueAttributes" => get_attributes(api, parse(b)?).await,
        "SetQueueAttributes" => set_attributes(api, parse(b)?).await,
        "SendMessage" => send_message(api, parse(b)?).await,
        "SendMessageBatch" => send_batch(api, parse(b)?).await,
        "ReceiveMessage" => receive(api, parse(b)?).await,
        "DeleteMessage" => {
            let r: DeleteReq = parse(b)?;
            api.queues
                .delete_message(&name_of(&r.queue_url)?, &r.receipt_handle)
                .await?;
            Ok(json!({}))
        }
        "DeleteMessageBatch" => delete_batch(api, parse(b)?).await,
        "ChangeMessageVisibility" => {
            let r: VisibilityReq = parse(b)?;
            let secs = visibility(r.visibility_timeout)?;
            let mut out = api
                .queues
                .change_visibility(&name_of(&r.queue_url)?, vec![(r.receipt_handle, secs)])
                .await?;
            out.pop().unwrap_or(Ok(()))?;
            Ok(json!({}))
        }
        "ChangeMessageVisibilityBatch" => visibility_batch(api, parse(b)?).await,
        "TagQueue" => {
            let r: TagReq = parse(b)?;
            change_tags(api, &r.queue_url, |s| s.add_tags(&r.tags)).await
        }
        "UntagQueue" => {
            let r: UntagReq = parse(b)?;
            change_tags(api, &r.queue_url, |s| {
                for key in &r.tag_keys {
                    s.tags.remove(key);
                }
                Ok(())
            })
            .await
        }
        "ListQueueTags" => {
            let r: UrlOnly = parse(b)?;
            let name = name_of(&r.queue_url)?;
            let tags = api
                .queues
                .settings(&name)
                .ok_or_else(|| QueueError::not_found(&name))?
                .tags;
            // SQS leaves `Tags` out when a queue has none.
            Ok(match tags.is_empty() {
                true => json!({}),
                false => json!({ "Tags": tags }),
            })
        }
        "ListDeadLetterSourceQueues" => dead_letter_sources(api, parse(b)?),
        "StartMessageMoveTask" => start_move(api, parse(b)?).await,
        "ListMessageMoveTasks" => list_moves(api, parse(b)?),
        "CancelMessageMoveTask" => {
            let r: CancelMoveReq = parse(b)?;
            let source = crate::moves::source_of_handle(&r.task_handle)
                .ok_or_else(|| ApiError::invalid("Value for parameter TaskHandle is invalid."))?;
            queue_of_arn(api, &source, "SourceArn")?;
            let task =
                api.moves
                    .cancel(&r.task_handle)
                    .ok_or_else(|| QueueError::ResourceNotFound {
                        message: "Task does not exist.".into(),
                    })?;
            Ok(json!({ "ApproximateNumberOfMessagesMoved": task.moved() }))
        }
        other => Err(ApiError::new(
            AwsCode::sender("InvalidAction", "InvalidAction"),
            format!(
                "The action {} is not valid for this endpoint.",
                quote(other)
            ),
        )),
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // An empty body is an empty object (botocore sends `{}`, curl may not).
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        let text = e.to_string();
        ApiError::invalid(format!("malformed request: {}", quote(&text)))
    })
}

/// The queue name is the URL's last path segment; the host is not checked
/// (clients reach the admin listener under many names).
fn name_of(url: &str) -> Result<String, ApiError> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    if validate_queue_name(name).is_err() {
        return Err(QueueError::not_found(name).into());
    }
    Ok(name.to_string())
}

fn visibility(v: i64) -> Result<u32, ApiError> {
    if v > i64::from(MAX_VISIBILITY_SECS) {
        // AWS's words (observed); it counts from the message's first receive,
        // Levee from now, so only the bound itself matches.
        return Err(ApiError::invalid(format!(
            "Value {v} for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [{MAX_VISIBILITY_SECS} seconds]."
        )));
    }
    u32::try_from(v).map_err(|_| {
        ApiError::invalid(format!(
            "Value {v} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and {MAX_VISIBILITY_SECS}."
        ))
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UrlOnly {
    queue_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateReq {
    queue_name: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    /// Lowercase in SQS's JSON protocol, unlike every other member.
    #[serde(default, rename = "tags")]
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagReq {
    queue_url: String,
    tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagReq {
    queue_url: String,
    tag_keys: Vec<String>,
}

/// Applies `change` to a queue's tags and stores the result.
async fn change_tags(
    api: &Api,
    url: &str,
    change: impl FnOnce(&mut QueueSettings) -> Result<(), QueueError>,
) -> Result<Value, ApiError> {
    let name = name_of(url)?;
    let mut settings = api
        .queues
        .settings(&name)
        .ok_or_else(|| QueueError::not_found(&name))?;
    change(&mut settings)?;
    api.queues.set_settings(&name, settings).await?;
    Ok(json!({}))
}

/// Most tasks one `ListMessageMoveTasks` returns (SQS's bound).
const MAX_LISTED_MOVES: i64 = 10;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartMoveReq {
    source_arn: String,
    destination_arn: Option<String>,
    max_number_of_messages_per_second: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMovesReq {
    source_arn: String,
    max_results: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CancelMoveReq {
    task_handle: String,
}

/// The queue an ARN names (`arn:aws:sqs:REGION:ACCOUNT:NAME`), if it
/// exists; else SQS's 404 naming the `parameter` that held it.
fn queue_of_arn(api: &Api, arn: &str, parameter: &str) -> Result<String, ApiError> {
    let name = arn.rsplit(':').next().unwrap_or_default();
    if !arn.starts_with("arn:aws:sqs:") || api.queues.settings(name).is_none() {
        return Err(QueueError::ResourceNotFound {
            message: format!(
                "The resource that you specified for the {parameter} parameter doesn't exist."
            ),
        }
        .into());
    }
    Ok(name.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn start_move(api: &Api, r: StartMoveReq) -> Result<Value, ApiError> {
    let source = queue_of_arn(api, &r.source_arn, "SourceArn")?;
    let destination = r
        .destination_arn
        .as_deref()
        .map(|arn| queue_of_arn(api, arn, "DestinationArn"))
        .transpose()?;
    let is_dead_letter = api.queues.names().iter().any(|q| {
        api.queues
            .settings(q)
            .and_then(|s| s.redrive)
            .is_some_and(|rd| rd.dead_letter == source)
    });
    if !is_dead_letter {
        return Err(ApiError::invalid(
            "Source queue must be configured as a Dead Letter Queue.",
        ));
    }
    let rate = r
        .max_number_of_messages_per_second
        .map(|n| u32::try_from(n).unwrap_or(0));
    let (queues, base, queue) = (
        Arc::clone(&api.queues),
        api.base_url.clone(),
        source.clone(),
    );
    let info = tokio::task::spawn_blocking(move || queues.info(&queue, &base))
        .await
        .map_err(|e| QueueError::Storage {
            message: format!("counting task: {e}"),
        })??;
    let task = api.moves.start(
        Arc::clone(&api.queues),
        source,
        destination,
        rate,
        info.approximate_messages,
        now_ms(),
    )?;
    Ok(json!({ "TaskHandle": task.handle }))
}

fn list_moves(api: &Api, r: ListMovesReq) -> Result<Value, ApiError> {
    let source = queue_of_arn(api, &r.source_arn, "SourceArn")?;
    let max = match r.max_results {
        None => 1,
        Some(n) if (1..=MAX_LISTED_MOVES).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "MaxResults must be between 1 and {MAX_LISTED_MOVES}, not {n}"
            )))
        }
    };
    let results: Vec<Value> = api
        .moves
        .list(&source, max)
        .iter()
        .map(|t| {
            let (status, reason) = t.status();
            let mut v = json!({
                "Status": status.as_str(),
                "SourceArn": queue_arn(&t.source),

                "ApproximateNumberOfMessagesMoved": t.moved(),
                "ApproximateNumberOfMessagesToMove": t.to_move,
                "StartedTimestamp": t.started_ms,
            });
            // SQS gives the handle of a running task only: the one to cancel.
            if status == crate::moves::Status::Running {
                v["TaskHandle"] = json!(t.handle);
            }
            if let Some(d) = &t.destination {
                v["DestinationArn"] = json!(queue_arn(d));
            }
            // Only when the task was started with one, as in SQS.
            if let Some(rate) = t.asked_rate {
                v["MaxNumberOfMessagesPerSecond"] = json!(rate);
            }
            if let Some(reason) = reason {
                v["FailureReason"] = json!(reason);
            }
            v
        })
        .collect();
    Ok(json!({ "Results": results }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SourcesReq {
    queue_url: String,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// The queues whose redrive policy names this one, in name order, a page
/// at a time (`NextToken` is the last name of the page before).
fn dead_letter_sources(api: &Api, r: SourcesReq) -> Result<Value, ApiError> {
    let name = name_of(&r.queue_url)?;
    if api.queues.settings(&name).is_none() {
        return Err(QueueError::not_found(&name).into());
    }
    let page = match r.max_results {
        None => MAX_LIST_RESULTS,
        Some(n) if (1..=MAX_LIST_RESULTS as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(QueueError::invalid(format!(
                "MaxResults must be between 1 and {MAX_LIST_RESULTS}, not {n}"
            ))
            .into())
        }
    };
    let mut sources: Vec<String> = api
        .queues
        .names()
        .into_iter()
        .filter(|q| r.next_token.as_ref().is_none_or(|after| q > after))
        .filter(|q| {
            api.queues
                .settings(q)
                .and_then(|s| s.redrive)
                .is_some_and(|rd| rd.dead_letter == name)
        })
        .collect();
    sources.sort();
    let more = sources.len() > page;
    sources.truncate(page);
    let mut out = json!({
        "queueUrls": sources.iter().map(|q| queue_url(&api.base_url, q)).collect::<Vec<_>>(),
    });
    if more {
        out["NextToken"] = json!(sources.last());
    }
    Ok(out)
}

async fn create_queue(api: &Api, r: CreateReq) -> Result<Value, ApiError> {
    validate_queue_name(&r.queue_name)?;
    let url = queue_url(&api.base_url, &r.queue_name);
    // Same name and the given attributes already hold: SQS answers with the
    // existing URL (attributes not named are not compared).
    // (Tags are not compared either: SQS keeps the existing queue's.)
    if let Some(current) = api.queues.settings(&r.queue_name) {
        let mut wanted = current.clone();
        wanted.apply_attributes(&r.attributes)?;
        if wanted == current {
            return Ok(json!({ "QueueUrl": url }));
        }
        let attribute = current.first_difference(&wanted).to_string();
        return Err(QueueError::Exists {
            name: r.queue_name,
            attribute,
        }
        .into());
    }
    api.recent.may_create(&r.queue_name, now_ms())?;
    let mut settings = QueueSettings::default();
    settings.apply_attributes(&r.attributes)?;
    settings.add_tags(&r.tags)?;
    queue_type_matches_name(&r.queue_name, &settings)?;
    api.queues.create_queue(&r.queue_name, settings).await?;
    Ok(json!({ "QueueUrl": url }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetUrlReq {
    queue_name: String,
}

fn get_queue_url(api: &Api, r: GetUrlReq) -> Result<Value, ApiError> {
    if api.queues.settings(&r.queue_name).is_none() {
        return Err(QueueError::not_found(&r.queue_name).into());
    }
    Ok(json!({ "QueueUrl": queue_url(&api.base_url, &r.queue_name) }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListReq {
    queue_name_prefix: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

fn list_queues(api: &Api, r: ListReq) -> Result<Value, ApiError> {
    let max = match r.max_results {
        None => MAX_LIST_RESULTS,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_LIST_RESULTS).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "MaxResults must be between 1 and {MAX_LIST_RESULTS}"
                ))
            })?,
    };
    let prefix = r.queue_name_prefix.unwrap_or_default();
    let after = r.next_token.unwrap_or_default();
    let names: Vec<String> = api
        .queues
        .names()
        .into_iter()
        .filter(|n| n.starts_with(&prefix) && n.as_str() > after.as_str())
        .collect();
    let mut out = Map::new();
    if !names.is_empty() {
        let page: Vec<Value> = names
            .iter()
            .take(max)
            .map(|n| Value::String(queue_url(&api.base_url, n)))
            .collect();
        out.insert("QueueUrls".into(), Value::Array(page));
    }
    if r.max_results.is_some() && names.len() > max {
        if let Some(last) = names.get(max - 1) {
            out.insert("NextToken".into(), Value::String(last.clone()));
        }
    }
    Ok(Value::Object(out))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetAttrsReq {
    queue_url: String,
    #[serde(default)]
    attribute_names: Vec<String>,
}

const QUEUE_ATTRIBUTES: [&str; 22] = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "VisibilityTimeout",
    "DelaySeconds",
    "MessageRetentionPeriod",
    "MaximumMessageSize",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "MaxMessages",
    "Policy",
    "RedriveAllowPolicy",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

async fn get_attributes(api: &Api, r: GetAttrsReq) -> Result<Value, ApiError> {
    let name = name_of(&r.queue_url)?;
    // Counting a deep queue scans it in SQLite (tens of ms per 100k
    // messages): on a blocking thread, not the data plane's workers.
    let (queues, base, queue) = (Arc::clone(&api.queues), api.base_url.clone(), name.clone());
    let info = tokio::task::spawn_blocking(move || queues.info(&queue, &base))
        .await
        .map_err(|e| QueueError::Storage {
            message: format!("counting task: {e}"),
        })??;
    let s = &info.settings;
    let all = r.attribute_names.iter().any(|n| n == "All");
    let mut out = Map::new();
    let wanted: Vec<&str> = if all {
        QUEUE_ATTRIBUTES.to_vec()
    } else {
        r.attribute_names.iter().map(String::as_str).collect()
    };
    for n in wanted {
        let v = match n {
            "ApproximateNumberOfMessages" => info.approximate_messages.to_string(),
            "ApproximateNumberOfMessagesNotVisible" => info.in_flight.to_string(),
            "ApproximateNumberOfMessagesDelayed" => info.delayed.to_string(),
            "CreatedTimestamp" => (info.created_ms / 1000).to_string(),
            "LastModifiedTimestamp" => (info.modified_ms / 1000).to_string(),
            "QueueArn" => queue_arn(&name),
            "VisibilityTimeout" => s.visibility_timeout.to_string(),
            "DelaySeconds" => s.delay.to_string(),
            "MessageRetentionPeriod" => s.retention.to_string(),
            "MaximumMessageSize" => s.max_message_size.to_string(),
            "ReceiveMessageWaitTimeSeconds" => s.receive_wait.to_string(),
            "MaxMessages" => s.max_messages.to_string(),
            "RedrivePolicy" => match &s.redrive {
                Some(rd) => json!({
                    "deadLetterTargetArn": queue_arn(&rd.dead_letter),
                    "maxReceiveCount": rd.max_receive_count,
                })
                .to_string(),
                // SQS leaves out attributes a queue doesn't have.
                None => continue,
            },
            "Policy" | "RedriveAllowPolicy" | "KmsMasterKeyId" | "KmsDataKeyReusePeriodSeconds" => {
                let u = &s.unenforced;
                let v = match n {
                    "Policy" => u.policy.clone(),
                    "RedriveAllowPolicy" => u.redrive_allow_policy.clone(),
                    "KmsMasterKeyId" => u.kms_master_key_id.clone(),
                    _ => u.kms_data_key_reuse_period.map(|p| p.to_string()),
                };
                match v {
                    Some(v) => v,
                    None => continue,
                }
            }
            "FifoQueue"
            | "ContentBasedDeduplication"
            | "DeduplicationScope"
            | "FifoThroughputLimit" => {
                // A standard queue has none of these.
                let Some(f) = &s.fifo else { continue };
                match n {
                    "FifoQueue" => "true".to_string(),
                    "ContentBasedDeduplication" => f.content_based_dedup.to_string(),
                    "DeduplicationScope" => match f.dedup_per_group {
                        true => "messageGroup".to_string(),
                        false => "queue".to_string(),
                    },
                    _ => match f.throughput_per_group {
                        true => "perMessageGroupId".to_string(),
                        false => "perQueue".to_string(),
                    },
                }
            }
            // SQS encrypts new queues with its own keys unless told not to,
            // or told to use KMS.
            "SqsManagedSseEnabled" => {
                let u = &s.unenforced;
                (u.sqs_managed_sse != Some(false) && u.kms_master_key_id.is_none()).to_string()
            }
            other => {
                return Err(QueueError::unknown_attribute(other).into());
            }
        };
        out.insert(n.to_string(), Value::String(v));
    }
    Ok(json!({ "Attributes": out }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetAttrsReq {
    queue_url: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// A FIFO queue's name ends in `.fifo`, and only a FIFO queue's does.
fn queue_type_matches_name(name: &str, settings: &QueueSettings) -> Result<(), QueueError> {
    match (name.ends_with(".fifo"), settings.fifo.is_some()) {
        (true, true) | (false, false) => Ok(()),
        (_, _) => Err(QueueError::invalid(
            "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length.",
        )),
    }
}

async fn set_attributes(api: &Api, r: SetAttrsReq) -> Result<Value, ApiError> {
    let name = name_of(&r.queue_url)?;
    let mut settings = api
        .queues
        .settings(&name)
        .ok_or_else(|| QueueError::not_found(&name))?;
    // A standard queue doesn't know FifoQueue at all, true or false (SQS).
    if settings.fifo.is_none() && r.attributes.contains_key("FifoQueue") {
        return Err(QueueError::unknown_attribute("FifoQueue").into());
    }
    settings.apply_attributes(&r.attributes)?;
    queue_type_matches_name(&name, &settings)?;
    api.queues.set_settings(&name, settings).await?;
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReqAttribute {
    data_type: String,
    string_value: Option<String>,
    binary_value: Option<String>,
}

fn attributes_in(raw: BTreeMap<String, ReqAttribute>) -> Result<MessageAttributes, QueueError> {
    let mut out = MessageAttributes::new();
    for (name, a) in raw {
        let value = match (a.string_value, a.binary_value) {
            (Some(s), None) => AttributeValue::String(s),
            (None, Some(b)) => AttributeValue::Binary(STANDARD.decode(b.trim()).map_err(|_| {
                QueueError::invalid(format!(
                    "message attribute '{}' has a BinaryValue that is not base64",
                    quote(&name)
                ))
            })?),
            _ => {
                return Err(QueueError::invalid(format!(
                    "message attribute '{}' needs exactly one of StringValue and BinaryValue",
                    quote(&name)
                )))
            }
        };
        out.insert(
            name,
            MessageAttribute {
                data_type: a.data_type,
                value,
            },
        );
    }
    Ok(out)
}

fn attributes_out(attrs: &MessageAttributes) -> Value {
    let mut out = Map::new();
    for (name, a) in attrs {
        let v = match &a.value {
            AttributeValue::String(s) => json!({ "DataType": a.data_type, "StringValue": s }),
            AttributeValue::Binary(b) => {
                json!({ "DataType": a.data_type, "BinaryValue": STANDARD.encode(b) })
            }
        };
        out.insert(name.clone(), v);
    }
    Value::Object(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendReq {
    queue_url: String,
    message_body: String,
    delay_seconds: Option<i64>,
    #[serde(default)]
    message_attributes: BTreeMap<String, ReqAttribute>,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
}

/// What one send names besides its body.
struct SendFields {
    delay: Option<i64>,
    attributes: BTreeMap<String, ReqAttribute>,
    group_id: Option<String>,
    dedup_id: Option<String>,
}

fn new_message(body: String, f: SendFields) -> Result<NewMessage, QueueError> {
    let SendFields {
        delay,
        attributes: attrs,
        group_id,
        dedup_id,
    } = f;
    let delay = delay
        .map(|d| {
            u32::try_from(d).map_err(|_| QueueError::invalid(format!("DelaySeconds can't be {d}")))
        })
        .transpose()?;
    Ok(NewMessage {
        body,
        attributes: attributes_in(attrs)?,
        delay,
        group_id,
        dedup_id,
    })
}

async fn send_message(api: &Api, r: SendReq) -> Result<Value, ApiError> {
    let name = name_of(&r.queue_url)?;
    let msg = new_message(
        r.message_body,
        SendFields {
            delay: r.delay_seconds,
            attributes: r.message_attributes,
            group_id: r.message_group_id,
            dedup_id: r.message_deduplication_id,
        },
    )?;
    let mut out = api.queues.send_batch(&name, vec![msg]).await?;
    let sent = out
        .pop()
        .unwrap_or_else(|| Err(QueueError::corrupt("no answer for the message")))?;
    let mut v = json!({ "MessageId": sent.message_id, "MD5OfMessageBody": sent.md5_of_body });
    if let (Some(md5), Value::Object(m)) = (sent.md5_of_attributes, &mut v) {
        m.insert("MD5OfMessageAttributes".into(), Value::String(md5));
    }
    if let Some(n) = sent.sequence_number {
        v["SequenceNumber"] = json!(n);
    }
    Ok(v)
}

/// SQS's batch rules: 1..=10 entries, ids 1..=80 of `[A-Za-z0-9_-]`, all
/// distinct, refused in AWS's own words. `entry` is the action's entry
/// shape, which AWS names when the batch is empty (e.g.
/// `DeleteMessageBatchRequestEntry`).
fn check_batch<'a>(
    entry: &str,
    ids: impl ExactSizeIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let n = ids.len();
    if n == 0 {
        return Err(ApiError::batch(
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "EmptyBatchRequest",
            &format!("There should be at least one {entry} in the request."),
        ));
    }
    if n > MAX_API_BATCH {
        return Err(ApiError::batch(
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            "TooManyEntriesInBatchRequest",
            &format!(
                "Maximum number of entries per request are {MAX_API_BATCH}. You have sent {n}."
            ),
        ));
    }
    let mut seen = HashSet::new();
    for id in ids {
        let ok = !id.is_empty()
            && id.len() <= MAX_ENTRY_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(ApiError::batch(
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                "InvalidBatchEntryId",
                &format!(
                    "A batch entry id can only contain alphanumeric characters, hyphens and \
                     underscores. It can be at most {MAX_ENTRY_ID} letters long."
                ),
            ));
        }
        if !seen.insert(id) {
            return Err(ApiError::batch(
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                "BatchEntryIdsNotDistinct",
                // The id passed the rule above: safe to repeat as AWS does.
                &format!("Id {id} repeated."),
            ));
        }
    }
    Ok(())
}

fn failed_entry(id: &str, e: &QueueError) -> Value {
    let code = e.aws_code();
    json!({
        "Id": id,
        "SenderFault": code.sender_fault,
        "Code": code.query_code,
        "Message": e.in_batch(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendEntry {
    id: String,
    message_body: String,
    delay_seconds: Option<i64>,
    #[serde(default)]
    message_attributes: BTreeMap<String, ReqAttribute>,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendBatchReq {
    queue_url: String,
    #[serde(default)]
    entries: Vec<SendEntry>,
}

async fn send_batch(api: &Api, r: SendBatchReq) -> Result<Value, ApiError> {
    let name = name_of(&r.queue_url)?;
    check_batch(
        "SendMessageBatchRequestEntry",
        r.entries.iter().map(|e| e.id.as_str()),
    )?;
    // Bodies and attributes, counted as a message's size counts them.
    let total: usize = r
        .entries
        .iter()
        .flat_map(|e| {
            let attributes = e.message_attributes.iter().map(|(name, a)| {
                let value = a.string_value.as_ref().map_or(0, String::len)
                    + a.binary_value.as_ref().map_or(0, |b| b.len() / 4 * 3);
                name.len() + a.data_type.len() + value + 1
            });
            std::iter::once(e.message_body.len()).chain(attributes)
        })
        .fold(0, usize::saturating_add);
    if total > MAX_MESSAGE_SIZE {
        return Err(ApiError::batch(
            "AWS.SimpleQueueService.BatchRequestTooLong",
            "BatchRequestTooLong",
            &format!(
                "Batch requests cannot be longer than {MAX_MESSAGE_SIZE} bytes. You have sent {total} bytes."
            ),
        ));
    }
    // A FIFO batch missing a group or a deduplication id fails whole, as
    // in SQS, not entry by entry.
    if let Some(fifo) = api.queues.settings(&name).and_then(|s| s.fifo) {
        if r.entries.iter().any(|e| e.message_group_id.is_none()) {
            return Err(ApiError::invalid(
                "The request must contain the parameter MessageGroupId.",
            ));
        }
        if !fifo.content_based_dedup
            && r.entries
                .iter()
                .any(|e| e.message_deduplication_id.is_none())
        {
            return Err(ApiError::invalid(
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
            ));
        }
    }
    let mut ids = Vec::with_capacity(r.entries.len());
    let mut messages = Vec::new();
    let mut failed = Vec::new();
    for e in r.entries {
        let fields = SendFields {
            delay: e.delay_seconds,
            attributes: e.message_attributes,
            group_id: e.message_group_id,
            dedup_id: e.message_deduplication_id,
        };
        match new_message(e.message_body, fields) {
            Ok(m) => {
                ids.push(e.id);
                messages.push(m);
            }
            Err(err) => failed.push(failed_entry(&e.id, &err)),
        }
    }
    let results = api.queues.send_batch(&name, messages).await?;
    let mut successful = Vec::new();
    for (id, res) in ids.iter().zip(results) {
        match res {
            Ok(sent) => {
                let mut v = json!({
                    "Id": id,
                    "MessageId": sent.message_id,
                    "MD5OfMessageBody": sent.md5_of_body,
                });
                if let (Some(md5), Value::Object(m)) = (sent.md5_of_attributes, &mut v) {
                    m.insert("MD5OfMessageAttributes".into(), Value::String(md5));
                }
                if let Some(n) = sent.sequence_number {
                    v["SequenceNumber"] = json!(n);
                }
                successful.push(v);
            }
            Err(e) => failed.push(failed_entry(id, &e)),
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveReq {
    queue_url: String,
    max_number_of_messages: Option<i64>,
    visibility_timeout: Option<i64>,
    wait_time_seconds: Option<i64>,
    #[serde(default)]
    attribute_names: Vec<String>,
    #[serde(default)]
    message_system_attribute_names: Vec<String>,
    #[serde(default)]
    message_attribute_names: Vec<String>,
    receive_request_attempt_id: Option<String>,
}

/// Most `ReceiveRequestAttemptId`s remembered at once, and most bytes of
/// their answers (one answer can hold ten 256 KiB messages); past either
/// the oldest go first.
const MAX_ATTEMPTS: usize = 10_000;
const MAX_ATTEMPT_BYTES: usize = 64 * 1024 * 1024;
/// How long a FIFO receive's attempt id brings back its answer (SQS's).
const ATTEMPT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// FIFO receives by `ReceiveRequestAttemptId`: a retried receive (its answer
/// lost in transit) gets the same messages and receipt handles instead of
/// holding them hidden while taking others.
#[derive(Debug, Default)]
struct Attempts {
    answers: std::sync::Mutex<AttemptLog>,
}

#[derive(Debug, Default)]
struct AttemptLog {
    /// (queue and attempt id, when, answer, its size in bytes), oldest first.
    entries: std::collections::VecDeque<(String, std::time::Instant, Value, usize)>,
    bytes: usize,
}

impl AttemptLog {
    fn pop_oldest(&mut self) {
        if let Some((_, _, _, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }
}

impl Attempts {
    fn get(&self, key: &str) -> Option<Value> {
        let mut log = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        while log
            .entries
            .front()
            .is_some_and(|(_, at, _, _)| at.elapsed() >= ATTEMPT_WINDOW)
        {
            log.pop_oldest();
        }
        log.entries
            .iter()
            .find(|(k, _, _, _)| k == key)
            .map(|(_, _, v, _)| v.clone())
    }

    fn put(&self, key: String, answer: Value) {
        let size = key.len() + answer.to_string().len();
        if size > MAX_ATTEMPT_BYTES {
            return;
        }
        let mut log = self.answers.lock().unwrap_or_else(|e| e.into_inner());
        while log.entries.len() >= MAX_ATTEMPTS || log.bytes + size > MAX_ATTEMPT_BYTES {
            log.pop_oldest();
        }
        log.bytes += size;
        log.entries
            .push_back((key, std::time::Instant::now(), answer, size));
    }
}

/// Which message attributes a receive returns: `All`, `.*`, `prefix.*` or
/// exact names.
fn wanted_attribute(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| {
        p == "All"
            || p == ".*"
            || p == name
            || p.strip_suffix(".*")
                .is_some_and(|prefix| name.starts_with(prefix) && name.len() > prefix.len())
    })
}

fn message_out(m: ReceivedMessage, system: &[&str], patterns: &[String]) -> Value {
    let mut v = Map::new();
    v.insert("MessageId".into(), Value::String(m.message_id));
    v.insert("ReceiptHandle".into(), Value::String(m.receipt_handle));
    v.insert("MD5OfBody".into(), Value::String(m.md5_of_body));
    v.insert("Body".into(), Value::String(m.body));
    if !system.is_empty() {
        let mut a = Map::new();
        for n in system {
            let value = match *n {
                "ApproximateReceiveCount" => m.receive_count.to_string(),
                "ApproximateFirstReceiveTimestamp" => m.first_receive_ms.to_string(),
                "SenderId" => ACCOUNT_ID.to_string(),
                // FIFO only: a standard message has none of these.
                "MessageGroupId" => match &m.group_id {
                    Some(g) => g.clone(),
                    None => continue,
                },
                "MessageDeduplicationId" => match &m.dedup_id {
                    Some(d) => d.clone(),
                    None => continue,
                },
                "SequenceNumber" => match &m.sequence_number {
                    Some(n) => n.clone(),
                    None => continue,
                },
                _ => m.sent_ms.to_string(),
            };
            a.insert((*n).to_string(), Value::String(value));
        }
        v.insert("Attributes".into(), Value::Object(a));
    }
    let returned: MessageAttributes = m
        .attributes
        .into_iter()
        .filter(|(n, _)| wanted_attribute(patterns, n))
        .collect();
    // The digest covers what is returned: SDKs verify it against that.
    if let Some(md5) = md5_of_attributes(&returned) {
        v.insert("MD5OfMessageAttributes".into(), Value::String(md5));
        v.insert("MessageAttributes".into(), attributes_out(&returned));
    }
    Value::Object(v)
}

async fn receive(api: &Api, r: ReceiveReq) -> Result<Value, ApiError> {
    let name = name_of(&r.queue_url)?;
    let settings = api
        .queues
        .settings(&name)
        .ok_or_else(|| QueueError::not_found(&name))?;
    let max = r.max_number_of_messages.unwrap_or(1);
    if !(1..=MAX_API_RECEIVE).contains(&max) {
        return Err(QueueError::invalid_value(
            "MaxNumberOfMessages",
            &max.to_string(),
            &format!("Must be between 1 and {MAX_API_RECEIVE}, if provided."),
        )
        .into());
    }
    let wait = r
        .wait_time_seconds
        .unwrap_or(i64::from(settings.receive_wait));
    if !(0..=i64::from(MAX_WAIT_SECS)).contains(&wait) {
        return Err(QueueError::invalid_value(
            "WaitTimeSeconds",
            &wait.to_string(),
            &format!("Must be >= 0 and <= {MAX_WAIT_SECS}, if provided."),
        )
        .into());
    }
    let visibility_timeout = r.visibility_timeout.map(visibility).transpose()?;
    // A FIFO receive's attempt id, scoped to its queue.
    let attempt = match (&settings.fifo, &r.receive_request_attempt_id) {
        (Some(_), Some(id)) => Some(format!("{name}\n{id}")),
        _ => None,
    };
    if let Some(answer) = attempt.as_deref().and_then(|k| api.attempts.get(k)) {
        return Ok(answer);
    }
    let asked: Vec<&String> = r
        .attribute_names
        .iter()
        .chain(&r.message_system_attribute_names)
        .collect();
    let system: Vec<&str> = SYSTEM_ATTRIBUTES
        .into_iter()
        .filter(|s| {
            asked
                .iter()
                .any(|a| a.as_str() == "All" || a.as_str() == *s)
        })
        .collect();
    let messages = api
        .queues
        .receive(
            &name,
            ReceiveOptions {
                max_messages: usize::try_from(max).unwrap_or(1),
                max_bytes: usize::MAX,
                visibility_timeout,
                wait: Duration::from_secs(u64::try_from(wait).unwrap_or(0)),
            },
        )
        .await?;
    if messages.is_empty() {
        // SQS leaves `Messages` out when there are none.
        return Ok(json!({}));
    }
    let out: Vec<Value> = messages
        .into_iter()
        .map(|m| message_out(m, &system, &r.message_attribute_names))
        .collect();
    let answer = json!({ "Messages": out });
    if let Some(key) = attempt {
        api.attempts.put(key, answer.clone());
    }
    Ok(answer)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteReq {
    queue_url: String,
    receipt_handle: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteEntry {
    id: String,
    receipt_handle: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteBatchReq {
    queue_url: String,
    #[serde(default)]
    entries: Vec<DeleteEntry>,
}

/// Successful and Failed lists from per-entry results.
fn batch_answer(ids: Vec<String>, results: Vec<Result<(), QueueError>>) -> Value {
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for (id, r) in ids.into_iter().zip(results) {
        match r {
            Ok(()) => successful.push(json!({ "Id": id })),
            Err(e) => failed.push(failed_entry(&id, &e)),
        }
    }
    json!({ "Successful": successful, "Failed": failed })
}

async fn delete_batch(api: &Api, r: DeleteBatchReq) -> Result<Value, ApiError> {
    let name = name_of(&r.queue_url)?;
    check_batch(
        "DeleteMessageBatchRequestEntry",
        r.entries.iter().map(|e| e.id.as_str()),
    )?;
    let (ids, handles): (Vec<String>, Vec<String>) = r
        .entries
        .into_iter()
        .map(|e| (e.id, e.receipt_handle))
        .unzip();
    let results = api.queues.delete_messages(&name, handles).await?;
    Ok(batch_answer(ids, results))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VisibilityReq {
    queue_url: String,
    receipt_handle: String,
    visibility_timeout: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VisibilityEntry {
    id: String,
    receipt_handle: String,
    visibility_timeout: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VisibilityBatchReq {
    queue_url: String,
    #[serde(default)]
    entries: Vec<VisibilityEntry>,
}

async fn visibility_batch(api: &Api, r: VisibilityBatchReq) -> Result<Value, ApiError> {
    let name = name_of(&r.queue_url)?;
    check_batch(
        "ChangeMessageVisibilityBatchRequestEntry",
        r.entries.iter().map(|e| e.id.as_str()),
    )?;
    let mut ids = Vec::new();
    let mut entries = Vec::new();
    let mut failed = Vec::new();
    for e in r.entries {
        match visibility(e.visibility_timeout) {
            Ok(secs) => {
                ids.push(e.id);
                entries.push((e.receipt_handle, secs));
            }
            Err(err) => failed.push(json!({
                "Id": e.id,
                "SenderFault": true,
                "Code": err.code.query_code,
                "Message": err.message,
            })),
        }
    }
    let results = api.queues.change_visibility(&name, entries).await?;
    let mut v = batch_answer(ids, results);
    if let Some(Value::Array(f)) = v.get_mut("Failed") {
        f.extend(failed);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_come_from_the_last_url_segment() {
        assert_eq!(
            name_of("http://127.0.0.1:8081/000000000000/orders").ok(),
            Some("orders".into())
        );
        assert_eq!(
            name_of("http://h/000000000000/q/?x=1").ok(),
            Some("q".into())
        );
        assert!(name_of("").is_err());
        assert!(name_of("http://h/000000000000/bad name").is_err());
    }

    #[test]
    fn attribute_name_patterns_match_as_sqs_documents() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wanted_attribute(&p(&["All"]), "x"));
        assert!(wanted_attribute(&p(&[".*"]), "x"));
        assert!(wanted_attribute(&p(&["bar.*"]), "bar.baz"));
        assert!(!wanted_attribute(&p(&["bar.*"]), "foo"));
        assert!(wanted_attribute(&p(&["foo"]), "foo"));
        assert!(!wanted_attribute(&p(&[]), "foo"));
    }

    #[test]
    fn batch_rules_pick_the_sqs_error() {
        let code = |ids: &[&str]| {
            check_batch("SendMessageBatchRequestEntry", ids.iter().copied())
                .err()
                .map(|e| e.code.shape)
        };
        assert_eq!(code(&[]), Some("EmptyBatchRequest"));
        assert_eq!(code(&["a"; 11]), Some("TooManyEntriesInBatchRequest"));
        assert_eq!(code(&["a", "a"]), Some("BatchEntryIdsNotDistinct"));
        assert_eq!(code(&["a b"]), Some("InvalidBatchEntryId"));
        assert_eq!(code(&["a", "b"]), None);
        let empty = check_batch("DeleteMessageBatchRequestEntry", std::iter::empty()).unwrap_err();
        assert_eq!(
            empty.message,
            "There should be at least one DeleteMessageBatchRequestEntry in the request."
        );
        let text = |ids: &[&str]| {
            check_batch("SendMessageBatchRequestEntry", ids.iter().copied())
                .unwrap_err()
                .message
        };
        assert_eq!(
            text(&["a"; 11]),
            "Maximum number of entries per request are 10. You have sent 11."
        );
        assert_eq!(text(&["a", "a"]), "Id a repeated.");
        assert_eq!(
            text(&["a b"]),
            "A batch entry id can only contain alphanumeric characters, hyphens and \
             underscores. It can be at most 80 letters long."
        );
    }
}

#[cfg(test)]
mod attempt_tests {
    use super::*;

    #[test]
    fn remembered_answers_stay_within_their_byte_bound() {
        let attempts = Attempts::default();
        let big = json!({ "Messages": ["x".repeat(MAX_ATTEMPT_BYTES / 3)] });
        for i in 0..4 {
            attempts.put(format!("q\na{i}"), big.clone());
        }
        let log = attempts.answers.lock().unwrap();
        assert!(log.bytes <= MAX_ATTEMPT_BYTES, "{}", log.bytes);
        assert_eq!(log.entries.len(), 2, "the oldest went first");
        drop(log);
        assert!(attempts.get("q\na0").is_none());
        assert_eq!(attempts.get("q\na3"), Some(big));
    }
}
