//! What can go wrong with an invocation, classified so the edge and the Invoke
//! API can pick the right status without knowing how instances work.

use std::time::Duration;

use crate::limits::Limit;

/// Why an invocation produced no function output.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// A concurrency limit is full; answered at once (429), never queued.
    #[error("rate exceeded: {0}")]
    Throttled(Limit),
    /// The function ran past its timeout; its instance was killed.
    #[error("Task timed out after {:.2} seconds", .0.as_secs_f64())]
    Timeout(Duration),
    /// The function reported an error through `/error` (its own failure).
    #[error("{error_type}: {error_message}")]
    Function {
        /// `errorType` as the runtime sent it.
        error_type: String,
        /// `errorMessage` as the runtime sent it.
        error_message: String,
        /// The error document to hand back to an Invoke API caller.
        body: bytes::Bytes,
    },
    /// The instance failed before its first `next` (init error, early exit,
    /// init timeout), or the function is backing off after such failures.
    #[error("{error_type}: {error_message}")]
    Init {
        /// e.g. `Runtime.ImportModuleError`, `Runtime.ExitError`.
        error_type: String,
        /// Human-readable detail.
        error_message: String,
    },
    /// The instance's process exited while handling the invocation.
    #[error("Runtime.ExitError: runtime exited with error: {0}")]
    Crashed(String),
    /// The instance went over its memory limit and was killed.
    #[error(
        "Runtime.OutOfMemory: runtime exited with error: signal: killed (memory limit {0} MB)"
    )]
    OutOfMemory(u32),
    /// The function's response was larger than the 6 MB payload limit.
    #[error("Function.ResponseSizeTooLarge: response payload size exceeded maximum allowed payload size ({0} bytes)")]
    ResponseTooLarge(usize),
    /// The platform could not start an instance (spawn failed, no port…).
    #[error("Runtime.Unavailable: {0}")]
    Unavailable(String),
}

impl InvokeError {
    /// The Lambda error type a caller sees in `errorType`.
    pub fn error_type(&self) -> &str {
        match self {
            InvokeError::Throttled(_) => "TooManyRequestsException",
            InvokeError::Timeout(_) => "Sandbox.Timedout",
            InvokeError::Function { error_type, .. } | InvokeError::Init { error_type, .. } => {
                error_type
            }
            InvokeError::Crashed(_) => "Runtime.ExitError",
            InvokeError::OutOfMemory(_) => "Runtime.OutOfMemory",
            InvokeError::ResponseTooLarge(_) => "Function.ResponseSizeTooLarge",
            InvokeError::Unavailable(_) => "Runtime.Unavailable",
        }
    }

    /// The message a caller sees in `errorMessage`.
    pub fn error_message(&self) -> String {
        match self {
            InvokeError::Function { error_message, .. }
            | InvokeError::Init { error_message, .. } => error_message.clone(),
            other => {
                let text = other.to_string();
                match text.split_once(": ") {
                    Some((_, rest)) if text.starts_with(other.error_type()) => rest.to_string(),
                    _ => text,
                }
            }
        }
    }

    /// The `{errorType, errorMessage}` document for callers, reusing the
    /// function's own document when it sent one.
    pub fn to_error_document(&self) -> bytes::Bytes {
        if let InvokeError::Function { body, .. } = self {
            if !body.is_empty() {
                return body.clone();
            }
        }
        serde_json::to_vec(&serde_json::json!({
            "errorType": self.error_type(),
            "errorMessage": self.error_message(),
        }))
        .map(bytes::Bytes::from)
        .unwrap_or_default()
    }
}

/// Failures starting the runtime as a whole (not one invocation).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Staging a function's code failed.
    #[error("function `{function}`: cannot stage code from {path}: {source}")]
    Stage {
        /// The function.
        function: String,
        /// The directory being copied.
        path: std::path::PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The staged code is over the size limit.
    #[error("function `{function}`: code directory is over {limit} bytes or 20000 files")]
    CodeTooLarge {
        /// The function.
        function: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// `[server] isolation = "namespaces"` cannot be had on this machine.
    #[error("instances cannot be isolated here: {0}; set [server] isolation = \"none\" to run them unisolated, as this user")]
    Isolation(String),
    /// A path an instance would be shown holds the data directory.
    #[error("function `{function}`: showing {path} to instances would expose the data directory")]
    ExposesData {
        /// The function.
        function: String,
        /// The path from `runtime_paths` or the command.
        path: std::path::PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_drop_the_type_prefix() {
        let e = InvokeError::Timeout(Duration::from_millis(3000));
        assert_eq!(e.error_type(), "Sandbox.Timedout");
        assert_eq!(e.error_message(), "Task timed out after 3.00 seconds");
        let e = InvokeError::OutOfMemory(128);
        assert_eq!(
            e.error_message(),
            "runtime exited with error: signal: killed (memory limit 128 MB)"
        );
    }

    #[test]
    fn function_errors_keep_the_functions_document() {
        let body = bytes::Bytes::from_static(
            br#"{"errorType":"ValueError","errorMessage":"x","stackTrace":[]}"#,
        );
        let e = InvokeError::Function {
            error_type: "ValueError".into(),
            error_message: "x".into(),
            body: body.clone(),
        };
        assert_eq!(e.to_error_document(), body);
        let doc: serde_json::Value = serde_json::from_slice(
            &InvokeError::Crashed("exit status 3".into()).to_error_document(),
        )
        .unwrap();
        assert_eq!(doc["errorType"], "Runtime.ExitError");
        assert_eq!(
            doc["errorMessage"],
            "runtime exited with error: exit status 3"
        );
    }
}
