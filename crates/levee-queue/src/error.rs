//! The queue crate's one error type.
//!
//! Owns: [`QueueError`], its SQS error code and HTTP status, and the rule
//! that every message is safe to show a client: names and text that came
//! from a request are truncated and escaped before they are embedded. Must
//! never: embed a message body or attribute value in an error.

/// Longest piece of caller-supplied text quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 80;

/// Everything that can go wrong in the queue store. `Clone` so one failed
/// group commit can answer every caller in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// AWS's own text, word for word (code that matches on it, and suites
    /// verified against AWS, expect it); `name` is for logs and `Debug`.
    #[error("The specified queue does not exist.")]
    NotFound { name: String },

    #[error("queue '{name}' already exists with different attributes")]
    Exists { name: String },

    /// The queue holds `max` messages; the sender should retry later (the
    /// edge answers 503, the SQS API `ServiceUnavailable`).
    #[error("queue '{name}' is declared in levee.toml: change or remove it there and reload")]
    Declared { name: String },

    #[error("queue '{name}' is full ({max} messages); retry after consumers catch up")]
    Full { name: String, max: u64 },

    #[error("at most {max} queues can exist")]
    TooManyQueues { max: usize },

    #[error(
        "invalid queue name '{name}': use 1 to 80 characters of A-Z a-z 0-9 _ - \
         (a FIFO queue's ends in .fifo)"
    )]
    InvalidName { name: String },

    /// AWS's words for a queue attribute it does not know.
    #[error("Unknown Attribute {name}.")]
    InvalidAttributeName { name: String },

    /// AWS's words for a value out of range or of the wrong form.
    #[error("Invalid value for the parameter {attribute}.")]
    AttributeOutOfRange { attribute: String },

    #[error("invalid value for {attribute}: {message}")]
    InvalidAttributeValue { attribute: String, message: String },

    #[error("{message}")]
    InvalidParameter { message: String },

    #[error("message of {size} bytes is longer than queue '{name}' accepts ({max} bytes)")]
    MessageTooLong {
        name: String,
        size: usize,
        max: usize,
    },

    #[error("{message}")]
    InvalidMessageContents { message: String },

    /// AWS's words (observed from the AWS CLI); the handle is quoted and
    /// bounded like every other echoed input.
    #[error("The input receipt handle \"{handle}\" is not a valid receipt handle.")]
    ReceiptHandleIsInvalid { handle: String },

    #[error("the message referred to is not in flight")]
    MessageNotInflight,

    #[error("the queue store is shutting down")]
    ShuttingDown,

    #[error("data directory is in use by another levee process (lock file {path})")]
    Locked { path: String },

    #[error(
        "queue database schema version {found} is newer than this binary supports \
         ({supported}); run a newer levee or restore a backup"
    )]
    TooNew { found: i64, supported: i64 },

    #[error("stored queue data is corrupt: {message}")]
    Corrupt { message: String },

    #[error("queue storage error: {message}")]
    Storage { message: String },

    #[error("i/o error: {message}")]
    Io { message: String },
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        QueueError::Storage {
            message: e.to_string(),
        }
    }
}

impl From<std::io::Error> for QueueError {
    fn from(e: std::io::Error) -> Self {
        QueueError::Io {
            message: e.to_string(),
        }
    }
}

/// How the SQS JSON protocol names an error: HTTP status, the query-mode
/// code (the `x-amzn-query-error` header botocore prefers), the JSON
/// `__type` shape, and whose fault it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsCode {
    pub status: u16,
    pub query_code: &'static str,
    pub shape: &'static str,
    pub sender_fault: bool,
}

impl AwsCode {
    pub(crate) const fn sender(query_code: &'static str, shape: &'static str) -> Self {
        AwsCode {
            status: 400,
            query_code,
            shape,
            sender_fault: true,
        }
    }
}

pub(crate) const INVALID_PARAMETER: AwsCode =
    AwsCode::sender("InvalidParameterValue", "InvalidParameterValue");

impl QueueError {
    /// The SQS error this maps to. `Full` and `ShuttingDown` are 503
    /// `ServiceUnavailable` so SDKs back off and retry; storage failures are
    /// 500 `InternalError`.
    pub fn aws_code(&self) -> AwsCode {
        match self {
            QueueError::NotFound { .. } => AwsCode::sender(
                "AWS.SimpleQueueService.NonExistentQueue",
                "QueueDoesNotExist",
            ),
            QueueError::Exists { .. } => AwsCode::sender("QueueAlreadyExists", "QueueNameExists"),
            // What SQS answers when a policy forbids the action.
            QueueError::Declared { .. } => AwsCode {
                status: 403,
                ..AwsCode::sender("AccessDenied", "AccessDenied")
            },
            QueueError::TooManyQueues { .. } => AwsCode {
                status: 403,
                ..AwsCode::sender("OverLimit", "OverLimit")
            },
            QueueError::InvalidName { .. }
            | QueueError::InvalidParameter { .. }
            | QueueError::MessageTooLong { .. } => INVALID_PARAMETER,
            QueueError::InvalidAttributeName { .. } => {
                AwsCode::sender("InvalidAttributeName", "InvalidAttributeName")
            }
            QueueError::InvalidAttributeValue { .. } | QueueError::AttributeOutOfRange { .. } => {
                AwsCode::sender("InvalidAttributeValue", "InvalidAttributeValue")
            }
            QueueError::InvalidMessageContents { .. } => {
                AwsCode::sender("InvalidMessageContents", "InvalidMessageContents")
            }
            QueueError::ReceiptHandleIsInvalid { .. } => {
                AwsCode::sender("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid")
            }
            QueueError::MessageNotInflight => AwsCode::sender(
                "AWS.SimpleQueueService.MessageNotInflight",
                "MessageNotInflight",
            ),
            QueueError::Full { .. } | QueueError::ShuttingDown => AwsCode {
                status: 503,
                query_code: "ServiceUnavailable",
                shape: "ServiceUnavailable",
                sender_fault: false,
            },
            QueueError::Locked { .. }
            | QueueError::TooNew { .. }
            | QueueError::Corrupt { .. }
            | QueueError::Storage { .. }
            | QueueError::Io { .. } => AwsCode {
                status: 500,
                query_code: "InternalError",
                shape: "InternalError",
                sender_fault: false,
            },
        }
    }

    pub(crate) fn not_found(name: &str) -> Self {
        QueueError::NotFound { name: quote(name) }
    }

    pub(crate) fn bad_receipt(handle: &str) -> Self {
        QueueError::ReceiptHandleIsInvalid {
            handle: quote(handle),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        QueueError::InvalidParameter {
            message: message.into(),
        }
    }

    pub(crate) fn out_of_range(attribute: &str) -> Self {
        QueueError::AttributeOutOfRange {
            attribute: quote(attribute),
        }
    }

    pub(crate) fn bad_attribute(attribute: &str, message: impl Into<String>) -> Self {
        QueueError::InvalidAttributeValue {
            attribute: quote(attribute),
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        QueueError::Corrupt {
            message: message.into(),
        }
    }
}

/// Caller-supplied text made safe to embed in a message.
pub(crate) fn quote(s: &str) -> String {
    levee_store::sqlite::quote(s, MAX_QUOTED_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_are_bounded_and_escaped() {
        let hostile = format!("a\u{1b}[2J{}", "x".repeat(10_000));
        let msg = QueueError::bad_attribute(&hostile, "no").to_string();
        assert!(msg.len() < 200, "{msg}");
        assert!(!msg.contains('\u{1b}'));
        assert!(msg.contains('…'));
        assert_eq!(
            QueueError::not_found(&hostile).to_string(),
            "The specified queue does not exist.",
            "AWS's words, and no echo at all"
        );
    }

    #[test]
    fn the_missing_queue_error_matches_the_sqs_json_contract() {
        let code = QueueError::not_found("q").aws_code();
        assert_eq!(code.status, 400);
        assert_eq!(code.query_code, "AWS.SimpleQueueService.NonExistentQueue");
        assert_eq!(code.shape, "QueueDoesNotExist");
        assert!(code.sender_fault);
    }

    #[test]
    fn a_full_queue_is_a_retryable_503() {
        let full = QueueError::Full {
            name: "q".into(),
            max: 1,
        };
        assert_eq!(full.aws_code().status, 503);
        assert!(!full.aws_code().sender_fault);
        let storage = QueueError::from(rusqlite::Error::InvalidQuery);
        assert_eq!(storage.aws_code().status, 500);
    }
}
