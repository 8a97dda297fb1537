use std::time::Instant;

use super::*;

/// 2026-03-14T12:00:00Z.
pub(crate) const NOON: i64 = 1_773_489_600;

pub(crate) fn inv<'a>(
    function: &'a str,
    route: Option<&'a str>,
    key: Option<&'a str>,
    at: i64,
) -> Invocation<'a> {
    Invocation {
        function,
        route,
        key,
        duration: Duration::from_millis(100),
        memory_mb: 128,
        bytes_out: 1000,
        at_unix: at,
        cold: false,
        outcome: "success",
    }
}

/// Cost of one 100 ms × 128 MB invocation at list prices.
pub(crate) fn one_cost() -> f64 {
    cost(
        &Prices::default(),
        &invocation_usage(Duration::from_millis(100), 128, 0),
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn row<'a>(rows: &'a [CostRow], name: &str) -> &'a CostRow {
    rows.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no row {name} in {rows:?}"))
}

#[test]
fn usage_aggregates_per_function_route_key_and_period() {
    let dir = tempfile::tempdir().unwrap();
    let m = Meters::open_at(dir.path(), Prices::default(), NOON).unwrap();
    m.record(&inv("a", Some("GET /a"), Some("key_1"), NOON));
    m.record(&inv("a", Some("GET /a"), Some("key_2"), NOON + 10));
    m.record(&inv("a", Some("POST /a"), None, NOON + 3_600)); // next hour
    let c = one_cost();
    assert!(close(
        m.spend(&BudgetScope::All, BudgetPeriod::Day, NOON),
        3.0 * c
    ));
    m.record(&inv("b", None, Some("key_1"), NOON + 86_400)); // next day
    assert!(close(
        m.spend(&BudgetScope::All, BudgetPeriod::Month, NOON + 86_400),
        4.0 * c
    ));
    assert!(close(
        m.spend(&BudgetScope::All, BudgetPeriod::Day, NOON + 86_400),
        c
    ));
    assert!(close(
        m.spend(
            &BudgetScope::Function("a".into()),
            BudgetPeriod::Month,
            NOON + 86_400
        ),
        3.0 * c
    ));
    assert!(close(
        m.spend(
            &BudgetScope::Key("key_1".into()),
            BudgetPeriod::Month,
            NOON + 86_400
        ),
        2.0 * c
    ));
    assert_eq!(
        m.spend(&BudgetScope::Key("key_9".into()), BudgetPeriod::Day, NOON),
        0.0
    );

    // Costs for yesterday (the first day) come from the file.
    let by_fn = m.costs(CostBy::Function, CostPeriod::Day, NOON);
    assert_eq!(by_fn.len(), 1);
    assert_eq!(row(&by_fn, "a").requests, 3);
    assert_eq!(row(&by_fn, "a").bytes_out, 3000);
    assert!(close(row(&by_fn, "a").gb_seconds, 3.0 * 0.1 * 0.125));
    let by_route = m.costs(CostBy::Route, CostPeriod::Month, NOON);
    assert_eq!(row(&by_route, "GET /a").requests, 2);
    assert_eq!(row(&by_route, "POST /a").requests, 1);
    let by_key = m.costs(CostBy::Key, CostPeriod::Month, NOON);
    assert_eq!(row(&by_key, "key_1").requests, 2);
    assert_eq!(row(&by_key, "key_2").requests, 1);
    assert!(close(row(&by_key, "key_1").usd, 2.0 * c));
    // Most expensive first.
    assert_eq!(by_key[0].name, "key_1");

    // Hourly rows: function a has two hours, b one.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let hours: i64 = conn
        .query_row("SELECT count(*) FROM meter_hours WHERE dim = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(hours, 3);
}

#[test]
fn totals_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let m = Meters::open_at(dir.path(), Prices::default(), NOON).unwrap();
        for i in 0..10 {
            m.record(&inv("a", Some("GET /a"), Some("key_1"), NOON + i));
        }
        // Dropping the last Arc stops the flusher after a final flush.
    }
    let m = Meters::open_at(dir.path(), Prices::default(), NOON + 60).unwrap();
    let c = one_cost();
    assert!(close(
        m.spend(&BudgetScope::All, BudgetPeriod::Day, NOON + 60),
        10.0 * c
    ));
    assert!(close(
        m.spend(
            &BudgetScope::Key("key_1".into()),
            BudgetPeriod::Month,
            NOON + 60
        ),
        10.0 * c
    ));
    // Counting goes on from the loaded totals, and a flush of the same hour
    // stores the sum, not a second copy.
    m.record(&inv("a", None, None, NOON + 61));
    m.flush().unwrap();
    let rows = m.costs(CostBy::Function, CostPeriod::Day, NOON + 61);
    assert_eq!(row(&rows, "a").requests, 11);
    // Opened next month: nothing of this month's spend counts.
    drop(m);
    let m = Meters::open_at(dir.path(), Prices::default(), NOON + 31 * 86_400).unwrap();
    assert_eq!(
        m.spend(&BudgetScope::All, BudgetPeriod::Month, NOON + 31 * 86_400),
        0.0
    );
}

#[test]
fn the_flusher_writes_within_one_second() {
    let dir = tempfile::tempdir().unwrap();
    let m = Meters::open_at(dir.path(), Prices::default(), NOON).unwrap();
    let reader = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let start = Instant::now();
    m.record(&inv("a", None, None, NOON));
    let count = || -> i64 {
        reader
            .query_row(
                "SELECT coalesce(sum(requests), 0) FROM meter_hours WHERE dim = 0",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0)
    };
    // Bounded polling: give up at 2 s, then require ≤ 1 s.
    while count() == 0 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = start.elapsed();
    assert_eq!(count(), 1);
    assert!(took <= Duration::from_secs(1), "flushed after {took:?}");
    // Nothing was pending on another thread: the reader saw the flusher's
    // commit, not a flush on drop.
    drop(m);
}

#[test]
fn keys_past_the_cap_and_overlong_names_go_to_other() {
    let dir = tempfile::tempdir().unwrap();
    // 16 shards × 1 key each.
    let m = Meters::open_with_key_cap(dir.path(), Prices::default(), NOON, 16).unwrap();
    m.pin_key("key_pinned", NOON);
    for i in 0..200 {
        let key = format!("key_{i}");
        m.record(&inv("a", None, Some(&key), NOON));
    }
    let long = "k".repeat(MAX_NAME_LEN + 1);
    m.record(&inv("a", None, Some(&long), NOON));
    m.record(&inv("a", None, Some("key_pinned"), NOON));
    let rows = m.costs(CostBy::Key, CostPeriod::Day, NOON);
    // At most one meter per shard, plus OTHER and the pinned key.
    assert!(rows.len() <= 16 + 2, "{}", rows.len());
    let total: u64 = rows.iter().map(|r| r.requests).sum();
    assert_eq!(total, 202, "no request is lost at the cap");
    assert!(row(&rows, OTHER).requests > 200 - 16);
    assert_eq!(row(&rows, "key_pinned").requests, 1);
    assert!(!rows.iter().any(|r| r.name == long));
}

#[test]
fn late_records_count_in_the_current_period() {
    let dir = tempfile::tempdir().unwrap();
    let m = Meters::open_at(dir.path(), Prices::default(), NOON).unwrap();
    m.record(&inv("a", None, None, NOON + 7_200));
    m.record(&inv("a", None, None, NOON)); // finished "earlier"
    let c = one_cost();
    assert!(close(
        m.spend(&BudgetScope::All, BudgetPeriod::Day, NOON + 7_200),
        2.0 * c
    ));
    // A caller whose clock is behind still sees the newer period's spend.
    assert!(close(
        m.spend(&BudgetScope::All, BudgetPeriod::Day, NOON - 86_400),
        2.0 * c
    ));
    m.flush().unwrap();
    assert_eq!(m.flush_failures(), 0);
    assert_eq!(m.lost_rows(), 0);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let err = Meters::open_at(dir.path(), Prices::default(), NOON).unwrap_err();
    assert!(matches!(err, MeterError::TooNew { found: 99, .. }), "{err}");
}
