//! The request pipeline of the public edge, in the order of DESIGN.md's flow:
//! route (404 before any work) → body with the route's limit (413 before
//! buffering past it) → payload 2.0 event → invoke → response mapping.
//!
//! Each stage is cheaper than the next so that a bad request dies early. The
//! shield stages (firewall, keys, throttles, cache) slot in between route and
//! body as they land. This module never talks to an instance directly; it only
//! calls the scheduler's [`FunctionHandle`](levee_runtime::FunctionHandle).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Limited};
use levee_runtime::InvokeRequest;

use crate::event::{build_event, EventInput};
use crate::respond;
use crate::response::map_response;
use crate::router::Router;

/// The edge's request handler; one per server, shared by all connections.
#[derive(Debug)]
pub struct Edge {
    router: Router,
}

impl Edge {
    /// An edge serving `router`.
    pub fn new(router: Router) -> Self {
        Self { router }
    }

    /// Handles one request from `peer`. Never fails: every problem becomes a
    /// response with the right status.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Bytes>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let Some((target, params)) = self.router.lookup(req.method(), req.uri().path()) else {
            return respond::not_found();
        };
        let limit = target.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return respond::too_large(limit);
        }
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return respond::too_large(limit)
            }
            Err(_) => return respond::bad_request("could not read the request body"),
        };

        let request_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
        let event = build_event(&EventInput {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
            body: &body,
            source_ip: peer.ip(),
            route_key: &target.route_key,
            path_params: &params,
            request_id: &request_id,
            now: SystemTime::now(),
        });
        let event = match event {
            Ok(e) => Bytes::from(e),
            Err(_) => return respond::bad_request("could not build the event for this request"),
        };

        let name = &target.function.config().name;
        let invoked = target
            .function
            .invoke(InvokeRequest {
                request_id: Arc::clone(&request_id),
                payload: event,
                client_context: None,
            })
            .await;
        let mut resp = match invoked {
            Ok(out) => match map_response(&out.payload) {
                Ok(resp) => resp,
                Err(e) => respond::bad_function_response(&e.to_string()),
            },
            Err(e) => {
                tracing::debug!(function = %name, request_id = %request_id, error = %e, "invocation failed");
                respond::invoke_error(name, &e)
            }
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("apigw-requestid", v);
        }
        resp
    }
}
