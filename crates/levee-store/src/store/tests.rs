use std::time::Instant;

use rusqlite::OptionalExtension;

use super::*;
use crate::period::{period_bounds, Period};
use crate::plan::{QuotaSpec, ThrottleSpec};
use crate::quota::QuotaDecision;
use crate::schema::migrate_to;
use levee_common::clock::ManualClock;

const NOW: i64 = 1_800_000_000;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open_with_clock(dir.path(), Arc::new(ManualClock::at_unix(NOW))).expect("opens")
}

fn setup() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    (dir, store)
}

/// A second, independent connection to the same file: what a restarted
/// process would read.
fn raw(dir: &tempfile::TempDir) -> Connection {
    Connection::open(dir.path().join(DB_FILE)).expect("opens")
}

fn quota_plan(name: &str, limit: u64) -> PlanSpec {
    let mut s = PlanSpec::named(name);
    s.throttle = Some(ThrottleSpec {
        rate: 5.0,
        burst: 10,
    });
    s.quota = Some(QuotaSpec {
        limit,
        period: Period::Day,
        offset: 0,
    });
    s
}

fn invalid_field(r: Result<impl std::fmt::Debug, StoreError>) -> String {
    match r {
        Err(StoreError::Invalid { field, .. }) => field,
        other => format!("unexpected {other:?}"),
    }
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Store>();
    check::<Arc<Store>>();
}

#[test]
fn open_creates_the_file_in_wal_mode() {
    let (dir, _s) = setup();
    assert!(dir.path().join(DB_FILE).exists());
    let mode: String = raw(&dir)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("reads");
    assert_eq!(mode, "wal");
}

#[test]
fn a_second_store_on_the_same_directory_is_refused_until_the_first_drops() {
    let (dir, s) = setup();
    let second = Store::open(dir.path());
    assert!(
        matches!(second, Err(StoreError::Locked { .. })),
        "{second:?}"
    );
    drop(s);
    assert!(Store::open(dir.path()).is_ok());
}

// ---- plans ----

#[test]
fn plan_create_update_delete() {
    let (_d, s) = setup();
    let p = s.create_plan(quota_plan("basic", 100)).expect("creates");
    assert_eq!((p.source, p.created_at), (PlanSource::Api, NOW));
    assert!(matches!(
        s.create_plan(PlanSpec::named("basic")),
        Err(StoreError::Exists { .. })
    ));
    let updated = s.update_plan(quota_plan("basic", 200)).expect("updates");
    assert_eq!(updated.spec.quota.map(|q| q.limit), Some(200));
    assert_eq!(s.plan("basic"), Some(updated));
    assert!(matches!(
        s.update_plan(PlanSpec::named("nope")),
        Err(StoreError::NotFound { .. })
    ));
    s.delete_plan("basic").expect("deletes");
    assert!(s.plan("basic").is_none());
    assert!(matches!(
        s.delete_plan("basic"),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn invalid_plans_are_refused_naming_the_field() {
    let (_d, s) = setup();
    let mut bad = quota_plan("p", 1);
    bad.quota = Some(QuotaSpec {
        limit: 1,
        period: Period::Week,
        offset: 7,
    });
    assert_eq!(invalid_field(s.create_plan(bad)), "quota.offset");
    assert_eq!(invalid_field(s.create_plan(PlanSpec::named("a b"))), "name");
    assert!(s.plans().is_empty());
}

#[test]
fn a_plan_with_keys_cannot_be_deleted() {
    let (_d, s) = setup();
    s.create_plan(PlanSpec::named("p")).expect("creates");
    let (k, _) = s.create_key("k", "p").expect("creates");
    match s.delete_plan("p") {
        Err(e @ StoreError::InUse { .. }) => {
            assert_eq!(e.http_status(), 409);
            assert!(e.to_string().contains("'p'"), "{e}");
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    s.delete_key(&k.id).expect("deletes");
    s.delete_plan("p").expect("now deletable");
}

#[test]
fn plans_are_listed_by_name() {
    let (_d, s) = setup();
    for n in ["b", "c", "a"] {
        s.create_plan(PlanSpec::named(n)).expect("creates");
    }
    let names: Vec<String> = s.plans().into_iter().map(|p| p.spec.name).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

// ---- config plans ----

#[test]
fn config_sync_upserts_and_removes_config_plans_only() {
    let (_d, s) = setup();
    s.create_plan(PlanSpec::named("api")).expect("creates");
    s.sync_config_plans(&[quota_plan("gold", 10), PlanSpec::named("free")])
        .expect("syncs");
    let gold = s.plan("gold").expect("exists");
    assert_eq!(gold.source, PlanSource::Config);
    s.sync_config_plans(&[quota_plan("gold", 20)])
        .expect("syncs");
    assert_eq!(
        s.plan("gold").and_then(|p| p.spec.quota).map(|q| q.limit),
        Some(20)
    );
    assert!(s.plan("free").is_none(), "dropped from config: removed");
    assert!(
        s.plan("api").is_some(),
        "API plans are not config's to remove"
    );
}

#[test]
fn config_plans_are_not_the_apis_to_change() {
    let (_d, s) = setup();
    s.sync_config_plans(&[PlanSpec::named("gold")])
        .expect("syncs");
    assert!(matches!(
        s.update_plan(PlanSpec::named("gold")),
        Err(StoreError::ConfigOwned { .. })
    ));
    assert!(matches!(
        s.delete_plan("gold"),
        Err(StoreError::ConfigOwned { .. })
    ));
    assert!(matches!(
        s.create_plan(PlanSpec::named("gold")),
        Err(StoreError::Exists { .. })
    ));
}

#[test]
fn config_sync_refuses_removing_a_plan_with_keys_and_changes_nothing() {
    let (_d, s) = setup();
    s.sync_config_plans(&[PlanSpec::named("gold"), PlanSpec::named("free")])
        .expect("syncs");
    s.create_key("k", "gold").expect("creates");
    let before = s.plans();
    match s.sync_config_plans(&[quota_plan("free", 5)]) {
        Err(StoreError::InUse { id, .. }) => assert_eq!(id, "gold"),
        other => panic!("expected InUse naming gold, got {other:?}"),
    }
    assert_eq!(s.plans(), before, "all or nothing");
}

#[test]
fn config_sync_refuses_api_names_duplicates_and_invalid_specs() {
    let (_d, s) = setup();
    s.create_plan(PlanSpec::named("api")).expect("creates");
    assert!(matches!(
        s.sync_config_plans(&[PlanSpec::named("api")]),
        Err(StoreError::SourceConflict { .. })
    ));
    assert_eq!(
        invalid_field(s.sync_config_plans(&[PlanSpec::named("a"), PlanSpec::named("a")])),
        "plans[1].name"
    );
    let mut bad = PlanSpec::named("b");
    bad.throttle = Some(ThrottleSpec {
        rate: 0.0,
        burst: 1,
    });
    assert_eq!(
        invalid_field(s.sync_config_plans(&[PlanSpec::named("a"), bad])),
        "plans[1].throttle.rate"
    );
    assert_eq!(s.plans().len(), 1);
}

// ---- keys ----

#[test]
fn key_lifecycle() {
    let (_d, s) = setup();
    s.create_plan(quota_plan("p", 10)).expect("creates");
    let (k, secret) = s.create_key("ci bot", "p").expect("creates");
    assert_eq!(secret.len(), crate::key::SECRET_LEN);
    assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(k.prefix, secret[..6]);
    assert!(k.enabled && k.rotated_at.is_none() && k.created_at == NOW);
    assert_eq!(s.key(&k.id), Some(k.clone()));
    assert_eq!(s.keys(), vec![k.clone()]);
    assert_eq!(s.authenticate(&secret), Some(k.clone()));

    let off = s.set_key_enabled(&k.id, false).expect("disables");
    assert!(!off.enabled);
    assert_eq!(s.authenticate(&secret).map(|k| k.enabled), Some(false));
    s.set_key_enabled(&k.id, true).expect("enables");
    assert_eq!(s.authenticate(&secret).map(|k| k.enabled), Some(true));

    let (rotated, new_secret) = s.rotate_key(&k.id).expect("rotates");
    assert_ne!(new_secret, secret);
    assert_eq!(rotated.rotated_at, Some(NOW));
    assert_eq!(rotated.prefix, new_secret[..6]);
    assert!(s.authenticate(&secret).is_none(), "old secret dead at once");
    assert_eq!(
        s.authenticate(&new_secret).map(|k| k.id),
        Some(k.id.clone())
    );

    s.delete_key(&k.id).expect("deletes");
    assert!(s.authenticate(&new_secret).is_none());
    assert!(s.key(&k.id).is_none());
    for r in [
        s.set_key_enabled(&k.id, true).map(|_| ()),
        s.rotate_key(&k.id).map(|_| ()),
        s.delete_key(&k.id),
    ] {
        assert!(
            matches!(r, Err(StoreError::NotFound { kind: "key", .. })),
            "{r:?}"
        );
    }
}

#[test]
fn authenticate_carries_the_current_plan() {
    let (_d, s) = setup();
    s.create_plan(quota_plan("p", 10)).expect("creates");
    let (_, secret) = s.create_key("k", "p").expect("creates");
    let a = s.authenticate_with_plan(&secret).expect("authenticates");
    assert_eq!(a.plan.spec.quota.map(|q| q.limit), Some(10));
    s.update_plan(quota_plan("p", 99)).expect("updates");
    let a = s.authenticate_with_plan(&secret).expect("authenticates");
    assert_eq!(a.plan.spec.quota.map(|q| q.limit), Some(99));
}

#[test]
fn unknown_and_garbage_secrets_do_not_authenticate() {
    let (_d, s) = setup();
    s.create_plan(PlanSpec::named("p")).expect("creates");
    let (_, secret) = s.create_key("k", "p").expect("creates");
    let mut wrong = secret.clone().into_bytes();
    wrong[39] = if wrong[39] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).expect("ascii");
    for bad in [
        wrong.as_str(),
        "",
        &secret[..39],
        &format!("{secret} "),
        &"x".repeat(1 << 20),
        "\u{0}\u{ffff}",
    ] {
        assert!(
            s.authenticate(bad).is_none(),
            "{:?}",
            &bad[..bad.len().min(50)]
        );
    }
}

#[test]
fn keys_need_a_real_plan_and_a_sane_name() {
    let (_d, s) = setup();
    s.create_plan(PlanSpec::named("p")).expect("creates");
    assert_eq!(invalid_field(s.create_key("k", "missing")), "plan");
    assert_eq!(invalid_field(s.create_key("", "p")), "name");
    assert_eq!(invalid_field(s.create_key(&"n".repeat(129), "p")), "name");
    assert!(s.keys().is_empty());
}

#[test]
fn only_a_hash_of_the_secret_is_stored_or_serialized() {
    let (dir, s) = setup();
    s.create_plan(PlanSpec::named("p")).expect("creates");
    let (k, secret) = s.create_key("k", "p").expect("creates");
    let hash: Vec<u8> = raw(&dir)
        .query_row(
            "SELECT secret_hash FROM api_keys WHERE id = ?1",
            params![k.id],
            |r| r.get(0),
        )
        .expect("reads");
    assert_eq!(hash, hash_secret(&secret).to_vec());
    let json = serde_json::to_string(&s.keys()).expect("serializes");
    assert!(!json.contains(&secret), "{json}");
    let in_db: Option<String> = raw(&dir)
        .query_row(
            "SELECT id FROM api_keys WHERE name = ?1 OR prefix = ?1",
            params![secret],
            |r| r.get(0),
        )
        .optional()
        .expect("reads");
    assert!(in_db.is_none());
}

#[test]
fn hostile_ids_give_bounded_not_found_errors() {
    let (_d, s) = setup();
    let id = format!("key_\u{7}{}", "z".repeat(1 << 16));
    match s.set_key_enabled(&id, false) {
        Err(e @ StoreError::NotFound { .. }) => assert!(e.to_string().len() < 200),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(s.key(&id).is_none());
    assert_eq!(invalid_field(s.usage(Some(&id), 0, 1)), "key_id");
}

// ---- persistence ----

#[test]
fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, secret, rotated_secret_key) = {
        let s = open(&dir);
        s.sync_config_plans(&[quota_plan("gold", 5)])
            .expect("syncs");
        s.create_plan(PlanSpec::named("api")).expect("creates");
        let (k, secret) = s.create_key("k", "gold").expect("creates");
        let (k2, _) = s.create_key("k2", "api").expect("creates");
        s.set_key_enabled(&k2.id, false).expect("disables");
        let (start, _) = period_bounds(NOW, Period::Day, 0);
        for _ in 0..3 {
            s.quotas().try_consume(&k.id, start, 5);
        }
        s.record_usage(&k.id, crate::period::unix_day(NOW), UsageOutcome::Admitted);
        s.flush().expect("flushes");
        (k, secret, k2.id)
    };
    let s = open(&dir);
    assert_eq!(s.plan("gold").map(|p| p.source), Some(PlanSource::Config));
    assert_eq!(s.plan("api").map(|p| p.source), Some(PlanSource::Api));
    assert_eq!(s.authenticate(&secret), Some(key.clone()));
    assert_eq!(s.key(&rotated_secret_key).map(|k| k.enabled), Some(false));
    let (start, _) = period_bounds(NOW, Period::Day, 0);
    assert_eq!(s.quotas().used(&key.id, start), 3);
    assert_eq!(
        s.quotas().try_consume(&key.id, start, 5),
        QuotaDecision::Admitted {
            used: 4,
            remaining: 1
        }
    );
    let day = crate::period::unix_day(NOW);
    assert_eq!(
        s.usage(Some(&key.id), day, day).expect("reads")[0].admitted,
        1
    );
}

#[test]
fn drop_flushes_what_was_counted() {
    let (dir, s) = setup();
    s.create_plan(PlanSpec::named("p")).expect("creates");
    let (k, _) = s.create_key("k", "p").expect("creates");
    for _ in 0..42 {
        s.quotas().try_consume(&k.id, NOW, 100);
        s.record_usage(&k.id, 20_000, UsageOutcome::Throttled);
    }
    drop(s);
    let c = raw(&dir);
    let used: i64 = c
        .query_row(
            "SELECT used FROM quota_counters WHERE counter_id = ?1",
            params![k.id],
            |r| r.get(0),
        )
        .expect("reads");
    assert_eq!(used, 42);
    let throttled: i64 = c
        .query_row(
            "SELECT throttled FROM usage_daily WHERE key_id = ?1",
            params![k.id],
            |r| r.get(0),
        )
        .expect("reads");
    assert_eq!(throttled, 42);
}

#[test]
fn the_flusher_writes_without_being_asked() {
    let (dir, s) = setup();
    s.create_plan(PlanSpec::named("p")).expect("creates");
    let (k, _) = s.create_key("k", "p").expect("creates");
    for _ in 0..5 {
        s.quotas().try_consume(&k.id, NOW, 100);
    }
    // The contract is 1 s; poll up to 3 s so a loaded CI machine can't make
    // this flaky, while a flusher that never runs still fails it.
    let c = raw(&dir);
    let started = Instant::now();
    let mut seen = None;
    while started.elapsed() < Duration::from_secs(3) {
        seen = c
            .query_row(
                "SELECT used FROM quota_counters WHERE counter_id = ?1",
                params![k.id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .expect("reads");
        if seen.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(seen, Some(5));
    assert_eq!(s.flush_failures(), 0);
}

#[test]
fn deleting_a_key_drops_its_counters() {
    let (dir, s) = setup();
    s.create_plan(PlanSpec::named("p")).expect("creates");
    let (k, _) = s.create_key("k", "p").expect("creates");
    s.quotas().try_consume(&k.id, NOW, 100);
    s.flush().expect("flushes");
    s.delete_key(&k.id).expect("deletes");
    assert_eq!(s.quotas().used(&k.id, NOW), 0);
    let rows: i64 = raw(&dir)
        .query_row("SELECT count(*) FROM quota_counters", [], |r| r.get(0))
        .expect("reads");
    assert_eq!(rows, 0);
}

#[test]
fn usage_for_unknown_keys_is_ignored() {
    let (_d, s) = setup();
    s.record_usage("key_0000000000000000", 20_000, UsageOutcome::Admitted);
    assert!(s.usage(None, 20_000, 20_000).expect("reads").is_empty());
}

// ---- migrations through the store ----

#[test]
fn a_v1_database_upgrades_and_keeps_its_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "A".repeat(40);
    {
        let mut c = open_connection(&dir.path().join(DB_FILE), Durability::Full).expect("opens");
        migrate_to(&mut c, 1).expect("v1");
        c.execute(
            "INSERT INTO plans VALUES ('old', 'api', '{\"name\":\"old\"}', 1)",
            [],
        )
        .expect("inserts");
        c.execute(
            "INSERT INTO api_keys VALUES ('key_00000000000000aa', 'legacy', 'old', ?1, 'AAAAAA', 1, 1, NULL)",
            params![&hash_secret(&secret)[..]],
        )
        .expect("inserts");
    }
    let s = open(&dir);
    let version: i64 = raw(&dir)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("reads");
    assert_eq!(version, crate::schema::current_version());
    assert_eq!(
        s.authenticate(&secret).map(|k| k.name),
        Some("legacy".to_owned())
    );
    // v2's tables work.
    assert!(s
        .quotas()
        .try_consume("key_00000000000000aa", NOW, 1)
        .is_admitted());
    s.flush().expect("flushes");
}

#[test]
fn a_database_from_a_newer_levee_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let c = open_connection(&dir.path().join(DB_FILE), Durability::Full).expect("opens");
        c.pragma_update(None, "user_version", 1000).expect("sets");
    }
    match Store::open(dir.path()) {
        Err(e @ StoreError::TooNew { .. }) => assert!(e.to_string().contains("1000"), "{e}"),
        other => panic!("expected TooNew, got {other:?}"),
    }
}
