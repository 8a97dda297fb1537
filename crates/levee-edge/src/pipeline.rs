//! The request pipeline of the public edge, in the order of DESIGN.md's flow:
//! client identity → HTTP conformance (501/417/400/431) → firewall (bans, rules, rate-based rules; everything that
//! needs no body) → route (404) → throttles (account, then route) → API key
//! (403), the key's throttle and quota (429) → cache (a hit, or one
//! invocation per key however many clients miss) → body with
//! the route's size limit and a minimum rate (413/408, before buffering past
//! the limit) → firewall rules that inspect the body → payload 2.0 event →
//! invoke (or, on `async` routes, enqueue and answer 202) → response mapping.
//!
//! Each stage is cheaper than the next so that a bad request dies early. This
//! module never talks to an instance directly; it only calls the scheduler's
//! [`FunctionHandle`](levee_runtime::FunctionHandle), and never decides a rule
//! itself; `levee-shield` does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use levee_meter::metrics::Decision;
use levee_queue::Queues;
use levee_runtime::InvokeRequest;
use levee_shield::firewall::{RequestView, Verdict};

use crate::apikeys::{ApiKeys, KeyCheck};
use crate::billing::{self, Billing};
use crate::cache::{EdgeCache, Fetch, Fetched};
use crate::client_ip::{first_forwarded, ClientIdentity};
use crate::conformance;
use crate::event::{build_event, EventInput};
use crate::respond;
use crate::response::map_response;
use crate::router::{RouteTarget, Router};
use crate::shield::{throttled_response, ShieldHandle};

/// How slowly a request body may arrive (slow POST defence).
#[derive(Debug, Clone, Copy)]
pub struct BodyPolicy {
    /// Bytes per second a body must average once `grace` has passed.
    pub min_rate: u64,
    /// Time allowed before the rate applies.
    pub grace: Duration,
}

/// The stages an edge runs, in the order it runs them.
#[derive(Debug)]
pub struct Stages {
    /// Durable queues, for `async = true` routes.
    pub queues: Arc<Queues>,
    /// Budgets and meters, unless `[metering] enabled = false`.
    pub billing: Option<Arc<Billing>>,
    /// Cached answers for routes with a cache policy.
    pub cache: Arc<EdgeCache>,
    /// Who the client is.
    pub identity: ClientIdentity,
    /// Firewall and throttles (swappable).
    pub shield: Arc<ShieldHandle>,
    /// Routes to functions.
    pub router: Router,
    /// API keys, plans and quotas, for routes that require a key.
    pub api_keys: Arc<ApiKeys>,
    /// How slowly a body may arrive.
    pub body: BodyPolicy,
    /// `[limits] max_headers`: hyper counts headers on HTTP/1.1 only, so the
    /// pipeline counts them again for HTTP/2.
    pub max_headers: usize,
}

/// The edge's request handler; one per server, shared by all connections.
#[derive(Debug)]
pub struct Edge {
    router: Router,
    identity: ClientIdentity,
    shield: Arc<ShieldHandle>,
    api_keys: Arc<ApiKeys>,
    cache: Arc<EdgeCache>,
    billing: Option<Arc<Billing>>,
    queues: Arc<Queues>,
    body: BodyPolicy,
    max_headers: usize,
}

impl Edge {
    /// An edge running `stages`.
    pub fn new(stages: Stages) -> Self {
        Self {
            router: stages.router,
            identity: stages.identity,
            shield: stages.shield,
            api_keys: stages.api_keys,
            cache: stages.cache,
            billing: stages.billing,
            queues: stages.queues,
            body: stages.body,
            max_headers: stages.max_headers,
        }
    }

    /// Handles one request from `peer`. Never fails: every problem becomes a
    /// response with the right status.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Bytes>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let mut info = RequestInfo {
            client_ip: peer.ip(),
            route: None,
            function: None,
            key_id: None,
            decision: Decision::Allowed,
        };
        let mut resp = self.stages(req, peer, &mut info).await;
        if resp.extensions().get::<OverBudget>().is_some() {
            info.decision = Decision::OverBudget;
        } else if info.decision == Decision::Allowed
            && matches!(
                resp.extensions().get::<crate::cache::XCache>(),
                Some(crate::cache::XCache::Hit | crate::cache::XCache::Stale)
            )
        {
            info.decision = Decision::Cached;
        }
        resp.extensions_mut().insert(info);
        resp
    }

    /// The stages, in order; `info` records what they decided.
    async fn stages<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
        info: &mut RequestInfo,
    ) -> Response<Bytes>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let now = Instant::now();
        let client_ip = self.identity.resolve(peer.ip(), req.headers());
        info.client_ip = client_ip;
        if let Some(refused) = conformance::refusal(req.method(), req.headers(), self.max_headers) {
            info.decision = Decision::Malformed;
            return refused;
        }
        let shield = self.shield.load();
        let mut pending = None;
        if let Some(fw) = &shield.firewall {
            let v = request_view(client_ip, req.method(), req.uri(), req.headers(), None);
            match fw.evaluate(&v, now) {
                Verdict::Allow { .. } => {}
                Verdict::NeedBody(cont) => pending = Some(cont),
                blocked => {
                    info.decision = Decision::FirewallBlocked;
                    return block_response(blocked);
                }
            }
        }

        let Some((target, params)) = self.router.lookup(req.method(), req.uri().path()) else {
            info.decision = Decision::NotFound;
            return respond::not_found();
        };
        info.route = Some(target.route_key.clone());
        info.function = Some(target.function.config().name.clone());
        if let Err(t) = shield.throttle(&target.route_key, now) {
            info.decision = Decision::Throttled;
            return throttled_response(t, &target.route_key);
        }
        let mut key_headers = Vec::new();
        if target.api_key_required {
            match self.api_keys.check(&target.route_key, req.headers(), now) {
                KeyCheck::Admitted { key_id, headers } => {
                    info.key_id = Some(key_id);
                    key_headers = headers;
                }
                KeyCheck::Refused(resp, decision) => {
                    info.decision = decision;
                    return resp;
                }
            }
        }
        if let Some(policy) = target.cache.clone() {
            if self.cache.applies(&policy, req.method(), req.headers()) {
                let (parts, _) = req.into_parts();
                // GET and HEAD bodies are not read; body rules see none.
                if let (Some(cont), Some(fw)) = (pending, &shield.firewall) {
                    let v = request_view(
                        client_ip,
                        &parts.method,
                        &parts.uri,
                        &parts.headers,
                        Some(&[]),
                    );
                    if let blocked @ Verdict::Block { .. } = fw.resume(cont, &v, now) {
                        info.decision = Decision::FirewallBlocked;
                        return block_response(blocked);
                    }
                }
                let request_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
                let (uri, headers) =
                    crate::cache::keyed_request(&policy, &parts.uri, &parts.headers);
                let call = Call {
                    target,
                    method: parts.method.clone(),
                    uri,
                    version: parts.version,
                    headers,
                    body: Bytes::new(),
                    params,
                    client_ip,
                    request_id,
                    billing: self.billing.clone(),
                    key_id: info.key_id.clone(),
                };
                return self.cached(call, &policy, &parts, key_headers).await;
            }
        }

        let limit = target.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            info.decision = Decision::TooLarge;
            return respond::too_large(limit);
        }
        let (parts, body) = req.into_parts();
        let body = match read_body(body, limit, self.body).await {
            Ok(b) => b,
            Err(resp) => {
                info.decision = match resp.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => Decision::TooLarge,
                    StatusCode::REQUEST_TIMEOUT => Decision::SlowClient,
                    _ => Decision::Allowed,
                };
                return resp;
            }
        };
        if let (Some(cont), Some(fw)) = (pending, &shield.firewall) {
            let inspect = &body[..body.len().min(fw.body_inspection_bytes().unwrap_or(0))];
            let v = request_view(
                client_ip,
                &parts.method,
                &parts.uri,
                &parts.headers,
                Some(inspect),
            );
            if let blocked @ Verdict::Block { .. } = fw.resume(cont, &v, now) {
                info.decision = Decision::FirewallBlocked;
                return block_response(blocked);
            }
        }

        let request_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
        if let Some(queue) = target.queue.clone() {
            let resp = self
                .enqueue(
                    &queue,
                    &target,
                    &parts,
                    &body,
                    &params,
                    client_ip,
                    &request_id,
                )
                .await;
            return finish(resp, &request_id, key_headers);
        }
        let call = Call {
            target,
            method: parts.method,
            uri: parts.uri,
            version: parts.version,
            headers: parts.headers,
            body,
            params,
            client_ip,
            request_id: Arc::clone(&request_id),
            billing: self.billing.clone(),
            key_id: info.key_id.clone(),
        };
        let resp = call.run().await.unwrap_or_else(|failed| failed);
        finish(resp, &request_id, key_headers)
    }

    /// An async route: the payload 2.0 event goes to the route's queue, to
    /// be drained in batches by the queue's event source; the client gets
    /// 202 with the message id at once, or 503 when the queue is full.
    #[allow(clippy::too_many_arguments)]
    async fn enqueue(
        &self,
        queue: &str,
        target: &RouteTarget,
        parts: &http::request::Parts,
        body: &Bytes,
        params: &[(String, String)],
        client_ip: std::net::IpAddr,
        request_id: &str,
    ) -> Response<Bytes> {
        let event = build_event(&EventInput {
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            headers: &parts.headers,
            body,
            source_ip: client_ip,
            route_key: &target.route_key,
            path_params: params,
            request_id,
            now: SystemTime::now(),
        });
        let Ok(event) = event else {
            return respond::bad_request("could not build the event for this request");
        };
        match self
            .queues
            .send(queue, Bytes::from(event), Default::default())
            .await
        {
            Ok(sent) => respond::json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "messageId": sent.message_id, "md5OfBody": sent.md5_of_body }),
            ),
            Err(e) if e.aws_code().status == 503 => {
                let mut r = respond::message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service Unavailable: the route's queue is full",
                );
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(respond::RETRY_AFTER_SECS),
                );
                r
            }
            Err(levee_queue::QueueError::MessageTooLong { max, .. }) => {
                respond::too_large(max as u64)
            }
            // Content the queue refuses (characters SQS does not allow); the
            // message names the character, never the queue. Every other
            // queue error is the platform's, and names internal resources.
            Err(e @ levee_queue::QueueError::InvalidMessageContents { .. }) => {
                respond::bad_request(&e.to_string())
            }
            Err(e) => {
                tracing::error!(queue, error = %e, "async route could not enqueue");
                respond::message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }

    /// A cacheable request: answered by the cache, which runs `call` only
    /// on a miss (once per key, however many clients ask).
    async fn cached(
        &self,
        call: Call,
        policy: &levee_config::CachePolicy,
        parts: &http::request::Parts,
        key_headers: Vec<(http::HeaderName, HeaderValue)>,
    ) -> Response<Bytes> {
        let request_id = Arc::clone(&call.request_id);
        let route_key = call.target.route_key.clone();
        let fetch: Fetch = Box::new(move || Box::pin(call.run()));
        let resp = self.cache.serve(&route_key, policy, parts, fetch).await;
        finish(resp, &request_id, key_headers)
    }
}

/// What the pipeline decided about one request, attached to its response for
/// the listener's metrics and access log.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The client, after trusted-proxy resolution.
    pub client_ip: std::net::IpAddr,
    /// The matched route key.
    pub route: Option<String>,
    /// The route's function.
    pub function: Option<String>,
    /// The API key id, when a key was required and valid.
    pub key_id: Option<String>,
    /// Which stage answered.
    pub decision: Decision,
}

/// Marks a response as a budget refusal (set where the budget is checked,
/// which may be inside the cache's fill).
#[derive(Debug, Clone, Copy)]
struct OverBudget;

/// Adds the request id and the key stage's headers to an answer.
fn finish(
    mut resp: Response<Bytes>,
    request_id: &str,
    key_headers: Vec<(http::HeaderName, HeaderValue)>,
) -> Response<Bytes> {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("apigw-requestid", v);
    }
    for (name, value) in key_headers {
        resp.headers_mut().insert(name, value);
    }
    resp
}

/// One invocation of a route's function, owned, so the cache can run it
/// later (a background refresh) without the request that caused it.
struct Call {
    target: Arc<RouteTarget>,
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: HeaderMap,
    body: Bytes,
    params: Vec<(String, String)>,
    client_ip: std::net::IpAddr,
    request_id: Arc<str>,
    billing: Option<Arc<Billing>>,
    key_id: Option<String>,
}

impl Call {
    /// `Ok` with the function's answer mapped by the payload 2.0 rules
    /// (whatever its status), `Err` with the platform's answer when there
    /// was none (throttled, timed out, crashed, malformed).
    async fn run(self) -> Fetched {
        let event = build_event(&EventInput {
            method: &self.method,
            uri: &self.uri,
            version: self.version,
            headers: &self.headers,
            body: &self.body,
            source_ip: self.client_ip,
            route_key: &self.target.route_key,
            path_params: &self.params,
            request_id: &self.request_id,
            now: SystemTime::now(),
        })
        .map_err(|_| respond::bad_request("could not build the event for this request"))?;
        let function = &self.target.function;
        let name = &function.config().name;
        let key = self.key_id.as_deref();
        let request = InvokeRequest {
            request_id: Arc::clone(&self.request_id),
            payload: Bytes::from(event),
            client_context: None,
        };
        let route = Some(self.target.route_key.as_str());
        let result = billing::invoke(self.billing.as_deref(), function, request, route, key)
            .await
            .map_err(|refusal| {
                let mut resp = refusal.into_response();
                resp.extensions_mut().insert(OverBudget);
                resp
            })?;
        let out = result
            .map_err(|e| {
                tracing::debug!(function = %name, request_id = %self.request_id, error = %e, "invocation failed");
                respond::invoke_error(name, &e)
            })?;
        map_response(&out.payload).map_err(|e| respond::bad_function_response(&e.to_string()))
    }
}

/// What the firewall may look at.
fn request_view<'a>(
    client_ip: std::net::IpAddr,
    method: &'a http::Method,
    uri: &'a http::Uri,
    headers: &'a HeaderMap,
    body: Option<&'a [u8]>,
) -> RequestView<'a> {
    RequestView {
        client_ip,
        forwarded_ip: first_forwarded(headers),
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers,
        body,
        api_key: headers.get("x-api-key").and_then(|v| v.to_str().ok()),
    }
}

/// Reads a body of at most `limit` bytes (413 past it, without buffering
/// more), arriving no slower than the policy allows (408 otherwise: the
/// allowance is `grace` plus one second per `min_rate` bytes received).
async fn read_body<B>(body: B, limit: u64, policy: BodyPolicy) -> Result<Bytes, Response<Bytes>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = tokio::time::Instant::now();
    let mut body = std::pin::pin!(body);
    let mut buf = BytesMut::new();
    loop {
        let allowance =
            policy.grace + Duration::from_secs_f64(buf.len() as f64 / policy.min_rate as f64);
        let frame = match tokio::time::timeout_at(started + allowance, body.frame()).await {
            Err(_) => {
                return Err(respond::message(
                    StatusCode::REQUEST_TIMEOUT,
                    "Request Timeout: the body arrived too slowly",
                ))
            }
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => {
                return Err(respond::bad_request("could not read the request body"))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(respond::too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
}

/// The firewall's block, as the client sees it.
fn block_response(verdict: Verdict) -> Response<Bytes> {
    let Verdict::Block {
        rule,
        status,
        body,
        content_type,
        headers,
        retry_after,
    } = verdict
    else {
        return respond::message(StatusCode::FORBIDDEN, "Forbidden");
    };
    tracing::debug!(rule = %rule, status, "firewall blocked a request");
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    for (name, value) in headers.iter() {
        resp.headers_mut().append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    if let Some(wait) = retry_after {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
