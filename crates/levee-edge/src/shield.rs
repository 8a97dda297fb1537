//! The shield stages of the pipeline, as one swappable unit: firewall rules
//! (with IP sets, rate-based rules and bans) and the account and route token
//! buckets. Built from config; replaced whole on reload (SIGHUP or the admin
//! API) without touching connections. The decisions themselves live in
//! `levee-shield`; this module only feeds them requests and turns their
//! verdicts into [`Reject`]s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use levee_config::Config;
use levee_shield::bucket::TokenBucket;
use levee_shield::firewall::{Firewall, FirewallError, Verdict};

use crate::reject::Reject;

/// Rate-based-rule state and token buckets start over on reload, as AWS WAF's
/// do when rules are edited.
#[derive(Debug)]
pub struct Shield {
    /// The compiled firewall, if `[firewall]` is configured.
    pub firewall: Option<Firewall>,
    account: Option<TokenBucket>,
    routes: HashMap<levee_config::RouteKey, TokenBucket>,
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
    pub fn throttle(&self, route_key: &str, now: Instant) -> Result<(), Reject> {
        let refuse = |limit, wait| Reject::Throttled {
            limit,
            route: Some(route_key.to_string()),
            wait,
        };
        if let Some(b) = &self.account {
            b.try_take(now).map_err(|w| refuse("throttle", w))?;
        }
        if let Some(b) = self.routes.get(route_key) {
            b.try_take(now).map_err(|w| refuse("routes.throttle", w))?;
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

/// The firewall's verdict as a stage's result: a block stops the request.
pub fn admit(verdict: Verdict) -> Result<Verdict, Reject> {
    match verdict {
        block @ Verdict::Block { .. } => Err(Reject::Firewall(block)),
        go_on => Ok(go_on),
    }
}
