//! The queue crate's one error type.
//!
//! Owns: [`QueueError`], its SQS error code and HTTP status, and the rule
//! that every message is safe to show a client: names and text that came
//! from a request are truncated and escaped before they are embedded. Must
//! never: embed a message body or attribute value in an error.

/// Longest piece of caller-supplied text quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 80;
/// Longest parameter value echoed in AWS's "Value V for parameter P is
/// invalid" (long enough for a 128-character id and one past it).
const MAX_ECHOED_VALUE: usize = 256;

/// Everything that can go wrong in the queue store. `Clone` so one failed
/// group commit can answer every caller in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// AWS's own text, word for word (code that matches on it, and suites
    /// verified against AWS, expect it); `name` is for logs and `Debug`.
    #[error("The specified queue does not exist.")]
    NotFound { name: String },

    /// AWS's words: `attribute` is the first one whose value differs
    /// (`name` is for logs).
    #[error(
        "A queue already exists with the same name and a different value for attribute {attribute}"
    )]
    Exists { name: String, attribute: String },

    /// SQS's 60 seconds between deleting a queue and creating its name again.
    #[error("You must wait 60 seconds after deleting a queue before you can create another with the same name.")]
    DeletedRecently { name: String },

    /// SQS's one purge per queue per 60 seconds.
    #[error("Only one PurgeQueue operation on {name} is allowed every 60 seconds.")]
    PurgeInProgress { name: String },

    /// AWS's words for a required parameter left out.
    #[error("The request must contain the parameter {parameter}.")]
    MissingParameter { parameter: &'static str },

    /// A move task's queue or the task itself is not there (404 in SQS).
    #[error("{message}")]
    ResourceNotFound { message: String },

    /// The queue holds `max` messages; the sender should retry later (the
    /// edge answers 503, the SQS API `ServiceUnavailable`).
    #[error("queue '{name}' is declared in levee.toml: change or remove it there and reload")]
    Declared { name: String },

    #[error("queue '{name}' is full ({max} messages); retry after consumers catch up")]
    Full { name: String, max: u64 },

    #[error("at most {max} queues can exist")]
    TooManyQueues { max: usize },

    /// AWS's words (not recorded from AWS in the sources Levee has seen;
    /// see docs/SQS.md); `name` is for logs.
    #[error(
        "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
    )]
    InvalidName { name: String },

    /// An attribute that does not apply: "Unknown Attribute X." for most
    /// (see [`QueueError::unknown_attribute`]), AWS's own sentence for others.
    #[error("{message}")]
    InvalidAttributeName { message: String },

    /// AWS's words for a value out of range or of the wrong form.
    #[error("Invalid value for the parameter {attribute}.")]
    AttributeOutOfRange { attribute: String },

    #[error("Invalid value for the parameter {attribute}. Reason: {message}")]
    InvalidAttributeValue { attribute: String, message: String },

    #[error("{message}")]
    InvalidParameter { message: String },

    /// AWS's words (a batch entry says "cannot be validated" instead of
    /// "are invalid"; see [`QueueError::in_batch`]).
    #[error(
        "One or more parameters are invalid. Reason: Message must be shorter than {max} bytes."
    )]
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

    /// AWS's words for a visibility change to a message deleted or
    /// received again since the handle was issued.
    #[error("Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.")]
    MessageNotInflight { handle: String },

    /// AWS's words for deleting from a FIFO queue with a handle whose
    /// visibility timeout has run out.
    #[error("Value {handle} for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.")]
    ReceiptHandleExpired { handle: String },

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
    AwsCode::sender("InvalidParameterValue", "InvalidParameterValueException");

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
            QueueError::DeletedRecently { .. } => AwsCode::sender(
                "AWS.SimpleQueueService.QueueDeletedRecently",
                "QueueDeletedRecently",
            ),
            QueueError::PurgeInProgress { .. } => AwsCode {
                status: 403,
                ..AwsCode::sender(
                    "AWS.SimpleQueueService.PurgeQueueInProgress",
                    "PurgeQueueInProgress",
                )
            },
            QueueError::MissingParameter { .. } => {
                AwsCode::sender("MissingParameter", "MissingRequiredParameterException")
            }
            QueueError::ResourceNotFound { .. } => AwsCode {
                status: 404,
                ..AwsCode::sender("ResourceNotFoundException", "ResourceNotFoundException")
            },
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
            | QueueError::MessageTooLong { .. }
            | QueueError::MessageNotInflight { .. }
            | QueueError::ReceiptHandleExpired { .. } => INVALID_PARAMETER,
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

    /// AWS's words for an attribute it does not know (or that does not
    /// apply to this queue's type).
    pub(crate) fn unknown_attribute(name: &str) -> Self {
        QueueError::InvalidAttributeName {
            message: format!("Unknown Attribute {}.", quote(name)),
        }
    }

    /// AWS's "Value V for parameter P is invalid. Reason: R" (InvalidParameterValue);
    /// `value` is echoed up to [`MAX_ECHOED_VALUE`] characters.
    pub(crate) fn invalid_value(parameter: &str, value: &str, reason: &str) -> Self {
        QueueError::InvalidParameter {
            message: format!(
                "Value {} for parameter {parameter} is invalid. Reason: {reason}",
                levee_store::sqlite::quote(value, MAX_ECHOED_VALUE)
            ),
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

    /// The words a send's failure takes as one entry of a batch: SQS says
    /// "cannot be validated" there where a single send says "are invalid".
    pub fn in_batch(&self) -> String {
        match self {
            QueueError::MessageTooLong { max, .. } => format!(
                "One or more parameters cannot be validated. Reason: Message must be shorter than {max} bytes."
            ),
            other => other.to_string(),
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
