//! [`Meters`]: per-invocation usage in memory, written behind to SQLite.
//!
//! Owns: one meter per (dimension, name) — dimensions are everything, each
//! function, each route key and each API key id — holding the running
//! totals of the current UTC hour, day and month; the hourly rows in
//! `meters.db`; and the flusher thread. Must never: touch SQLite or
//! allocate more than one entry on the hot path ([`Meters::record`] and
//! [`Meters::spend`] are memory only), read the clock on the hot path, or
//! grow past the bounds below.
//!
//! # Flush contract
//! A recorded invocation is in memory when `record` returns. The flusher
//! thread writes every changed hour every [`FLUSH_INTERVAL`] (500 ms), so it
//! is committed to the WAL within 1 s (the interval plus a flush that takes
//! < 500 ms); after `kill -9` at most the last second is lost. Dropping the
//! last `Arc<Meters>` stops the thread after one final flush. On open, the
//! current month's hours are loaded back before the first request. A flush
//! that fails keeps everything in memory and retries on the next tick;
//! [`Meters::flush_failures`] shows how long the contract has been broken.
//! Rows hold absolute totals and the upsert keeps the larger value, so a
//! retried write never double-counts.
//!
//! # Periods move forward only
//! A record stamped before a meter's current hour (a clock stepped back, a
//! long invocation finishing after a newer one) counts in the current hour,
//! day and month: totals are never lost, only placed a little late.
//!
//! # Bounds
//! - Function and route meters: at most [`MAX_FUNCTION_METERS`] /
//!   [`MAX_ROUTE_METERS`]; both come from the config, so the caps are only
//!   a guard against a caller passing request text as a name.
//! - API key meters: at most [`MAX_KEY_METERS`] (the store's 1M keys), about
//!   200 B each, so ≤ ~200 MiB at the cap.
//! - Names longer than [`MAX_NAME_LEN`] bytes, and new names once a
//!   dimension is at its cap, are metered under [`OTHER`]: money is never
//!   dropped, only attributed to "(other)". Keys a budget names are pinned
//!   ([`Meters::pin_key`]) and always get their own meter.
//! - Retired hour rows awaiting a flush: at most one per meter slot per
//!   shard; beyond that a row is dropped and counted in
//!   [`Meters::lost_rows`] (reachable only if flushes fail for an hour).
//! - Fired-alert marks awaiting a flush: at most [`MAX_PENDING_MARKS`].
//! - Meters idle for a whole month are evicted once flushed; rows on disk
//!   older than [`RETENTION_SECS`] (400 days) are pruned daily.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use serde::Serialize;

use crate::db::{self, AlertMark, HourRow};
use crate::error::MeterError;
use crate::model::{BudgetPeriod, BudgetScope, Prices};
use crate::period::{bounds, hour_start, DAY};
use crate::pricing::{cost, invocation_usage, Usage};
use levee_common::sync::lock;
use levee_store::writebehind::Flusher;

/// How often the flusher writes. Half the 1 s window, so a flush that itself
/// takes up to 500 ms still lands in time.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// The meter's file inside the data directory.
pub const DB_FILE: &str = "meters.db";
/// Most function meters.
pub const MAX_FUNCTION_METERS: usize = 10_000;
/// Most route meters.
pub const MAX_ROUTE_METERS: usize = 10_000;
/// Most API key meters: levee-store's key limit.
pub const MAX_KEY_METERS: usize = 1_000_000;
/// Longest name given its own meter.
pub const MAX_NAME_LEN: usize = 256;
/// Where usage goes that has no meter of its own (see Bounds).
pub const OTHER: &str = "(other)";
/// Most fired-alert marks waiting for a flush.
pub const MAX_PENDING_MARKS: usize = 10_000;
/// Hourly rows older than this are deleted.
pub const RETENTION_SECS: i64 = 400 * DAY;
/// Shards per dimension: concurrent records for different names rarely
/// share a lock.
const SHARDS: usize = 16;
/// The one name in the "everything" dimension.
const ALL: &str = "";

/// One finished invocation, as the edge reports it.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    pub function: &'a str,
    /// The route key (`"GET /hello/{name}"`), if it came through a route.
    pub route: Option<&'a str>,
    /// The API key id, if one was presented and valid.
    pub key: Option<&'a str>,
    /// From the start of the function's code until it returned.
    pub duration: Duration,
    /// The function's configured memory.
    pub memory_mb: u32,
    /// Response bytes sent to the client.
    pub bytes_out: u64,
    /// When it finished, unix seconds.
    pub at_unix: i64,
    pub cold: bool,
    /// One of [`crate::metrics::OUTCOMES`]; anything else is labelled "other".
    pub outcome: &'a str,
}

/// What [`Meters::costs`] groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CostBy {
    Function,
    Route,
    Key,
}

/// Which period [`Meters::costs`] sums: the UTC day or month containing `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CostPeriod {
    Day,
    Month,
}

impl From<CostPeriod> for BudgetPeriod {
    fn from(p: CostPeriod) -> Self {
        match p {
            CostPeriod::Day => BudgetPeriod::Day,
            CostPeriod::Month => BudgetPeriod::Month,
        }
    }
}

/// One line of `levee costs`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostRow {
    pub name: String,
    pub requests: u64,
    pub gb_seconds: f64,
    pub bytes_out: u64,
    pub usd: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Dim {
    All = 0,
    Function = 1,
    Route = 2,
    Key = 3,
}

impl Dim {
    const EVERY: [Dim; 4] = [Dim::All, Dim::Function, Dim::Route, Dim::Key];

    fn from_u8(v: u8) -> Option<Dim> {
        Dim::EVERY.into_iter().find(|d| *d as u8 == v)
    }

    fn cap(self) -> usize {
        match self {
            Dim::All => 1,
            Dim::Function => MAX_FUNCTION_METERS,
            Dim::Route => MAX_ROUTE_METERS,
            Dim::Key => MAX_KEY_METERS,
        }
    }
}

/// Period starts of one instant, computed once per record.
#[derive(Debug, Clone, Copy)]
struct Starts {
    hour: i64,
    day: i64,
    month: i64,
}

impl Starts {
    fn of(t: i64) -> Starts {
        Starts {
            hour: hour_start(t),
            day: bounds(BudgetPeriod::Day, t).0,
            month: bounds(BudgetPeriod::Month, t).0,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    start: i64,
    usage: Usage,
}

impl Bucket {
    /// Moves to `start` if it is later (periods move forward only).
    fn roll(&mut self, start: i64) -> bool {
        if start > self.start {
            *self = Bucket {
                start,
                usage: Usage::default(),
            };
            true
        } else {
            false
        }
    }
}

#[derive(Debug)]
struct Entry {
    hour: Bucket,
    /// What the disk holds for `hour`; differing = dirty.
    hour_persisted: Usage,
    day: Bucket,
    month: Bucket,
    /// Named by a budget: never evicted, never folded into [`OTHER`].
    pinned: bool,
}

impl Entry {
    fn new(s: Starts) -> Entry {
        let b = |start| Bucket {
            start,
            usage: Usage::default(),
        };
        Entry {
            hour: b(s.hour),
            hour_persisted: Usage::default(),
            day: b(s.day),
            month: b(s.month),
            pinned: false,
        }
    }

    /// The finished hour's row, if it must still be written.
    fn add(&mut self, s: Starts, u: &Usage) -> Option<(i64, Usage)> {
        let finished = (self.hour, self.hour_persisted);
        let retired = if self.hour.roll(s.hour) {
            self.hour_persisted = Usage::default();
            (finished.0.usage != finished.1).then_some((finished.0.start, finished.0.usage))
        } else {
            None
        };
        self.day.roll(s.day);
        self.month.roll(s.month);
        self.hour.usage.add(u);
        self.day.usage.add(u);
        self.month.usage.add(u);
        retired
    }

    fn bucket(&self, period: BudgetPeriod) -> &Bucket {
        match period {
            BudgetPeriod::Day => &self.day,
            BudgetPeriod::Month => &self.month,
        }
    }
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<String, Entry>,
    retired: Vec<HourRow>,
}

#[derive(Debug)]
struct Table {
    dim: Dim,
    shards: Box<[Mutex<Shard>]>,
    shard_cap: usize,
}

impl Table {
    fn new(dim: Dim, cap: usize) -> Table {
        Table {
            dim,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_cap: cap.div_ceil(SHARDS).max(1),
        }
    }
}

/// State shared with the flusher thread.
#[derive(Debug)]
struct Inner {
    prices: Prices,
    tables: [Table; 4],
    hasher: RandomState,
    /// Its lock also serializes flushes.
    conn: Mutex<Connection>,
    marks: Mutex<Vec<AlertMark>>,
    /// Newest hour recorded: the meter's "now" for eviction and pruning,
    /// taken from callers so no clock is read.
    newest_hour: AtomicI64,
    last_prune_day: AtomicI64,
    lost_rows: AtomicU64,
    flush_failures: AtomicU64,
}

impl Inner {
    fn table(&self, dim: Dim) -> &Table {
        &self.tables[dim as usize]
    }

    fn shard(&self, dim: Dim, name: &str) -> &Mutex<Shard> {
        let t = self.table(dim);
        // The modulo keeps the index in range whatever the hash.
        let i = (self.hasher.hash_one(name) % SHARDS as u64) as usize;
        &t.shards[i]
    }

    fn record(&self, dim: Dim, name: &str, s: Starts, u: &Usage) {
        let name = if name.len() > MAX_NAME_LEN {
            OTHER
        } else {
            name
        };
        let cap = self.table(dim).shard_cap;
        {
            let mut shard = lock(self.shard(dim, name));
            let shard = &mut *shard;
            let room = shard.entries.len() < cap || name == OTHER;
            if room && !shard.entries.contains_key(name) {
                shard.entries.insert(name.to_owned(), Entry::new(s));
            }
            if let Some(e) = shard.entries.get_mut(name) {
                if let Some((start, usage)) = e.add(s, u) {
                    self.retire(&mut shard.retired, cap, dim, name, start, usage);
                }
                return;
            }
        }
        // Full shard: fold into OTHER (its own shard; the first lock is
        // released, so no two shard locks are ever held at once).
        self.record(dim, OTHER, s, u);
    }

    fn retire(
        &self,
        retired: &mut Vec<HourRow>,
        cap: usize,
        dim: Dim,
        name: &str,
        start: i64,
        usage: Usage,
    ) {
        if retired.len() >= cap {
            self.lost_rows.fetch_add(1, Ordering::Relaxed);
            return;
        }
        retired.push(HourRow {
            dim: dim as u8,
            name: name.to_owned(),
            hour_start: start,
            usage,
        });
    }

    fn usage(&self, dim: Dim, name: &str, period: BudgetPeriod, now: i64) -> Usage {
        let start = bounds(period, now).0;
        let shard = lock(self.shard(dim, name));
        match shard.entries.get(name) {
            // A bucket newer than `now`'s period (clock stepped back) still
            // counts: refusing early is safe, admitting extra is not.
            Some(e) if e.bucket(period).start >= start => e.bucket(period).usage,
            _ => Usage::default(),
        }
    }

    fn flush(&self) -> Result<(), MeterError> {
        let mut conn = lock(&self.conn);
        let mut rows = Vec::new();
        let mut retired_counts = Vec::new();
        for t in &self.tables {
            for shard in t.shards.iter() {
                let mut shard = lock(shard);
                let before = rows.len();
                let retired = shard.retired.len();
                rows.append(&mut shard.retired);
                for (name, e) in &shard.entries {
                    if e.hour.usage != e.hour_persisted {
                        rows.push(HourRow {
                            dim: t.dim as u8,
                            name: name.clone(),
                            hour_start: e.hour.start,
                            usage: e.hour.usage,
                        });
                    }
                }
                retired_counts.push((retired, rows.len() - before - retired));
            }
        }
        let marks: Vec<AlertMark> = std::mem::take(&mut *lock(&self.marks));
        let newest = self.newest_hour.load(Ordering::Relaxed);
        let today = newest.div_euclid(DAY);
        let prune = (newest != i64::MIN && self.last_prune_day.load(Ordering::Relaxed) != today)
            .then(|| newest.saturating_sub(RETENTION_SECS));
        match db::write(&mut conn, &rows, &marks, prune) {
            Ok(()) => {
                if prune.is_some() {
                    self.last_prune_day.store(today, Ordering::Relaxed);
                }
                self.after_write(&rows, newest);
                self.flush_failures.store(0, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.flush_failures.fetch_add(1, Ordering::Relaxed);
                self.restore(rows, &retired_counts, marks);
                tracing::warn!(error = %e, "meter flush failed; data kept in memory for the next try");
                Err(e)
            }
        }
    }

    /// Marks written hours clean and evicts meters idle since before the
    /// newest month.
    fn after_write(&self, rows: &[HourRow], newest_hour: i64) {
        for r in rows {
            let Some(dim) = Dim::from_u8(r.dim) else {
                continue;
            };
            let mut shard = lock(self.shard(dim, &r.name));
            if let Some(e) = shard.entries.get_mut(&r.name) {
                if e.hour.start == r.hour_start {
                    e.hour_persisted = r.usage;
                }
            }
        }
        if newest_hour == i64::MIN {
            return;
        }
        let month = bounds(BudgetPeriod::Month, newest_hour).0;
        for t in &self.tables {
            for shard in t.shards.iter() {
                lock(shard).entries.retain(|_, e| {
                    e.pinned || e.month.start >= month || e.hour.usage != e.hour_persisted
                });
            }
        }
    }

    /// Puts retired rows and marks back after a failed write, within bounds.
    fn restore(&self, rows: Vec<HourRow>, counts: &[(usize, usize)], marks: Vec<AlertMark>) {
        let mut rows = rows.into_iter();
        let mut i = 0;
        for t in &self.tables {
            for shard in t.shards.iter() {
                let (n, dirty) = counts.get(i).copied().unwrap_or((0, 0));
                i += 1;
                let mut shard = lock(shard);
                for row in rows.by_ref().take(n) {
                    if shard.retired.len() < t.shard_cap {
                        shard.retired.push(row);
                    } else {
                        self.lost_rows.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // This shard's current-hour rows follow its retired rows;
                // they are still dirty in memory and rebuilt next flush.
                let _ = rows.by_ref().take(dirty).count();
            }
        }
        let mut pending = lock(&self.marks);
        for m in marks {
            if pending.len() < MAX_PENDING_MARKS {
                pending.push(m);
            }
        }
    }
}

/// Billing meters of one data directory. `Send + Sync`; share with `Arc`.
#[derive(Debug)]
pub struct Meters {
    inner: Arc<Inner>,
    _flusher: Flusher,
}

impl Meters {
    /// Opens `data_dir/meters.db`, loads the current month (by the system
    /// clock) and starts the flusher.
    pub fn open(data_dir: &Path, prices: Prices) -> Result<Arc<Meters>, MeterError> {
        let now = chrono::Utc::now().timestamp();
        Self::open_at(data_dir, prices, now)
    }

    /// [`Meters::open`] with the current time given.
    pub fn open_at(
        data_dir: &Path,
        prices: Prices,
        now_unix: i64,
    ) -> Result<Arc<Meters>, MeterError> {
        Self::open_with_key_cap(data_dir, prices, now_unix, MAX_KEY_METERS)
    }

    /// [`Meters::open_at`] with a smaller key cap, so tests can reach it.
    pub(crate) fn open_with_key_cap(
        data_dir: &Path,
        prices: Prices,
        now_unix: i64,
        key_cap: usize,
    ) -> Result<Arc<Meters>, MeterError> {
        std::fs::create_dir_all(data_dir)?;
        let conn = db::open(&data_dir.join(DB_FILE))?;
        let (month_start, month_end) = bounds(BudgetPeriod::Month, now_unix);
        let limit = Dim::EVERY.iter().map(|d| d.cap()).sum::<usize>() * 31 * 24;
        let rows = db::load_hours(&conn, month_start, month_end, limit)?;
        let inner = Inner {
            prices,
            tables: Dim::EVERY
                .map(|d| Table::new(d, if d == Dim::Key { key_cap } else { d.cap() })),
            hasher: RandomState::new(),
            conn: Mutex::new(conn),
            marks: Mutex::new(Vec::new()),
            newest_hour: AtomicI64::new(i64::MIN),
            last_prune_day: AtomicI64::new(i64::MIN),
            lost_rows: AtomicU64::new(0),
            flush_failures: AtomicU64::new(0),
        };
        let s = Starts::of(now_unix);
        let day_end = s.day + DAY;
        for row in rows {
            let Some(dim) = Dim::from_u8(row.dim) else {
                continue;
            };
            let cap = inner.table(dim).shard_cap;
            let mut shard = lock(inner.shard(dim, &row.name));
            if !shard.entries.contains_key(&row.name) && shard.entries.len() >= cap {
                // Over the cap at load (only if the cap shrank): the rows
                // stay on disk and in `costs`; this meter starts at zero.
                continue;
            }
            let e = shard
                .entries
                .entry(row.name)
                .or_insert_with(|| Entry::new(s));
            e.month.usage.add(&row.usage);
            if (s.day..day_end).contains(&row.hour_start) {
                e.day.usage.add(&row.usage);
            }
            if row.hour_start == s.hour {
                e.hour.usage = row.usage;
                e.hour_persisted = row.usage;
            }
        }
        let inner = Arc::new(inner);
        let flushed = Arc::clone(&inner);
        // A failed tick is counted and logged; its data stays in memory for
        // the next one.
        let flusher = Flusher::start("levee-meter-flush", FLUSH_INTERVAL, move || {
            let _ = flushed.flush();
        })?;
        Ok(Arc::new(Meters {
            inner,
            _flusher: flusher,
        }))
    }

    /// Meters one finished invocation (memory only) and updates the
    /// invocation metrics.
    pub fn record(&self, inv: &Invocation<'_>) {
        let u = invocation_usage(inv.duration, inv.memory_mb, inv.bytes_out);
        let s = Starts::of(inv.at_unix);
        self.inner.newest_hour.fetch_max(s.hour, Ordering::Relaxed);
        let i = &self.inner;
        i.record(Dim::All, ALL, s, &u);
        i.record(Dim::Function, inv.function, s, &u);
        if let Some(r) = inv.route {
            i.record(Dim::Route, r, s, &u);
        }
        if let Some(k) = inv.key {
            i.record(Dim::Key, k, s, &u);
        }
        crate::metrics::invocation(inv.function, inv.outcome, inv.duration, inv.cold);
        crate::metrics::spend(inv.function, cost(&i.prices, &u));
    }

    /// Currency spent by `scope` in the `period` containing `now_unix`,
    /// from memory.
    pub fn spend(&self, scope: &BudgetScope, period: BudgetPeriod, now_unix: i64) -> f64 {
        let u = match scope {
            BudgetScope::All => self.inner.usage(Dim::All, ALL, period, now_unix),
            BudgetScope::Function(f) => self.inner.usage(Dim::Function, f, period, now_unix),
            BudgetScope::Key(k) => self.inner.usage(Dim::Key, k, period, now_unix),
        };
        cost(&self.inner.prices, &u)
    }

    /// The price table in use.
    pub fn prices(&self) -> Prices {
        self.inner.prices
    }

    /// Gives `key` its own meter whatever the cap (a budget names it).
    pub fn pin_key(&self, key: &str, now_unix: i64) {
        if key.len() > MAX_NAME_LEN {
            return;
        }
        let mut shard = lock(self.inner.shard(Dim::Key, key));
        shard
            .entries
            .entry(key.to_owned())
            .or_insert_with(|| Entry::new(Starts::of(now_unix)))
            .pinned = true;
    }

    /// Cost per name of one dimension in the day or month containing
    /// `now_unix`, most expensive first. Flushes first and reads the file,
    /// so meters evicted or beyond the cap are included; if the flush fails
    /// the in-memory totals are returned instead. For admin calls, not the
    /// request path.
    pub fn costs(&self, by: CostBy, period: CostPeriod, now_unix: i64) -> Vec<CostRow> {
        let dim = match by {
            CostBy::Function => Dim::Function,
            CostBy::Route => Dim::Route,
            CostBy::Key => Dim::Key,
        };
        let period = BudgetPeriod::from(period);
        let (from, to) = bounds(period, now_unix);
        let limit = dim.cap() + 1;
        let sums = self
            .flush()
            .and_then(|()| db::sums(&lock(&self.inner.conn), dim as u8, from, to, limit))
            .unwrap_or_else(|_| self.memory_sums(dim, period, from));
        let mut rows: Vec<CostRow> = sums
            .into_iter()
            .filter(|(_, u)| !u.is_zero())
            .map(|(name, u)| CostRow {
                name,
                requests: u.requests,
                gb_seconds: u.gb_seconds(),
                bytes_out: u.bytes_out,
                usd: cost(&self.inner.prices, &u),
            })
            .collect();
        rows.sort_by(|a, b| b.usd.total_cmp(&a.usd).then_with(|| a.name.cmp(&b.name)));
        rows
    }

    fn memory_sums(&self, dim: Dim, period: BudgetPeriod, from: i64) -> Vec<(String, Usage)> {
        let mut out = Vec::new();
        for shard in self.inner.table(dim).shards.iter() {
            for (name, e) in &lock(shard).entries {
                if e.bucket(period).start == from {
                    out.push((name.clone(), e.bucket(period).usage));
                }
            }
        }
        out
    }

    /// Writes every changed hour (and pending alert marks) now.
    pub fn flush(&self) -> Result<(), MeterError> {
        self.inner.flush()
    }

    /// Consecutive failed flushes; non-zero means the 1 s window is not met.
    pub fn flush_failures(&self) -> u64 {
        self.inner.flush_failures.load(Ordering::Relaxed)
    }

    /// Finished-hour rows dropped because flushes kept failing.
    pub fn lost_rows(&self) -> u64 {
        self.inner.lost_rows.load(Ordering::Relaxed)
    }

    /// Remembers that an alert fired, so a restart does not fire it again.
    /// Written with the next flush; dropped beyond [`MAX_PENDING_MARKS`].
    pub(crate) fn mark_alert(&self, mark: AlertMark) {
        let mut marks = lock(&self.inner.marks);
        if marks.len() < MAX_PENDING_MARKS {
            marks.push(mark);
        }
    }

    /// Alerts already fired for `budget` in the period starting at
    /// `period_start`, on disk or pending. Not for the request path.
    pub(crate) fn fired_alerts(&self, budget: &str, period_start: i64) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = lock(&self.inner.marks)
            .iter()
            .filter(|m| m.budget == budget && m.period_start == period_start)
            .map(|m| (m.kind.to_owned(), m.threshold))
            .collect();
        match db::fired(&lock(&self.inner.conn), budget, period_start) {
            Ok(rows) => out.extend(rows),
            Err(e) => tracing::warn!(error = %e, budget, "could not read fired alerts"),
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests;
