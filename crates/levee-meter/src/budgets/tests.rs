use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::alert::tests::{eventually, fast, receiver};
use crate::budget::BudgetState;
use crate::meters::tests::{inv, one_cost, NOON};
use crate::model::{BudgetPeriod, Prices};

fn budget(name: &str, scope: BudgetScope, limit: f64, action: BudgetAction) -> Budget {
    Budget {
        name: levee_common::name::BudgetName::parse(name).unwrap(),
        scope,
        period: BudgetPeriod::Day,
        limit,
        alerts: vec![0.5, 0.8, 1.0],
        forecast_alerts: vec![],
        action,
        webhook: None,
    }
}

fn setup(budgets: Vec<Budget>) -> (tempfile::TempDir, Arc<Meters>, Arc<Budgets>) {
    let dir = tempfile::tempdir().unwrap();
    let m = Meters::open_at(dir.path(), Prices::default(), NOON).unwrap();
    let b = Budgets::new_at(budgets, Arc::clone(&m), AlertSink::disabled(), NOON);
    (dir, m, b)
}

/// Records `n` invocations of `function` with `key` and re-evaluates.
fn spend(m: &Meters, b: &Budgets, function: &str, key: Option<&str>, n: usize) {
    for _ in 0..n {
        m.record(&inv(function, None, key, NOON));
        b.after_record(function, key, NOON);
    }
}

fn fired(m: &Meters, budget: &str) -> Vec<(String, f64)> {
    let start = crate::period::bounds(BudgetPeriod::Day, NOON).0;
    let mut v = m.fired_alerts(budget, start);
    v.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    v
}

#[test]
fn a_stop_budget_refuses_its_scope_until_the_period_ends() {
    let c = one_cost();
    let (_d, m, b) = setup(vec![budget(
        "fn-cap",
        BudgetScope::Function("a".into()),
        10.0 * c,
        BudgetAction::Stop,
    )]);
    let now = Instant::now();
    spend(&m, &b, "a", None, 9);
    assert_eq!(b.check("a", None, NOON, now), BudgetDecision::Allow);
    spend(&m, &b, "a", None, 1);
    let (_, day_end) = crate::period::bounds(BudgetPeriod::Day, NOON);
    assert_eq!(
        b.check("a", None, NOON, now),
        BudgetDecision::Stopped {
            budget: "fn-cap".into(),
            resets_at_unix: day_end
        }
    );
    // Other functions are not in scope; the next day starts from zero.
    assert_eq!(b.check("other", None, NOON, now), BudgetDecision::Allow);
    assert_eq!(b.check("a", None, day_end, now), BudgetDecision::Allow);
    let s = &b.status(NOON)[0];
    assert_eq!(s.state, BudgetState::Stopped);
    assert_eq!(s.resets_at, day_end);
    assert!((s.consumed_ratio - 1.0).abs() < 1e-9);
}

#[test]
fn a_throttle_budget_caps_its_scope_to_n_per_second() {
    let c = one_cost();
    let (_d, m, b) = setup(vec![budget(
        "key-cap",
        BudgetScope::Key("key_0123456789abcdef".into()),
        c,
        BudgetAction::Throttle { rps: 5.0 },
    )]);
    let key = Some("key_0123456789abcdef");
    let t0 = Instant::now();
    // Under the limit: no throttle at all.
    for _ in 0..50 {
        assert!(b.check("a", key, NOON, t0).is_allowed());
    }
    spend(&m, &b, "a", key, 1);
    // Over it: a burst of 5, then refusals with a wait, then 5 per second.
    let allowed = (0..50)
        .filter(|_| b.check("a", key, NOON, t0).is_allowed())
        .count();
    assert_eq!(allowed, 5);
    match b.check("a", key, NOON, t0) {
        BudgetDecision::Throttled {
            budget,
            retry_after,
        } => {
            assert_eq!(budget, "key-cap");
            assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_millis(200));
        }
        other => panic!("expected a throttle, got {other:?}"),
    }
    let t1 = t0 + Duration::from_secs(1);
    let allowed = (0..50)
        .filter(|_| b.check("a", key, NOON, t1).is_allowed())
        .count();
    assert_eq!(allowed, 5);
    // Other keys are not in scope.
    assert!(b
        .check("a", Some("key_ffffffffffffffff"), NOON, t1)
        .is_allowed());
    assert!(b.check("a", None, NOON, t1).is_allowed());
    assert_eq!(b.status(NOON)[0].state, BudgetState::Throttled);
}

#[test]
fn an_alert_budget_never_refuses() {
    let c = one_cost();
    let (_d, m, b) = setup(vec![budget(
        "watch",
        BudgetScope::All,
        c,
        BudgetAction::Alert,
    )]);
    spend(&m, &b, "a", None, 5);
    assert!(b.check("a", None, NOON, Instant::now()).is_allowed());
    let s = &b.status(NOON)[0];
    assert_eq!(s.state, BudgetState::Alerted);
    assert!((s.spent - 5.0 * c).abs() < 1e-12);
}

#[test]
fn thresholds_fire_once_per_period_even_across_a_restart() {
    let c = one_cost();
    let dir = tempfile::tempdir().unwrap();
    let cfg = vec![budget(
        "daily",
        BudgetScope::All,
        10.0 * c,
        BudgetAction::Alert,
    )];
    {
        let m = Meters::open_at(dir.path(), Prices::default(), NOON).unwrap();
        let b = Budgets::new_at(cfg.clone(), Arc::clone(&m), AlertSink::disabled(), NOON);
        spend(&m, &b, "a", None, 4);
        assert!(fired(&m, "daily").is_empty());
        spend(&m, &b, "a", None, 1); // 50 %
        assert_eq!(fired(&m, "daily"), [("actual".to_string(), 0.5)]);
        spend(&m, &b, "a", None, 2); // 70 %: nothing new
        assert_eq!(fired(&m, "daily").len(), 1);
        spend(&m, &b, "a", None, 1); // 80 %
        assert_eq!(fired(&m, "daily").len(), 2);
        assert_eq!(b.status(NOON)[0].state, BudgetState::Alerted);
    }
    // Reopened in the same day: 0.5 and 0.8 are remembered, only 1.0 fires.
    let m = Meters::open_at(dir.path(), Prices::default(), NOON + 60).unwrap();
    let b = Budgets::new_at(cfg, Arc::clone(&m), AlertSink::disabled(), NOON + 60);
    assert_eq!(b.status(NOON + 60)[0].state, BudgetState::Alerted);
    spend(&m, &b, "a", None, 5);
    let got = fired(&m, "daily");
    assert_eq!(
        got,
        [
            ("actual".to_string(), 0.5),
            ("actual".to_string(), 0.8),
            ("actual".to_string(), 1.0)
        ]
    );
}

#[test]
fn a_forecast_alert_fires_when_the_projection_crosses() {
    let c = one_cost();
    let mut cfg = budget("proj", BudgetScope::All, 10.0 * c, BudgetAction::Alert);
    cfg.alerts = vec![];
    cfg.forecast_alerts = vec![1.0];
    let (_d, m, b) = setup(vec![cfg]);
    // At noon the forecast is 2 × spent: 4 → 8 (80 %), 5 → 10 (100 %).
    spend(&m, &b, "a", None, 4);
    assert!(fired(&m, "proj").is_empty());
    spend(&m, &b, "a", None, 1);
    assert_eq!(fired(&m, "proj"), [("forecast".to_string(), 1.0)]);
    let s = &b.status(NOON)[0];
    assert!((s.forecast - 10.0 * c).abs() < 1e-12);
}

/// Spend-cap correctness: a flood with K invocations in flight at a time
/// (each checked before it starts, metered when it ends) spends at most
/// limit + K × cost of one invocation.
#[test]
fn a_flood_overshoots_a_stop_limit_by_at_most_the_invocations_in_flight() {
    let c = one_cost();
    for k in [1usize, 7, 64] {
        let limit = 100.0 * c + c / 2.0;
        let (_d, m, b) = setup(vec![budget(
            "cap",
            BudgetScope::All,
            limit,
            BudgetAction::Stop,
        )]);
        let now = Instant::now();
        let mut in_flight = 0usize;
        let mut admitted = 0usize;
        let mut refused = 0usize;
        // Each step: start invocations until K are running or one is
        // refused, then finish the oldest.
        for _ in 0..10_000 {
            while in_flight < k {
                if b.check("a", None, NOON, now).is_allowed() {
                    in_flight += 1;
                    admitted += 1;
                } else {
                    refused += 1;
                    break;
                }
            }
            if in_flight == 0 {
                break;
            }
            in_flight -= 1;
            m.record(&inv("a", None, None, NOON));
            b.after_record("a", None, NOON);
        }
        let spent = m.spend(&BudgetScope::All, BudgetPeriod::Day, NOON);
        assert!(refused > 0, "k={k}: the cap never engaged");
        assert!(
            spent >= limit,
            "k={k}: stopped before the limit ({spent} < {limit})"
        );
        assert!(
            spent <= limit + k as f64 * c + 1e-12,
            "k={k}: spent {spent} > limit {limit} + {k} × {c}"
        );
        // 101 invocations reach the limit; at most K-1 more were running.
        assert!(admitted < 101 + k, "k={k}: admitted {admitted}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_the_webhook() {
    let r = receiver(1, false).await;
    let c = one_cost();
    let mut cfg = budget(
        "hooked",
        BudgetScope::Function("a".into()),
        2.0 * c,
        BudgetAction::Stop,
    );
    cfg.alerts = vec![1.0];
    cfg.webhook = Some(r.url.clone());
    let dir = tempfile::tempdir().unwrap();
    let m = Meters::open_at(dir.path(), Prices::default(), NOON).unwrap();
    let sink = AlertSink::spawn_with(&tokio::runtime::Handle::current(), fast());
    let b = Budgets::new_at(vec![cfg], Arc::clone(&m), sink, NOON);
    spend(&m, &b, "a", None, 3);
    assert!(eventually(|| b.alerts().delivered() == 1).await);
    let bodies = levee_common::sync::lock(&r.bodies).clone();
    assert_eq!(bodies.len(), 1, "one alert, delivered once after one retry");
    assert_eq!(r.hits.load(Ordering::SeqCst), 2);
    assert_eq!(bodies[0]["budget"], "hooked");
    assert_eq!(bodies[0]["scope"]["function"], "a");
    assert_eq!(bodies[0]["threshold"], 1.0);
}
