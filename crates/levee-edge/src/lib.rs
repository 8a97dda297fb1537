//! levee-edge: the HTTP side of Levee.
//!
//! [`listener`] accepts connections, [`pipeline`] runs each request through
//! the stages in order, each returning a [`reject::Reject`] when it stops
//! the request, [`router`] matches routes, [`event`] and [`response`] speak
//! API Gateway's payload format 2.0, [`respond`] builds the edge's own
//! answers, [`invocation`] is the one way any path runs a function, and
//! [`admin`] serves the Invoke, SQS and admin APIs on the admin listener.
//! Instances and scheduling live in `levee-runtime`.

pub mod admin;
pub mod apikeys;
pub mod authorizer;
pub mod billing;
pub mod cache;
pub mod client_ip;
pub mod clock;
mod conformance;
pub mod cors;
pub mod event;
pub mod fetch;
pub mod guard;
mod h2_watch;
pub mod invocation;
pub mod listener;
pub mod pipeline;
pub mod queueing;
pub mod reject;
pub mod respond;
pub mod response;
pub mod router;
pub mod shield;
pub mod tls;
pub mod watch;

pub use pipeline::{BodyPolicy, Edge, RequestInfo, Stages};
pub use router::Router;
