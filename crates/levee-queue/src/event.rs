//! The Lambda side of an SQS event-source mapping: the event a function
//! receives and the partial batch response it may return.
//!
//! Owns: the record shape (reference §5 "Event source mapping record") and
//! the rules that decide which messages a function's answer lets the poller
//! delete. Pure: no I/O. Must never: call a batch a success when the answer
//! can't be read — a message is only deleted on a clear success, so an
//! unreadable answer costs a redelivery, never a lost message.

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use serde::Serialize;

use crate::model::{queue_arn, AttributeValue, ReceivedMessage, ACCOUNT_ID, REGION};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventAttribute<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    string_value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_value: Option<String>,
    string_list_values: [&'a str; 0],
    binary_list_values: [&'a str; 0],
    data_type: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SystemAttributes {
    approximate_receive_count: String,
    sent_timestamp: String,
    sender_id: &'static str,
    approximate_first_receive_timestamp: String,
    /// FIFO messages only, as in Lambda's event.
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_deduplication_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Record<'a> {
    message_id: &'a str,
    receipt_handle: &'a str,
    body: &'a str,
    attributes: SystemAttributes,
    message_attributes: BTreeMap<&'a str, EventAttribute<'a>>,
    md5_of_body: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5_of_message_attributes: Option<&'a str>,
    event_source: &'static str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'a str,
    aws_region: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Event<'a> {
    records: Vec<Record<'a>>,
}

/// The `{"Records":[…]}` event for a batch from `queue`.
pub fn sqs_event(queue: &str, messages: &[ReceivedMessage]) -> Bytes {
    let arn = queue_arn(queue);
    let records = messages
        .iter()
        .map(|m| Record {
            message_id: &m.message_id,
            receipt_handle: &m.receipt_handle,
            body: &m.body,
            attributes: SystemAttributes {
                approximate_receive_count: m.receive_count.to_string(),
                sent_timestamp: m.sent_ms.to_string(),
                sender_id: ACCOUNT_ID,
                approximate_first_receive_timestamp: m.first_receive_ms.to_string(),
                sequence_number: m.sequence_number.clone(),
                message_group_id: m.group_id.clone(),
                message_deduplication_id: m.dedup_id.clone(),
            },
            message_attributes: m
                .attributes
                .iter()
                .map(|(name, a)| {
                    let (string_value, binary_value) = match &a.value {
                        AttributeValue::String(s) => (Some(s.as_str()), None),
                        AttributeValue::Binary(b) => (None, Some(STANDARD.encode(b))),
                    };
                    (
                        name.as_str(),
                        EventAttribute {
                            string_value,
                            binary_value,
                            string_list_values: [],
                            binary_list_values: [],
                            data_type: &a.data_type,
                        },
                    )
                })
                .collect(),
            md5_of_body: &m.md5_of_body,
            md5_of_message_attributes: m.md5_of_attributes.as_deref(),
            event_source: "aws:sqs",
            event_source_arn: &arn,
            aws_region: REGION,
        })
        .collect();
    // Serializing plain strings and maps can't fail; an empty event is the
    // harmless fallback if it ever did.
    serde_json::to_vec(&Event { records })
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{\"Records\":[]}"))
}

/// What a function's answer means for its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Delete every message.
    AllSucceeded,
    /// Delete all but these message ids.
    Failed(HashSet<String>),
    /// Delete nothing.
    AllFailed,
}

/// Reads a `ReportBatchItemFailures` answer (reference §5 "Partial batch
/// response"). Success: an empty or `null` answer, `{}`, or an empty or
/// `null` `batchItemFailures`. Full failure: invalid JSON, a non-object
/// answer, an entry without a non-empty string `itemIdentifier`, or an id
/// not in `batch_ids`.
pub fn batch_outcome(answer: &[u8], batch_ids: &HashSet<&str>) -> BatchOutcome {
    if answer.iter().all(u8::is_ascii_whitespace) {
        return BatchOutcome::AllSucceeded;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(answer) else {
        return BatchOutcome::AllFailed;
    };
    let obj = match v {
        serde_json::Value::Null => return BatchOutcome::AllSucceeded,
        serde_json::Value::Object(o) => o,
        _ => return BatchOutcome::AllFailed,
    };
    let list = match obj.get("batchItemFailures") {
        None | Some(serde_json::Value::Null) => return BatchOutcome::AllSucceeded,
        Some(serde_json::Value::Array(a)) => a,
        Some(_) => return BatchOutcome::AllFailed,
    };
    let mut failed = HashSet::new();
    for item in list {
        let id = item.get("itemIdentifier").and_then(|i| i.as_str());
        match id {
            Some(id) if !id.is_empty() && batch_ids.contains(id) => {
                failed.insert(id.to_string());
            }
            _ => return BatchOutcome::AllFailed,
        }
    }
    if failed.is_empty() {
        BatchOutcome::AllSucceeded
    } else {
        BatchOutcome::Failed(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MessageAttribute, MessageAttributes};

    fn message(id: &str) -> ReceivedMessage {
        let mut attributes = MessageAttributes::new();
        attributes.insert(
            "kind".into(),
            MessageAttribute {
                data_type: "String".into(),
                value: AttributeValue::String("order".into()),
            },
        );
        attributes.insert(
            "raw".into(),
            MessageAttribute {
                data_type: "Binary".into(),
                value: AttributeValue::Binary(vec![1, 2]),
            },
        );
        ReceivedMessage {
            message_id: id.into(),
            receipt_handle: "rh".into(),
            body: "{\"a\":1}".into(),
            md5_of_body: "m".into(),
            attributes,
            md5_of_attributes: Some("ma".into()),
            sent_ms: 1000,
            receive_count: 2,
            first_receive_ms: 1500,
            group_id: None,
            dedup_id: None,
            sequence_number: None,
        }
    }

    #[test]
    fn records_have_the_lambda_shape() {
        let bytes = sqs_event("orders", &[message("m1")]);
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let r = &v["Records"][0];
        assert_eq!(r["messageId"], "m1");
        assert_eq!(r["receiptHandle"], "rh");
        assert_eq!(r["body"], "{\"a\":1}");
        assert_eq!(r["attributes"]["ApproximateReceiveCount"], "2");
        assert_eq!(r["attributes"]["SentTimestamp"], "1000");
        assert_eq!(r["attributes"]["SenderId"], "000000000000");
        assert_eq!(r["attributes"]["ApproximateFirstReceiveTimestamp"], "1500");
        assert_eq!(r["messageAttributes"]["kind"]["stringValue"], "order");
        assert_eq!(r["messageAttributes"]["kind"]["dataType"], "String");
        assert_eq!(r["messageAttributes"]["raw"]["binaryValue"], "AQI=");
        assert!(r["messageAttributes"]["raw"].get("stringValue").is_none());
        assert_eq!(
            r["messageAttributes"]["kind"]["stringListValues"],
            serde_json::json!([])
        );
        assert_eq!(r["md5OfBody"], "m");
        assert_eq!(r["md5OfMessageAttributes"], "ma");
        assert_eq!(r["eventSource"], "aws:sqs");
        assert_eq!(
            r["eventSourceARN"],
            "arn:aws:sqs:us-east-1:000000000000:orders"
        );
        assert_eq!(r["awsRegion"], "us-east-1");
        let mut plain = message("m2");
        plain.attributes.clear();
        plain.md5_of_attributes = None;
        let v: serde_json::Value = serde_json::from_slice(&sqs_event("q", &[plain])).expect("json");
        assert!(v["Records"][0].get("md5OfMessageAttributes").is_none());
    }

    #[test]
    fn partial_batch_responses_follow_the_lambda_rules() {
        let ids: HashSet<&str> = ["a", "b"].into();
        let ok = BatchOutcome::AllSucceeded;
        for answer in [
            "",
            "null",
            "{}",
            r#"{"batchItemFailures":[]}"#,
            r#"{"batchItemFailures":null}"#,
        ] {
            assert_eq!(batch_outcome(answer.as_bytes(), &ids), ok, "{answer}");
        }
        assert_eq!(
            batch_outcome(br#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#, &ids),
            BatchOutcome::Failed(["b".to_string()].into())
        );
        for answer in [
            "not json",
            "\"ok\"",
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifer":"a"}]}"#,
            r#"{"batchItemFailures":[{"itemIdentifier":"zzz"}]}"#,
            r#"{"batchItemFailures":"a"}"#,
        ] {
            assert_eq!(
                batch_outcome(answer.as_bytes(), &ids),
                BatchOutcome::AllFailed,
                "{answer}"
            );
        }
    }
}
