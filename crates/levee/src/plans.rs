//! `[plans.NAME]` from the config, as the store's plan specs.

use levee_config::{Config, PlanLimits, Quota, QuotaPeriod};
use levee_store::{Period, PlanSpec, QuotaSpec, RouteOverride, ThrottleSpec};

fn quota(q: Quota) -> QuotaSpec {
    QuotaSpec {
        limit: q.limit,
        period: match q.period {
            QuotaPeriod::Day => Period::Day,
            QuotaPeriod::Week => Period::Week,
            QuotaPeriod::Month => Period::Month,
        },
        offset: q.offset,
    }
}

fn limits(l: &PlanLimits) -> (Option<ThrottleSpec>, Option<QuotaSpec>) {
    (
        l.throttle.map(|t| ThrottleSpec {
            rate: t.rate,
            burst: t.burst,
        }),
        l.quota.map(quota),
    )
}

/// Every configured plan.
pub fn specs(config: &Config) -> Vec<PlanSpec> {
    config
        .plans
        .values()
        .map(|p| {
            let (throttle, quota) = limits(&p.limits);
            PlanSpec {
                name: p.name.to_string(),
                throttle,
                quota,
                routes: p
                    .routes
                    .iter()
                    .map(|(k, l)| {
                        let (throttle, quota) = limits(l);
                        (k.clone(), RouteOverride { throttle, quota })
                    })
                    .collect(),
            }
        })
        .collect()
}
