//! Quota counters: the [`QuotaCounters`] trait and its embedded backend.
//!
//! Owns: counting admitted requests per counter id and period, exactly, and
//! writing those counts behind the hot path to SQLite. Must never: touch
//! SQLite while a request waits (`try_consume` is memory only), admit more
//! than `limit` in a period on this node, or hold a shard lock across I/O.
//!
//! # Durability contract
//! A count is acknowledged when `try_consume` returns `Admitted`. The store's
//! flusher thread calls [`QuotaCounters::flush`] every
//! [`crate::FLUSH_INTERVAL`] (500 ms), so an acknowledged count is committed
//! to the WAL within 1 s (the interval plus a flush that takes < 500 ms),
//! and after `kill -9` at most the last second of counts is lost. On
//! restart the counts on disk are loaded back before the first request. A
//! flush that fails (disk full) keeps the counts in memory and retries on the
//! next tick; the contract is broken only for as long as the disk refuses
//! writes, and [`crate::Store::flush_failures`] shows it. Across a power cut
//! the counter connection's `synchronous=NORMAL` may also lose commits since
//! the last WAL checkpoint (see [`crate::schema`]).
//!
//! # Counter ids
//! The plan quota of a key counts under the key id; a per-route quota
//! counts under [`route_counter_id`]. Ids longer than [`MAX_COUNTER_ID_LEN`]
//! are refused (fail closed: `Exhausted`).
//!
//! # Periods move forward only
//! Each counter holds one period. A call with a later `period_start` starts
//! a new period (the old count is kept for the next flush); a call with an
//! earlier one — a clock stepped back, or a plan whose period changed —
//! counts against the held period. That can only ever refuse early, never
//! admit extra.
//!
//! # Bounds
//! At most [`MAX_COUNTERS`] counters in memory (≈ 100 B each with a key id,
//! up to ≈ 350 B with a route key: ≤ ~200 MiB at the cap with plan quotas
//! only). A counter whose period started more than [`crate::period::LONGEST_PERIOD_SECS`]
//! before the newest period seen has certainly ended; once it is on disk a
//! flush evicts it. A new counter arriving while its shard is full is
//! refused (fail closed) — reaching the cap takes more live keys × quota
//! routes than [`crate::key::MAX_KEYS`] allows with plan quotas alone.
//! Rows on disk are pruned after two longest periods.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::StoreError;
use crate::key::KEY_ID_LEN;
use crate::period::{LONGEST_PERIOD_SECS, MAX_UNIX, MIN_UNIX};
use crate::plan::MAX_ROUTE_KEY_LEN;
use levee_common::sync::lock;

/// The answer to one request's quota check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaDecision {
    /// Counted; `used` includes this request.
    Admitted { used: u64, remaining: u64 },
    /// Refused; nothing was counted.
    Exhausted { used: u64 },
}

impl QuotaDecision {
    pub fn is_admitted(&self) -> bool {
        matches!(self, QuotaDecision::Admitted { .. })
    }
}

/// Per-period request counters. The embedded backend is [`EmbeddedQuotas`];
/// a cluster backend (Redis/Valkey) implements the same trait.
pub trait QuotaCounters: Send + Sync + std::fmt::Debug {
    /// Admit one request for `key_id` against `limit` in the period starting
    /// at `period_start` (unix secs). Never admits more than `limit` within
    /// a period on this node, even under concurrent calls.
    fn try_consume(&self, key_id: &str, period_start: i64, limit: u64) -> QuotaDecision;

    /// Requests counted for `key_id` in the period starting at
    /// `period_start`; 0 when unknown. For admin reads, not the hot path:
    /// a period no longer in memory is read from storage.
    fn used(&self, key_id: &str, period_start: i64) -> u64;

    /// Persist everything counted so far.
    fn flush(&self) -> Result<(), StoreError>;

    /// Drop every counter of a deleted key (its plan counter and its route
    /// counters), in memory and on disk.
    fn forget_key(&self, key_id: &str) -> Result<(), StoreError>;
}

/// Most counters held in memory.
pub const MAX_COUNTERS: usize = 2_000_000;
/// Longest counter id: a key id, `:`, a route key.
pub const MAX_COUNTER_ID_LEN: usize = KEY_ID_LEN + 1 + MAX_ROUTE_KEY_LEN;
/// Shards of the counter map: concurrent requests for different keys rarely
/// wait on the same lock. 16 is ample for the 2-core target and cheap.
const SHARDS: usize = 16;
/// Disk rows older than this (before the newest period) are deleted.
const DISK_RETENTION_SECS: i64 = 2 * LONGEST_PERIOD_SECS;

/// The counter id of `key_id`'s quota on one route.
pub fn route_counter_id(key_id: &str, route_key: &str) -> String {
    format!("{key_id}:{route_key}")
}

fn belongs_to(counter_id: &str, key_id: &str) -> bool {
    match counter_id.strip_prefix(key_id) {
        Some(rest) => rest.is_empty() || rest.starts_with(':'),
        None => false,
    }
}

#[derive(Debug)]
struct Counter {
    period_start: i64,
    used: u64,
    /// What the disk holds for this period; `used != persisted` = dirty.
    persisted: u64,
}

/// The final count of a period that ended before it was flushed.
#[derive(Debug)]
struct Row {
    id: String,
    period_start: i64,
    used: u64,
}

#[derive(Debug, Default)]
struct Shard {
    counters: HashMap<String, Counter>,
    retired: Vec<Row>,
}

/// In-memory sharded counters with write-behind to SQLite.
#[derive(Debug)]
pub struct EmbeddedQuotas {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Per-shard caps on counters and on retired rows awaiting a flush.
    shard_capacity: usize,
    /// The newest period start seen: the store's notion of "now" for
    /// eviction, taken from callers so no clock is read.
    newest_period: AtomicI64,
    /// Retired rows dropped because a shard's retired list was full (only
    /// reachable with periods far shorter than a day between two flushes).
    lost_rows: AtomicU64,
    /// The counter connection; its lock also serializes flushes.
    conn: Mutex<Connection>,
}

impl EmbeddedQuotas {
    /// Loads the counters of current periods from `conn` (a migrated
    /// database).
    pub(crate) fn load(conn: Connection) -> Result<Self, StoreError> {
        Self::load_with_capacity(conn, MAX_COUNTERS)
    }

    fn load_with_capacity(conn: Connection, max_counters: usize) -> Result<Self, StoreError> {
        let shard_capacity = max_counters.div_ceil(SHARDS).max(1);
        let q = EmbeddedQuotas {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            shard_capacity,
            newest_period: AtomicI64::new(i64::MIN),
            lost_rows: AtomicU64::new(0),
            conn: Mutex::new(conn),
        };
        q.load_from_disk(max_counters)?;
        Ok(q)
    }

    fn load_from_disk(&self, max_counters: usize) -> Result<(), StoreError> {
        let conn = lock(&self.conn);
        let newest: Option<i64> =
            conn.query_row("SELECT max(period_start) FROM quota_counters", [], |r| {
                r.get(0)
            })?;
        let Some(newest) = newest else {
            return Ok(());
        };
        self.newest_period.store(newest, Ordering::Relaxed);
        let mut stmt = conn.prepare(
            "SELECT q.counter_id, q.period_start, q.used FROM quota_counters q
             WHERE q.period_start >= ?1
               AND q.period_start = (SELECT max(period_start) FROM quota_counters
                                     WHERE counter_id = q.counter_id)
             LIMIT ?2",
        )?;
        let horizon = newest.saturating_sub(LONGEST_PERIOD_SECS);
        let limit = i64::try_from(max_counters).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![horizon, limit], |r| {
            Ok(Row {
                id: r.get(0)?,
                period_start: r.get(1)?,
                used: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            })
        })?;
        for row in rows {
            let row = row?;
            let mut shard = lock(self.shard(&row.id));
            if shard.counters.len() < self.shard_capacity {
                shard.counters.insert(
                    row.id,
                    Counter {
                        period_start: row.period_start,
                        used: row.used,
                        persisted: row.used,
                    },
                );
            }
        }
        Ok(())
    }

    fn shard(&self, id: &str) -> &Mutex<Shard> {
        // The modulo keeps the index in range whatever the hash.
        let i = (self.hasher.hash_one(id) % SHARDS as u64) as usize;
        &self.shards[i]
    }

    /// Rows retired because their shard's retired list was full.
    pub fn lost_rows(&self) -> u64 {
        self.lost_rows.load(Ordering::Relaxed)
    }

    /// Counters currently held in memory.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).counters.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write_rows(
        conn: &mut Connection,
        rows: &[&Row],
        prune_before: i64,
    ) -> Result<(), StoreError> {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO quota_counters (counter_id, period_start, used) VALUES (?1, ?2, ?3)
                 ON CONFLICT (counter_id, period_start) DO UPDATE SET used = max(used, excluded.used)",
            )?;
            for r in rows {
                let used = i64::try_from(r.used).unwrap_or(i64::MAX);
                stmt.execute(params![r.id, r.period_start, used])?;
            }
            tx.execute(
                "DELETE FROM quota_counters WHERE period_start < ?1",
                params![prune_before],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl QuotaCounters for EmbeddedQuotas {
    fn try_consume(&self, key_id: &str, period_start: i64, limit: u64) -> QuotaDecision {
        // Hostile or broken input is refused, never counted: a period start
        // outside the calendar range would also poison eviction's "now".
        if key_id.is_empty()
            || key_id.len() > MAX_COUNTER_ID_LEN
            || !(MIN_UNIX - LONGEST_PERIOD_SECS..=MAX_UNIX).contains(&period_start)
        {
            return QuotaDecision::Exhausted { used: 0 };
        }
        let mut guard = lock(self.shard(key_id));
        let shard = &mut *guard;
        let counter = match shard.counters.get_mut(key_id) {
            Some(c) => {
                if period_start > c.period_start {
                    if c.used != c.persisted {
                        if shard.retired.len() < self.shard_capacity {
                            shard.retired.push(Row {
                                id: key_id.to_owned(),
                                period_start: c.period_start,
                                used: c.used,
                            });
                        } else {
                            self.lost_rows.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    *c = Counter {
                        period_start,
                        used: 0,
                        persisted: 0,
                    };
                    self.newest_period
                        .fetch_max(period_start, Ordering::Relaxed);
                }
                c
            }
            None => {
                if shard.counters.len() >= self.shard_capacity {
                    return QuotaDecision::Exhausted { used: 0 };
                }
                self.newest_period
                    .fetch_max(period_start, Ordering::Relaxed);
                shard.counters.entry(key_id.to_owned()).or_insert(Counter {
                    period_start,
                    used: 0,
                    persisted: 0,
                })
            }
        };
        if counter.used >= limit {
            return QuotaDecision::Exhausted { used: counter.used };
        }
        counter.used += 1;
        QuotaDecision::Admitted {
            used: counter.used,
            remaining: limit - counter.used,
        }
    }

    fn used(&self, key_id: &str, period_start: i64) -> u64 {
        if key_id.len() > MAX_COUNTER_ID_LEN {
            return 0;
        }
        {
            let shard = lock(self.shard(key_id));
            if let Some(c) = shard.counters.get(key_id) {
                if c.period_start == period_start {
                    return c.used;
                }
                if c.period_start < period_start {
                    return 0; // that period hasn't had a request yet
                }
            }
            if let Some(r) = shard
                .retired
                .iter()
                .find(|r| r.id == key_id && r.period_start == period_start)
            {
                return r.used;
            }
        }
        // An older, flushed period: the disk has it. A read error answers 0:
        // this is a reporting path, never an admission decision.
        lock(&self.conn)
            .query_row(
                "SELECT used FROM quota_counters WHERE counter_id = ?1 AND period_start = ?2",
                params![key_id, period_start],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let mut conn = lock(&self.conn);
        let newest = self.newest_period.load(Ordering::Relaxed);
        let stale_before = newest.saturating_sub(LONGEST_PERIOD_SECS);
        let mut retired = Vec::new();
        let mut live = Vec::new();
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            retired.append(&mut s.retired);
            s.counters.retain(|id, c| {
                if c.used != c.persisted {
                    live.push(Row {
                        id: id.clone(),
                        period_start: c.period_start,
                        used: c.used,
                    });
                    true
                } else {
                    c.period_start >= stale_before
                }
            });
        }
        let rows: Vec<&Row> = retired.iter().chain(live.iter()).collect();
        let prune_before = newest.saturating_sub(DISK_RETENTION_SECS);
        if let Err(e) = Self::write_rows(&mut conn, &rows, prune_before) {
            // Live counters are still dirty; put the retired rows back so
            // the next tick writes them.
            for r in retired {
                let mut s = lock(self.shard(&r.id));
                if s.retired.len() < self.shard_capacity {
                    s.retired.push(r);
                } else {
                    self.lost_rows.fetch_add(1, Ordering::Relaxed);
                }
            }
            return Err(e);
        }
        for r in live {
            let mut s = lock(self.shard(&r.id));
            if let Some(c) = s.counters.get_mut(&r.id) {
                if c.period_start == r.period_start {
                    c.persisted = c.persisted.max(r.used);
                }
            }
        }
        Ok(())
    }

    fn forget_key(&self, key_id: &str) -> Result<(), StoreError> {
        // Holding the connection lock first means no flush is between
        // collecting and writing this key's rows while they are removed.
        let conn = lock(&self.conn);
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            s.counters.retain(|id, _| !belongs_to(id, key_id));
            s.retired.retain(|r| !belongs_to(&r.id, key_id));
        }
        // ':' + 1 = ';', so this range is exactly the ids `key_id:…`.
        conn.execute(
            "DELETE FROM quota_counters WHERE counter_id = ?1
             OR (counter_id >= (?1 || ':') AND counter_id < (?1 || ';'))",
            params![key_id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use super::*;
    use crate::schema::{migrate, open_connection, Durability};

    const T0: i64 = 1_800_000_000;

    fn conn(path: &Path) -> Connection {
        let mut c = open_connection(path, Durability::Normal).expect("opens");
        migrate(&mut c).expect("migrates");
        c
    }

    fn setup() -> (tempfile::TempDir, EmbeddedQuotas) {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = EmbeddedQuotas::load(conn(&dir.path().join("q.db"))).expect("loads");
        (dir, q)
    }

    fn disk_used(dir: &tempfile::TempDir, id: &str, start: i64) -> Option<i64> {
        conn(&dir.path().join("q.db"))
            .query_row(
                "SELECT used FROM quota_counters WHERE counter_id = ?1 AND period_start = ?2",
                params![id, start],
                |r| r.get(0),
            )
            .optional()
            .expect("reads")
    }

    #[test]
    fn admits_up_to_the_limit_then_refuses() {
        let (_d, q) = setup();
        assert_eq!(
            q.try_consume("k", T0, 2),
            QuotaDecision::Admitted {
                used: 1,
                remaining: 1
            }
        );
        assert_eq!(
            q.try_consume("k", T0, 2),
            QuotaDecision::Admitted {
                used: 2,
                remaining: 0
            }
        );
        assert_eq!(
            q.try_consume("k", T0, 2),
            QuotaDecision::Exhausted { used: 2 }
        );
        assert_eq!(q.used("k", T0), 2, "a refusal is not counted");
        // A raised limit admits again, a lowered one refuses at once.
        assert!(q.try_consume("k", T0, 3).is_admitted());
        assert_eq!(
            q.try_consume("k", T0, 1),
            QuotaDecision::Exhausted { used: 3 }
        );
    }

    #[test]
    fn concurrent_calls_admit_exactly_the_limit() {
        let (_d, q) = setup();
        let q = Arc::new(q);
        let admitted = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..64)
            .map(|_| {
                let q = Arc::clone(&q);
                let admitted = Arc::clone(&admitted);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if q.try_consume("key_hot", T0, 1000).is_admitted() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread ran");
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 1000);
        assert_eq!(q.used("key_hot", T0), 1000);
    }

    #[test]
    fn a_new_period_starts_at_zero_and_the_old_one_reaches_disk() {
        let (d, q) = setup();
        for _ in 0..3 {
            q.try_consume("k", T0, 10);
        }
        let next = T0 + 86_400;
        assert_eq!(
            q.try_consume("k", next, 10),
            QuotaDecision::Admitted {
                used: 1,
                remaining: 9
            }
        );
        assert_eq!(q.used("k", T0), 3, "retired, not yet flushed");
        q.flush().expect("flushes");
        assert_eq!(disk_used(&d, "k", T0), Some(3));
        assert_eq!(disk_used(&d, "k", next), Some(1));
        assert_eq!(q.used("k", T0), 3, "read back from disk");
    }

    #[test]
    fn an_earlier_period_counts_against_the_held_one() {
        let (_d, q) = setup();
        q.try_consume("k", T0, 2);
        q.try_consume("k", T0 - 86_400, 2);
        assert_eq!(
            q.try_consume("k", T0 - 86_400, 2),
            QuotaDecision::Exhausted { used: 2 }
        );
        assert_eq!(q.used("k", T0), 2);
    }

    #[test]
    fn flushed_counts_survive_a_reload() {
        let (d, q) = setup();
        for _ in 0..7 {
            q.try_consume("k", T0, 10);
        }
        q.try_consume(&route_counter_id("k", "GET /a"), T0, 10);
        q.flush().expect("flushes");
        drop(q);
        let q = EmbeddedQuotas::load(conn(&d.path().join("q.db"))).expect("reloads");
        assert_eq!(q.used("k", T0), 7);
        assert_eq!(
            q.try_consume("k", T0, 8),
            QuotaDecision::Admitted {
                used: 8,
                remaining: 0
            }
        );
        assert_eq!(
            q.try_consume("k", T0, 8),
            QuotaDecision::Exhausted { used: 8 }
        );
        assert_eq!(q.used(&route_counter_id("k", "GET /a"), T0), 1);
    }

    #[test]
    fn only_the_latest_recent_period_is_loaded() {
        let (d, q) = setup();
        q.try_consume("old", T0 - 40 * 86_400, 10);
        q.try_consume("k", T0 - 86_400, 10);
        q.try_consume("k", T0, 10);
        q.flush().expect("flushes");
        drop(q);
        let q = EmbeddedQuotas::load(conn(&d.path().join("q.db"))).expect("reloads");
        assert_eq!(
            q.len(),
            1,
            "'old' ended long ago; 'k' only for its latest period"
        );
        assert_eq!(q.used("k", T0), 1);
    }

    #[test]
    fn flush_evicts_ended_periods_once_they_are_on_disk() {
        let (d, q) = setup();
        q.try_consume("ancient", T0 - 40 * 86_400, 10);
        q.try_consume("k", T0, 10);
        q.flush().expect("flushes");
        assert_eq!(q.len(), 2, "dirty counters are written before eviction");
        q.flush().expect("flushes");
        assert_eq!(q.len(), 1, "clean and ended: evicted");
        assert_eq!(disk_used(&d, "ancient", T0 - 40 * 86_400), Some(1));
        // Two longest periods later, the disk row is pruned too.
        q.try_consume("k", T0 + 63 * 86_400, 10);
        q.flush().expect("flushes");
        assert_eq!(disk_used(&d, "ancient", T0 - 40 * 86_400), None);
    }

    #[test]
    fn a_full_table_refuses_new_counters_but_serves_known_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = EmbeddedQuotas::load_with_capacity(conn(&dir.path().join("q.db")), SHARDS)
            .expect("loads");
        let mut refused = 0;
        for i in 0..200 {
            if !q.try_consume(&format!("k{i}"), T0, 10).is_admitted() {
                refused += 1;
            }
        }
        assert!(q.len() <= SHARDS, "{}", q.len());
        assert_eq!(refused, 200 - q.len());
        let known = (0..200)
            .map(|i| format!("k{i}"))
            .find(|id| q.used(id, T0) == 1)
            .expect("some counter was admitted");
        assert!(q.try_consume(&known, T0, 10).is_admitted());
    }

    #[test]
    fn hostile_arguments_are_refused_not_counted() {
        let (_d, q) = setup();
        let long = "k".repeat(MAX_COUNTER_ID_LEN + 1);
        assert_eq!(
            q.try_consume(&long, T0, 10),
            QuotaDecision::Exhausted { used: 0 }
        );
        assert_eq!(
            q.try_consume("", T0, 10),
            QuotaDecision::Exhausted { used: 0 }
        );
        assert_eq!(
            q.try_consume("k", i64::MAX, 10),
            QuotaDecision::Exhausted { used: 0 }
        );
        assert_eq!(
            q.try_consume("k", i64::MIN, 10),
            QuotaDecision::Exhausted { used: 0 }
        );
        assert_eq!(
            q.try_consume("k", T0, 0),
            QuotaDecision::Exhausted { used: 0 }
        );
        assert_eq!(
            q.try_consume("k", T0, u64::MAX),
            QuotaDecision::Admitted {
                used: 1,
                remaining: u64::MAX - 1
            }
        );
        assert_eq!(q.used(&long, T0), 0);
        assert_eq!(q.len(), 1);
        q.flush().expect("flushes");
    }

    #[test]
    fn forgetting_a_key_drops_its_route_counters_and_nothing_else() {
        let (d, q) = setup();
        let route = route_counter_id("key_a", "GET /x");
        for id in ["key_a", route.as_str(), "key_ab", "key_b"] {
            q.try_consume(id, T0, 10);
        }
        q.flush().expect("flushes");
        q.forget_key("key_a").expect("forgets");
        assert_eq!(q.used("key_a", T0), 0);
        assert_eq!(q.used(&route, T0), 0);
        assert_eq!(disk_used(&d, "key_a", T0), None);
        assert_eq!(disk_used(&d, &route, T0), None);
        assert_eq!(q.used("key_ab", T0), 1);
        assert_eq!(disk_used(&d, "key_ab", T0), Some(1));
        assert_eq!(q.len(), 2);
    }
}
