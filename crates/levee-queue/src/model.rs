//! Queue and message shapes, their bounds and their validation.
//!
//! Owns: every limit a queue or message is held to (the constants below),
//! [`QueueSettings`] and its translation to and from SQS attribute maps,
//! message attributes and body rules. Pure: no I/O, no clock. Must never:
//! accept a value outside the bounds stated here — the store trusts what
//! passes.

use std::collections::BTreeMap;
use std::time::Duration;

use levee_common::name::QueueName;
use serde::{Deserialize, Serialize};

use crate::error::{quote, QueueError};

/// Longest queue name (SQS's limit).
pub const MAX_QUEUE_NAME: usize = QueueName::MAX_LEN;
/// Most queues in one store; each costs a row and a map entry.
pub const MAX_QUEUES: usize = 1000;
/// Largest message (body plus attribute names, types and values): 256 KiB.
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;
/// Smallest `MaximumMessageSize` a queue may set.
pub const MIN_MESSAGE_SIZE: usize = 1024;
/// Most attributes on one message (SQS's limit).
pub const MAX_ATTRIBUTES: usize = 10;
/// Longest attribute name and data type.
pub const MAX_ATTRIBUTE_NAME: usize = 256;
/// Longest visibility timeout: 12 hours.
pub const MAX_VISIBILITY_SECS: u32 = 43_200;
/// Longest delay: 15 minutes.
pub const MAX_DELAY_SECS: u32 = 900;
/// Retention bounds: 60 s to 14 days; default 4 days.
pub const MIN_RETENTION_SECS: u32 = 60;
pub const MAX_RETENTION_SECS: u32 = 1_209_600;
/// Longest long poll (WaitTimeSeconds).
pub const MAX_WAIT_SECS: u32 = 20;
/// Queue depth bounds; default 100 000. The ceiling keeps one queue's file
/// share bounded (10 M × 256 KiB is already more than most disks).
pub const DEFAULT_MAX_MESSAGES: u64 = 100_000;
pub const MAX_MAX_MESSAGES: u64 = 10_000_000;
/// maxReceiveCount bounds (SQS's).
pub const MAX_RECEIVE_COUNT: u32 = 1000;
/// Most messages one receive may take: the event-source batch maximum. The
/// SQS API itself allows 1..=10.
pub const MAX_RECEIVE_MESSAGES: usize = 10_000;
/// The account id in queue URLs and ARNs.
pub const ACCOUNT_ID: &str = "000000000000";
/// The region in ARNs and events.
pub const REGION: &str = "us-east-1";

/// The dead-letter rule: after `max_receive_count` receives a message moves
/// to `dead_letter` instead of being delivered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redrive {
    pub dead_letter: String,
    /// 1..=1000.
    pub max_receive_count: u32,
}

/// A queue's attributes. Defaults are SQS's, except `max_message_size`
/// (256 KiB, Levee's ceiling) and `max_messages` (Levee's depth bound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// Seconds a received message stays hidden; 0..=43 200, default 30.
    pub visibility_timeout: u32,
    /// Seconds a new message stays hidden; 0..=900, default 0.
    pub delay: u32,
    /// Seconds a message is kept; 60..=1 209 600, default 345 600 (4 days).
    pub retention: u32,
    /// Bytes; 1024..=262 144, default 262 144.
    pub max_message_size: u32,
    /// Default long-poll wait; 0..=20, default 0.
    pub receive_wait: u32,
    /// Messages the queue may hold; beyond it sends fail with `Full`.
    pub max_messages: u64,
    pub redrive: Option<Redrive>,
    /// Attributes stored and returned, never enforced.
    #[serde(default)]
    pub unenforced: Unenforced,
    /// Cost-allocation tags; at most [`MAX_TAGS`].
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `Some` for a FIFO queue (its name ends in `.fifo`).
    #[serde(default)]
    pub fifo: Option<FifoSettings>,
}

/// A FIFO queue's own attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FifoSettings {
    /// `ContentBasedDeduplication`: the body's SHA-256 is the
    /// deduplication id when a send names none.
    pub content_based_dedup: bool,
    /// `DeduplicationScope = messageGroup` (else `queue`).
    pub dedup_per_group: bool,
    /// `FifoThroughputLimit = perMessageGroupId` (else `perQueue`): AWS's
    /// quota; recorded and returned, one node has nothing to throttle.
    pub throughput_per_group: bool,
}

/// How long a FIFO queue remembers a deduplication id (SQS's 5 minutes).
pub const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Longest `MessageGroupId` / `MessageDeduplicationId` (SQS's).
pub const MAX_FIFO_ID: usize = 128;

/// What SQS keeps about a queue that means nothing on one self-hosted node:
/// its access policy, encryption settings and which queues may use it as a
/// dead-letter queue. Levee stores and returns them, so tools that set them
/// keep working, and enforces none (documented in the README).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unenforced {
    pub policy: Option<String>,
    pub kms_master_key_id: Option<String>,
    /// 60..=86 400 seconds.
    pub kms_data_key_reuse_period: Option<u32>,
    pub sqs_managed_sse: Option<bool>,
    pub redrive_allow_policy: Option<String>,
}

/// Most tags on one queue (SQS's quota).
pub const MAX_TAGS: usize = 50;
/// Longest tag key and value, in characters (SQS's quota).
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;
/// Largest stored `Policy` or `RedriveAllowPolicy` document.
pub const MAX_POLICY_BYTES: usize = 20 * 1024;
const KMS_REUSE_SECS: (u32, u32) = (60, 86_400);

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            visibility_timeout: 30,
            delay: 0,
            retention: 345_600,
            max_message_size: 262_144,
            receive_wait: 0,
            max_messages: DEFAULT_MAX_MESSAGES,
            redrive: None,
            unenforced: Unenforced::default(),
            tags: BTreeMap::new(),
            fifo: None,
        }
    }
}

fn in_range<T: PartialOrd>(attribute: &str, v: T, lo: T, hi: T) -> Result<(), QueueError> {
    if v < lo || v > hi {
        return Err(QueueError::out_of_range(attribute));
    }
    Ok(())
}

impl QueueSettings {
    /// Checks every bound (not whether the dead-letter queue exists: that
    /// is the store's, which knows the queues).
    pub fn validate(&self) -> Result<(), QueueError> {
        in_range(
            "VisibilityTimeout",
            self.visibility_timeout,
            0,
            MAX_VISIBILITY_SECS,
        )?;
        in_range("DelaySeconds", self.delay, 0, MAX_DELAY_SECS)?;
        in_range(
            "MessageRetentionPeriod",
            self.retention,
            MIN_RETENTION_SECS,
            MAX_RETENTION_SECS,
        )?;
        in_range(
            "MaximumMessageSize",
            self.max_message_size as usize,
            MIN_MESSAGE_SIZE,
            MAX_MESSAGE_SIZE,
        )?;
        in_range(
            "ReceiveMessageWaitTimeSeconds",
            self.receive_wait,
            0,
            MAX_WAIT_SECS,
        )?;
        in_range("MaxMessages", self.max_messages, 1, MAX_MAX_MESSAGES)?;
        if let Some(f) = &self.fifo {
            if f.throughput_per_group && !f.dedup_per_group {
                return Err(QueueError::out_of_range("FifoThroughputLimit"));
            }
        }
        if self.unenforced.kms_master_key_id.is_some()
            && self.unenforced.sqs_managed_sse == Some(true)
        {
            return Err(QueueError::InvalidAttributeName {
                message: "You can use one type of server-side encryption (SSE) at one time. You can either enable KMS SSE or SQS SSE.".into(),
            });
        }
        if let Some(r) = &self.redrive {
            validate_queue_name(&r.dead_letter)?;
            in_range(
                "RedrivePolicy.maxReceiveCount",
                r.max_receive_count,
                1,
                MAX_RECEIVE_COUNT,
            )?;
        }
        Ok(())
    }

    /// The SQS name of the first attribute whose value differs between
    /// `self` and `other` (what `QueueAlreadyExists` names), tags aside.
    pub fn first_difference(&self, other: &QueueSettings) -> &'static str {
        let (a, b) = (self, other);
        let fifo = |s: &QueueSettings| s.fifo.clone().unwrap_or_default();
        let (fa, fb) = (fifo(a), fifo(b));
        let (ua, ub) = (&a.unenforced, &b.unenforced);
        [
            (a.delay != b.delay, "DelaySeconds"),
            (
                a.max_message_size != b.max_message_size,
                "MaximumMessageSize",
            ),
            (a.retention != b.retention, "MessageRetentionPeriod"),
            (
                a.receive_wait != b.receive_wait,
                "ReceiveMessageWaitTimeSeconds",
            ),
            (
                a.visibility_timeout != b.visibility_timeout,
                "VisibilityTimeout",
            ),
            (a.redrive != b.redrive, "RedrivePolicy"),
            (a.fifo.is_some() != b.fifo.is_some(), "FifoQueue"),
            (
                fa.content_based_dedup != fb.content_based_dedup,
                "ContentBasedDeduplication",
            ),
            (
                fa.dedup_per_group != fb.dedup_per_group,
                "DeduplicationScope",
            ),
            (
                fa.throughput_per_group != fb.throughput_per_group,
                "FifoThroughputLimit",
            ),
            (ua.policy != ub.policy, "Policy"),
            (
                ua.redrive_allow_policy != ub.redrive_allow_policy,
                "RedriveAllowPolicy",
            ),
            (
                ua.kms_master_key_id != ub.kms_master_key_id,
                "KmsMasterKeyId",
            ),
            (
                ua.kms_data_key_reuse_period != ub.kms_data_key_reuse_period,
                "KmsDataKeyReusePeriodSeconds",
            ),
            (
                ua.sqs_managed_sse != ub.sqs_managed_sse,
                "SqsManagedSseEnabled",
            ),
        ]
        .into_iter()
        .find_map(|(differs, name)| differs.then_some(name))
        .unwrap_or("MaxMessages")
    }

    /// Applies SQS attribute strings (`CreateQueue`/`SetQueueAttributes`).
    /// Unknown names are refused, and FIFO-only names on a standard queue.
    pub fn apply_attributes(
        &mut self,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), QueueError> {
        // The queue's type first: the FIFO attributes depend on it. As in
        // SQS, a standard queue doesn't know FifoQueue=false, and a FIFO
        // queue can't become standard; `true` on a standard queue makes a
        // FIFO one, which the caller refuses unless the name says so.
        match (
            attributes.get("FifoQueue").map(String::as_str),
            self.fifo.is_some(),
        ) {
            (None, _) | (Some("true"), true) => {}
            (Some("true"), false) => self.fifo = Some(FifoSettings::default()),
            (Some("false"), false) => return Err(QueueError::unknown_attribute("FifoQueue")),
            (Some("false"), true) => {
                return Err(QueueError::bad_attribute(
                    "FifoQueue",
                    "Modifying queue type is not supported.",
                ))
            }
            (Some(_), _) => return Err(QueueError::out_of_range("FifoQueue")),
        }
        for (name, value) in attributes {
            fn fifo<'a>(
                fifo: &'a mut Option<FifoSettings>,
                name: &str,
            ) -> Result<&'a mut FifoSettings, QueueError> {
                fifo.as_mut().ok_or_else(|| match name {
                    // AWS's sentence for these two; the rest are unknown.
                    "DeduplicationScope" | "FifoThroughputLimit" => {
                        QueueError::InvalidAttributeName {
                            message: format!(
                                "You can specify the {name} only when FifoQueue is set to true."
                            ),
                        }
                    }
                    _ => QueueError::unknown_attribute(name),
                })
            }
            let num = |v: &str| -> Result<u64, QueueError> {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| QueueError::out_of_range(name))
            };
            let secs = |v: &str| -> Result<u32, QueueError> {
                u32::try_from(num(v)?).map_err(|_| QueueError::out_of_range(name))
            };
            match name.as_str() {
                "VisibilityTimeout" => self.visibility_timeout = secs(value)?,
                "DelaySeconds" => self.delay = secs(value)?,
                "MessageRetentionPeriod" => self.retention = secs(value)?,
                "MaximumMessageSize" => self.max_message_size = secs(value)?,
                "ReceiveMessageWaitTimeSeconds" => self.receive_wait = secs(value)?,
                // Levee's own attribute: the depth bound.
                "MaxMessages" => self.max_messages = num(value)?,
                "RedrivePolicy" => self.redrive = parse_redrive_policy(value)?,
                "Policy" => self.unenforced.policy = json_document(name, value)?,
                "RedriveAllowPolicy" => {
                    self.unenforced.redrive_allow_policy = json_document(name, value)?
                }
                "KmsMasterKeyId" => {
                    self.unenforced.kms_master_key_id = (!value.is_empty()).then(|| value.clone())
                }
                "KmsDataKeyReusePeriodSeconds" => {
                    let secs = secs(value)?;
                    in_range(name, secs, KMS_REUSE_SECS.0, KMS_REUSE_SECS.1)?;
                    self.unenforced.kms_data_key_reuse_period = Some(secs);
                }
                "FifoQueue" => {}
                "ContentBasedDeduplication" => {
                    fifo(&mut self.fifo, name)?.content_based_dedup =
                        one_of(name, value, "true", "false")?
                }
                "DeduplicationScope" => {
                    fifo(&mut self.fifo, name)?.dedup_per_group =
                        one_of(name, value, "messageGroup", "queue")?
                }
                "FifoThroughputLimit" => {
                    fifo(&mut self.fifo, name)?.throughput_per_group =
                        one_of(name, value, "perMessageGroupId", "perQueue")?
                }
                "SqsManagedSseEnabled" => {
                    self.unenforced.sqs_managed_sse = Some(one_of(name, value, "true", "false")?)
                }
                _ => return Err(QueueError::unknown_attribute(name)),
            }
        }
        self.validate()
    }
}

impl QueueSettings {
    /// Adds or replaces tags (`TagQueue`, `tags` on `CreateQueue`).
    pub fn add_tags(&mut self, tags: &BTreeMap<String, String>) -> Result<(), QueueError> {
        for (key, value) in tags {
            let chars = key.chars().count();
            if chars == 0 || chars > MAX_TAG_KEY {
                return Err(QueueError::invalid(format!(
                    "tag keys are 1 to {MAX_TAG_KEY} characters, not {chars}"
                )));
            }
            if value.chars().count() > MAX_TAG_VALUE {
                return Err(QueueError::invalid(format!(
                    "the value of tag '{}' is longer than {MAX_TAG_VALUE} characters",
                    quote(key)
                )));
            }
        }
        let mut all = self.tags.clone();
        all.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        if all.len() > MAX_TAGS {
            return Err(QueueError::invalid(format!(
                "a queue has at most {MAX_TAGS} tags; this would make {}",
                all.len()
            )));
        }
        self.tags = all;
        Ok(())
    }
}

/// A two-valued attribute: `yes` is true, `no` false, anything else refused.
fn one_of(attribute: &str, value: &str, yes: &str, no: &str) -> Result<bool, QueueError> {
    match value {
        v if v == yes => Ok(true),
        v if v == no => Ok(false),
        _ => Err(QueueError::out_of_range(attribute)),
    }
}

/// A JSON object document (`Policy`, `RedriveAllowPolicy`), kept as sent;
/// an empty string removes it.
fn json_document(attribute: &str, text: &str) -> Result<Option<String>, QueueError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_POLICY_BYTES {
        return Err(QueueError::bad_attribute(
            attribute,
            format!("is longer than {MAX_POLICY_BYTES} bytes"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => Ok(Some(text.to_string())),
        _ => Err(QueueError::bad_attribute(
            attribute,
            "must be a JSON object",
        )),
    }
}

/// Reads `{"deadLetterTargetArn": "arn:…:NAME", "maxReceiveCount": 5}`
/// (the count may be a string, as the console writes it). An empty string
/// removes the policy.
fn parse_redrive_policy(text: &str) -> Result<Option<Redrive>, QueueError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| QueueError::invalid_value("RedrivePolicy", text, reason);
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
    let arn = v
        .get("deadLetterTargetArn")
        .and_then(|a| a.as_str())
        .filter(|a| a.starts_with("arn:aws:sqs:") && a.split(':').count() == 6)
        .ok_or_else(|| bad("Invalid value for deadLetterTargetArn."))?;
    let count = match v.get("maxReceiveCount") {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
        None => Some(10),
        Some(_) => None,
    }
    .and_then(|n| u32::try_from(n).ok())
    .ok_or_else(|| bad("Invalid value for maxReceiveCount."))?;
    let name = arn.rsplit(':').next().unwrap_or_default();
    Ok(Some(Redrive {
        dead_letter: name.to_string(),
        max_receive_count: count,
    }))
}

/// `arn:aws:sqs:us-east-1:000000000000:NAME`.
pub fn queue_arn(name: &str) -> String {
    format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")
}

/// [`QueueName`]'s rule, which levee.toml's queues follow too: SQS's 1 to
/// 80 characters of `A-Z a-z 0-9 _ -`, a FIFO queue's ending in `.fifo`.
pub fn validate_queue_name(name: &str) -> Result<(), QueueError> {
    match QueueName::parse(name) {
        Ok(_) => Ok(()),
        Err(_) => Err(QueueError::InvalidName { name: quote(name) }),
    }
}

/// A `MessageGroupId` or `MessageDeduplicationId`: 1 to 128 characters of
/// letters, digits and ASCII punctuation (SQS's rule).
fn validate_fifo_id(parameter: &str, id: &str) -> Result<(), QueueError> {
    let ok = (1..=MAX_FIFO_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b.is_ascii_punctuation());
    match ok {
        true => Ok(()),
        false => Err(QueueError::invalid_value(
            parameter,
            id,
            &format!(
                "{parameter} can only include alphanumeric and punctuation characters. 1 to {MAX_FIFO_ID} in length."
            ),
        )),
    }
}

/// A message attribute value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeValue {
    String(String),
    Binary(Vec<u8>),
}

/// SQS's Number: decimal digits with an optional sign, point and exponent,
/// at most 38 significant digits, and zero or a magnitude of at least
/// 10^-128 and below 10^127 (SQS documents "10^-128 to 10^+126"). NaN,
/// infinities, hex and surrounding spaces are not numbers.
fn check_number(s: &str) -> Result<(), &'static str> {
    const NOT_DECIMAL: &str = "is not a decimal number";
    let digits_only = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int.is_empty() && frac.is_empty()) || !digits_only(int) || !digits_only(frac) {
        return Err(NOT_DECIMAL);
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let magnitude = e.strip_prefix(['+', '-']).unwrap_or(e);
            // Six digits already put any mantissa out of range; the bound
            // keeps the arithmetic below from overflowing.
            if magnitude.is_empty() || magnitude.len() > 6 || !digits_only(magnitude) {
                return Err(NOT_DECIMAL);
            }
            e.parse().map_err(|_| NOT_DECIMAL)?
        }
    };
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    if significant.is_empty() {
        return Ok(());
    }
    if significant.trim_end_matches('0').len() > 38 {
        return Err("has more than 38 significant digits");
    }
    let leading_zeros = (all.len() - significant.len()) as i64;
    // The power of ten of the first significant digit.
    let magnitude = int.len() as i64 - leading_zeros - 1 + exponent;
    if !(-128..=126).contains(&magnitude) {
        return Err("is outside 10^-128 to 10^126");
    }
    Ok(())
}

/// One message attribute; `data_type` is `String`, `Number` or `Binary`,
/// optionally with a `.custom` suffix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttribute {
    pub data_type: String,
    pub value: AttributeValue,
}

/// Attributes by name, sorted (the order the MD5 needs).
pub type MessageAttributes = BTreeMap<String, MessageAttribute>;

fn validate_attribute_name(name: &str) -> Result<(), QueueError> {
    let lower = name.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= MAX_ATTRIBUTE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if ok {
        Ok(())
    } else {
        Err(QueueError::invalid(format!(
            "message attribute name '{}' is invalid: 1 to {MAX_ATTRIBUTE_NAME} characters of \
             A-Z a-z 0-9 _ - . (no leading, trailing or doubled '.', no AWS./Amazon. prefix)",
            quote(name)
        )))
    }
}

/// Checks the attributes and returns the bytes they count toward the
/// message size (names, data types and values).
pub fn validate_attributes(attributes: &MessageAttributes) -> Result<usize, QueueError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(QueueError::invalid(format!(
            "a message has at most {MAX_ATTRIBUTES} attributes, not {}",
            attributes.len()
        )));
    }
    let mut size = 0usize;
    for (name, attr) in attributes {
        validate_attribute_name(name)?;
        let t = attr.data_type.as_str();
        let base = t.split('.').next().unwrap_or_default();
        let value_len = match (&attr.value, base) {
            (AttributeValue::String(s), "String") => s.len(),
            (AttributeValue::String(s), "Number") => {
                if let Err(why) = check_number(s) {
                    return Err(QueueError::invalid(format!(
                        "message attribute '{}' is a Number but its value {why}",
                        quote(name)
                    )));
                }
                s.len()
            }
            (AttributeValue::Binary(b), "Binary") => b.len(),
            _ => {
                return Err(QueueError::invalid(format!(
                    "message attribute '{}' has data type '{}' that does not match its \
                     value (String and Number carry StringValue, Binary BinaryValue)",
                    quote(name),
                    quote(t)
                )))
            }
        };
        if t.len() > MAX_ATTRIBUTE_NAME {
            return Err(QueueError::invalid(format!(
                "message attribute '{}' has a data type longer than {MAX_ATTRIBUTE_NAME}",
                quote(name)
            )));
        }
        if let AttributeValue::String(s) = &attr.value {
            validate_text(s, "message attribute value")?;
            if s.is_empty() {
                return Err(QueueError::invalid(format!(
                    "Message (user) attribute '{}' must contain a non-empty value of type '{}'.",
                    quote(name),
                    quote(t)
                )));
            }
        }
        // Name, data type and value, and one more byte: AWS refuses an
        // attribute k/String/x beside a body of the limit less 8 bytes
        // (recorded in LocalStack's AWS snapshots), and takes a body of the
        // limit alone.
        size = size
            .saturating_add(name.len())
            .saturating_add(t.len())
            .saturating_add(value_len)
            .saturating_add(1);
    }
    Ok(size)
}

/// SQS accepts only XML 1.0 characters: #x9 #xA #xD #x20–#xD7FF
/// #xE000–#xFFFD #x10000–#x10FFFF (Rust strings can't hold surrogates).
fn validate_text(text: &str, what: &str) -> Result<(), QueueError> {
    let bad = text.chars().find(|&c| {
        let u = u32::from(c);
        !(matches!(u, 0x9 | 0xA | 0xD) || (0x20..=0xFFFD).contains(&u) || u >= 0x10000)
    });
    match bad {
        None => Ok(()),
        Some(c) => Err(QueueError::InvalidMessageContents {
            message: format!(
                "{what} contains the character U+{:04X}, which SQS does not allow",
                u32::from(c)
            ),
        }),
    }
}

/// Checks a whole message against a queue's size limit; returns its size.
pub fn validate_message(
    queue: &str,
    settings: &QueueSettings,
    msg: &NewMessage,
) -> Result<usize, QueueError> {
    if msg.body.is_empty() {
        return Err(QueueError::MissingParameter {
            parameter: "MessageBody",
        });
    }
    validate_text(&msg.body, "the message body")?;
    let invalid_here = |parameter: &str, value: &str| {
        QueueError::invalid_value(
            parameter,
            value,
            "The request include parameter that is not valid for this queue type.",
        )
    };
    match &settings.fifo {
        Some(fifo) => {
            let group = msg
                .group_id
                .as_deref()
                .ok_or(QueueError::MissingParameter {
                    parameter: "MessageGroupId",
                })?;
            validate_fifo_id("MessageGroupId", group)?;
            match &msg.dedup_id {
                Some(id) => validate_fifo_id("MessageDeduplicationId", id)?,
                None if fifo.content_based_dedup => {}
                None => {
                    return Err(QueueError::invalid(
                        "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly",
                    ))
                }
            }
            if let Some(d) = msg.delay.filter(|&d| d != 0) {
                return Err(invalid_here("DelaySeconds", &d.to_string()));
            }
        }
        None => {
            if let Some(id) = &msg.dedup_id {
                return Err(invalid_here("MessageDeduplicationId", id));
            }
            // SQS takes a group id on a standard queue too (fair queues);
            // one node has no tenants to balance, so it is checked only.
            if let Some(group) = &msg.group_id {
                validate_fifo_id("MessageGroupId", group)?;
            }
        }
    }
    if let Some(d) = msg.delay {
        if d > MAX_DELAY_SECS {
            return Err(QueueError::invalid(format!(
                "DelaySeconds must be between 0 and {MAX_DELAY_SECS}, not {d}"
            )));
        }
    }
    let size = msg
        .body
        .len()
        .saturating_add(validate_attributes(&msg.attributes)?);
    let max = settings.max_message_size as usize;
    if size > max {
        return Err(QueueError::MessageTooLong {
            name: queue.to_string(),
            size,
            max,
        });
    }
    Ok(size)
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewMessage {
    pub body: String,
    pub attributes: MessageAttributes,
    /// Seconds; `None` uses the queue's delay.
    pub delay: Option<u32>,
    /// FIFO queues: the message's group (required) and deduplication id.
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

/// What a sender gets back once the message is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub message_id: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
    /// FIFO queues: the message's place in the queue.
    pub sequence_number: Option<String>,
}

/// How to receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveOptions {
    /// 1..=[`MAX_RECEIVE_MESSAGES`].
    pub max_messages: usize,
    /// Stop adding messages once their bodies reach this many bytes (at
    /// least one message is always returned).
    pub max_bytes: usize,
    /// Seconds; `None` uses the queue's.
    pub visibility_timeout: Option<u32>,
    /// Long-poll wait, capped at 20 s.
    pub wait: Duration,
}

impl Default for ReceiveOptions {
    fn default() -> Self {
        ReceiveOptions {
            max_messages: 1,
            max_bytes: usize::MAX,
            visibility_timeout: None,
            wait: Duration::ZERO,
        }
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    pub attributes: MessageAttributes,
    pub md5_of_attributes: Option<String>,
    /// Unix ms.
    pub sent_ms: i64,
    /// Including this receive.
    pub receive_count: u32,
    /// Unix ms.
    pub first_receive_ms: i64,
    /// FIFO queues: group, deduplication id and sequence number.
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
    pub sequence_number: Option<String>,
}

/// A FIFO message's sequence number: its row number, zero-padded so that
/// the strings sort as the numbers do.
pub fn sequence_number(seq: i64) -> String {
    format!("{seq:020}")
}

/// A read-only view of a stored message (`levee queues peek`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeekedMessage {
    pub message_id: String,
    pub body: String,
    pub attributes: MessageAttributes,
    pub sent_ms: i64,
    pub receive_count: u32,
    /// Unix ms when it is (or became) visible.
    pub visible_at_ms: i64,
    pub expires_at_ms: i64,
}

/// One queue's summary (`levee queues list`, GetQueueAttributes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueInfo {
    pub name: String,
    pub url: String,
    /// Visible now.
    pub approximate_messages: u64,
    /// Received and not yet visible again.
    pub in_flight: u64,
    /// Never received and not yet visible.
    pub delayed: u64,
    pub settings: QueueSettings,
    pub created_ms: i64,
    pub modified_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_sqs_rules() {
        assert!(validate_queue_name("orders-dlq_1").is_ok());
        assert!(validate_queue_name(&"a".repeat(80)).is_ok());
        assert!(validate_queue_name("orders.fifo").is_ok());
        assert!(validate_queue_name(&format!("{}.fifo", "a".repeat(75))).is_ok());
        for bad in [
            "",
            ".fifo",
            "a.b",
            "a.fifo.fifo",
            "sp ace",
            "é",
            &"a".repeat(81),
            &format!("{}.fifo", "a".repeat(76)),
        ] {
            assert!(validate_queue_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_follow_sqs_not_f64() {
        for ok in [
            "0",
            "-0",
            "+1",
            "1.5",
            ".5",
            "5.",
            "1e126",
            "9.99e126",
            "1e-128",
            "0.000e999",
            "12345678901234567890123456789012345678",
            "1234567890123456789012345678901234567800",
        ] {
            assert_eq!(check_number(ok), Ok(()), "{ok}");
        }
        for bad in [
            "NaN",
            "nan",
            "inf",
            "-Infinity",
            "0x10",
            "",
            ".",
            "-",
            "1e",
            "1e+",
            " 1",
            "1 ",
            "1,5",
            "1e127",
            "10e126",
            "1e-129",
            "0.01e-127",
            "1e9999999",
            "123456789012345678901234567890123456789",
        ] {
            assert!(check_number(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn attribute_maps_set_settings_and_refuse_unknowns() {
        let mut s = QueueSettings::default();
        let attrs: BTreeMap<String, String> = [
            ("VisibilityTimeout", "5"),
            ("DelaySeconds", "2"),
            (
                "RedrivePolicy",
                r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":"3"}"#,
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        s.apply_attributes(&attrs).expect("valid");
        assert_eq!((s.visibility_timeout, s.delay), (5, 2));
        assert_eq!(
            s.redrive,
            Some(Redrive {
                dead_letter: "dlq".into(),
                max_receive_count: 3
            })
        );
        // FIFO-only attributes on a standard queue are unknown to it.
        let bad: BTreeMap<String, String> =
            [("ContentBasedDeduplication".to_string(), "true".to_string())].into();
        assert!(matches!(
            s.apply_attributes(&bad),
            Err(QueueError::InvalidAttributeName { .. })
        ));
        let out_of_range: BTreeMap<String, String> =
            [("VisibilityTimeout".to_string(), "43201".to_string())].into();
        let refused = s.apply_attributes(&out_of_range).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "Invalid value for the parameter VisibilityTimeout."
        );
        assert_eq!(
            s.apply_attributes(&bad).unwrap_err().to_string(),
            "Unknown Attribute ContentBasedDeduplication."
        );
        let unknown: BTreeMap<String, String> = [("Colour".to_string(), "blue".to_string())].into();
        assert_eq!(
            s.apply_attributes(&unknown).unwrap_err().to_string(),
            "Unknown Attribute Colour."
        );
    }

    #[test]
    fn messages_count_attributes_toward_the_size_limit() {
        let settings = QueueSettings {
            max_message_size: 1024,
            ..QueueSettings::default()
        };
        let mut msg = NewMessage {
            body: "x".repeat(1000),
            ..NewMessage::default()
        };
        assert_eq!(validate_message("q", &settings, &msg), Ok(1000));
        msg.attributes.insert(
            "k".into(),
            MessageAttribute {
                data_type: "String".into(),
                value: AttributeValue::String("v".repeat(30)),
            },
        );
        // 1000 + "k" + "String" + 30 + 1 (AWS's count, see validate_attributes).
        let too_long = validate_message("q", &settings, &msg).unwrap_err();
        assert!(matches!(
            too_long,
            QueueError::MessageTooLong { size: 1038, .. }
        ));
        assert_eq!(
            too_long.to_string(),
            "One or more parameters are invalid. Reason: Message must be shorter than 1024 bytes."
        );
        assert_eq!(
            too_long.in_batch(),
            "One or more parameters cannot be validated. Reason: Message must be shorter than 1024 bytes."
        );
    }

    #[test]
    fn bodies_and_attributes_are_checked() {
        let s = QueueSettings::default();
        let nul = NewMessage {
            body: "a\u{0}b".into(),
            ..NewMessage::default()
        };
        assert!(matches!(
            validate_message("q", &s, &nul),
            Err(QueueError::InvalidMessageContents { .. })
        ));
        let mut attrs = MessageAttributes::new();
        attrs.insert(
            "n".into(),
            MessageAttribute {
                data_type: "Number".into(),
                value: AttributeValue::String("nope".into()),
            },
        );
        assert!(validate_attributes(&attrs).is_err());
        let mut reserved = MessageAttributes::new();
        reserved.insert(
            "AWS.x".into(),
            MessageAttribute {
                data_type: "String".into(),
                value: AttributeValue::String("v".into()),
            },
        );
        assert!(validate_attributes(&reserved).is_err());
    }
}
