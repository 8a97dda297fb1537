//! The [`Store`]: one data directory, its SQLite file, the in-memory index,
//! the counters and the flusher thread.
//!
//! Owns: every admin mutation (write to SQLite, commit, then update memory,
//! all under one admin lock so memory never shows uncommitted state and two
//! admin calls never interleave), the hot-path reads that never touch SQLite,
//! and the background flusher's life (started by `open`, stopped and given a
//! last flush on drop). Must never: hand out a secret except from
//! `create_key`/`rotate_key`, read the wall clock on the hot path, or let
//! two processes share a data directory (a lock file refuses the second).

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::{params, Connection, Transaction};

use crate::error::StoreError;
use crate::index::{AuthenticatedKey, Index};
use crate::key::{
    generate_key_id, generate_secret, hash_secret, plausible_secret, prefix_of, validate_key_name,
    KeyInfo, SecretHash, KEY_ID_LEN, MAX_KEYS,
};
use crate::plan::{Plan, PlanSource, PlanSpec, MAX_PLANS};
use crate::quota::{EmbeddedQuotas, QuotaCounters};
use crate::schema::{migrate, open_connection, Durability};
use crate::usage::{UsageBuffer, UsageOutcome, UsageRow};
use crate::writebehind::Flusher;
use levee_common::clock::{Clock, SystemClock};
use levee_common::sync::{lock, read, write};

/// How often the flusher writes counters and usage. Half the 1 s durability
/// window, so a flush that itself takes up to 500 ms still lands in time.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// File names inside the data directory.
pub const DB_FILE: &str = "levee.db";
pub const LOCK_FILE: &str = "levee.lock";
/// Fresh ids drawn before giving up on finding an unused one; with 64-bit ids
/// and ≤ 1M keys one collision has odds of ~2^-44, eight in a row mean the
/// random source is broken.
const ID_ATTEMPTS: usize = 8;

/// What the flusher thread shares with the store.
#[derive(Debug)]
struct Counters {
    quotas: EmbeddedQuotas,
    usage: UsageBuffer,
    /// Consecutive failed flushes; 0 when the last one succeeded.
    flush_failures: AtomicU64,
}

impl Counters {
    /// Flushes quotas and usage; both are tried even if the first fails.
    fn flush(&self) -> Result<(), StoreError> {
        let quotas = self.quotas.flush();
        let usage = self.usage.flush();
        let result = quotas.and(usage);
        if result.is_ok() {
            self.flush_failures.store(0, Ordering::Relaxed);
        } else {
            self.flush_failures.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// Plans, API keys, quota counters and usage records of one data directory.
/// `Send + Sync`; share it with `Arc`.
#[derive(Debug)]
pub struct Store {
    /// The admin connection (`synchronous=FULL`); its lock serializes admin
    /// mutations.
    admin: Mutex<Connection>,
    index: RwLock<Index>,
    clock: Arc<dyn Clock>,
    counters: Arc<Counters>,
    /// Declared before `_lock` so it is dropped (last flush done) before the
    /// directory lock is released.
    _flusher: Flusher,
    _lock: File,
}

fn sql_bool(b: bool) -> i64 {
    i64::from(b)
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir`, using the system
    /// clock for admin timestamps.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with_clock(data_dir, Arc::new(SystemClock))
    }

    /// Like [`Store::open`] with an injected clock, read only for the
    /// timestamps admin operations write (`created_at`, `rotated_at`).
    pub fn open_with_clock(data_dir: &Path, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let lock_path = data_dir.join(LOCK_FILE);
        let Some(lock_file) = crate::sqlite::exclusive(&lock_path)? else {
            return Err(StoreError::Locked {
                path: lock_path.display().to_string(),
            });
        };
        let db = data_dir.join(DB_FILE);
        let mut admin = open_connection(&db, Durability::Full)?;
        migrate(&mut admin)?;
        let index = load_index(&admin)?;
        let counters = Arc::new(Counters {
            quotas: EmbeddedQuotas::load(open_connection(&db, Durability::Normal)?)?,
            usage: UsageBuffer::new(open_connection(&db, Durability::Normal)?),
            flush_failures: AtomicU64::new(0),
        });
        let flushed = Arc::clone(&counters);
        // A failed tick is counted in `flush_failures`; its data stays in
        // memory for the next one.
        let flusher = Flusher::start("levee-store-flush", FLUSH_INTERVAL, move || {
            let _ = flushed.flush();
        })?;
        Ok(Store {
            admin: Mutex::new(admin),
            index: RwLock::new(index),
            clock,
            counters,
            _flusher: flusher,
            _lock: lock_file,
        })
    }

    // ---- plans ----

    /// Makes the stored config plans exactly `plans`: upserts each as
    /// source = Config and removes config plans no longer listed. All or
    /// nothing: a plan still used by keys, or a name taken by an API plan,
    /// fails the whole sync and changes nothing.
    pub fn sync_config_plans(&self, plans: &[PlanSpec]) -> Result<(), StoreError> {
        let prefixed = |i: usize, e: StoreError| match e {
            StoreError::Invalid { field, message } => StoreError::Invalid {
                field: format!("plans[{i}].{field}"),
                message,
            },
            other => other,
        };
        let mut names = std::collections::HashSet::new();
        for (i, spec) in plans.iter().enumerate() {
            spec.validate().map_err(|e| prefixed(i, e))?;
            if !names.insert(spec.name.as_str()) {
                return Err(prefixed(
                    i,
                    StoreError::invalid("name", "duplicate plan name"),
                ));
            }
        }
        let mut conn = lock(&self.admin);
        let now = self.clock.now_unix();
        let (stored, removed): (Vec<Plan>, Vec<String>) = {
            let index = read(&self.index);
            let api_plans = index
                .plans()
                .filter(|p| p.source == PlanSource::Api)
                .count();
            if api_plans + plans.len() > MAX_PLANS {
                return Err(StoreError::LimitReached {
                    what: "plans",
                    max: MAX_PLANS,
                });
            }
            let mut stored = Vec::with_capacity(plans.len());
            for spec in plans {
                let created_at = match index.plan(&spec.name) {
                    Some(p) if p.source == PlanSource::Api => {
                        return Err(StoreError::SourceConflict {
                            name: spec.name.clone(),
                        })
                    }
                    Some(p) => p.created_at,
                    None => now,
                };
                stored.push(Plan {
                    spec: spec.clone(),
                    source: PlanSource::Config,
                    created_at,
                });
            }
            let removed = index
                .plans()
                .filter(|p| p.source == PlanSource::Config && !names.contains(p.spec.name.as_str()))
                .map(|p| p.spec.name.clone())
                .collect();
            (stored, removed)
        };
        let tx = conn.transaction()?;
        for name in &removed {
            refuse_if_keys_use(&tx, name)?;
            tx.execute("DELETE FROM plans WHERE name = ?1", params![name])?;
        }
        for plan in &stored {
            upsert_plan(&tx, plan)?;
        }
        tx.commit()?;
        let mut index = write(&self.index);
        for name in &removed {
            index.remove_plan(name);
        }
        for plan in stored {
            index.put_plan(plan);
        }
        Ok(())
    }

    /// Creates an API-owned plan.
    pub fn create_plan(&self, spec: PlanSpec) -> Result<Plan, StoreError> {
        spec.validate()?;
        let conn = lock(&self.admin);
        {
            let index = read(&self.index);
            if index.plan(&spec.name).is_some() {
                return Err(StoreError::exists("plan", &spec.name));
            }
            if index.plan_count() >= MAX_PLANS {
                return Err(StoreError::LimitReached {
                    what: "plans",
                    max: MAX_PLANS,
                });
            }
        }
        let plan = Plan {
            spec,
            source: PlanSource::Api,
            created_at: self.clock.now_unix(),
        };
        upsert_plan(&conn, &plan)?;
        write(&self.index).put_plan(plan.clone());
        Ok(plan)
    }

    /// Replaces an API-owned plan's limits; its keys see them on their next
    /// request.
    pub fn update_plan(&self, spec: PlanSpec) -> Result<Plan, StoreError> {
        spec.validate()?;
        let conn = lock(&self.admin);
        let created_at = self.api_plan(&spec.name)?.created_at;
        let plan = Plan {
            spec,
            source: PlanSource::Api,
            created_at,
        };
        upsert_plan(&conn, &plan)?;
        write(&self.index).put_plan(plan.clone());
        Ok(plan)
    }

    /// Deletes an API-owned plan that no key uses.
    pub fn delete_plan(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = lock(&self.admin);
        self.api_plan(name)?;
        let tx = conn.transaction()?;
        refuse_if_keys_use(&tx, name)?;
        tx.execute("DELETE FROM plans WHERE name = ?1", params![name])?;
        tx.commit()?;
        write(&self.index).remove_plan(name);
        Ok(())
    }

    /// The plan `name` if it exists and the API may change it.
    fn api_plan(&self, name: &str) -> Result<Arc<Plan>, StoreError> {
        let plan = read(&self.index)
            .plan(name)
            .cloned()
            .ok_or_else(|| StoreError::not_found("plan", name))?;
        if plan.source == PlanSource::Config {
            return Err(StoreError::ConfigOwned {
                name: plan.spec.name.clone(),
            });
        }
        Ok(plan)
    }

    pub fn plan(&self, name: &str) -> Option<Plan> {
        read(&self.index).plan(name).map(|p| Plan::clone(p))
    }

    /// All plans, sorted by name.
    pub fn plans(&self) -> Vec<Plan> {
        let mut v: Vec<Plan> = read(&self.index).plans().map(|p| Plan::clone(p)).collect();
        v.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        v
    }

    // ---- keys ----

    /// Creates an enabled key on `plan`. The secret is returned here once
    /// and never again; only its hash is stored.
    pub fn create_key(&self, name: &str, plan: &str) -> Result<(KeyInfo, String), StoreError> {
        validate_key_name(name)?;
        let conn = lock(&self.admin);
        let id = {
            let index = read(&self.index);
            if index.plan(plan).is_none() {
                return Err(StoreError::invalid(
                    "plan",
                    format!("no plan named '{}'", crate::error::quote(plan)),
                ));
            }
            if index.key_count() >= MAX_KEYS {
                return Err(StoreError::LimitReached {
                    what: "API keys",
                    max: MAX_KEYS,
                });
            }
            unused_id(&index)?
        };
        let secret = generate_secret()?;
        let hash = hash_secret(&secret);
        let info = KeyInfo {
            id,
            name: name.to_owned(),
            plan: plan.to_owned(),
            enabled: true,
            prefix: prefix_of(&secret),
            created_at: self.clock.now_unix(),
            rotated_at: None,
        };
        conn.execute(
            "INSERT INTO api_keys (id, name, plan, secret_hash, prefix, enabled, created_at, rotated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                info.id,
                info.name,
                info.plan,
                &hash[..],
                info.prefix,
                sql_bool(info.enabled),
                info.created_at,
                info.rotated_at
            ],
        )?;
        write(&self.index).put_key(info.clone(), hash);
        Ok((info, secret))
    }

    pub fn key(&self, id: &str) -> Option<KeyInfo> {
        read(&self.index).key(id).map(|k| KeyInfo::clone(k))
    }

    /// All keys, sorted by id.
    pub fn keys(&self) -> Vec<KeyInfo> {
        let mut v: Vec<KeyInfo> = read(&self.index)
            .keys()
            .map(|k| KeyInfo::clone(k))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn existing_key(&self, id: &str) -> Result<KeyInfo, StoreError> {
        self.key(id).ok_or_else(|| StoreError::not_found("key", id))
    }

    /// Enables or disables a key. A disabled key still authenticates (with
    /// `enabled = false`) so the edge can answer 403 rather than "unknown".
    pub fn set_key_enabled(&self, id: &str, enabled: bool) -> Result<KeyInfo, StoreError> {
        let conn = lock(&self.admin);
        let mut info = self.existing_key(id)?;
        conn.execute(
            "UPDATE api_keys SET enabled = ?2 WHERE id = ?1",
            params![id, sql_bool(enabled)],
        )?;
        info.enabled = enabled;
        write(&self.index).update_key(info.clone());
        Ok(info)
    }

    /// Gives a key a new secret, returned once. The old secret stops working
    /// as this call returns: the index swaps hashes in one write section.
    pub fn rotate_key(&self, id: &str) -> Result<(KeyInfo, String), StoreError> {
        let conn = lock(&self.admin);
        let mut info = self.existing_key(id)?;
        let secret = generate_secret()?;
        let hash = hash_secret(&secret);
        info.prefix = prefix_of(&secret);
        info.rotated_at = Some(self.clock.now_unix());
        conn.execute(
            "UPDATE api_keys SET secret_hash = ?2, prefix = ?3, rotated_at = ?4 WHERE id = ?1",
            params![id, &hash[..], info.prefix, info.rotated_at],
        )?;
        write(&self.index).put_key(info.clone(), hash);
        Ok((info, secret))
    }

    /// Deletes a key and its quota counters. Its usage history stays.
    pub fn delete_key(&self, id: &str) -> Result<(), StoreError> {
        let conn = lock(&self.admin);
        self.existing_key(id)?;
        conn.execute("DELETE FROM api_keys WHERE id = ?1", params![id])?;
        write(&self.index).remove_key(id);
        // The key is gone whatever happens next. If dropping its counters
        // fails they are merely orphaned: no secret maps to this random id
        // any more, and they are evicted once their period ends.
        let _ = self.counters.quotas.forget_key(id);
        Ok(())
    }

    // ---- hot path ----

    /// The key whose secret this is, from memory only. Disabled keys are
    /// returned with `enabled = false`.
    pub fn authenticate(&self, secret: &str) -> Option<KeyInfo> {
        self.authenticate_with_plan(secret)
            .map(|a| KeyInfo::clone(&a.key))
    }

    /// [`Store::authenticate`] plus a snapshot of the key's plan, without
    /// copying either: what the edge's throttle and quota stages need.
    pub fn authenticate_with_plan(&self, secret: &str) -> Option<AuthenticatedKey> {
        // Garbage never reaches the hash: bounded work per request.
        if !plausible_secret(secret) {
            return None;
        }
        let hash = hash_secret(secret);
        read(&self.index).lookup(&hash)
    }

    /// The quota counters; the edge calls `try_consume` on them.
    pub fn quotas(&self) -> &dyn QuotaCounters {
        &self.counters.quotas
    }

    /// Counts one request of `key_id` on unix day `day`, in memory; flushed
    /// with the quota counters. Records for unknown keys are ignored.
    pub fn record_usage(&self, key_id: &str, day: i64, outcome: UsageOutcome) {
        if read(&self.index).has_key(key_id) {
            self.counters.usage.record(key_id, day, outcome);
        }
    }

    /// Usage rows for one key (or all) between two unix days inclusive,
    /// sorted by key then day; disk and unflushed memory merged.
    pub fn usage(
        &self,
        key_id: Option<&str>,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<UsageRow>, StoreError> {
        if key_id.is_some_and(|k| k.len() > KEY_ID_LEN) {
            return Err(StoreError::invalid("key_id", "not a key id"));
        }
        self.counters.usage.read(key_id, from_day, to_day)
    }

    /// Writes all counters and usage now.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.counters.flush()
    }

    /// Consecutive failed flushes (0 = the last flush succeeded). Non-zero
    /// means the 1 s durability window is not being met.
    pub fn flush_failures(&self) -> u64 {
        self.counters.flush_failures.load(Ordering::Relaxed)
    }

    /// Usage records dropped since open (buffer full, invalid day).
    pub fn dropped_usage_records(&self) -> u64 {
        self.counters.usage.dropped()
    }
}

fn unused_id(index: &Index) -> Result<String, StoreError> {
    for _ in 0..ID_ATTEMPTS {
        let id = generate_key_id()?;
        if !index.has_key(&id) {
            return Ok(id);
        }
    }
    Err(StoreError::Entropy(
        "kept drawing key ids already in use".into(),
    ))
}

fn refuse_if_keys_use(tx: &Transaction<'_>, plan: &str) -> Result<(), StoreError> {
    let n: i64 = tx.query_row(
        "SELECT count(*) FROM api_keys WHERE plan = ?1",
        params![plan],
        |r| r.get(0),
    )?;
    if n > 0 {
        return Err(StoreError::InUse {
            kind: "plan",
            id: crate::error::quote(plan),
            message: format!("{n} API key(s) use it; move or delete them first"),
        });
    }
    Ok(())
}

fn upsert_plan(conn: &Connection, plan: &Plan) -> Result<(), StoreError> {
    let spec = serde_json::to_string(&plan.spec).map_err(|e| StoreError::Corrupt {
        message: format!("plan could not be encoded: {e}"),
    })?;
    conn.execute(
        "INSERT INTO plans (name, source, spec, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET source = excluded.source, spec = excluded.spec",
        params![plan.spec.name, plan.source.as_str(), spec, plan.created_at],
    )?;
    Ok(())
}

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt { message }
}

fn load_index(conn: &Connection) -> Result<Index, StoreError> {
    let mut index = Index::default();
    let over = |n: usize| i64::try_from(n + 1).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare("SELECT name, source, spec, created_at FROM plans LIMIT ?1")?;
    let mut rows = stmt.query(params![over(MAX_PLANS)])?;
    while let Some(r) = rows.next()? {
        let name: String = r.get(0)?;
        let source: String = r.get(1)?;
        let json: String = r.get(2)?;
        let source = PlanSource::parse(&source)
            .ok_or_else(|| corrupt(format!("plan '{name}' has source '{source}'")))?;
        let spec: PlanSpec = serde_json::from_str(&json)
            .map_err(|e| corrupt(format!("plan '{name}' does not parse: {e}")))?;
        spec.validate()
            .map_err(|e| corrupt(format!("plan '{name}' is invalid: {e}")))?;
        if spec.name != name {
            return Err(corrupt(format!(
                "plan '{name}' holds a spec named '{}'",
                spec.name
            )));
        }
        if index.plan_count() >= MAX_PLANS {
            return Err(corrupt(format!("more than {MAX_PLANS} plans")));
        }
        index.put_plan(Plan {
            spec,
            source,
            created_at: r.get(3)?,
        });
    }
    let mut stmt = conn.prepare(
        "SELECT id, name, plan, secret_hash, prefix, enabled, created_at, rotated_at
         FROM api_keys LIMIT ?1",
    )?;
    let mut rows = stmt.query(params![over(MAX_KEYS)])?;
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let hash: Vec<u8> = r.get(3)?;
        let hash: SecretHash = hash
            .try_into()
            .map_err(|_| corrupt(format!("key '{id}' has a malformed hash")))?;
        if index.key_count() >= MAX_KEYS {
            return Err(corrupt(format!("more than {MAX_KEYS} keys")));
        }
        let info = KeyInfo {
            id,
            name: r.get(1)?,
            plan: r.get(2)?,
            enabled: r.get::<_, i64>(5)? != 0,
            prefix: r.get(4)?,
            created_at: r.get(6)?,
            rotated_at: r.get(7)?,
        };
        index.put_key(info, hash);
    }
    Ok(index)
}

#[cfg(test)]
mod tests;
