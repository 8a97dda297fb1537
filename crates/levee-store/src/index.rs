//! The in-memory mirror of plans and keys that the hot path reads.
//!
//! Owns: the maps secret-hash → key, id → key and name → plan, and the
//! invariant that they agree with each other. Must never: do I/O, or be
//! changed except by the [`crate::Store`] right after the matching SQLite
//! write has committed (so memory never shows what disk doesn't have).
//!
//! # Why lookup by hash needs no constant-time comparison
//! A timing attack on a secret comparison leaks how many leading bytes of a
//! guess were right. Here the request's secret is hashed and the hash is a
//! hash-map key: the map compares SHA-256 outputs, whose matching prefix
//! tells an attacker nothing about the secret (finding a guess whose hash
//! shares more bytes with a stored hash is a preimage-style search).
//!
//! # Memory
//! Per key: the `KeyInfo` behind an `Arc` (7 fields ≈ 120 B inline plus its
//! strings: id 20 B, prefix 6 B, name ≤ 512 B (128 chars), plan ≤ 64 B, each
//! rounded up by the allocator), plus one `by_hash` entry (32 B hash + 8 B
//! pointer + control byte, at ≤ 7/8 load ≈ 48 B) and one `keys` entry
//! (24 B id header + its 20 B copy + 40 B entry, ≈ 100 B with load). That is
//! ≈ 400 B for a key with short names and ≤ ~900 B with maximal ones, so
//! [`crate::key::MAX_KEYS`] (1,000,000) bounds the index at ≈ 0.4–0.9 GiB;
//! typical deployments hold thousands. Plans: ≤ [`crate::plan::MAX_PLANS`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::key::{KeyInfo, SecretHash};
use crate::plan::Plan;

/// A key that authenticated, with a snapshot of its plan: everything the
/// throttle and quota stages need, for two `Arc` clones.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub key: Arc<KeyInfo>,
    pub plan: Arc<Plan>,
}

#[derive(Debug)]
struct KeyEntry {
    info: Arc<KeyInfo>,
    hash: SecretHash,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    plans: HashMap<String, Arc<Plan>>,
    keys: HashMap<String, KeyEntry>,
    by_hash: HashMap<SecretHash, Arc<KeyInfo>>,
}

impl Index {
    pub(crate) fn lookup(&self, hash: &SecretHash) -> Option<AuthenticatedKey> {
        let key = self.by_hash.get(hash)?;
        // A key whose plan is missing can't be limited correctly; refusing
        // it (fail closed) is safer than admitting it unlimited. The store's
        // foreign key makes this unreachable.
        let plan = self.plans.get(&key.plan)?;
        Some(AuthenticatedKey {
            key: Arc::clone(key),
            plan: Arc::clone(plan),
        })
    }

    pub(crate) fn plan(&self, name: &str) -> Option<&Arc<Plan>> {
        self.plans.get(name)
    }

    pub(crate) fn plans(&self) -> impl Iterator<Item = &Arc<Plan>> {
        self.plans.values()
    }

    pub(crate) fn plan_count(&self) -> usize {
        self.plans.len()
    }

    pub(crate) fn put_plan(&mut self, plan: Plan) {
        self.plans.insert(plan.spec.name.clone(), Arc::new(plan));
    }

    pub(crate) fn remove_plan(&mut self, name: &str) {
        self.plans.remove(name);
    }

    pub(crate) fn key(&self, id: &str) -> Option<&Arc<KeyInfo>> {
        self.keys.get(id).map(|e| &e.info)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Arc<KeyInfo>> {
        self.keys.values().map(|e| &e.info)
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn has_key(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// Inserts or replaces a key; a replaced key's old hash stops working
    /// in the same critical section (this is what makes rotation immediate).
    pub(crate) fn put_key(&mut self, info: KeyInfo, hash: SecretHash) {
        let info = Arc::new(info);
        if let Some(old) = self.keys.insert(
            info.id.clone(),
            KeyEntry {
                info: Arc::clone(&info),
                hash,
            },
        ) {
            self.by_hash.remove(&old.hash);
        }
        self.by_hash.insert(hash, info);
    }

    /// Replaces a key's public record, keeping its hash.
    pub(crate) fn update_key(&mut self, info: KeyInfo) {
        if let Some(hash) = self.keys.get(&info.id).map(|e| e.hash) {
            self.put_key(info, hash);
        }
    }

    pub(crate) fn remove_key(&mut self, id: &str) {
        if let Some(old) = self.keys.remove(id) {
            self.by_hash.remove(&old.hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::hash_secret;
    use crate::plan::{PlanSource, PlanSpec};

    fn info(id: &str, plan: &str) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            name: "n".into(),
            plan: plan.into(),
            enabled: true,
            prefix: "abcdef".into(),
            created_at: 0,
            rotated_at: None,
        }
    }

    fn with_plan() -> Index {
        let mut ix = Index::default();
        ix.put_plan(Plan {
            spec: PlanSpec::named("p"),
            source: PlanSource::Api,
            created_at: 0,
        });
        ix
    }

    #[test]
    fn replacing_a_key_drops_its_old_hash() {
        let mut ix = with_plan();
        ix.put_key(info("k1", "p"), hash_secret("old"));
        assert!(ix.lookup(&hash_secret("old")).is_some());
        ix.put_key(info("k1", "p"), hash_secret("new"));
        assert!(ix.lookup(&hash_secret("old")).is_none());
        assert_eq!(
            ix.lookup(&hash_secret("new")).map(|a| a.key.id.clone()),
            Some("k1".into())
        );
        assert_eq!(ix.key_count(), 1);
        assert_eq!(ix.by_hash.len(), 1);
    }

    #[test]
    fn update_keeps_the_hash_and_remove_drops_both_maps() {
        let mut ix = with_plan();
        ix.put_key(info("k1", "p"), hash_secret("s"));
        let mut disabled = info("k1", "p");
        disabled.enabled = false;
        ix.update_key(disabled);
        let found = ix.lookup(&hash_secret("s")).expect("still found");
        assert!(!found.key.enabled);
        ix.remove_key("k1");
        assert!(ix.lookup(&hash_secret("s")).is_none());
        assert!(ix.by_hash.is_empty() && ix.keys.is_empty());
    }

    #[test]
    fn a_key_without_its_plan_does_not_authenticate() {
        let mut ix = with_plan();
        ix.put_key(info("k1", "gone"), hash_secret("s"));
        assert!(ix.lookup(&hash_secret("s")).is_none());
    }
}
