//! The shield stages of the pipeline, as one swappable unit: firewall rules
//! (with IP sets, rate-based rules and bans) and the account and route token
//! buckets. Built from config; replaced whole on reload (SIGHUP or the admin
//! API) without touching connections. The decisions themselves live in
//! `levee-shield`; this module only feeds them requests and turns their
//! verdicts into responses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use levee_config::Config;
use levee_shield::bucket::TokenBucket;
use levee_shield::firewall::{Firewall, FirewallError};

/// Rate-based-rule state and token buckets start over on reload, as AWS WAF's
/// do when rules are edited.
#[derive(Debug)]
pub struct Shield {
    /// The compiled firewall, if `[firewall]` is configured.
    pub firewall: Option<Firewall>,
    account: Option<TokenBucket>,
    routes: HashMap<String, TokenBucket>,
}

/// Which throttle refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// `[throttle]`, the account-wide bucket.
    Account(Duration),
    /// The route's `throttle`.
    Route(Duration),
}

impl Shield {
    /// Compiles the shield parts of `config`.
    pub fn build(config: &Config) -> Result<Shield, FirewallError> {
        let firewall = config
            .firewall
            .as_ref()
            .map(Firewall::compile)
            .transpose()?;
        let bucket = |t: &levee_config::Throttle| TokenBucket::new(t.rate, t.burst);
        Ok(Shield {
            firewall,
            account: config.throttle.as_ref().map(bucket),
            routes: config
                .routes
                .iter()
                .filter_map(|r| Some((r.route_key.clone(), bucket(r.throttle.as_ref()?))))
                .collect(),
        })
    }

    /// Takes a token from the account bucket, then the route's.
    pub fn throttle(&self, route_key: &str, now: Instant) -> Result<(), Throttled> {
        if let Some(b) = &self.account {
            b.try_take(now).map_err(Throttled::Account)?;
        }
        if let Some(b) = self.routes.get(route_key) {
            b.try_take(now).map_err(Throttled::Route)?;
        }
        Ok(())
    }
}

/// Holds the current shield; reads are lock-free on the hot path.
#[derive(Debug)]
pub struct ShieldHandle(arc_swap::ArcSwap<Shield>);

impl ShieldHandle {
    /// Starts with `shield`.
    pub fn new(shield: Shield) -> Arc<Self> {
        Arc::new(Self(arc_swap::ArcSwap::from_pointee(shield)))
    }

    /// The shield in force now.
    pub fn load(&self) -> Arc<Shield> {
        self.0.load_full()
    }

    /// Replaces the shield; requests already running keep the old one.
    pub fn replace(&self, shield: Shield) {
        self.0.store(Arc::new(shield));
    }
}

/// 429 for a throttled request, naming the bucket.
pub fn throttled_response(t: Throttled, route_key: &str) -> Response<Bytes> {
    let (limit, wait) = match t {
        Throttled::Account(w) => ("throttle", w),
        Throttled::Route(w) => ("routes.throttle", w),
    };
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = crate::respond::json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({
            "message": "Too Many Requests",
            "limit": limit,
            "route": route_key,
            "retry_after_seconds": secs,
        }),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}
