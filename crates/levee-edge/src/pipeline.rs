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
use levee_queue::{QueueError, Queues};
use levee_runtime::InvokeRequest;
use levee_shield::auto::Outcome;
use levee_shield::firewall::{RequestView, Verdict};

use crate::apikeys::ApiKeys;
use crate::authorizer::{Ask, Granted};
use crate::cache::{EdgeCache, Fetch, XCache};
use crate::client_ip::{first_forwarded, ClientIdentity};
use crate::event::{build_event, EventInput};
use crate::invocation::{Invoke, Tags};
use crate::reject::Reject;
use crate::response::map_response;
use crate::router::{RouteTarget, Router};
use crate::shield::{self, ShieldHandle};
use crate::tls::ClientCert;
use crate::{conformance, respond};

/// How slowly a request body may arrive (slow POST defence).
#[derive(Debug, Clone, Copy)]
pub struct BodyPolicy {
    /// Bytes per second a body must average once `grace` has passed.
    pub min_rate: u64,
    /// Time allowed before the rate applies.
    pub grace: Duration,
}

/// What an edge is built from, in the order its stages run.
#[derive(Debug)]
pub struct Stages {
    /// Who the client is.
    pub identity: ClientIdentity,
    /// `[limits] max_headers`: hyper counts headers on HTTP/1.1 only, so the
    /// pipeline counts them again for HTTP/2.
    pub max_headers: usize,
    /// Firewall and throttles (swappable).
    pub shield: Arc<ShieldHandle>,
    /// Routes to functions.
    pub router: Router,
    /// API keys, plans and quotas, for routes that require a key.
    pub api_keys: Arc<ApiKeys>,
    /// How slowly a body may arrive.
    pub body: BodyPolicy,
    /// Durable queues, for `async = true` routes.
    pub queues: Arc<Queues>,
    /// Cached answers for routes with a cache policy.
    pub cache: Arc<EdgeCache>,
    /// How functions run: budgeted and metered, unless `[metering]` is off.
    pub invoker: Arc<dyn Invoke>,
    /// Automatic attack detection's sampler, unless `[auto_mitigation]` is
    /// off. It sees every request, refused ones too.
    pub watch: Option<Arc<crate::watch::Watch>>,
}

/// The edge's request handler; one per server, shared by all connections.
#[derive(Debug)]
pub struct Edge(Stages);

impl Edge {
    /// An edge running `stages`.
    pub fn new(stages: Stages) -> Self {
        Self(stages)
    }

    /// Handles one request from `peer`. Never fails: every problem becomes a
    /// response with the right status.
    pub async fn handle<B>(&self, req: Request<B>, peer: SocketAddr) -> Response<Bytes>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let mut cx = RequestInfo {
            client_ip: peer.ip(),
            route: None,
            function: None,
            key_id: None,
            request_id: None,
            key_headers: Vec::new(),
            decision: Decision::Allowed,
            rule: None,
            cors: None,
        };
        // Only a sampled request's look and path are taken; how it was
        // answered is added at the end.
        let sampled = self
            .0
            .watch
            .as_ref()
            .filter(|w| w.count())
            .map(|_| crate::watch::Asked::of(&req));
        let mut outcome = Outcome::Fine;
        let mut resp = match self.stages(req, peer, &mut cx).await {
            Ok(resp) => {
                if resp.status().is_server_error() {
                    outcome = Outcome::Failed;
                }
                resp
            }
            Err(reject) => {
                cx.decision = reject.decision();
                outcome = reject.outcome();
                if let Reject::Firewall(Verdict::Block { rule, .. }) = &reject {
                    cx.rule = Some(Arc::clone(rule));
                }
                respond::reject(reject)
            }
        };
        if let Some(id) = &cx.request_id {
            if let Ok(v) = HeaderValue::from_str(id) {
                resp.headers_mut().insert("apigw-requestid", v);
            }
            for (name, value) in cx.key_headers.drain(..) {
                resp.headers_mut().insert(name, value);
            }
        }
        if let Some((policy, origin)) = cx.cors.take() {
            policy.decorate(origin.as_ref(), resp.headers_mut());
        }
        if let (Some(watch), Some(asked)) = (&self.0.watch, sampled) {
            watch.sample(asked, &cx, resp.status(), outcome);
        }
        resp.extensions_mut().insert(cx);
        resp
    }

    /// The stages, in order, each cheaper than the next; `cx` records what
    /// they found. `Err` is the stage that stopped the request.
    async fn stages<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
        cx: &mut RequestInfo,
    ) -> Result<Response<Bytes>, Reject>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let st = &self.0;
        let now = Instant::now();
        // Who is asking: the socket, or the hop a trusted proxy vouches for.
        cx.client_ip = st.identity.resolve(peer.ip(), req.headers());
        // HTTP that hyper leaves to the server, before anything reads it.
        conformance::check(req.method(), req.headers(), st.max_headers)?;
        // The firewall on the head alone; rules that need the body resume
        // once it is read.
        let shield = st.shield.load();
        let pending = match &shield.firewall {
            Some(fw) => {
                let v = request_view(cx.client_ip, req.method(), req.uri(), req.headers(), None);
                match shield::admit(fw.evaluate(&v, now))? {
                    Verdict::NeedBody(cont) => Some(cont),
                    _ => None,
                }
            }
            None => None,
        };
        // A CORS preflight for a route with CORS is answered here, for
        // nothing.
        if let Some(asked) = crate::cors::preflight_method(req.method(), req.headers()) {
            let path = req.uri().path();
            let target = st.router.lookup(&asked, path).map(|(t, _)| t);
            if let Some(target) = target.or_else(|| st.router.any_at(path)) {
                if let Some(policy) = &target.cors {
                    cx.route = Some(target.route_key.clone());
                    cx.decision = Decision::Preflight;
                    return Ok(policy.preflight(req.headers()));
                }
            }
        }
        // Which function, before spending anything on it.
        let (target, params) = st
            .router
            .lookup(req.method(), req.uri().path())
            .ok_or(Reject::NotFound)?;
        cx.route = Some(target.route_key.clone());
        cx.function = Some(target.function.config().name.clone());
        // Every answer from here on, refusals too, carries the route's CORS.
        if let Some(policy) = &target.cors {
            cx.cors = Some((Arc::clone(policy), policy.allowed_origin(req.headers())));
        }
        // The automatic rules, after the operator's, except on exempt
        // routes and for exempt clients.
        if let Some(watch) = &st.watch {
            if let Some(auto) = watch.rules().as_ref() {
                if !watch.exempt(&target.route_key, cx.client_ip) {
                    let v =
                        request_view(cx.client_ip, req.method(), req.uri(), req.headers(), None);
                    shield::admit(auto.evaluate(&v, now))?;
                }
            }
        }
        // The account's and the route's throttles.
        shield.throttle(&target.route_key, now)?;
        // The route's authorizer: a token it accepts, with the scopes, or
        // its function's yes.
        let granted = match &target.authorizer {
            Some(authorizer) => {
                let ask = Ask {
                    method: req.method(),
                    uri: req.uri(),
                    version: req.version(),
                    headers: req.headers(),
                    client_ip: cx.client_ip,
                    route_key: &target.route_key,
                    params: &params,
                    scopes: &target.authorization_scopes,
                };
                Some(authorizer.authorize(&ask).await?)
            }
            None => None,
        };
        // The API key, its plan's throttle and quota.
        if target.api_key_required {
            let admitted = st.api_keys.check(&target.route_key, req.headers(), now)?;
            cx.key_id = Some(admitted.key_id);
            cx.key_headers = admitted.headers;
        }
        // The body, within the route's limit and the minimum rate. A request
        // the cache may answer is a GET or HEAD, whose body is not read.
        let cache = target
            .cache
            .clone()
            .filter(|policy| st.cache.applies(policy, req.method(), req.headers()));
        let (parts, body) = match cache {
            Some(_) => (req.into_parts().0, Bytes::new()),
            None => {
                let limit = target.max_body_bytes;
                if declared_length(req.headers()).is_some_and(|n| n > limit) {
                    return Err(Reject::TooLarge { limit });
                }
                let (parts, body) = req.into_parts();
                (parts, read_body(body, limit, st.body).await?)
            }
        };
        // The firewall rules that inspect the body.
        if let (Some(cont), Some(fw)) = (pending, &shield.firewall) {
            let inspect = &body[..body.len().min(fw.body_inspection_bytes().unwrap_or(0))];
            let v = request_view(
                cx.client_ip,
                &parts.method,
                &parts.uri,
                &parts.headers,
                Some(inspect),
            );
            shield::admit(fw.resume(cont, &v, now))?;
        }
        let request_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
        cx.request_id = Some(Arc::clone(&request_id));
        // An async route queues the event and answers 202.
        if let Some(queue) = target.queue.clone() {
            return self
                .enqueue(
                    &queue,
                    &target,
                    &parts,
                    &body,
                    &params,
                    cx.client_ip,
                    &request_id,
                    granted.as_ref(),
                )
                .await;
        }
        // A cached route's function sees only what its cache key holds:
        // not the client's certificate either, since its answer is shared.
        let (method, version) = (parts.method.clone(), parts.version);
        let (cached, uri, headers, client_cert) = match cache {
            Some(policy) => {
                let (uri, headers) =
                    crate::cache::keyed_request(&policy, &parts.uri, &parts.headers);
                (Some((policy, parts)), uri, headers, None)
            }
            None => {
                let cert = parts.extensions.get::<Arc<ClientCert>>().cloned();
                (None, parts.uri, parts.headers, cert)
            }
        };
        let granted = granted.filter(|_| cached.is_none());
        let call = Call {
            target,
            method,
            uri,
            version,
            headers,
            body,
            params,
            client_ip: cx.client_ip,
            client_cert,
            granted,
            request_id,
            invoker: Arc::clone(&st.invoker),
            key_id: cx.key_id.clone(),
        };
        // The cache answers a hit itself; a miss runs the same call.
        match cached {
            Some((policy, parts)) => Ok(self.cached(call, &policy, &parts, cx).await),
            None => call.run().await,
        }
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
        granted: Option<&Granted>,
    ) -> Result<Response<Bytes>, Reject> {
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
            client_cert: parts.extensions.get::<Arc<ClientCert>>().map(|c| &**c),
            authorizer: granted,
        })
        .map_err(|_| Reject::Unreadable(BAD_EVENT))?;
        match self
            .0
            .queues
            .send(queue, Bytes::from(event), Default::default())
            .await
        {
            Ok(sent) => Ok(respond::json(
                StatusCode::ACCEPTED,
                &serde_json::json!({ "messageId": sent.message_id, "md5OfBody": sent.md5_of_body }),
            )),
            Err(e) if e.aws_code().status == 503 => Err(Reject::QueueFull),
            Err(QueueError::MessageTooLong { max, .. }) => {
                Err(Reject::TooLarge { limit: max as u64 })
            }
            // Content the queue refuses (characters SQS does not allow); the
            // message names the character, never the queue. Every other
            // queue error is the platform's, and names internal resources.
            Err(e @ QueueError::InvalidMessageContents { .. }) => {
                Err(Reject::QueueRefused(e.to_string()))
            }
            Err(e) => {
                tracing::error!(queue, error = %e, "async route could not enqueue");
                Err(Reject::QueueFailed)
            }
        }
    }

    /// A cacheable request: answered by the cache, which runs `call` only
    /// on a miss (once per key, however many clients ask). The decision of
    /// a failed fill travels with its answer, which the cache may share
    /// with the requests that waited on it.
    async fn cached(
        &self,
        call: Call,
        policy: &levee_config::CachePolicy,
        parts: &http::request::Parts,
        cx: &mut RequestInfo,
    ) -> Response<Bytes> {
        let route_key = call.target.route_key.clone();
        let fetch: Fetch = Box::new(move || {
            Box::pin(async move {
                call.run().await.map_err(|reject| {
                    let decision = reject.decision();
                    let mut resp = respond::reject(reject);
                    resp.extensions_mut().insert(decision);
                    resp
                })
            })
        });
        let resp = self.0.cache.serve(&route_key, policy, parts, fetch).await;
        cx.decision = match (
            resp.extensions().get::<Decision>(),
            resp.extensions().get::<XCache>(),
        ) {
            (Some(decided), _) => *decided,
            (None, Some(XCache::Hit | XCache::Stale)) => Decision::Cached,
            _ => Decision::Allowed,
        };
        resp
    }
}

/// Why an event could not be built: a header or body the 2.0 format cannot
/// carry.
const BAD_EVENT: &str = "could not build the event for this request";

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// What the pipeline decided about one request, attached to its response for
/// the listener's metrics and access log.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The client, after trusted-proxy resolution.
    pub client_ip: std::net::IpAddr,
    /// The matched route key.
    pub route: Option<levee_config::RouteKey>,
    /// The route's function.
    pub function: Option<levee_common::name::FunctionName>,
    /// The API key id, when a key was required and valid.
    pub key_id: Option<String>,
    /// Set once the request passed every stage before the invocation; the
    /// answer carries it as `apigw-requestid`.
    pub request_id: Option<Arc<str>>,
    /// `X-Quota-*` from the key stage, for the answer.
    pub key_headers: Vec<(http::HeaderName, HeaderValue)>,
    /// Which stage answered.
    pub decision: Decision,
    /// The firewall rule that refused it, an operator's or an automatic
    /// `auto-N`, for the access log.
    pub rule: Option<Arc<str>>,
    /// The route's CORS and the request's allowed `Origin`, for the answer.
    pub cors: Option<(Arc<crate::cors::CorsPolicy>, Option<HeaderValue>)>,
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
    client_cert: Option<Arc<ClientCert>>,
    /// What the authorizer let through, for `requestContext.authorizer`.
    granted: Option<Granted>,
    request_id: Arc<str>,
    invoker: Arc<dyn Invoke>,
    key_id: Option<String>,
}

impl Call {
    /// The function's answer mapped by the payload 2.0 rules (whatever its
    /// status), or why there was none (over budget, throttled, timed out,
    /// crashed, malformed).
    async fn run(self) -> Result<Response<Bytes>, Reject> {
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
            client_cert: self.client_cert.as_deref(),
            authorizer: self.granted.as_ref(),
        })
        .map_err(|_| Reject::Unreadable(BAD_EVENT))?;
        let function = &self.target.function;
        let name = &function.config().name;
        let request = InvokeRequest {
            request_id: Arc::clone(&self.request_id),
            payload: Bytes::from(event),
            client_context: None,
            client: Some(self.client_ip),
        };
        let tags = Tags {
            route: Some(&self.target.route_key),
            key: self.key_id.as_deref(),
        };
        let out = self
            .invoker
            .invoke(function, request, tags)
            .await
            .map_err(|failure| {
                tracing::debug!(function = %name, request_id = %self.request_id, error = %failure, "invocation failed");
                Reject::invoke(name, failure)
            })?;
        map_response(&out.payload).map_err(|e| Reject::BadFunctionResponse(e.to_string()))
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
async fn read_body<B>(body: B, limit: u64, policy: BodyPolicy) -> Result<Bytes, Reject>
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
            Err(_) => return Err(Reject::SlowBody),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(_))) => return Err(Reject::Unreadable("could not read the request body")),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if (buf.len() + data.len()) as u64 > limit {
                return Err(Reject::TooLarge { limit });
            }
            buf.extend_from_slice(&data);
        }
    }
}
