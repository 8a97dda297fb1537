//! Usage plans: what they are and which ones are valid.
//!
//! Owns: [`PlanSpec`] (the shape the admin API's JSON bodies and levee.toml
//! deserialize into), [`Plan`] (a stored plan), and [`PlanSpec::validate`],
//! the single place every plan rule and bound lives. Must never: touch
//! storage or the in-memory index — the [`crate::Store`] does that after a
//! spec has validated.

use std::collections::BTreeMap;

use levee_common::name::PlanName;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::period::Period;

/// Longest plan name, in bytes (names are ASCII).
pub const MAX_PLAN_NAME_LEN: usize = PlanName::MAX_LEN;
/// Most plans a store holds (config and API together).
pub const MAX_PLANS: usize = 10_000;
/// Most per-route overrides in one plan.
pub const MAX_ROUTES_PER_PLAN: usize = 1_000;
/// Longest route key (e.g. `GET /items/{id}`), in bytes.
pub const MAX_ROUTE_KEY_LEN: usize = 256;
/// Highest throttle rate, requests per second. Far above anything one node
/// serves; it exists so a typo like `1e300` is an error, not "unlimited".
pub const MAX_RATE: f64 = 1_000_000_000.0;
/// Highest throttle burst.
pub const MAX_BURST: u32 = 1_000_000_000;
/// Highest quota limit. Below 2^53 so it survives a round trip through a
/// JavaScript client as a JSON number, and far below `i64::MAX` so counts
/// fit SQLite's integers.
pub const MAX_QUOTA_LIMIT: u64 = 1_000_000_000_000_000;

/// Token-bucket throttle: `rate` tokens per second refill a bucket of
/// `burst` tokens; one request takes one token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleSpec {
    pub rate: f64,
    pub burst: u32,
}

/// A request quota per period; see [`crate::period`] for what `offset` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    pub limit: u64,
    pub period: Period,
    #[serde(default)]
    pub offset: u32,
}

/// Limits for one route of a plan, replacing the plan-wide ones there.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaSpec>,
}

/// A usage plan as written by an admin or in levee.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaSpec>,
    /// Route key (`METHOD /path`) → override.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, RouteOverride>,
}

/// Where a plan came from, which decides who may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanSource {
    /// levee.toml: changed only by editing the file; the API refuses.
    Config,
    /// The admin API.
    Api,
}

impl PlanSource {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PlanSource::Config => "config",
            PlanSource::Api => "api",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "config" => Some(PlanSource::Config),
            "api" => Some(PlanSource::Api),
            _ => None,
        }
    }
}

/// A stored plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    #[serde(flatten)]
    pub spec: PlanSpec,
    pub source: PlanSource,
    pub created_at: i64,
}

impl PlanSpec {
    /// A plan with no limits at all, named `name`.
    pub fn named(name: impl Into<String>) -> Self {
        PlanSpec {
            name: name.into(),
            throttle: None,
            quota: None,
            routes: BTreeMap::new(),
        }
    }

    /// Checks every rule; the error's `field` names the offending field as
    /// a path (`routes["GET /x"].quota.offset`).
    pub fn validate(&self) -> Result<(), StoreError> {
        validate_plan_name(&self.name)?;
        if let Some(t) = &self.throttle {
            validate_throttle("throttle", t)?;
        }
        if let Some(q) = &self.quota {
            validate_quota("quota", q)?;
        }
        if self.routes.len() > MAX_ROUTES_PER_PLAN {
            return Err(StoreError::invalid(
                "routes",
                format!("at most {MAX_ROUTES_PER_PLAN} route overrides per plan"),
            ));
        }
        for (route, o) in &self.routes {
            validate_route_key(route)?;
            // The route key is already checked, so quoting it in a field path
            // is safe and bounded.
            let at = format!("routes[\"{route}\"]");
            if o.throttle.is_none() && o.quota.is_none() {
                return Err(StoreError::invalid(
                    at,
                    "a route override must set throttle, quota or both",
                ));
            }
            if let Some(t) = &o.throttle {
                validate_throttle(&format!("{at}.throttle"), t)?;
            }
            if let Some(q) = &o.quota {
                validate_quota(&format!("{at}.quota"), q)?;
            }
        }
        Ok(())
    }
}

/// 1–64 characters of `[A-Za-z0-9_-]`: [`PlanName`]'s rule, which
/// levee.toml's plans follow too.
pub fn validate_plan_name(name: &str) -> Result<(), StoreError> {
    PlanName::parse(name)
        .map(|_| ())
        .map_err(|e| StoreError::invalid("name", e.to_string()))
}

fn validate_route_key(route: &str) -> Result<(), StoreError> {
    if route.is_empty() || route.len() > MAX_ROUTE_KEY_LEN {
        return Err(StoreError::invalid(
            "routes",
            format!("route keys must be 1 to {MAX_ROUTE_KEY_LEN} bytes"),
        ));
    }
    if route.chars().any(char::is_control) {
        return Err(StoreError::invalid(
            "routes",
            "route keys may not contain control characters",
        ));
    }
    Ok(())
}

fn validate_throttle(at: &str, t: &ThrottleSpec) -> Result<(), StoreError> {
    // `!(x > 0)` rather than `x <= 0` so NaN is refused too.
    if !(t.rate > 0.0 && t.rate <= MAX_RATE) {
        return Err(StoreError::invalid(
            format!("{at}.rate"),
            format!("must be a number above 0 and at most {MAX_RATE}"),
        ));
    }
    if t.burst == 0 || t.burst > MAX_BURST {
        return Err(StoreError::invalid(
            format!("{at}.burst"),
            format!("must be 1 to {MAX_BURST}"),
        ));
    }
    Ok(())
}

fn validate_quota(at: &str, q: &QuotaSpec) -> Result<(), StoreError> {
    if q.limit == 0 || q.limit > MAX_QUOTA_LIMIT {
        return Err(StoreError::invalid(
            format!("{at}.limit"),
            format!("must be 1 to {MAX_QUOTA_LIMIT}"),
        ));
    }
    let max = q.period.max_offset();
    if q.offset > max {
        return Err(StoreError::invalid(
            format!("{at}.offset"),
            format!(
                "for {:?} it is {}: 0 to {max}",
                q.period,
                q.period.offset_unit()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(spec: &PlanSpec) -> String {
        match spec.validate() {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn full() -> PlanSpec {
        let mut s = PlanSpec::named("gold-1_A");
        s.throttle = Some(ThrottleSpec {
            rate: 10.5,
            burst: 20,
        });
        s.quota = Some(QuotaSpec {
            limit: 1000,
            period: Period::Month,
            offset: 27,
        });
        s.routes.insert(
            "GET /items/{id}".into(),
            RouteOverride {
                throttle: Some(ThrottleSpec {
                    rate: 1.0,
                    burst: 1,
                }),
                quota: None,
            },
        );
        s
    }

    #[test]
    fn a_full_plan_is_valid() {
        assert!(full().validate().is_ok());
        assert!(PlanSpec::named("x").validate().is_ok());
    }

    #[test]
    fn names_are_bounded_and_restricted() {
        assert_eq!(field_of(&PlanSpec::named("")), "name");
        assert_eq!(field_of(&PlanSpec::named("a".repeat(65))), "name");
        assert!(PlanSpec::named("a".repeat(64)).validate().is_ok());
        assert_eq!(field_of(&PlanSpec::named("has space")), "name");
        assert_eq!(field_of(&PlanSpec::named("é")), "name");
    }

    #[test]
    fn throttle_rules_name_their_field() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e9] {
            let mut s = full();
            s.throttle = Some(ThrottleSpec { rate, burst: 1 });
            assert_eq!(field_of(&s), "throttle.rate", "rate {rate}");
        }
        let mut s = full();
        s.throttle = Some(ThrottleSpec {
            rate: 1.0,
            burst: 0,
        });
        assert_eq!(field_of(&s), "throttle.burst");
    }

    #[test]
    fn quota_rules_name_their_field() {
        let mut s = full();
        s.quota = Some(QuotaSpec {
            limit: 0,
            period: Period::Day,
            offset: 0,
        });
        assert_eq!(field_of(&s), "quota.limit");
        for (period, bad) in [(Period::Day, 24), (Period::Week, 7), (Period::Month, 28)] {
            s.quota = Some(QuotaSpec {
                limit: 1,
                period,
                offset: bad,
            });
            assert_eq!(field_of(&s), "quota.offset", "{period:?}");
            s.quota = Some(QuotaSpec {
                limit: 1,
                period,
                offset: bad - 1,
            });
            assert!(s.validate().is_ok(), "{period:?} {}", bad - 1);
        }
    }

    #[test]
    fn route_overrides_are_checked_and_bounded() {
        let mut s = full();
        s.routes.insert("POST /x".into(), RouteOverride::default());
        assert_eq!(field_of(&s), "routes[\"POST /x\"]");

        let mut s = full();
        s.routes.insert(
            "POST /x".into(),
            RouteOverride {
                throttle: None,
                quota: Some(QuotaSpec {
                    limit: 1,
                    period: Period::Week,
                    offset: 9,
                }),
            },
        );
        assert_eq!(field_of(&s), "routes[\"POST /x\"].quota.offset");

        let mut s = full();
        s.routes
            .insert("GET /\n".into(), full().routes["GET /items/{id}"].clone());
        assert_eq!(field_of(&s), "routes");

        let mut s = PlanSpec::named("many");
        let o = full().routes["GET /items/{id}"].clone();
        for i in 0..=MAX_ROUTES_PER_PLAN {
            s.routes.insert(format!("GET /r{i}"), o.clone());
        }
        assert_eq!(field_of(&s), "routes");
    }

    #[test]
    fn json_round_trips_and_unknown_fields_are_refused() {
        let s = full();
        let json = serde_json::to_string(&s).expect("serializes");
        assert!(json.contains("\"MONTH\""), "{json}");
        let back: PlanSpec = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, s);
        let typo = r#"{"name":"a","quota":{"limit":1,"period":"DAY","ofset":2}}"#;
        assert!(serde_json::from_str::<PlanSpec>(typo).is_err());
        let typo = r#"{"name":"a","throtle":{"rate":1,"burst":1}}"#;
        assert!(serde_json::from_str::<PlanSpec>(typo).is_err());
        let minimal: PlanSpec = serde_json::from_str(r#"{"name":"a"}"#).expect("parses");
        assert_eq!(minimal, PlanSpec::named("a"));
    }

    #[test]
    fn a_stored_plan_serializes_flat_with_its_source() {
        let p = Plan {
            spec: PlanSpec::named("p"),
            source: PlanSource::Config,
            created_at: 7,
        };
        let v = serde_json::to_value(&p).expect("serializes");
        assert_eq!(v["name"], "p");
        assert_eq!(v["source"], "config");
        assert_eq!(v["created_at"], 7);
    }
}
