//! The bounded hashed table shared by [`RateCounter`](super::RateCounter),
//! [`KeyedBuckets`](crate::bucket::KeyedBuckets) and
//! [`BanList`](crate::ban::BanList): per-key state of one small `Copy` type,
//! keyed by a seeded 64-bit SipHash of the key, sharded behind mutexes.
//!
//! Owns: hashing, sharding, the slot arrays (which grow on demand up to a
//! hard cap and never beyond), reclaiming idle entries, eviction at the cap,
//! and an optional per-shard count-min style overflow sketch for keys that
//! find no slot. It must never allocate per key, never grow past the cap,
//! never panic (poisoned locks are recovered, every index is bounded) and
//! never read a clock: "now" arrives in the caller's units.

use std::collections::hash_map::RandomState;
use std::fmt::Debug;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

/// Largest `max_keys` any table accepts (larger values are clamped): 64 Mi
/// keys, i.e. at most ~1.3 GiB for the 16-byte entries of a rate counter.
pub const MAX_KEYS_CAP: usize = 1 << 26;

/// Most shards a table uses; enough to spread a 2-core or 64-core edge.
const MAX_SHARDS: usize = 64;
/// Keys per shard before a second shard is worth its mutex.
const KEYS_PER_SHARD_MIN: usize = 4096;
/// Slots allocated per shard before the first growth.
const INITIAL_SLOTS: usize = 16;
/// Slots per key at full size is 5/4: linear probing stays short (an
/// unsuccessful probe averages ~13 slots at 80 % load) and there is always
/// at least one empty slot, which is what terminates every probe.
const SLACK_NUM: usize = 5;
const SLACK_DEN: usize = 4;
/// Slots inspected around a key's home when the shard is at its cap, both to
/// reclaim idle entries and to pick an eviction victim.
const NEIGHBOURHOOD: usize = 16;
/// Slots the background sweep cursor inspects per insert attempt at the cap,
/// so idle entries anywhere in the shard are reclaimed in amortised O(1).
const SWEEP_STEP: usize = 32;
/// Rows of the overflow sketch (count-min depth).
pub(crate) const SKETCH_DEPTH: usize = 4;
/// Bounds on the sketch width per shard (columns per row, a power of two).
const SKETCH_WIDTH_MIN: usize = 16;
const SKETCH_WIDTH_MAX: usize = 2048;
/// Per-row seeds so the sketch rows are independent functions of the hash.
const ROW_SEEDS: [u64; SKETCH_DEPTH] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x85EB_CA77_C2B2_AE63,
];

/// Per-key state kept in a [`BoundedTable`]. `now` is in whatever unit the
/// owner uses (window index for rate counters, nanoseconds for the others).
pub(crate) trait Cell: Copy + Default + Debug + Send {
    /// True when this entry is indistinguishable from a fresh default entry
    /// at `now`, so dropping it loses nothing.
    fn is_idle(&self, now: u64) -> bool;
    /// Eviction priority at the cap (lowest goes first); `None` pins the
    /// entry: it is never evicted while live.
    fn evict_rank(&self, now: u64) -> Option<u64>;
    /// Both `self` and `other` over-estimate one key's state (each sketch
    /// row saw a superset of its traffic); return the tighter of the two.
    fn tighter(self, other: Self, now: u64) -> Self;
    /// Raise this sketch cell so it over-estimates both its previous content
    /// and `v` (count-min "conservative update").
    fn raise(&mut self, v: &Self, now: u64);
}

/// Maps caller `Instant`s to nanoseconds since the first `Instant` seen, so
/// entries can hold plain `u64`s. Instants earlier than that epoch (a racing
/// thread's slightly older `now`) clamp to 0 rather than panic.
#[derive(Debug, Default)]
pub(crate) struct Epoch(OnceLock<Instant>);

impl Epoch {
    pub(crate) fn nanos(&self, now: Instant) -> u64 {
        let epoch = *self.0.get_or_init(|| now);
        let d = now.saturating_duration_since(epoch);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot<V> {
    /// 0 = empty; otherwise the key's hash (a hash of 0 is stored as 1).
    tag: u64,
    value: V,
}

#[derive(Debug)]
struct Shard<V> {
    slots: Vec<Slot<V>>,
    /// Occupied slots (live or idle-but-not-yet-reclaimed).
    len: usize,
    /// Most keys this shard may hold.
    cap: usize,
    /// Slot count at full size: `cap * 5/4 + 1`, always > `cap`.
    max_slots: usize,
    /// Position of the incremental idle sweep.
    cursor: usize,
    /// Overflow sketch: `SKETCH_DEPTH * sketch_width` cells, allocated on the
    /// first overflow only.
    sketch: Option<Box<[V]>>,
}

/// Where a key's state lives for one operation.
enum Place {
    Slot(usize),
    Sketch,
    Nowhere,
}

/// Sharded, hard-capped hash table of `V` keyed by a seeded hash of bytes.
#[derive(Debug)]
pub(crate) struct BoundedTable<V> {
    hasher: RandomState,
    shards: Box<[Mutex<Shard<V>>]>,
    /// Columns per sketch row; 0 disables the overflow sketch.
    sketch_width: usize,
}

impl<V: Cell> BoundedTable<V> {
    /// A table holding at most `max_keys` keys (clamped to
    /// `1..=MAX_KEYS_CAP`), with an overflow sketch if `with_sketch`.
    pub(crate) fn new(max_keys: usize, with_sketch: bool) -> Self {
        let max_keys = max_keys.clamp(1, MAX_KEYS_CAP);
        let n = (max_keys / KEYS_PER_SHARD_MIN)
            .next_power_of_two()
            .clamp(1, MAX_SHARDS);
        let shards = (0..n)
            .map(|i| {
                // Spread the cap exactly: the shard caps sum to max_keys.
                let cap = max_keys / n + usize::from(i < max_keys % n);
                let max_slots = cap + cap * (SLACK_NUM - SLACK_DEN) / SLACK_DEN + 1;
                Mutex::new(Shard {
                    slots: vec![Slot::default(); INITIAL_SLOTS.min(max_slots)],
                    len: 0,
                    cap,
                    max_slots,
                    cursor: 0,
                    sketch: None,
                })
            })
            .collect();
        let per_shard = max_keys / n;
        let sketch_width = if with_sketch {
            (per_shard / 4)
                .next_power_of_two()
                .clamp(SKETCH_WIDTH_MIN, SKETCH_WIDTH_MAX)
        } else {
            0
        };
        BoundedTable {
            hasher: RandomState::new(),
            shards,
            sketch_width,
        }
    }

    fn locate(&self, key: &[u8]) -> (u64, MutexGuard<'_, Shard<V>>) {
        let h = self.hasher.hash_one(key);
        let tag = h.max(1);
        // Low bits pick the shard; the slot index uses the high bits.
        let idx = (h as usize) & (self.shards.len() - 1);
        let guard = match self.shards.get(idx) {
            Some(m) => m.lock().unwrap_or_else(PoisonError::into_inner),
            // Unreachable (the mask keeps idx in range); shard 0 is a safe answer.
            None => self.shards[0]
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        };
        (tag, guard)
    }

    /// Runs `f` on the key's state, creating it (from the overflow sketch's
    /// estimate, or the default) if absent. Returns `None` only when the key
    /// could be neither stored nor estimated (table at cap, every nearby
    /// entry pinned, no sketch).
    pub(crate) fn update<R>(&self, key: &[u8], now: u64, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let (tag, mut shard) = self.locate(key);
        let width = self.sketch_width;
        match shard.place(tag, now, width) {
            Place::Slot(i) => shard.slots.get_mut(i).map(|s| f(&mut s.value)),
            Place::Sketch => {
                let sketch = shard.sketch.get_or_insert_with(|| {
                    vec![V::default(); SKETCH_DEPTH * width].into_boxed_slice()
                });
                let mut v = sketch_estimate(sketch, tag, now, width);
                let r = f(&mut v);
                for i in sketch_cells(tag, width) {
                    if let Some(c) = sketch.get_mut(i) {
                        c.raise(&v, now);
                    }
                }
                Some(r)
            }
            Place::Nowhere => None,
        }
    }

    /// Reads the key's stored state, if it has a slot. Never inserts.
    pub(crate) fn get<R>(&self, key: &[u8], f: impl FnOnce(&V) -> R) -> Option<R> {
        let (tag, shard) = self.locate(key);
        let i = shard.find(tag)?;
        shard.slots.get(i).map(|s| f(&s.value))
    }

    /// Honest heap footprint: allocated slot and sketch capacities times
    /// their sizes, plus the shard array and this struct.
    pub(crate) fn memory_bytes(&self) -> usize {
        let shard_overhead = std::mem::size_of::<Self>()
            + self.shards.len() * std::mem::size_of::<Mutex<Shard<V>>>();
        self.shards.iter().fold(shard_overhead, |acc, m| {
            let s = m.lock().unwrap_or_else(PoisonError::into_inner);
            acc + s.slots.capacity() * std::mem::size_of::<Slot<V>>()
                + s.sketch.as_ref().map_or(0, |k| std::mem::size_of_val(&**k))
        })
    }

    /// Keys holding a slot (including idle ones not yet reclaimed).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).len)
            .sum()
    }

    /// Memory the table would use with every shard grown to its cap.
    #[cfg(test)]
    pub(crate) fn max_memory_bytes(&self) -> usize {
        let shard_overhead = std::mem::size_of::<Self>()
            + self.shards.len() * std::mem::size_of::<Mutex<Shard<V>>>();
        self.shards.iter().fold(shard_overhead, |acc, m| {
            let s = m.lock().unwrap_or_else(PoisonError::into_inner);
            acc + s.max_slots * std::mem::size_of::<Slot<V>>()
                + SKETCH_DEPTH * self.sketch_width * std::mem::size_of::<V>()
        })
    }
}

/// The tightest over-estimate the sketch rows give for `tag`.
fn sketch_estimate<V: Cell>(sketch: &[V], tag: u64, now: u64, width: usize) -> V {
    sketch_cells(tag, width)
        .filter_map(|i| sketch.get(i).copied())
        .reduce(|a, b| a.tighter(b, now))
        .unwrap_or_default()
}

/// One cell index per sketch row.
fn sketch_cells(tag: u64, width: usize) -> impl Iterator<Item = usize> {
    ROW_SEEDS
        .iter()
        .enumerate()
        .map(move |(row, seed)| row * width + (mix64(tag ^ seed) as usize & (width - 1)))
}

/// splitmix64 finaliser: decorrelates the sketch columns from the shard and
/// slot bits of the (already keyed) SipHash value.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<V: Cell> Shard<V> {
    fn home(&self, tag: u64) -> usize {
        // Multiply-shift range reduction: no power-of-two size needed, so
        // the slot array can be exactly cap * 5/4.
        ((u128::from(tag) * self.slots.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 >= self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    fn find(&self, tag: u64) -> Option<usize> {
        let mut i = self.home(tag);
        // Bounded by the slot count; an empty slot (there always is one)
        // ends the probe far sooner.
        for _ in 0..self.slots.len() {
            let t = self.slots.get(i)?.tag;
            if t == tag {
                return Some(i);
            }
            if t == 0 {
                return None;
            }
            i = self.next(i);
        }
        None
    }

    fn place(&mut self, tag: u64, now: u64, sketch_width: usize) -> Place {
        if let Some(i) = self.find(tag) {
            return Place::Slot(i);
        }
        // A key new to the table inherits the sketch's estimate so that
        // moving from the sketch into a slot never forgets counted traffic.
        let init = match &self.sketch {
            Some(s) => sketch_estimate(s, tag, now, sketch_width),
            None => V::default(),
        };
        if self.len >= self.cap {
            self.reclaim(tag, now);
        }
        if self.len >= self.cap && !self.evict(tag, now) {
            return if sketch_width > 0 {
                Place::Sketch
            } else {
                Place::Nowhere
            };
        }
        if (self.len + 1) * SLACK_NUM > self.slots.len() * SLACK_DEN
            && self.slots.len() < self.max_slots
        {
            self.grow(now);
        }
        match self.insert(tag, init) {
            Some(i) => Place::Slot(i),
            None => Place::Nowhere,
        }
    }

    /// Puts a key known to be absent at the first empty slot of its probe.
    fn insert(&mut self, tag: u64, value: V) -> Option<usize> {
        let mut i = self.home(tag);
        for _ in 0..self.slots.len() {
            let slot = self.slots.get_mut(i)?;
            if slot.tag == 0 {
                *slot = Slot { tag, value };
                self.len += 1;
                return Some(i);
            }
            i = self.next(i);
        }
        None
    }

    /// Drops idle entries near the key's home and advances the sweep.
    fn reclaim(&mut self, tag: u64, now: u64) {
        let home = self.home(tag);
        self.drop_idle(home, NEIGHBOURHOOD, now);
        let cursor = self.cursor;
        self.drop_idle(cursor, SWEEP_STEP, now);
        self.cursor = (cursor + SWEEP_STEP) % self.slots.len().max(1);
    }

    fn drop_idle(&mut self, start: usize, count: usize, now: u64) {
        let mut i = start;
        let mut budget = count.min(self.slots.len());
        // Each step either advances or removes an entry, and removals are
        // bounded by `len`, so the loop is bounded by count + len.
        let mut removals = self.len;
        while budget > 0 {
            let idle = self
                .slots
                .get(i)
                .is_some_and(|s| s.tag != 0 && s.value.is_idle(now));
            if idle && removals > 0 {
                // Backward shift may pull another entry into `i`: re-check.
                self.remove(i);
                removals -= 1;
            } else {
                i = self.next(i);
                budget -= 1;
            }
        }
    }

    /// Evicts the lowest-ranked unpinned entry near the key's home.
    fn evict(&mut self, tag: u64, now: u64) -> bool {
        let mut i = self.home(tag);
        let mut victim: Option<(u64, usize)> = None;
        for _ in 0..NEIGHBOURHOOD.min(self.slots.len()) {
            if let Some(s) = self.slots.get(i) {
                if s.tag != 0 {
                    if let Some(r) = s.value.evict_rank(now) {
                        if victim.is_none_or(|(best, _)| r < best) {
                            victim = Some((r, i));
                        }
                    }
                }
            }
            i = self.next(i);
        }
        match victim {
            Some((_, v)) => {
                self.remove(v);
                true
            }
            None => false,
        }
    }

    /// Linear-probing deletion by backward shift (Knuth's Algorithm R): no
    /// tombstones, so probes stay short and "empty" keeps meaning "absent".
    fn remove(&mut self, mut hole: usize) {
        let Some(slot) = self.slots.get_mut(hole) else {
            return;
        };
        if slot.tag == 0 {
            return;
        }
        slot.tag = 0;
        self.len = self.len.saturating_sub(1);
        let mut j = hole;
        for _ in 0..self.slots.len() {
            j = self.next(j);
            let Some(&s) = self.slots.get(j) else { return };
            if s.tag == 0 {
                return;
            }
            let h = self.home(s.tag);
            // The entry at j may stay only if its home lies cyclically in
            // (hole, j]; otherwise moving it into the hole keeps it reachable.
            let stays = if hole <= j {
                hole < h && h <= j
            } else {
                hole < h || h <= j
            };
            if !stays {
                if let Some(dst) = self.slots.get_mut(hole) {
                    *dst = s;
                }
                if let Some(src) = self.slots.get_mut(j) {
                    src.tag = 0;
                }
                hole = j;
            }
        }
    }

    /// Doubles the slot array (up to `max_slots`), dropping idle entries.
    fn grow(&mut self, now: u64) {
        let new_len = (self.slots.len() * 2).clamp(1, self.max_slots);
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); new_len]);
        self.len = 0;
        self.cursor = 0;
        for s in old {
            if s.tag != 0 && !s.value.is_idle(now) {
                // Cannot fail: live entries <= cap < new_len.
                let _ = self.insert(s.tag, s.value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test cell: idle when `v <= now`; evictable unless `v == 99`.
    #[derive(Debug, Clone, Copy, Default, PartialEq)]
    struct C {
        v: u64,
    }
    impl Cell for C {
        fn is_idle(&self, now: u64) -> bool {
            self.v <= now
        }
        fn evict_rank(&self, _now: u64) -> Option<u64> {
            (self.v != 99).then_some(self.v)
        }
        fn tighter(self, other: Self, _now: u64) -> Self {
            if self.v <= other.v {
                self
            } else {
                other
            }
        }
        fn raise(&mut self, v: &Self, _now: u64) {
            self.v = self.v.max(v.v);
        }
    }

    #[test]
    fn insert_find_and_remove_keep_every_key_reachable() {
        let t: BoundedTable<C> = BoundedTable::new(5000, false);
        for k in 0u32..5000 {
            t.update(&k.to_le_bytes(), 0, |c| c.v = u64::from(k) + 10);
        }
        assert_eq!(t.len(), 5000);
        for k in 0u32..5000 {
            assert_eq!(t.get(&k.to_le_bytes(), |c| c.v), Some(u64::from(k) + 10));
        }
        // At the cap, entries idle at now=2000 (v <= 2000) are reclaimed
        // by the sweep as new keys arrive; survivors stay findable.
        for k in 5000u32..9000 {
            t.update(&k.to_le_bytes(), 2000, |c| c.v = 1_000_000);
        }
        assert!(t.len() <= 5000);
        for k in 1991u32..5000 {
            if let Some(v) = t.get(&k.to_le_bytes(), |c| c.v) {
                assert_eq!(v, u64::from(k) + 10);
            }
        }
        // Every slot still held belongs to a key that can be found: a removal
        // that broke a probe chain would leave held but unreachable entries.
        let reachable = (0u32..9000)
            .filter(|k| t.get(&k.to_le_bytes(), |_| ()).is_some())
            .count();
        assert_eq!(reachable, t.len());
    }

    #[test]
    fn pinned_entries_are_never_evicted_and_overflow_is_reported() {
        let t: BoundedTable<C> = BoundedTable::new(8, false);
        for k in 0u8..8 {
            t.update(&[k], 0, |c| c.v = 99);
        }
        assert_eq!(t.update(&[200], 0, |c| c.v = 5), None);
        for k in 0u8..8 {
            assert_eq!(t.get(&[k], |c| c.v), Some(99));
        }
    }

    #[test]
    fn sketch_takes_overflow_and_seeds_later_inserts() {
        let t: BoundedTable<C> = BoundedTable::new(4, true);
        for k in 0u8..4 {
            t.update(&[k], 0, |c| c.v = 99);
        }
        // Overflow key lands in the sketch and its state persists there.
        assert_eq!(t.update(&[50], 0, |c| c.v = 70), Some(()));
        assert_eq!(t.update(&[50], 0, |c| c.v), Some(70));
        assert_eq!(t.get(&[50], |c| c.v), None);
        assert!(t.memory_bytes() <= t.max_memory_bytes());
    }

    #[test]
    fn memory_never_exceeds_the_cap_figure() {
        let t: BoundedTable<C> = BoundedTable::new(1000, true);
        for k in 0u32..10_000 {
            t.update(&k.to_le_bytes(), 0, |c| c.v = 50);
        }
        assert_eq!(t.len(), 1000);
        assert!(t.memory_bytes() <= t.max_memory_bytes());
    }
}
