//! How every SQLite file of Levee is opened (this crate's `levee.db`, the
//! queues' `queues.db`): WAL or nothing, a bounded busy wait, one process per
//! data directory, and caller text made safe for error messages. Shared so
//! the stores cannot drift apart on durability.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file system cannot do WAL (e.g. no shared memory); running with
    /// other durability silently is refused.
    #[error("could not switch {path} to WAL (got '{mode}')")]
    NotWal {
        /// The database file.
        path: String,
        /// The journal mode SQLite reported.
        mode: String,
    },
}

/// Opens `path` in WAL mode with `PRAGMA synchronous = <synchronous>`
/// (`FULL`: fsync every commit; `NORMAL`: safe from process crashes, not
/// from power loss).
pub fn open_wal(path: &Path, synchronous: &str) -> Result<Connection, OpenError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // journal_mode answers with the mode now in force.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::NotWal {
            path: path.display().to_string(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(conn)
}

/// Why a schema migration could not run.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// SQLite refused.
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer build.
    #[error("schema version {found} is newer than this build supports ({supported})")]
    TooNew {
        /// The file's version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// `user_version` below zero: not a file this project wrote.
    #[error("negative schema version {0}")]
    Negative(i64),
}

/// Brings the file to version `target` (at most `migrations.len()`): every
/// pending migration in one immediate transaction, so either all apply or
/// none, and a second process migrating at the same moment waits, then sees
/// the new version and does nothing. Migration `i` takes version `i` to
/// `i + 1`. Shared by every store so none drifts on these rules.
pub fn migrate(
    conn: &mut Connection,
    migrations: &[&str],
    target: i64,
) -> Result<(), MigrateError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    if found > supported {
        return Err(MigrateError::TooNew { found, supported });
    }
    if found < 0 {
        return Err(MigrateError::Negative(found));
    }
    for (to, sql) in (1i64..).zip(migrations) {
        if to > found && to <= target {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", to)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// How long [`exclusive`] waits for a lock held elsewhere: a levee killed
/// a moment ago can leave a child between fork and exec that still shares
/// the lock's open file (the lock goes with the last copy), and a restart
/// right after a crash must not fail on that.
pub const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Takes the data directory's lock file for this process: `Ok(None)` when
/// another process still holds it after [`LOCK_WAIT`]. Keep the file open
/// as long as the store lives.
pub fn exclusive(lock_path: &Path) -> std::io::Result<Option<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Re-exported for the store's and queue's error messages; it lives in
/// `levee_common::text` so the config crate quotes input the same way.
pub use levee_common::text::quote;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("levee-sqlite-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        let first = exclusive(&path).unwrap();
        assert!(first.is_some());
        // flock is per open file description: a second open conflicts.
        assert!(exclusive(&path).unwrap().is_none());
        drop(first);
        assert!(exclusive(&path).unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn migrations_apply_once_up_to_the_target_and_refuse_strange_versions() {
        const M: &[&str] = &["CREATE TABLE a (x)", "CREATE TABLE b (x)"];
        let mut c = Connection::open_in_memory().unwrap();
        let version = |c: &Connection| -> i64 {
            c.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap()
        };
        migrate(&mut c, M, 1).unwrap();
        assert_eq!(version(&c), 1);
        migrate(&mut c, M, 2).unwrap();
        migrate(&mut c, M, 2).unwrap(); // nothing left: no "table exists" error
        assert_eq!(version(&c), 2);
        c.pragma_update(None, "user_version", 3).unwrap();
        assert!(matches!(
            migrate(&mut c, M, 2),
            Err(MigrateError::TooNew {
                found: 3,
                supported: 2
            })
        ));
        c.pragma_update(None, "user_version", -1).unwrap();
        assert!(matches!(
            migrate(&mut c, M, 2),
            Err(MigrateError::Negative(-1))
        ));
    }
}
