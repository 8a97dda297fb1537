//! Daily usage records per key: admitted, throttled and over-quota counts.
//!
//! Owns: the in-memory buffer the hot path adds to, its write-behind to the
//! `usage_daily` table (same flush window and contract as the quota
//! counters, see [`crate::quota`]), and reads that merge disk with what is
//! not flushed yet. Must never: touch SQLite from `record`, or grow without
//! bound — the buffer holds at most [`MAX_BUFFERED`] key×day entries between
//! two flushes; records beyond that are dropped and counted (these are
//! statistics, not admission decisions, so dropping beats blocking).

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::StoreError;
use crate::key::{KEY_ID_LEN, MAX_KEYS};
use crate::period::{day_string, MAX_DAY, MIN_DAY};
use levee_common::sync::lock;

/// Key×day entries buffered between flushes: two days for every key, so a
/// flush window that spans midnight never drops.
pub const MAX_BUFFERED: usize = 2 * MAX_KEYS;
/// Longest day range one `usage` query may span.
pub const MAX_QUERY_DAYS: i64 = 1_000;
/// Most rows one `usage` query returns; a wider query is refused with a
/// message asking to narrow it, rather than building a huge reply.
pub const MAX_QUERY_ROWS: usize = 100_000;
const SHARDS: usize = 16;

/// What happened to one request of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageOutcome {
    Admitted,
    Throttled,
    OverQuota,
}

/// One key's usage on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub key_id: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    pub admitted: u64,
    pub throttled: u64,
    pub over_quota: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    admitted: u64,
    throttled: u64,
    over_quota: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.admitted = self.admitted.saturating_add(o.admitted);
        self.throttled = self.throttled.saturating_add(o.throttled);
        self.over_quota = self.over_quota.saturating_add(o.over_quota);
    }

    fn one(outcome: UsageOutcome) -> Counts {
        let mut c = Counts::default();
        match outcome {
            UsageOutcome::Admitted => c.admitted = 1,
            UsageOutcome::Throttled => c.throttled = 1,
            UsageOutcome::OverQuota => c.over_quota = 1,
        }
        c
    }
}

/// Unflushed deltas of one shard: key id → (day, counts). Two levels so
/// the hot path looks up by `&str` without allocating.
#[derive(Debug, Default)]
struct Deltas {
    by_key: HashMap<String, Vec<(i64, Counts)>>,
    /// (key, day) entries across `by_key`.
    entries: usize,
}

/// Days one key may have buffered between two flushes (normally 1, 2
/// across midnight); a caller sending many distinct days is cut off here so
/// the per-key search stays short.
const MAX_DAYS_PER_KEY: usize = 8;

impl Deltas {
    /// Adds `c` to (id, day) within the caps; false if it had to be dropped.
    fn add(&mut self, id: &str, day: i64, c: Counts, capacity: usize) -> bool {
        let room = self.entries < capacity;
        match self.by_key.get_mut(id) {
            Some(days) => {
                if let Some((_, have)) = days.iter_mut().find(|(d, _)| *d == day) {
                    have.add(c);
                    return true;
                }
                if !room || days.len() >= MAX_DAYS_PER_KEY {
                    return false;
                }
                days.push((day, c));
            }
            None => {
                if !room {
                    return false;
                }
                self.by_key.insert(id.to_owned(), vec![(day, c)]);
            }
        }
        self.entries += 1;
        true
    }
}

#[derive(Debug)]
pub(crate) struct UsageBuffer {
    shards: Box<[Mutex<Deltas>]>,
    hasher: RandomState,
    shard_capacity: usize,
    dropped: AtomicU64,
    /// Its lock also orders flushes against reads, so a read never sees a
    /// delta both in memory and on disk, or in neither.
    conn: Mutex<Connection>,
}

fn sql_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count_from_sql(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl UsageBuffer {
    pub(crate) fn new(conn: Connection) -> Self {
        Self::with_capacity(conn, MAX_BUFFERED)
    }

    fn with_capacity(conn: Connection, max_entries: usize) -> Self {
        UsageBuffer {
            shards: (0..SHARDS).map(|_| Mutex::new(Deltas::default())).collect(),
            hasher: RandomState::new(),
            shard_capacity: max_entries.div_ceil(SHARDS).max(1),
            dropped: AtomicU64::new(0),
            conn: Mutex::new(conn),
        }
    }

    fn shard(&self, key_id: &str) -> &Mutex<Deltas> {
        let i = (self.hasher.hash_one(key_id) % SHARDS as u64) as usize;
        &self.shards[i]
    }

    /// Records dropped because the buffer was full or the input invalid.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, key_id: &str, day: i64, outcome: UsageOutcome) {
        if key_id.is_empty() || key_id.len() > KEY_ID_LEN || !(MIN_DAY..=MAX_DAY).contains(&day) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.add(key_id, day, Counts::one(outcome));
    }

    fn add(&self, key_id: &str, day: i64, c: Counts) {
        if !lock(self.shard(key_id)).add(key_id, day, c, self.shard_capacity) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn flush(&self) -> Result<(), StoreError> {
        let mut conn = lock(&self.conn);
        let mut taken = Vec::new();
        for shard in self.shards.iter() {
            let deltas = std::mem::take(&mut *lock(shard));
            for (id, days) in deltas.by_key {
                taken.extend(days.into_iter().map(|(day, c)| ((id.clone(), day), c)));
            }
        }
        if taken.is_empty() {
            return Ok(());
        }
        if let Err(e) = write_deltas(&mut conn, &taken) {
            // Put the deltas back (adding to whatever arrived meanwhile) so
            // the next tick retries them.
            for ((id, day), c) in taken {
                self.add(&id, day, c);
            }
            return Err(e);
        }
        Ok(())
    }

    pub(crate) fn read(
        &self,
        key_id: Option<&str>,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        if from_day > to_day {
            return Err(StoreError::invalid("from_day", "must not be after to_day"));
        }
        if !(MIN_DAY..=MAX_DAY).contains(&from_day) || !(MIN_DAY..=MAX_DAY).contains(&to_day) {
            return Err(StoreError::invalid(
                "from_day",
                "outside the years 0001 to 9999",
            ));
        }
        if to_day - from_day >= MAX_QUERY_DAYS {
            return Err(StoreError::invalid(
                "to_day",
                format!("a query spans at most {MAX_QUERY_DAYS} days"),
            ));
        }
        let conn = lock(&self.conn);
        let mut merged: BTreeMap<(String, i64), Counts> = BTreeMap::new();
        let too_many = || {
            StoreError::invalid(
                "to_day",
                format!("more than {MAX_QUERY_ROWS} rows; narrow the key or day range"),
            )
        };
        {
            let mut stmt = conn.prepare_cached(
                "SELECT key_id, day, admitted, throttled, over_quota FROM usage_daily
                 WHERE day BETWEEN ?1 AND ?2 AND (?3 IS NULL OR key_id = ?3)
                 LIMIT ?4",
            )?;
            let limit = i64::try_from(MAX_QUERY_ROWS + 1).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![from_day, to_day, key_id, limit], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, i64>(1)?),
                    Counts {
                        admitted: count_from_sql(r.get(2)?),
                        throttled: count_from_sql(r.get(3)?),
                        over_quota: count_from_sql(r.get(4)?),
                    },
                ))
            })?;
            for row in rows {
                let (k, c) = row?;
                merged.insert(k, c);
            }
        }
        for shard in self.shards.iter() {
            let deltas = lock(shard);
            for (id, days) in &deltas.by_key {
                if key_id.is_some_and(|k| k != id) {
                    continue;
                }
                for (day, c) in days {
                    if (from_day..=to_day).contains(day) {
                        merged.entry((id.clone(), *day)).or_default().add(*c);
                    }
                }
            }
            if merged.len() > MAX_QUERY_ROWS {
                return Err(too_many());
            }
        }
        if merged.len() > MAX_QUERY_ROWS {
            return Err(too_many());
        }
        Ok(merged
            .into_iter()
            .map(|((key_id, day), c)| UsageRow {
                key_id,
                day: day_string(day),
                admitted: c.admitted,
                throttled: c.throttled,
                over_quota: c.over_quota,
            })
            .collect())
    }
}

fn write_deltas(
    conn: &mut Connection,
    deltas: &[((String, i64), Counts)],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO usage_daily (key_id, day, admitted, throttled, over_quota)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (key_id, day) DO UPDATE SET
               admitted = admitted + excluded.admitted,
               throttled = throttled + excluded.throttled,
               over_quota = over_quota + excluded.over_quota",
        )?;
        for ((id, day), c) in deltas {
            stmt.execute(params![
                id,
                day,
                sql_count(c.admitted),
                sql_count(c.throttled),
                sql_count(c.over_quota)
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{migrate, open_connection, Durability};

    const DAY: i64 = 20_000;

    fn buffer(dir: &tempfile::TempDir, cap: usize) -> UsageBuffer {
        let mut c = open_connection(&dir.path().join("u.db"), Durability::Normal).expect("opens");
        migrate(&mut c).expect("migrates");
        UsageBuffer::with_capacity(c, cap)
    }

    fn row(key: &str, day: i64, a: u64, t: u64, o: u64) -> UsageRow {
        UsageRow {
            key_id: key.into(),
            day: day_string(day),
            admitted: a,
            throttled: t,
            over_quota: o,
        }
    }

    #[test]
    fn reads_merge_disk_and_unflushed_memory() {
        let d = tempfile::tempdir().expect("tempdir");
        let u = buffer(&d, MAX_BUFFERED);
        u.record("key_a", DAY, UsageOutcome::Admitted);
        u.record("key_a", DAY, UsageOutcome::Throttled);
        u.flush().expect("flushes");
        u.record("key_a", DAY, UsageOutcome::Admitted);
        u.record("key_a", DAY, UsageOutcome::OverQuota);
        u.record("key_a", DAY + 1, UsageOutcome::Admitted);
        u.record("key_b", DAY, UsageOutcome::Admitted);
        assert_eq!(
            u.read(Some("key_a"), DAY, DAY + 1).expect("reads"),
            vec![row("key_a", DAY, 2, 1, 1), row("key_a", DAY + 1, 1, 0, 0)]
        );
        assert_eq!(u.read(None, DAY, DAY).expect("reads").len(), 2);
        u.flush().expect("flushes");
        assert_eq!(
            u.read(Some("key_a"), DAY, DAY).expect("reads"),
            vec![row("key_a", DAY, 2, 1, 1)],
            "flushing adds deltas once"
        );
        assert!(u
            .read(Some("key_a"), DAY + 2, DAY + 9)
            .expect("reads")
            .is_empty());
    }

    #[test]
    fn flushed_usage_is_on_disk_for_a_second_connection() {
        let d = tempfile::tempdir().expect("tempdir");
        let u = buffer(&d, MAX_BUFFERED);
        for _ in 0..5 {
            u.record("key_a", DAY, UsageOutcome::Admitted);
        }
        u.flush().expect("flushes");
        let other = buffer(&d, MAX_BUFFERED);
        assert_eq!(
            other.read(None, DAY, DAY).expect("reads"),
            vec![row("key_a", DAY, 5, 0, 0)]
        );
    }

    #[test]
    fn the_buffer_is_bounded_and_invalid_records_are_dropped() {
        let d = tempfile::tempdir().expect("tempdir");
        let u = buffer(&d, SHARDS);
        for i in 0..100 {
            u.record(&format!("k{i}"), DAY, UsageOutcome::Admitted);
        }
        let held: usize = u.shards.iter().map(|s| lock(s).entries).sum();
        assert!(held <= SHARDS, "{held}");
        assert_eq!(u.dropped(), (100 - held) as u64);
        let before = u.dropped();
        u.record("k", i64::MAX, UsageOutcome::Admitted);
        u.record(&"k".repeat(KEY_ID_LEN + 1), DAY, UsageOutcome::Admitted);
        assert_eq!(u.dropped(), before + 2);
    }

    #[test]
    fn one_key_buffers_a_bounded_number_of_days() {
        let d = tempfile::tempdir().expect("tempdir");
        let u = buffer(&d, MAX_BUFFERED);
        for day in 0..20 {
            u.record("key_a", DAY + day, UsageOutcome::Admitted);
        }
        assert_eq!(u.dropped(), 20 - MAX_DAYS_PER_KEY as u64);
        u.record("key_a", DAY, UsageOutcome::Admitted);
        assert_eq!(
            u.dropped(),
            20 - MAX_DAYS_PER_KEY as u64,
            "a held day still counts"
        );
        u.flush().expect("flushes");
        u.record("key_a", DAY + 19, UsageOutcome::Admitted);
        assert_eq!(
            u.read(Some("key_a"), DAY + 19, DAY + 19)
                .expect("reads")
                .len(),
            1
        );
    }

    #[test]
    fn queries_are_validated_and_bounded() {
        let d = tempfile::tempdir().expect("tempdir");
        let u = buffer(&d, MAX_BUFFERED);
        let field = |r: Result<Vec<UsageRow>, StoreError>| match r {
            Err(StoreError::Invalid { field, .. }) => field,
            other => format!("unexpected {other:?}"),
        };
        assert_eq!(field(u.read(None, DAY, DAY - 1)), "from_day");
        assert_eq!(field(u.read(None, i64::MIN, DAY)), "from_day");
        assert_eq!(field(u.read(None, DAY, DAY + MAX_QUERY_DAYS)), "to_day");
        assert!(u.read(None, DAY, DAY + MAX_QUERY_DAYS - 1).is_ok());
    }
}
