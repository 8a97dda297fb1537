//! How every SQLite file of Levee is opened (this crate's `levee.db`, the
//! queues' `queues.db`): WAL or nothing, a bounded busy wait, one process per
//! data directory, and caller text made safe for error messages. Shared so
//! the stores cannot drift apart on durability.

use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::Duration;

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

/// Takes the data directory's lock file for this process: `Ok(None)` when
/// another process holds it. Keep the file open as long as the store lives.
pub fn exclusive(lock_path: &Path) -> std::io::Result<Option<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Caller-supplied text made safe to embed in a message: control characters
/// escaped, at most `max` characters (never cutting a multi-byte one).
pub fn quote(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().take(max) {
        // Only control characters are escaped: other text (quotes, accents)
        // is shown as the client sent it.
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

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
    fn quoting_escapes_and_bounds() {
        assert_eq!(quote("a\u{1b}b", 10), "a\\u{1b}b");
        assert_eq!(quote("abcdef", 3), "abc…");
        assert_eq!(quote("é", 1), "é");
    }
}
