//! levee-edge: the HTTP side of Levee.
//!
//! [`listener`] accepts connections, [`pipeline`] runs each request through
//! the stages of DESIGN.md's flow, [`router`] matches routes, [`event`] and
//! [`response`] speak API Gateway's payload format 2.0, [`respond`] builds the
//! edge's own answers, and [`admin`] serves the Invoke API on the admin
//! listener. Instances and scheduling live in `levee-runtime`.

pub mod admin;
pub mod apikeys;
pub mod billing;
pub mod cache;
pub mod client_ip;
pub mod clock;
mod conformance;
pub mod event;
pub mod guard;
mod h2_watch;
pub mod listener;
pub mod pipeline;
pub mod queueing;
pub mod respond;
pub mod response;
pub mod router;
pub mod shield;

pub use pipeline::{BodyPolicy, Edge, RequestInfo, Stages};
pub use router::Router;
