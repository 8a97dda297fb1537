//! levee-runtime: runs functions the way Lambda does.
//!
//! The [`Scheduler`] keeps a pool of instances per function; each instance is
//! a child process (see [`sandbox`]) speaking the Lambda Runtime API
//! 2018-06-01 to its own listener (see `runtime_api`). Concurrency limits are
//! decided in [`limits`] without I/O. This crate knows nothing of HTTP routes,
//! events or callers: it takes a payload and returns the function's answer or
//! a typed [`InvokeError`].

mod error;
mod forward;
mod instance;
pub mod limits;
mod logs;
mod runtime_api;
pub mod sandbox;
mod scheduler;

pub use error::{InvokeError, RuntimeError};
pub use limits::Limit;
pub use runtime_api::MAX_RESPONSE_BYTES;
pub use scheduler::{
    function_arn, FunctionHandle, InvokeOutput, InvokeRequest, PoolStats, Scheduler,
};
