//! Hands each live instance a uid (and the same gid) of its own from
//! `[server] instance_uids`.
//!
//! Owns which ids are taken. An id goes back to the pool only when the
//! instance that held it is gone, process and cgroup, so no two live
//! instances ever share one (with no Yama on these machines, a shared uid
//! would let them ptrace each other). Must never pick an id outside the
//! configured range.

use std::collections::HashSet;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Taken {
    /// Bounded by the range's size.
    ids: HashSet<u32>,
    /// Next-fit cursor, so a freed id rests before it is handed out again.
    next: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct UidPool {
    range: RangeInclusive<u32>,
    taken: Arc<Mutex<Taken>>,
}

/// One instance's id; dropping it returns the id.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) uid: u32,
    taken: Arc<Mutex<Taken>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.taken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ids
            .remove(&self.uid);
    }
}

impl UidPool {
    pub(crate) fn new(range: RangeInclusive<u32>) -> Self {
        let next = *range.start();
        Self {
            range,
            taken: Arc::new(Mutex::new(Taken {
                ids: HashSet::new(),
                next,
            })),
        }
    }

    /// A free id, or `None` when every id in the range is held.
    pub(crate) fn lease(&self) -> Option<Lease> {
        let (first, last) = (*self.range.start(), *self.range.end());
        let size = u64::from(last - first) + 1;
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if taken.ids.len() as u64 >= size {
            return None;
        }
        let mut uid = taken.next;
        while taken.ids.contains(&uid) {
            uid = if uid == last { first } else { uid + 1 };
        }
        taken.ids.insert(uid);
        taken.next = if uid == last { first } else { uid + 1 };
        Some(Lease {
            uid,
            taken: Arc::clone(&self.taken),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_ids_are_distinct_and_come_back_when_dropped() {
        let pool = UidPool::new(1000..=1002);
        let a = pool.lease().unwrap();
        let b = pool.lease().unwrap();
        let c = pool.lease().unwrap();
        assert_eq!([a.uid, b.uid, c.uid], [1000, 1001, 1002]);
        assert!(pool.lease().is_none(), "the range is exhausted");
        drop(b);
        let d = pool.lease().unwrap();
        assert_eq!(d.uid, 1001);
        drop(a);
        drop(c);
        // Next-fit: the cursor moved past 1001, so 1002 comes before 1000.
        assert_eq!(pool.lease().unwrap().uid, 1002);
    }
}
