//! The SQLite file `queues.db`: connection settings, versioned migrations,
//! and the read-only queries (list, peek, counts).
//!
//! Owns: how connections are opened (WAL; `synchronous=NORMAL`, see the
//! crate docs for what that promises), the [`MIGRATIONS`] list recorded in
//! `PRAGMA user_version`, and the reader's queries. Must never: edit or
//! reorder a released migration (append a new one), or write from the
//! reader connection — only the writer thread writes.

use std::path::Path;

use rusqlite::{params, Connection};

use crate::error::QueueError;
use crate::model::{MessageAttributes, PeekedMessage};

/// Schema migrations; entry `i` moves a file from `user_version = i` to
/// `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // v1: queues and messages. Queue ids are AUTOINCREMENT so a queue
    // deleted and created again never sees its predecessor's receipts.
    "CREATE TABLE queues (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        settings TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        modified_ms INTEGER NOT NULL
    );
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,
        queue_id INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        body TEXT NOT NULL,
        attributes TEXT,
        md5_body TEXT NOT NULL,
        md5_attributes TEXT,
        sent_ms INTEGER NOT NULL,
        visible_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        receive_count INTEGER NOT NULL DEFAULT 0,
        first_receive_ms INTEGER,
        receipt INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX messages_ready ON messages(queue_id, visible_at);
    CREATE INDEX messages_expiry ON messages(expires_at);",
    // v2: the queue a dead-lettered message came from, so a move task can
    // send it back (StartMessageMoveTask without a destination).
    "ALTER TABLE messages ADD COLUMN dead_letter_source INTEGER;",
    // v3: FIFO queues: a message's group and deduplication id, and the
    // deduplication ids seen in the last five minutes (kept across restarts,
    // as SQS keeps them).
    "ALTER TABLE messages ADD COLUMN group_id TEXT;
    ALTER TABLE messages ADD COLUMN dedup_id TEXT;
    CREATE INDEX messages_fifo_order ON messages(queue_id) WHERE group_id IS NOT NULL;
    CREATE INDEX messages_group ON messages(queue_id, group_id, visible_at) WHERE group_id IS NOT NULL;
    CREATE TABLE dedup (
        queue_id INTEGER NOT NULL,
        scope TEXT NOT NULL,
        dedup_id TEXT NOT NULL,
        message_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (queue_id, scope, dedup_id)
    );
    CREATE INDEX dedup_expiry ON dedup(expires_ms);",
    // v4: FIFO receives walk the groups, and each group in order, instead
    // of every message in order: a backlog behind groups in flight no
    // longer costs a scan of the whole queue.
    "DROP INDEX messages_fifo_order;
    CREATE INDEX messages_fifo_groups ON messages(queue_id, group_id) WHERE group_id IS NOT NULL;",
];

pub(crate) fn open_connection(path: &Path) -> Result<Connection, QueueError> {
    levee_store::sqlite::open_wal(path, "NORMAL").map_err(|e| match e {
        levee_store::sqlite::OpenError::Sqlite(e) => QueueError::from(e),
        not_wal => QueueError::corrupt(not_wal.to_string()),
    })
}

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), QueueError> {
    use levee_store::sqlite::MigrateError;
    let target = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    levee_store::sqlite::migrate(conn, MIGRATIONS, target).map_err(|e| match e {
        MigrateError::Sqlite(e) => QueueError::from(e),
        MigrateError::TooNew { found, supported } => QueueError::TooNew { found, supported },
        negative => QueueError::corrupt(negative.to_string()),
    })
}

/// Attributes as stored: `NULL` for none, else JSON of the map.
pub(crate) fn encode_attributes(a: &MessageAttributes) -> Option<String> {
    if a.is_empty() {
        None
    } else {
        serde_json::to_string(a).ok()
    }
}

pub(crate) fn decode_attributes(text: Option<String>) -> Result<MessageAttributes, QueueError> {
    match text {
        None => Ok(MessageAttributes::new()),
        Some(t) => serde_json::from_str(&t)
            .map_err(|e| QueueError::corrupt(format!("message attributes: {e}"))),
    }
}

pub(crate) fn count_u32(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

/// Visible, in-flight and delayed counts of one queue at `now`, expired
/// messages excluded.
pub(crate) fn counts(
    conn: &Connection,
    queue_id: i64,
    now: i64,
) -> Result<(u64, u64, u64), QueueError> {
    let (visible, in_flight, delayed): (i64, i64, i64) = conn.query_row(
        "SELECT
            coalesce(sum(visible_at <= ?2), 0),
            coalesce(sum(visible_at > ?2 AND receive_count > 0), 0),
            coalesce(sum(visible_at > ?2 AND receive_count = 0), 0)
         FROM messages WHERE queue_id = ?1 AND expires_at > ?2",
        params![queue_id, now],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let u = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok((u(visible), u(in_flight), u(delayed)))
}

/// Up to `max` unexpired messages of a queue in delivery order, unchanged.
pub(crate) fn peek(
    conn: &Connection,
    queue_id: i64,
    now: i64,
    max: usize,
) -> Result<Vec<PeekedMessage>, QueueError> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, body, attributes, sent_ms, receive_count, visible_at, expires_at
         FROM messages WHERE queue_id = ?1 AND expires_at > ?2
         ORDER BY visible_at, seq LIMIT ?3",
    )?;
    let limit = i64::try_from(max).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![queue_id, now, limit], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (message_id, body, attrs, sent_ms, rc, visible_at_ms, expires_at_ms) = row?;
        out.push(PeekedMessage {
            message_id,
            body,
            attributes: decode_attributes(attrs)?,
            sent_ms,
            receive_count: count_u32(rc),
            visible_at_ms,
            expires_at_ms,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_migrated_in_wal_with_normal_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open_connection(&dir.path().join("q.db")).expect("opens");
        migrate(&mut conn).expect("migrates");
        migrate(&mut conn).expect("idempotent");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("reads");
        assert_eq!(v, MIGRATIONS.len() as i64);
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("reads");
        assert_eq!(sync, 1, "NORMAL");
    }

    #[test]
    fn a_newer_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open_connection(&dir.path().join("q.db")).expect("opens");
        conn.pragma_update(None, "user_version", 9).expect("sets");
        assert!(matches!(
            migrate(&mut conn),
            Err(QueueError::TooNew { found: 9, .. })
        ));
    }
}
