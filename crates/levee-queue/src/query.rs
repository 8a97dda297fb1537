//! SQS's Query protocol: form-encoded requests (`Action=SendMessage&...`)
//! and XML answers, as older SDKs and many third-party clients speak it.
//!
//! Owns the translation both ways: a form becomes the JSON document the
//! JSON protocol's handlers take (so both protocols share every rule), and
//! a handler's JSON answer becomes the Query protocol's XML. Must never
//! decide anything about queues itself.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The XML namespace of SQS's 2012-11-05 API.
pub const NAMESPACE: &str = "http://queue.amazonaws.com/doc/2012-11-05/";
/// Most form fields one request may carry (ten batch entries of ten
/// attributes each fit with room to spare).
pub const MAX_FIELDS: usize = 2_000;

/// Members that are numbers in the JSON protocol.
const NUMBERS: [&str; 6] = [
    "DelaySeconds",
    "MaxNumberOfMessages",
    "VisibilityTimeout",
    "WaitTimeSeconds",
    "MaxResults",
    "MaxNumberOfMessagesPerSecond",
];

/// A form field's value tree: `Attribute.1.Name=x` is
/// `Attribute → 1 → Name → "x"`.
#[derive(Debug, Default)]
struct Node {
    value: Option<String>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn insert(&mut self, path: &[&str], value: String) {
        match path.split_first() {
            None => self.value = Some(value),
            Some((first, rest)) => self
                .children
                .entry((*first).to_string())
                .or_default()
                .insert(rest, value),
        }
    }

    fn text(&self, key: &str) -> Option<String> {
        self.children.get(key).and_then(|n| n.value.clone())
    }

    /// `N.…` children in their numeric order (SQS numbers from 1).
    fn numbered(&self) -> Vec<&Node> {
        let mut items: Vec<(u64, &Node)> = self
            .children
            .iter()
            .filter_map(|(k, n)| k.parse::<u64>().ok().map(|i| (i, n)))
            .collect();
        items.sort_by_key(|(i, _)| *i);
        items.into_iter().map(|(_, n)| n).collect()
    }
}

fn scalar(key: &str, text: String) -> Value {
    match NUMBERS.contains(&key) {
        true => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(text)),
        false => Value::String(text),
    }
}

/// `MessageAttribute.N.{Name, Value.{DataType, StringValue, BinaryValue}}`.
fn message_attributes(node: &Node) -> Value {
    let mut out = Map::new();
    for item in node.numbered() {
        let (Some(name), Some(value)) = (item.text("Name"), item.children.get("Value")) else {
            continue;
        };
        let mut v = Map::new();
        for field in ["DataType", "StringValue", "BinaryValue"] {
            if let Some(t) = value.text(field) {
                v.insert(field.into(), Value::String(t));
            }
        }
        out.insert(name, Value::Object(v));
    }
    Value::Object(out)
}

/// `Prefix.N.{key, value}` pairs as a JSON object.
fn pairs(node: &Node, key: &str, value: &str) -> Value {
    let mut out = Map::new();
    for item in node.numbered() {
        if let Some(k) = item.text(key) {
            out.insert(k, Value::String(item.text(value).unwrap_or_default()));
        }
    }
    Value::Object(out)
}

fn list(node: &Node) -> Value {
    Value::Array(
        node.numbered()
            .into_iter()
            .filter_map(|n| n.value.clone().map(Value::String))
            .collect(),
    )
}

/// One batch entry's fields.
fn entry(node: &Node) -> Value {
    let mut out = Map::new();
    for (key, child) in &node.children {
        match key.as_str() {
            "MessageAttribute" => {
                out.insert("MessageAttributes".into(), message_attributes(child));
            }
            _ => {
                if let Some(t) = &child.value {
                    out.insert(key.clone(), scalar(key, t.clone()));
                }
            }
        }
    }
    Value::Object(out)
}

/// The action a form names and the JSON request it stands for; `None`
/// when it names none.
pub fn request(fields: Vec<(String, String)>) -> Option<(String, Value)> {
    let mut root = Node::default();
    for (key, value) in fields.into_iter().take(MAX_FIELDS) {
        let path: Vec<&str> = key.split('.').collect();
        root.insert(&path, value);
    }
    let action = root.text("Action")?;
    let mut out = Map::new();
    for (key, node) in &root.children {
        let member = match key.as_str() {
            "Action" | "Version" => continue,
            "Attribute" => ("Attributes", pairs(node, "Name", "Value")),
            // CreateQueue's member is lowercase in the JSON protocol.
            "Tag" if action == "CreateQueue" => ("tags", pairs(node, "Key", "Value")),
            "Tag" => ("Tags", pairs(node, "Key", "Value")),
            "MessageAttribute" => ("MessageAttributes", message_attributes(node)),
            "AttributeName" => ("AttributeNames", list(node)),
            "MessageAttributeName" => ("MessageAttributeNames", list(node)),
            "TagKey" => ("TagKeys", list(node)),
            k if k.ends_with("BatchRequestEntry") => (
                "Entries",
                Value::Array(node.numbered().into_iter().map(entry).collect()),
            ),
            k => match &node.value {
                Some(t) => {
                    out.insert(k.to_string(), scalar(k, t.clone()));
                    continue;
                }
                None => continue,
            },
        };
        out.insert(member.0.to_string(), member.1);
    }
    Some((action, Value::Object(out)))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn element(out: &mut String, name: &str, inner: &str) {
    out.push_str(&format!("<{name}>{inner}</{name}>"));
}

/// A string map as repeated `<entry><key>k</key><Value>v</Value></entry>`.
fn pairs_xml(out: &mut String, entry: &str, key: &str, map: &Map<String, Value>) {
    for (k, v) in map {
        let inner = format!(
            "<{key}>{}</{key}><Value>{}</Value>",
            escape(k),
            escape(&text_of(v))
        );
        element(out, entry, &inner);
    }
}

/// A JSON answer member as Query XML, for `action`.
fn member(out: &mut String, action: &str, key: &str, value: &Value) {
    match (key, value) {
        ("Attributes", Value::Object(m)) => pairs_xml(out, "Attribute", "Name", m),
        ("Tags", Value::Object(m)) => pairs_xml(out, "Tag", "Key", m),
        ("MessageAttributes", Value::Object(m)) => {
            for (k, v) in m {
                let mut inner = format!("<Name>{}</Name><Value>", escape(k));
                for field in ["StringValue", "BinaryValue", "DataType"] {
                    if let Some(f) = v.get(field) {
                        element(&mut inner, field, &escape(&text_of(f)));
                    }
                }
                inner.push_str("</Value>");
                element(out, "MessageAttribute", &inner);
            }
        }
        (_, Value::Array(items)) => {
            let name = match key {
                "QueueUrls" | "queueUrls" => "QueueUrl".to_string(),
                "Messages" => "Message".to_string(),
                "Failed" => "BatchResultErrorEntry".to_string(),
                "Results" => format!("{action}ResultEntry"),
                "Successful" => format!("{}ResultEntry", action),
                other => other.to_string(),
            };
            for item in items {
                let mut inner = String::new();
                match item {
                    Value::Object(m) => {
                        for (k, v) in m {
                            member(&mut inner, action, k, v);
                        }
                    }
                    other => inner.push_str(&escape(&text_of(other))),
                }
                element(out, &name, &inner);
            }
        }
        (_, Value::Object(m)) => {
            let mut inner = String::new();
            for (k, v) in m {
                member(&mut inner, action, k, v);
            }
            element(out, key, &inner);
        }
        (_, Value::Null) => {}
        (_, v) => element(out, key, &escape(&text_of(v))),
    }
}

/// The Query protocol's answer for a JSON protocol's `answer`.
pub fn response(action: &str, answer: &Value, request_id: &str) -> String {
    let mut result = String::new();
    if let Value::Object(m) = answer {
        for (k, v) in m {
            member(&mut result, action, k, v);
        }
    }
    let result = match result.is_empty() {
        true => String::new(),
        false => format!("<{action}Result>{result}</{action}Result>"),
    };
    format!(
        "<?xml version=\"1.0\"?><{action}Response xmlns=\"{NAMESPACE}\">{result}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    )
}

/// The Query protocol's error document.
pub fn error(sender: bool, code: &str, message: &str, request_id: &str) -> String {
    let kind = if sender { "Sender" } else { "Receiver" };
    format!(
        "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        escape(code),
        escape(message)
    )
}

/// A `QueueUrl` taken from the path a request was posted to
/// (`/000000000000/NAME`), when the form names none.
pub fn with_queue_url(mut request: Value, url: Option<String>) -> Value {
    if let (Some(url), Value::Object(m)) = (url, &mut request) {
        m.entry("QueueUrl").or_insert_with(|| json!(url));
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(text: &str) -> Vec<(String, String)> {
        text.split('&')
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    #[test]
    fn forms_become_json_requests() {
        let (action, req) = request(form(
            "Action=SendMessageBatch&QueueUrl=u&SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=y&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=x&SendMessageBatchRequestEntry.1.DelaySeconds=5&SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=v",
        ))
        .unwrap();
        assert_eq!(action, "SendMessageBatch");
        assert_eq!(
            req,
            json!({"QueueUrl": "u", "Entries": [
                {"Id": "a", "MessageBody": "x", "DelaySeconds": 5, "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
                {"Id": "b", "MessageBody": "y"},
            ]})
        );
        let (_, req) = request(form(
            "Action=CreateQueue&QueueName=q&Attribute.1.Name=VisibilityTimeout&Attribute.1.Value=40&Tag.1.Key=team&Tag.1.Value=a",
        ))
        .unwrap();
        assert_eq!(
            req,
            json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "40"}, "tags": {"team": "a"}})
        );
        assert!(request(form("QueueName=q")).is_none());
    }

    #[test]
    fn answers_become_xml() {
        let xml = response(
            "ReceiveMessage",
            &json!({"Messages": [{"MessageId": "m", "Body": "a<b", "Attributes": {"SentTimestamp": "1"}}]}),
            "r",
        );
        assert_eq!(
            xml,
            format!("<?xml version=\"1.0\"?><ReceiveMessageResponse xmlns=\"{NAMESPACE}\"><ReceiveMessageResult><Message><Attribute><Name>SentTimestamp</Name><Value>1</Value></Attribute><Body>a&lt;b</Body><MessageId>m</MessageId></Message></ReceiveMessageResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></ReceiveMessageResponse>")
        );
        assert!(response("DeleteQueue", &json!({}), "r").contains("<DeleteQueueResponse"));
    }
}
