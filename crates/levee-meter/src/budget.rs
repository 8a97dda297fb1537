//! Budget decisions, pure: is a scope over its limit, what happens then,
//! which alert thresholds a spend has crossed, a budget's state, and
//! whether budgets are being spent fast ([`BurnGauge`]).
//!
//! Owns: the meaning of a budget given its spend and the time. Must never
//! do I/O, read a clock or meter anything: [`crate::Budgets`] feeds it spend
//! from [`crate::Meters`] and carries out what it decides.
//!
//! # The spend cap
//! A scope is over its limit when `spent >= limit`, where `spent` counts
//! finished invocations only. So when a `stop` budget refuses, spend has
//! reached the limit; every invocation admitted before that saw
//! `spent < limit`, and only those still running can add to it: spend ends
//! at most `limit + in_flight × cost_per_invocation`.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;

use crate::model::{Budget, BudgetAction, BudgetPeriod, BudgetScope};
use crate::period::{bounds, forecast};

/// Whether an invocation may go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetDecision {
    Allow,
    /// A `throttle` budget is over its limit and its bucket is empty: 429
    /// with `Retry-After` (round up to whole seconds).
    Throttled {
        budget: String,
        retry_after: Duration,
    },
    /// A `stop` budget is over its limit: 503 until `resets_at_unix`.
    Stopped {
        budget: String,
        resets_at_unix: i64,
    },
}

impl BudgetDecision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, BudgetDecision::Allow)
    }

    /// The JSON body of a refusal, naming the budget and when it resets
    /// (`None` for `Allow`).
    pub fn body(&self) -> Option<String> {
        let v = match self {
            BudgetDecision::Allow => return None,
            BudgetDecision::Throttled {
                budget,
                retry_after,
            } => serde_json::json!({
                "message": "Budget limit reached: requests are throttled",
                "budget": budget,
                "retry_after_seconds": retry_after.as_secs_f64().ceil(),
            }),
            BudgetDecision::Stopped {
                budget,
                resets_at_unix,
            } => serde_json::json!({
                "message": "Budget exhausted: invocations are stopped until the budget resets",
                "budget": budget,
                "resets_at": utc(*resets_at_unix),
                "resets_at_unix": resets_at_unix,
            }),
        };
        Some(v.to_string())
    }
}

/// RFC 3339 UTC for a unix time (empty if out of chrono's range).
pub fn utc(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A budget's state in its current period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    Ok,
    /// An alert fired this period (or an `alert` budget is over its limit).
    Alerted,
    /// Over the limit; the scope is capped to the throttle rate.
    Throttled,
    /// Over the limit; the scope is refused.
    Stopped,
}

/// Which spend an alert threshold compares against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertKind {
    Actual,
    Forecast,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Actual => "actual",
            AlertKind::Forecast => "forecast",
        }
    }
}

/// One line of `levee budgets`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    pub name: String,
    pub scope: BudgetScope,
    pub period: BudgetPeriod,
    pub limit: f64,
    pub spent: f64,
    pub forecast: f64,
    pub consumed_ratio: f64,
    pub action: BudgetAction,
    pub state: BudgetState,
    pub period_start: i64,
    /// Unix seconds when the period ends and spend starts from 0.
    pub resets_at: i64,
    /// `resets_at` as RFC 3339.
    pub resets_at_utc: String,
}

impl BudgetStatus {
    /// `b`'s line, from its evaluation and state.
    pub fn of(b: &Budget, ev: &Evaluation, state: BudgetState) -> Self {
        BudgetStatus {
            name: b.name.to_string(),
            scope: b.scope.clone(),
            period: b.period,
            limit: b.limit,
            spent: ev.spent,
            forecast: ev.forecast,
            consumed_ratio: ev.ratio,
            action: b.action,
            state,
            period_start: ev.period_start,
            resets_at: ev.period_end,
            resets_at_utc: utc(ev.period_end),
        }
    }
}

/// A budget's numbers at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub period_start: i64,
    pub period_end: i64,
    pub spent: f64,
    pub forecast: f64,
    /// spent / limit.
    pub ratio: f64,
}

/// Evaluates `b` with `spent` in the period containing `now`.
pub fn evaluate(b: &Budget, spent: f64, now: i64) -> Evaluation {
    let (period_start, period_end) = bounds(b.period, now);
    let ratio = if b.limit > 0.0 { spent / b.limit } else { 0.0 };
    Evaluation {
        period_start,
        period_end,
        spent,
        forecast: forecast(b.period, spent, now),
        ratio,
    }
}

/// Whether spend has reached the limit. NaN spend counts as over: a broken
/// number must fail closed for a spend cap.
pub fn over_limit(b: &Budget, spent: f64) -> bool {
    spent.partial_cmp(&b.limit) != Some(std::cmp::Ordering::Less)
}

/// The alert thresholds already fired in one period: bit `i` = threshold
/// `i` of the (at most 10, sorted) list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fired {
    pub period_start: i64,
    actual: u16,
    forecast: u16,
}

/// Bits for at most 16 thresholds; config allows 10.
const MAX_TRACKED: usize = 16;

impl Fired {
    /// Moves to `period_start` if it is later (a new period re-arms every
    /// threshold; an earlier one — clock stepped back — changes nothing).
    fn roll(&mut self, period_start: i64) {
        if period_start > self.period_start {
            *self = Fired {
                period_start,
                ..Fired::default()
            };
        }
    }

    /// Records a threshold that fired before (e.g. loaded after a restart).
    pub fn mark(&mut self, b: &Budget, period_start: i64, kind: AlertKind, threshold: f64) {
        self.roll(period_start);
        let (list, bits) = match kind {
            AlertKind::Actual => (&b.alerts, &mut self.actual),
            AlertKind::Forecast => (&b.forecast_alerts, &mut self.forecast),
        };
        if let Some(i) = list.iter().take(MAX_TRACKED).position(|t| *t == threshold) {
            *bits |= 1 << i;
        }
    }

    /// Thresholds crossed now and not fired before in this period; they are
    /// marked fired.
    pub fn crossings(&mut self, b: &Budget, ev: &Evaluation) -> Vec<(AlertKind, f64)> {
        self.roll(ev.period_start);
        let mut out = Vec::new();
        for (kind, list, value) in [
            (AlertKind::Actual, &b.alerts, ev.spent),
            (AlertKind::Forecast, &b.forecast_alerts, ev.forecast),
        ] {
            let bits = match kind {
                AlertKind::Actual => &mut self.actual,
                AlertKind::Forecast => &mut self.forecast,
            };
            for (i, t) in list.iter().take(MAX_TRACKED).enumerate() {
                if *bits & (1 << i) == 0 && value >= t * b.limit {
                    *bits |= 1 << i;
                    out.push((kind, *t));
                }
            }
        }
        out
    }

    /// Whether anything fired in the period starting at `period_start`.
    pub fn any(&self, period_start: i64) -> bool {
        self.period_start == period_start && (self.actual | self.forecast) != 0
    }
}

/// A budget's state given its evaluation and fired alerts.
pub fn state(b: &Budget, ev: &Evaluation, fired: &Fired) -> BudgetState {
    if over_limit(b, ev.spent) {
        return match b.action {
            BudgetAction::Stop => BudgetState::Stopped,
            BudgetAction::Throttle { .. } => BudgetState::Throttled,
            BudgetAction::Alert => BudgetState::Alerted,
        };
    }
    if fired.any(ev.period_start) {
        BudgetState::Alerted
    } else {
        BudgetState::Ok
    }
}

/// Seconds of spend a burn rate is measured over.
pub const BURN_WINDOW_SECS: i64 = 5;
/// A budget burns fast when spent at this many times the rate that would
/// use exactly its limit over its period: the SRE workbook's fast-burn
/// alert (2 % of a 30-day budget in an hour).
pub const FAST_BURN: f64 = 14.4;

/// Whether any budget is being spent fast, from the budgets' spend read
/// once a second. Holds at most `BURN_WINDOW_SECS + 1` readings of each.
#[derive(Debug, Default)]
pub struct BurnGauge {
    readings: VecDeque<(i64, Vec<f64>)>,
}

impl BurnGauge {
    /// Takes this second's reading; whether some budget's spend over the
    /// window, at that rate, would use [`FAST_BURN`] times its limit in
    /// its period. A period's reset (spend falling) is no burn.
    pub fn observe(&mut self, now: i64, budgets: &[BudgetStatus]) -> bool {
        self.readings
            .push_back((now, budgets.iter().map(|b| b.spent).collect()));
        while self
            .readings
            .front()
            .is_some_and(|(t, _)| now - t > BURN_WINDOW_SECS)
        {
            self.readings.pop_front();
        }
        let Some((then, before)) = self.readings.front() else {
            return false;
        };
        let secs = (now - then) as f64;
        if secs <= 0.0 {
            return false;
        }
        budgets.iter().zip(before).any(|(b, spent_then)| {
            let rate = (b.spent - spent_then).max(0.0) / secs;
            let period = (b.resets_at - b.period_start).max(1) as f64;
            rate * period > FAST_BURN * b.limit
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::period::DAY;

    fn status(spent: f64) -> BudgetStatus {
        let b = budget(BudgetAction::Alert);
        BudgetStatus::of(&b, &evaluate(&b, spent, NOON), BudgetState::Ok)
    }

    #[test]
    fn a_fast_burn_is_spend_at_14_times_the_rate_the_limit_allows() {
        // $10 a day allows $0.000116 a second; 14.4 times that is
        // $0.00167 a second.
        let mut g = BurnGauge::default();
        let mut spent = 1.0;
        for t in 0..10 {
            assert!(!g.observe(NOON + t, &[status(spent)]), "{t}");
            spent += 0.001;
        }
        // Then $0.002 a second: the 5 s window's average crosses at 12.
        for t in 10..14 {
            spent += 0.002;
            let burning = g.observe(NOON + t, &[status(spent)]);
            assert_eq!(burning, t >= 12, "{t}");
        }
        // A reset (spend back to 0) is no burn, and the window is bounded.
        assert!(!g.observe(NOON + 14, &[status(0.0)]));
        assert!(g.readings.len() <= BURN_WINDOW_SECS as usize + 1);
        assert!(!BurnGauge::default().observe(NOON, &[]));
    }

    fn budget(action: BudgetAction) -> Budget {
        Budget {
            name: levee_common::name::BudgetName::parse("b").unwrap(),
            scope: BudgetScope::All,
            period: BudgetPeriod::Day,
            limit: 10.0,
            alerts: vec![0.5, 0.8, 1.0],
            forecast_alerts: vec![1.0],
            action,
            webhook: None,
        }
    }

    const NOON: i64 = 20_000 * DAY + DAY / 2;

    #[test]
    fn thresholds_fire_once_per_period_and_rearm_in_the_next() {
        let b = budget(BudgetAction::Alert);
        let mut f = Fired::default();
        // $4 at noon: 40 % actual, forecast $8 = 80 %: nothing yet.
        assert!(f.crossings(&b, &evaluate(&b, 4.0, NOON)).is_empty());
        // $5.5: 55 % actual (0.5 fires); forecast $11 ≥ $10 (forecast 1.0 fires).
        let got = f.crossings(&b, &evaluate(&b, 5.5, NOON));
        assert_eq!(got, [(AlertKind::Actual, 0.5), (AlertKind::Forecast, 1.0)]);
        assert!(f.crossings(&b, &evaluate(&b, 5.6, NOON)).is_empty());
        // A jump past two thresholds fires both.
        let got = f.crossings(&b, &evaluate(&b, 10.0, NOON));
        assert_eq!(got, [(AlertKind::Actual, 0.8), (AlertKind::Actual, 1.0)]);
        assert!(f.crossings(&b, &evaluate(&b, 20.0, NOON)).is_empty());
        // Next day: re-armed.
        let got = f.crossings(&b, &evaluate(&b, 6.0, NOON + DAY));
        assert!(got.contains(&(AlertKind::Actual, 0.5)));
        // Clock stepped back into yesterday: no re-arm.
        assert!(f.crossings(&b, &evaluate(&b, 6.0, NOON)).is_empty());
    }

    #[test]
    fn marks_loaded_after_restart_suppress_refiring() {
        let b = budget(BudgetAction::Alert);
        let ev = evaluate(&b, 9.0, NOON);
        let mut f = Fired::default();
        f.mark(&b, ev.period_start, AlertKind::Actual, 0.5);
        f.mark(&b, ev.period_start, AlertKind::Actual, 0.8);
        f.mark(&b, ev.period_start, AlertKind::Actual, 0.33); // not in the list: ignored
        let got = f.crossings(&b, &ev);
        assert_eq!(got, [(AlertKind::Forecast, 1.0)]);
    }

    #[test]
    fn state_follows_the_action_at_the_limit() {
        let f = Fired::default();
        for (action, want) in [
            (BudgetAction::Stop, BudgetState::Stopped),
            (BudgetAction::Throttle { rps: 1.0 }, BudgetState::Throttled),
            (BudgetAction::Alert, BudgetState::Alerted),
        ] {
            let b = budget(action);
            assert_eq!(state(&b, &evaluate(&b, 10.0, NOON), &f), want);
            assert_eq!(state(&b, &evaluate(&b, 1.0, NOON), &f), BudgetState::Ok);
        }
        let b = budget(BudgetAction::Stop);
        let mut f = Fired::default();
        f.crossings(&b, &evaluate(&b, 6.0, NOON));
        assert_eq!(
            state(&b, &evaluate(&b, 6.0, NOON), &f),
            BudgetState::Alerted
        );
        assert!(over_limit(&b, f64::NAN));
    }

    #[test]
    fn refusal_bodies_say_which_budget_and_when() {
        let d = BudgetDecision::Stopped {
            budget: "daily-cap".into(),
            resets_at_unix: 86_400,
        };
        let v: serde_json::Value = serde_json::from_str(&d.body().unwrap()).unwrap();
        assert_eq!(v["budget"], "daily-cap");
        assert_eq!(v["resets_at"], "1970-01-02T00:00:00Z");
        assert!(v["message"].as_str().unwrap().contains("exhausted"));
        assert_eq!(BudgetDecision::Allow.body(), None);
        let t = BudgetDecision::Throttled {
            budget: "t".into(),
            retry_after: Duration::from_millis(1500),
        };
        let v: serde_json::Value = serde_json::from_str(&t.body().unwrap()).unwrap();
        assert_eq!(v["retry_after_seconds"], 2.0);
    }
}
