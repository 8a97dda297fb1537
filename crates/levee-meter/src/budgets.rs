//! [`Budgets`]: the configured budgets at run time.
//!
//! Owns: the hot-path check before each invocation ([`Budgets::check`],
//! memory only: meter lookups and a token bucket), the re-evaluation after
//! each metered invocation that raises alerts once per threshold per period
//! ([`Budgets::after_record`]), and [`Budgets::status`] for the admin API.
//! Must never: wait on I/O (alerts go to tracing, a metric, and the
//! [`AlertSink`]'s bounded queue), admit an invocation into a `stop` scope
//! whose finished spend has reached its limit, or decide anything itself —
//! [`crate::budget`] does, purely.
//!
//! Bounds: one entry per configured budget (levee-config allows 100), each
//! with one token bucket and 4 bytes of fired-alert bits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use levee_shield::bucket::TokenBucket;

use crate::alert::{Alert, AlertSink};
use crate::budget::{self, utc, AlertKind, BudgetDecision, BudgetStatus, Fired};
use crate::db::AlertMark;
use crate::meters::Meters;
use crate::model::{Budget, BudgetAction, BudgetScope};
use levee_common::sync::lock;

#[derive(Debug)]
struct Entry {
    budget: Budget,
    /// The throttle applied once a `throttle` budget is over its limit.
    bucket: Option<TokenBucket>,
    fired: Mutex<Fired>,
}

/// The configured budgets, evaluated against a [`Meters`].
#[derive(Debug)]
pub struct Budgets {
    entries: Vec<Entry>,
    meters: Arc<Meters>,
    alerts: AlertSink,
}

impl Budgets {
    /// Builds the budgets; keys they name get pinned meters, and alerts
    /// already fired this period (by the system clock) are not re-fired.
    pub fn new(budgets: Vec<Budget>, meters: Arc<Meters>, alerts: AlertSink) -> Arc<Budgets> {
        Self::new_at(budgets, meters, alerts, chrono::Utc::now().timestamp())
    }

    /// [`Budgets::new`] with the current time given.
    pub fn new_at(
        budgets: Vec<Budget>,
        meters: Arc<Meters>,
        alerts: AlertSink,
        now_unix: i64,
    ) -> Arc<Budgets> {
        let entries = budgets
            .into_iter()
            .map(|b| {
                if let BudgetScope::Key(k) = &b.scope {
                    meters.pin_key(k, now_unix);
                }
                let bucket = match b.action {
                    // Burst of one second's worth (at least 1): "N per
                    // second" allows no larger spike than N at once.
                    BudgetAction::Throttle { rps } => {
                        let burst = if rps.is_finite() {
                            rps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
                        } else {
                            1
                        };
                        Some(TokenBucket::new(rps, burst))
                    }
                    _ => None,
                };
                let period_start = crate::period::bounds(b.period, now_unix).0;
                let mut fired = Fired::default();
                for (kind, threshold) in meters.fired_alerts(&b.name, period_start) {
                    let kind = if kind == "forecast" {
                        AlertKind::Forecast
                    } else {
                        AlertKind::Actual
                    };
                    fired.mark(&b, period_start, kind, threshold);
                }
                Entry {
                    budget: b,
                    bucket,
                    fired: Mutex::new(fired),
                }
            })
            .collect();
        Arc::new(Budgets {
            entries,
            meters,
            alerts,
        })
    }

    /// Hot path, before invoking: may this invocation of `function` with
    /// `key` go ahead? A `stop` budget over its limit refuses at once; a
    /// `throttle` budget over its limit takes a token (`now` drives the
    /// bucket). Memory only.
    pub fn check(
        &self,
        function: &str,
        key: Option<&str>,
        now_unix: i64,
        now: Instant,
    ) -> BudgetDecision {
        let mut throttled: Option<(&str, Duration)> = None;
        for e in &self.entries {
            let b = &e.budget;
            if !b.scope.covers(function, key) {
                continue;
            }
            let spent = self.meters.spend(&b.scope, b.period, now_unix);
            if !budget::over_limit(b, spent) {
                continue;
            }
            match b.action {
                BudgetAction::Alert => {}
                BudgetAction::Stop => {
                    return BudgetDecision::Stopped {
                        budget: b.name.to_string(),
                        resets_at_unix: crate::period::bounds(b.period, now_unix).1,
                    };
                }
                BudgetAction::Throttle { .. } => {
                    if let Some(Err(wait)) = e.bucket.as_ref().map(|t| t.try_take(now)) {
                        if throttled.is_none_or(|(_, w)| wait > w) {
                            throttled = Some((&b.name, wait));
                        }
                    }
                }
            }
        }
        match throttled {
            Some((name, retry_after)) => BudgetDecision::Throttled {
                budget: name.to_owned(),
                retry_after,
            },
            None => BudgetDecision::Allow,
        }
    }

    /// After an invocation was metered: updates each covering budget's
    /// consumed-ratio gauge and raises alerts for thresholds crossed for the
    /// first time this period.
    pub fn after_record(&self, function: &str, key: Option<&str>, now_unix: i64) {
        for e in &self.entries {
            let b = &e.budget;
            if !b.scope.covers(function, key) {
                continue;
            }
            let spent = self.meters.spend(&b.scope, b.period, now_unix);
            let ev = budget::evaluate(b, spent, now_unix);
            crate::metrics::budget_ratio(&b.name, ev.ratio);
            let crossed = lock(&e.fired).crossings(b, &ev);
            for (kind, threshold) in crossed {
                self.raise(b, &ev, kind, threshold, now_unix);
            }
        }
    }

    fn raise(
        &self,
        b: &Budget,
        ev: &budget::Evaluation,
        kind: AlertKind,
        threshold: f64,
        now: i64,
    ) {
        tracing::warn!(
            target: "levee::budget",
            budget = %b.name,
            kind = kind.as_str(),
            threshold,
            spent = ev.spent,
            forecast = ev.forecast,
            limit = b.limit,
            resets_at = %utc(ev.period_end),
            "budget alert: {} spend reached {:.0} % of the limit",
            kind.as_str(),
            threshold * 100.0
        );
        crate::metrics::budget_alert(&b.name, kind.as_str(), threshold);
        self.meters.mark_alert(AlertMark {
            budget: b.name.to_string(),
            period_start: ev.period_start,
            kind: kind.as_str(),
            threshold,
            fired_at: now,
        });
        if let Some(url) = &b.webhook {
            self.alerts.send(
                url,
                &Alert {
                    budget: b.name.to_string(),
                    kind,
                    threshold,
                    spent: ev.spent,
                    forecast: ev.forecast,
                    limit: b.limit,
                    consumed_ratio: ev.ratio,
                    scope: b.scope.clone(),
                    period: b.period,
                    period_start: ev.period_start,
                    resets_at: ev.period_end,
                    action: b.action,
                    at: now,
                },
            );
        }
    }

    /// Every budget's numbers and state now, in config order.
    pub fn status(&self, now_unix: i64) -> Vec<BudgetStatus> {
        self.entries
            .iter()
            .map(|e| {
                let b = &e.budget;
                let spent = self.meters.spend(&b.scope, b.period, now_unix);
                let ev = budget::evaluate(b, spent, now_unix);
                let state = budget::state(b, &ev, &lock(&e.fired));
                BudgetStatus::of(b, &ev, state)
            })
            .collect()
    }

    /// The alert sink (its delivery counters).
    pub fn alerts(&self) -> &AlertSink {
        &self.alerts
    }
}

#[cfg(test)]
mod tests;
