//! `[plans.NAME]`: usage plans declared in levee.toml (more can be created
//! through the admin API), and `api_key_required` on routes. A plan gives
//! every API key on it a throttle (token bucket) and a quota (requests per
//! UTC day, week or month), optionally overridden per route. This module only
//! checks the shape and ranges; the store owns plans at run time.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::guard::{self, Throttle};
use crate::problems::{Found, KeyPath};
use levee_common::name::PlanName;

/// Most plans in a config file.
const MAX_PLANS: usize = 1000;

/// A quota period, in UTC. Lowercase like every enumerated value in
/// levee.toml; API Gateway's uppercase spelling is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaPeriod {
    /// Calendar day.
    #[serde(alias = "DAY")]
    Day,
    /// Week.
    #[serde(alias = "WEEK")]
    Week,
    /// Calendar month.
    #[serde(alias = "MONTH")]
    Month,
}

/// A quota: at most `limit` requests per `period`; `offset` shifts where the
/// period starts (its meaning per period is the store's; see levee-store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests per period, ≥ 1.
    pub limit: u64,
    /// The period.
    pub period: QuotaPeriod,
    /// Where the period starts.
    pub offset: u32,
}

/// A plan's throttle and quota for one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanLimits {
    /// Per-key token bucket.
    pub throttle: Option<Throttle>,
    /// Per-key quota.
    pub quota: Option<Quota>,
}

/// One `[plans.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The table key.
    pub name: levee_common::name::PlanName,
    /// Limits on every route.
    pub limits: PlanLimits,
    /// Per-route overrides, by route key (`"GET /hello/{name}"`).
    pub routes: BTreeMap<String, PlanLimits>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQuota {
    limit: u64,
    period: QuotaPeriod,
    #[serde(default)]
    offset: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    throttle: Option<guard::RawThrottle>,
    quota: Option<RawQuota>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlan {
    throttle: Option<guard::RawThrottle>,
    quota: Option<RawQuota>,
    #[serde(default)]
    routes: BTreeMap<String, RawLimits>,
}

/// A plan's (or one route override's) throttle and quota; keys relative
/// to the table holding them.
fn limits(
    throttle: Option<guard::RawThrottle>,
    quota: Option<RawQuota>,
    found: &mut Found,
) -> PlanLimits {
    let throttle = throttle.and_then(|t| {
        let (throttle, problems) = Found::collect(|f| guard::throttle(t, f));
        found.nest(&KeyPath::of("throttle"), problems);
        throttle
    });
    let quota = quota.and_then(|q| {
        let max_offset = match q.period {
            QuotaPeriod::Day => 23,
            QuotaPeriod::Week => 6,
            QuotaPeriod::Month => 27,
        };
        if q.limit == 0 {
            found.push(KeyPath::of("quota").key("limit"), "must be at least 1");
            None
        } else if q.offset > max_offset {
            found.push(
                KeyPath::of("quota").key("offset"),
                format!("must be between 0 and {max_offset} for {:?}", q.period),
            );
            None
        } else {
            Some(Quota {
                limit: q.limit,
                period: q.period,
                offset: q.offset,
            })
        }
    });
    PlanLimits { throttle, quota }
}

/// Validates one plan; `route_keys` are the configured routes' keys, which
/// overrides must name.
pub(crate) fn plan(
    name: &str,
    raw: RawPlan,
    route_keys: &[String],
    found: &mut Found,
) -> Option<Plan> {
    let checked = found.named(PlanName::parse(name));
    let base = limits(raw.throttle, raw.quota, found);
    let mut routes = BTreeMap::new();
    for (key, r) in raw.routes {
        let prefix = KeyPath::of("routes").key(&key);
        if !route_keys.contains(&key) {
            found.push(
                prefix,
                format!("no route `{key}` (route keys look like \"GET /hello/{{name}}\")"),
            );
            continue;
        }
        let (l, problems) = Found::collect(|f| limits(r.throttle, r.quota, f));
        found.nest(&prefix, problems);
        routes.insert(key, l);
    }
    Some(Plan {
        name: checked?,
        limits: base,
        routes,
    })
}

/// Whether a config has too many plans.
pub(crate) fn too_many(count: usize) -> Option<String> {
    (count > MAX_PLANS).then(|| format!("at most {MAX_PLANS} plans"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> RawPlan {
        toml_edit::de::from_str(text).unwrap()
    }

    fn plan(name: &str, raw: RawPlan, route_keys: &[String]) -> (Plan, Vec<String>) {
        let (plan, found) = Found::collect(|f| super::plan(name, raw, route_keys, f));
        (plan.expect("a valid name"), found.keys())
    }

    #[test]
    fn plans_with_throttle_quota_and_route_overrides() {
        let routes = vec!["GET /a".to_string()];
        let (p, found) = plan(
            "basic",
            raw(r#"
throttle = { rate = 10, burst = 20 }
quota = { limit = 1000, period = "DAY" }
[routes."GET /a"]
quota = { limit = 5, period = "MONTH", offset = 3 }
"#),
            &routes,
        );
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(p.limits.quota.unwrap().limit, 1000);
        assert_eq!(p.limits.throttle.unwrap().burst, 20);
        assert_eq!(p.routes["GET /a"].quota.unwrap().offset, 3);
        assert_eq!(p.routes["GET /a"].throttle, None);
    }

    // Bad names are pinned in tests/error_text.rs: a badly named entry is
    // not built at all.
    #[test]
    fn every_bad_value_names_its_key() {
        let (_, found) = plan(
            "p",
            raw(r#"
throttle = { rate = 0, burst = 1 }
quota = { limit = 0, period = "WEEK" }
[routes."GET /nope"]
[routes."GET /a"]
quota = { limit = 1, period = "WEEK", offset = 9 }
"#),
            &["GET /a".to_string()],
        );
        assert_eq!(
            found,
            [
                "throttle.rate",
                "quota.limit",
                "routes.\"GET /a\".quota.offset",
                "routes.\"GET /nope\""
            ]
        );
    }
}
