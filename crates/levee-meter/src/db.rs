//! `meters.db`: the meter's own SQLite file in the data directory.
//!
//! Owns: its schema ([`MIGRATIONS`], tracked by `PRAGMA user_version`), the
//! connection settings, and the SQL that writes hourly rows and alert marks
//! and reads them back. A file separate from the store's `levee.db` so the
//! meter's flushes never wait on the store's writers. Must never: edit a
//! released migration (append only), or be called on the request path.
//!
//! Settings mirror levee-store's counter connection: WAL, so a commit is
//! one append and readers never block it; `synchronous=NORMAL`, which makes
//! a commit safe from a process crash (`kill -9`, the durability contract)
//! and risks only the commits since the last checkpoint on a power cut;
//! `busy_timeout=5000` so an admin read and a flush wait for each other
//! instead of failing.

use std::path::Path;

use rusqlite::{params, Connection};

use crate::error::MeterError;
use crate::pricing::Usage;

/// Append-only migrations; entry `i` moves `user_version` from `i` to `i+1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // v1: hourly meters and fired budget alerts.
    "CREATE TABLE meter_hours (
        dim INTEGER NOT NULL,
        name TEXT NOT NULL,
        hour_start INTEGER NOT NULL,
        requests INTEGER NOT NULL CHECK (requests >= 0),
        mb_ms INTEGER NOT NULL CHECK (mb_ms >= 0),
        bytes_out INTEGER NOT NULL CHECK (bytes_out >= 0),
        PRIMARY KEY (dim, name, hour_start)
    ) WITHOUT ROWID;
    CREATE INDEX meter_hours_hour ON meter_hours(hour_start);
    CREATE TABLE budget_alerts (
        budget TEXT NOT NULL,
        period_start INTEGER NOT NULL,
        kind TEXT NOT NULL,
        threshold REAL NOT NULL,
        fired_at INTEGER NOT NULL,
        PRIMARY KEY (budget, period_start, kind, threshold)
    ) WITHOUT ROWID;",
];

/// One stored hour of one meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HourRow {
    pub dim: u8,
    pub name: String,
    pub hour_start: i64,
    pub usage: Usage,
}

/// A fired alert to remember, so a restart does not fire it again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlertMark {
    pub budget: String,
    pub period_start: i64,
    pub kind: &'static str,
    pub threshold: f64,
    pub fired_at: i64,
}

fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_sql(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Opens (creating and migrating) the meters file, through the store's
/// shared WAL opener and migration runner.
pub(crate) fn open(path: &Path) -> Result<Connection, MeterError> {
    use levee_store::sqlite::{MigrateError, OpenError};
    let mut conn = levee_store::sqlite::open_wal(path, "NORMAL").map_err(|e| match e {
        OpenError::Sqlite(e) => MeterError::from(e),
        not_wal => MeterError::Storage(not_wal.to_string()),
    })?;
    let target = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    levee_store::sqlite::migrate(&mut conn, MIGRATIONS, target).map_err(|e| match e {
        MigrateError::Sqlite(e) => MeterError::from(e),
        MigrateError::TooNew { found, supported } => MeterError::TooNew {
            found,
            supported,
            path: path.display().to_string(),
        },
        negative => MeterError::Storage(negative.to_string()),
    })?;
    Ok(conn)
}

/// Rows with `hour_start` in `[from, to)`, ordered by hour, at most `limit`.
pub(crate) fn load_hours(
    conn: &Connection,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Vec<HourRow>, MeterError> {
    let mut stmt = conn.prepare(
        "SELECT dim, name, hour_start, requests, mb_ms, bytes_out FROM meter_hours
         WHERE hour_start >= ?1 AND hour_start < ?2 ORDER BY hour_start LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![from, to, sql_u64(limit as u64)], |r| {
        Ok(HourRow {
            dim: u8::try_from(r.get::<_, i64>(0)?).unwrap_or(u8::MAX),
            name: r.get(1)?,
            hour_start: r.get(2)?,
            usage: Usage {
                requests: from_sql(r.get(3)?),
                mb_ms: from_sql(r.get(4)?),
                bytes_out: from_sql(r.get(5)?),
            },
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Writes hour rows and alert marks in one transaction. Rows carry absolute
/// totals and the upsert keeps the larger value, so writing a row twice (a
/// retry after an unknown outcome) never double-counts.
pub(crate) fn write(
    conn: &mut Connection,
    rows: &[HourRow],
    marks: &[AlertMark],
    prune_before: Option<i64>,
) -> Result<(), MeterError> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO meter_hours (dim, name, hour_start, requests, mb_ms, bytes_out)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (dim, name, hour_start) DO UPDATE SET
               requests = max(requests, excluded.requests),
               mb_ms = max(mb_ms, excluded.mb_ms),
               bytes_out = max(bytes_out, excluded.bytes_out)",
        )?;
        for r in rows {
            stmt.execute(params![
                i64::from(r.dim),
                r.name,
                r.hour_start,
                sql_u64(r.usage.requests),
                sql_u64(r.usage.mb_ms),
                sql_u64(r.usage.bytes_out)
            ])?;
        }
        let mut stmt = tx.prepare_cached(
            "INSERT OR IGNORE INTO budget_alerts (budget, period_start, kind, threshold, fired_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for m in marks {
            stmt.execute(params![
                m.budget,
                m.period_start,
                m.kind,
                m.threshold,
                m.fired_at
            ])?;
        }
        if let Some(before) = prune_before {
            tx.execute(
                "DELETE FROM meter_hours WHERE hour_start < ?1",
                params![before],
            )?;
            tx.execute(
                "DELETE FROM budget_alerts WHERE period_start < ?1",
                params![before],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Per-name sums of one dimension over `[from, to)`.
pub(crate) fn sums(
    conn: &Connection,
    dim: u8,
    from: i64,
    to: i64,
    limit: usize,
) -> Result<Vec<(String, Usage)>, MeterError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, sum(requests), sum(mb_ms), sum(bytes_out) FROM meter_hours
         WHERE dim = ?1 AND hour_start >= ?2 AND hour_start < ?3
         GROUP BY name LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![i64::from(dim), from, to, sql_u64(limit as u64)],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                Usage {
                    requests: from_sql(r.get(1)?),
                    mb_ms: from_sql(r.get(2)?),
                    bytes_out: from_sql(r.get(3)?),
                },
            ))
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Alerts already fired for `budget` in the period starting at `period_start`.
pub(crate) fn fired(
    conn: &Connection,
    budget: &str,
    period_start: i64,
) -> Result<Vec<(String, f64)>, MeterError> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, threshold FROM budget_alerts WHERE budget = ?1 AND period_start = ?2
         LIMIT 100",
    )?;
    let rows = stmt.query_map(params![budget, period_start], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
