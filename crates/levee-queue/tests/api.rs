//! The SQS JSON API through the router (`tower::ServiceExt::oneshot`).

use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use levee_queue::{sqs_router, Queues};
use serde_json::{json, Value};
use tower::ServiceExt;

const BASE: &str = "http://127.0.0.1:8081";

fn router(dir: &std::path::Path) -> Router {
    let q = Arc::new(Queues::open(dir).expect("opens"));
    sqs_router(q, BASE.to_string())
}

/// Calls one action; returns status, the query-error header and the body.
async fn call(app: &Router, action: &str, body: Value) -> (StatusCode, Option<String>, Value) {
    let req = Request::post("/")
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(Body::from(body.to_string()))
        .expect("request");
    let res = app.clone().oneshot(req).await.expect("answered");
    let status = res.status();
    assert_eq!(res.headers()["content-type"], "application/x-amz-json-1.0");
    assert!(res.headers().contains_key("x-amzn-requestid"));
    let query = res
        .headers()
        .get("x-amzn-query-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = res.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes).expect("json body");
    (status, query, v)
}

async fn create(app: &Router, name: &str) -> String {
    let (s, _, v) = call(app, "CreateQueue", json!({ "QueueName": name })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["QueueUrl"].as_str().expect("url").to_string()
}

#[tokio::test]
async fn create_get_list_and_attributes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = router(dir.path());
    let url = create(&app, "orders").await;
    assert_eq!(url, format!("{BASE}/000000000000/orders"));
    // Idempotent with the same (or no) attributes; an error with others.
    assert_eq!(create(&app, "orders").await, url);
    let (s, q, v) = call(
        &app,
        "CreateQueue",
        json!({ "QueueName": "orders", "Attributes": { "VisibilityTimeout": "5" } }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(q.as_deref(), Some("QueueAlreadyExists;Sender"));
    assert_eq!(v["__type"], "com.amazonaws.sqs#QueueNameExists");
    let (_, _, v) = call(&app, "GetQueueUrl", json!({ "QueueName": "orders" })).await;
    assert_eq!(v["QueueUrl"], url);
    create(&app, "other").await;
    let (_, _, v) = call(&app, "ListQueues", json!({ "QueueNamePrefix": "ord" })).await;
    assert_eq!(v["QueueUrls"], json!([url]));
    let (_, _, v) = call(
        &app,
        "SetQueueAttributes",
        json!({ "QueueUrl": url, "Attributes": { "DelaySeconds": "3" } }),
    )
    .await;
    assert_eq!(v, json!({}));
    let (_, _, v) = call(
        &app,
        "GetQueueAttributes",
        json!({ "QueueUrl": url, "AttributeNames": ["All"] }),
    )
    .await;
    assert_eq!(v["Attributes"]["DelaySeconds"], "3");
    assert_eq!(v["Attributes"]["ApproximateNumberOfMessages"], "0");
    assert_eq!(
        v["Attributes"]["QueueArn"],
        "arn:aws:sqs:us-east-1:000000000000:orders"
    );
}

#[tokio::test]
async fn missing_queues_get_the_aws_error_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = router(dir.path());
    let (s, q, v) = call(&app, "GetQueueUrl", json!({ "QueueName": "ghost" })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        q.as_deref(),
        Some("AWS.SimpleQueueService.NonExistentQueue;Sender")
    );
    assert_eq!(v["__type"], "com.amazonaws.sqs#QueueDoesNotExist");
    assert!(v["message"]
        .as_str()
        .expect("message")
        .contains("does not exist"));
    let (s, _, v) = call(
        &app,
        "SendMessage",
        json!({ "QueueUrl": format!("{BASE}/000000000000/ghost"), "MessageBody": "x" }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["__type"], "com.amazonaws.sqs#QueueDoesNotExist");
    let (s, _, v) = call(&app, "Frobnicate", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["__type"], "com.amazonaws.sqs#InvalidAction");
    assert_eq!(
        v["message"],
        "The action Frobnicate is not valid for this endpoint."
    );
    let (s, _, _) = call(&app, "SendMessage", json!({ "QueueUrl": 5 })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn batches_receive_and_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = router(dir.path());
    let url = create(&app, "b").await;
    let (s, _, v) = call(
        &app,
        "SendMessageBatch",
        json!({ "QueueUrl": url, "Entries": [
            { "Id": "one", "MessageBody": "hello",
              "MessageAttributes": { "a": { "DataType": "String", "StringValue": "b" } } },
            { "Id": "two", "MessageBody": "" },
        ]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["Successful"].as_array().expect("array").len(), 1);
    assert_eq!(v["Successful"][0]["Id"], "one");
    assert_eq!(
        v["Successful"][0]["MD5OfMessageBody"],
        "5d41402abc4b2a76b9719d911017c592"
    );
    assert_eq!(
        v["Successful"][0]["MD5OfMessageAttributes"],
        "bef8bf215374a0a228d67533b1a488be"
    );
    assert_eq!(v["Failed"][0]["Id"], "two");
    assert_eq!(v["Failed"][0]["SenderFault"], true);
    // Both lists are present even when empty.
    let (_, _, v) = call(
        &app,
        "SendMessageBatch",
        json!({ "QueueUrl": url, "Entries": [{ "Id": "x", "MessageBody": "second" }] }),
    )
    .await;
    assert_eq!(v["Failed"], json!([]));
    let (s, q, v) = call(
        &app,
        "SendMessageBatch",
        json!({ "QueueUrl": url, "Entries": [
            { "Id": "d", "MessageBody": "1" }, { "Id": "d", "MessageBody": "2" }] }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        q.as_deref(),
        Some("AWS.SimpleQueueService.BatchEntryIdsNotDistinct;Sender")
    );
    assert_eq!(v["__type"], "com.amazonaws.sqs#BatchEntryIdsNotDistinct");

    let (_, _, v) = call(
        &app,
        "ReceiveMessage",
        json!({ "QueueUrl": url, "MaxNumberOfMessages": 10,
                "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
                "MessageAttributeNames": ["All"] }),
    )
    .await;
    let msgs = v["Messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2);
    let hello = msgs.iter().find(|m| m["Body"] == "hello").expect("hello");
    assert_eq!(hello["MD5OfBody"], "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(hello["Attributes"]["ApproximateReceiveCount"], "1");
    assert_eq!(hello["MessageAttributes"]["a"]["StringValue"], "b");
    assert_eq!(
        hello["MD5OfMessageAttributes"],
        "bef8bf215374a0a228d67533b1a488be"
    );
    let (_, _, empty) = call(
        &app,
        "ReceiveMessage",
        json!({ "QueueUrl": url, "WaitTimeSeconds": 0 }),
    )
    .await;
    assert_eq!(empty, json!({}), "no Messages key when none");
    let entries: Vec<Value> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| json!({ "Id": format!("e{i}"), "ReceiptHandle": m["ReceiptHandle"] }))
        .chain([json!({ "Id": "bad", "ReceiptHandle": "nope" })])
        .collect();
    let (_, _, v) = call(
        &app,
        "DeleteMessageBatch",
        json!({ "QueueUrl": url, "Entries": entries }),
    )
    .await;
    assert_eq!(v["Successful"].as_array().expect("array").len(), 2);
    assert_eq!(v["Failed"][0]["Code"], "ReceiptHandleIsInvalid");
    let (_, _, v) = call(
        &app,
        "GetQueueAttributes",
        json!({ "QueueUrl": url, "AttributeNames": ["ApproximateNumberOfMessagesNotVisible"] }),
    )
    .await;
    assert_eq!(
        v["Attributes"],
        json!({ "ApproximateNumberOfMessagesNotVisible": "0" })
    );
    let (s, q, _) = call(
        &app,
        "ReceiveMessage",
        json!({ "QueueUrl": url, "MaxNumberOfMessages": 11 }),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(q.as_deref(), Some("InvalidParameterValue;Sender"));
}

#[tokio::test]
async fn oversized_requests_are_refused_before_parsing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = router(dir.path());
    // Valid JSON, so only the size limit can refuse it.
    let pad = "x".repeat(levee_queue::api::MAX_REQUEST_BYTES);
    let body = json!({ "QueueUrl": "http://x/q", "MessageBody": pad }).to_string();
    let req = Request::post("/")
        .header("x-amz-target", "AmazonSQS.SendMessage")
        .body(Body::from(body))
        .expect("request");
    let res = app.oneshot(req).await.expect("answered");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        res.headers()
            .get("x-amzn-query-error")
            .and_then(|v| v.to_str().ok()),
        Some("AWS.SimpleQueueService.BatchRequestTooLong;Sender")
    );
}
