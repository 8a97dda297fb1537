//! The bounded store of entries: a moka cache weighed in bytes, each entry
//! expiring when its freshness and stale windows are over.
//!
//! It owns memory: the total weight never exceeds `max_bytes` once moka's
//! pending maintenance has run (moka admits and evicts by TinyLFU, amortised
//! over reads and writes; no request waits for a sweep of the whole store).
//! It must never decide freshness (that is [`super::entry`]'s, on the tokio
//! clock) — moka's own clock only drops entries nobody may use any more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::sync::Cache;

use super::entry::Entry;

/// Expires each entry after its freshness plus its longer stale window.
#[derive(Debug)]
struct KeepFor;

impl moka::Expiry<Arc<str>, Arc<Entry>> for KeepFor {
    fn expire_after_create(&self, _: &Arc<str>, v: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(v.keep_for())
    }

    fn expire_after_update(
        &self,
        _: &Arc<str>,
        v: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.keep_for())
    }
}

/// Entries by key.
#[derive(Debug)]
pub(crate) struct Store {
    cache: Cache<Arc<str>, Arc<Entry>>,
}

impl Store {
    /// A store holding at most `max_bytes` of entries.
    pub(crate) fn new(max_bytes: u64) -> Store {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Arc<str>, v: &Arc<Entry>| v.weight(k))
            .expire_after(KeepFor)
            .build();
        Store { cache }
    }

    pub(crate) fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    pub(crate) fn insert(&self, key: &str, entry: Arc<Entry>) {
        self.cache.insert(Arc::from(key), entry);
    }

    /// Removes every entry whose key starts with `prefix`; returns how many.
    /// One pass over the store: purges are rare admin calls.
    pub(crate) fn remove_prefix(&self, prefix: &str) -> u64 {
        let doomed: Vec<Arc<Arc<str>>> = self
            .cache
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k)
            .collect();
        doomed
            .iter()
            .filter(|k| self.cache.remove(k.as_ref()).is_some())
            .count() as u64
    }

    pub(crate) fn entries(&self) -> u64 {
        self.cache.entry_count()
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs moka's pending admissions, evictions and expirations now.
    pub(crate) fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}
