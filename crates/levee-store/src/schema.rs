//! The SQLite file: connection settings and versioned migrations.
//!
//! Owns: how a connection is opened (pragmas), the [`MIGRATIONS`] list and
//! `PRAGMA user_version`, which records how many of them a file has had.
//! Must never: edit or reorder a released migration — a file in the field
//! has run it already; change the schema only by appending a new entry.
//!
//! # Settings
//! - `journal_mode=WAL`: readers never block the writer, and a commit is one
//!   append to the log.
//! - `synchronous`: per connection, by what a lost write would cost.
//!   The admin connection (plans, keys) uses `FULL`: each commit is fsynced,
//!   so a key whose secret was handed out survives a power cut, at a few
//!   milliseconds per admin call. The counter connection uses `NORMAL`: in
//!   WAL mode a commit is then safe from a process crash (`kill -9`), which
//!   is the contract for counters, and only a power cut can roll back the
//!   commits since the last checkpoint — fsyncing every second-long flush
//!   would buy little for counters that are approximate across power loss
//!   anyway.
//! - `busy_timeout=5000`: the admin and counter connections share one file;
//!   a writer waits up to 5 s for the other instead of failing at once.
//! - `foreign_keys=ON`: a key can't point at a missing plan, and a plan with
//!   keys can't be deleted, even if the store's own checks had a bug.

use std::path::Path;

use rusqlite::Connection;

use crate::error::StoreError;

/// Schema migrations, applied in order; entry `i` moves a file from
/// `user_version = i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // v1: usage plans and API keys.
    "CREATE TABLE plans (
        name TEXT PRIMARY KEY NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('config', 'api')),
        spec TEXT NOT NULL,
        created_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        plan TEXT NOT NULL REFERENCES plans(name) ON DELETE RESTRICT,
        secret_hash BLOB NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
        prefix TEXT NOT NULL,
        enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
        created_at INTEGER NOT NULL,
        rotated_at INTEGER
    );
    CREATE INDEX api_keys_plan ON api_keys(plan);",
    // v2: quota counters and daily usage records.
    "CREATE TABLE quota_counters (
        counter_id TEXT NOT NULL,
        period_start INTEGER NOT NULL,
        used INTEGER NOT NULL CHECK (used >= 0),
        PRIMARY KEY (counter_id, period_start)
    ) WITHOUT ROWID;
    CREATE INDEX quota_counters_period ON quota_counters(period_start);
    CREATE TABLE usage_daily (
        key_id TEXT NOT NULL,
        day INTEGER NOT NULL,
        admitted INTEGER NOT NULL DEFAULT 0,
        throttled INTEGER NOT NULL DEFAULT 0,
        over_quota INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (key_id, day)
    ) WITHOUT ROWID;
    CREATE INDEX usage_daily_day ON usage_daily(day);",
];

/// The schema version this binary writes.
pub fn current_version() -> i64 {
    // The list is a handful of entries; the cast can't truncate.
    MIGRATIONS.len() as i64
}

/// How hard a connection's commits are pushed to the disk (see module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// fsync every commit: admin writes.
    Full,
    /// Safe from process crashes: counters.
    Normal,
}

pub(crate) fn open_connection(
    path: &Path,
    durability: Durability,
) -> Result<Connection, StoreError> {
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    let conn = crate::sqlite::open_wal(path, sync).map_err(|e| match e {
        crate::sqlite::OpenError::Sqlite(e) => StoreError::from(e),
        not_wal => StoreError::Corrupt {
            message: not_wal.to_string(),
        },
    })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Brings the file to `target` (≤ [`MIGRATIONS`]`.len()`); see
/// [`crate::sqlite::migrate`].
pub(crate) fn migrate_to(conn: &mut Connection, target: i64) -> Result<(), StoreError> {
    use crate::sqlite::MigrateError;
    crate::sqlite::migrate(conn, MIGRATIONS, target).map_err(|e| match e {
        MigrateError::Sqlite(e) => StoreError::from(e),
        MigrateError::TooNew { found, supported } => StoreError::TooNew { found, supported },
        negative => StoreError::Corrupt {
            message: negative.to_string(),
        },
    })
}

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    migrate_to(conn, current_version())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("reads version")
    }

    fn fresh() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = open_connection(&dir.path().join("t.db"), Durability::Full).expect("opens");
        (dir, conn)
    }

    #[test]
    fn a_new_file_gets_every_migration_and_the_pragmas() {
        let (_d, mut conn) = fresh();
        migrate(&mut conn).expect("migrates");
        assert_eq!(version(&conn), current_version());
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("reads");
        assert_eq!(mode, "wal");
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("reads");
        assert_eq!(fk, 1);
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("reads");
        assert_eq!(sync, 2, "FULL");
        // Running again is a no-op, not a "table exists" error.
        migrate(&mut conn).expect("idempotent");
    }

    #[test]
    fn counter_connections_use_normal_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = open_connection(&dir.path().join("t.db"), Durability::Normal).expect("opens");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("reads");
        assert_eq!(sync, 1, "NORMAL");
    }

    #[test]
    fn partial_migration_stops_at_the_target() {
        let (_d, mut conn) = fresh();
        migrate_to(&mut conn, 1).expect("migrates");
        assert_eq!(version(&conn), 1);
        let has_counters: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'quota_counters'",
                [],
                |r| r.get(0),
            )
            .expect("reads");
        assert_eq!(has_counters, 0);
        migrate(&mut conn).expect("upgrades");
        assert_eq!(version(&conn), current_version());
    }

    #[test]
    fn a_newer_file_is_refused_untouched() {
        let (_d, mut conn) = fresh();
        conn.pragma_update(None, "user_version", 99).expect("sets");
        match migrate(&mut conn) {
            Err(StoreError::TooNew { found, supported }) => {
                assert_eq!((found, supported), (99, current_version()));
            }
            other => panic!("expected TooNew, got {other:?}"),
        }
        assert_eq!(version(&conn), 99);
    }

    #[test]
    fn a_failing_migration_leaves_the_version_alone() {
        let (_d, mut conn) = fresh();
        migrate_to(&mut conn, 1).expect("migrates");
        // Sabotage v2: a table it creates already exists.
        conn.execute_batch("CREATE TABLE quota_counters (x)")
            .expect("creates");
        assert!(migrate(&mut conn).is_err());
        assert_eq!(version(&conn), 1);
        let usage_tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'usage_daily'",
                [],
                |r| r.get(0),
            )
            .expect("reads");
        assert_eq!(usage_tables, 0, "rolled back");
    }
}
