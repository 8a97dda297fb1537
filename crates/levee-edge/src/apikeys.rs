//! The API key stage: for routes with `api_key_required`, the `x-api-key`
//! header must name an enabled key (403 `{"message":"Forbidden"}` otherwise,
//! as API Gateway answers); then the key's plan applies its throttle (a token
//! bucket per key, 429 with `Retry-After`) and its quota (429 saying the
//! quota is exhausted and when it resets). Every decision is recorded as the
//! key's usage for the day. Admitted answers carry `X-Quota-Limit`,
//! `X-Quota-Remaining` and `X-Quota-Reset`.
//!
//! It reads only memory on the hot path (the store's key index and counters);
//! it never touches SQLite itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use levee_shield::bucket::KeyedBuckets;
use levee_store::{period, quota, QuotaDecision, Store, UsageOutcome};

use crate::clock::Clock;
use crate::reject::Reject;

/// Keys tracked per throttle bucket set (a plan, or a plan's route
/// override); the store's own key limit bounds it in practice.
const MAX_KEYS_PER_BUCKETS: usize = 1_000_000;
/// Bucket sets kept (plans × overridden routes × throttle changes).
const MAX_BUCKET_SETS: usize = 10_000;

/// Identifies one throttle: its plan, route override (or none) and
/// parameters, so a plan edited through the admin API gets fresh buckets.
type BucketId = (String, Option<String>, u64, u32);

/// The stage, shared by all requests.
#[derive(Debug)]
pub struct ApiKeys {
    store: Arc<Store>,
    clock: Clock,
    buckets: Mutex<HashMap<BucketId, Arc<KeyedBuckets>>>,
}

/// A key the stage let through.
#[derive(Debug)]
pub struct Admitted {
    /// The key's id, for metering.
    pub key_id: String,
    /// `X-Quota-*`, for the answer.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiKeys {
    /// The stage over `store`.
    pub fn new(store: Arc<Store>, clock: Clock) -> Self {
        Self {
            store,
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn buckets(&self, id: BucketId) -> Arc<KeyedBuckets> {
        let mut map = levee_common::sync::lock(&self.buckets);
        if map.len() >= MAX_BUCKET_SETS && !map.contains_key(&id) {
            // Stale sets (plans edited many times): start over rather than grow.
            map.clear();
        }
        let rate = f64::from_bits(id.2);
        let burst = id.3;
        Arc::clone(
            map.entry(id)
                .or_insert_with(|| Arc::new(KeyedBuckets::new(rate, burst, MAX_KEYS_PER_BUCKETS))),
        )
    }

    /// Checks one request to `route_key`.
    pub fn check(
        &self,
        route_key: &str,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<Admitted, Reject> {
        let Some(secret) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) else {
            return Err(Reject::Forbidden);
        };
        let Some(auth) = self
            .store
            .authenticate_with_plan(secret)
            .filter(|a| a.key.enabled)
        else {
            return Err(Reject::Forbidden);
        };
        let (key, plan) = (&auth.key, &auth.plan);
        let unix = self.clock.now();
        let day = period::unix_day(unix);
        let route = plan.spec.routes.get(route_key);
        let throttle = route.and_then(|r| r.throttle).or(plan.spec.throttle);
        if let Some(t) = throttle {
            let scope = route
                .and_then(|r| r.throttle)
                .map(|_| route_key.to_string());
            let buckets = self.buckets((key.plan.clone(), scope, t.rate.to_bits(), t.burst));
            if let Err(wait) = buckets.try_take(key.id.as_bytes(), now) {
                self.store
                    .record_usage(&key.id, day, UsageOutcome::Throttled);
                return Err(Reject::Throttled {
                    limit: "plan.throttle",
                    route: None,
                    wait,
                });
            }
        }
        let mut extra = Vec::new();
        let (quota, counter) = match route.and_then(|r| r.quota) {
            Some(q) => (Some(q), quota::route_counter_id(&key.id, route_key)),
            None => (plan.spec.quota, key.id.clone()),
        };
        if let Some(q) = quota {
            let (start, end) = period::period_bounds(unix, q.period, q.offset);
            match self.store.quotas().try_consume(&counter, start, q.limit) {
                QuotaDecision::Exhausted { .. } => {
                    self.store
                        .record_usage(&key.id, day, UsageOutcome::OverQuota);
                    return Err(Reject::QuotaExhausted {
                        quota: q.limit,
                        resets_at: end,
                        now: unix,
                    });
                }
                QuotaDecision::Admitted { remaining, .. } => {
                    extra.push((
                        HeaderName::from_static("x-quota-limit"),
                        HeaderValue::from(q.limit),
                    ));
                    extra.push((
                        HeaderName::from_static("x-quota-remaining"),
                        HeaderValue::from(remaining),
                    ));
                    if let Ok(v) = HeaderValue::from_str(&crate::respond::rfc3339(end)) {
                        extra.push((HeaderName::from_static("x-quota-reset"), v));
                    }
                }
            }
        }
        self.store
            .record_usage(&key.id, day, UsageOutcome::Admitted);
        Ok(Admitted {
            key_id: key.id.clone(),
            headers: extra,
        })
    }
}
