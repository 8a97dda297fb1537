//! SQS's two 60-second rules for the API: one `PurgeQueue` per queue a
//! minute, and no `CreateQueue` of a name deleted less than a minute ago.
//!
//! Owns the times of recent purges and deletions, pruned as they age; at
//! most [`MAX_REMEMBERED`] of each (past that a name is simply not held
//! back). Pure bookkeeping: the caller passes the time. Must never hold a
//! name back for longer than [`WINDOW_MS`].

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{quote, QueueError};

/// SQS's window for both rules.
pub const WINDOW_MS: i64 = 60_000;
/// Most purges and most deletions remembered at once.
pub const MAX_REMEMBERED: usize = 10_000;

#[derive(Debug, Default)]
pub struct Recent {
    purged: Mutex<HashMap<String, i64>>,
    deleted: Mutex<HashMap<String, i64>>,
}

/// Records `name` at `now` unless it is there already within the window;
/// `Err(())` when it is.
fn hold(map: &Mutex<HashMap<String, i64>>, name: &str, now: i64) -> Result<(), ()> {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if map.get(name).is_some_and(|&at| now - at < WINDOW_MS) {
        return Err(());
    }
    map.retain(|_, at| now - *at < WINDOW_MS);
    if map.len() < MAX_REMEMBERED {
        map.insert(name.to_string(), now);
    }
    Ok(())
}

impl Recent {
    /// Whether `name` may be purged now; if so, the purge is recorded.
    pub fn purge(&self, name: &str, now: i64) -> Result<(), QueueError> {
        hold(&self.purged, name, now)
            .map_err(|()| QueueError::PurgeInProgress { name: quote(name) })
    }

    /// Records that `name` was deleted at `now`.
    pub fn deleted(&self, name: &str, now: i64) {
        self.purged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let _ = hold(&self.deleted, name, now);
    }

    /// Whether a queue named `name` may be created now.
    pub fn may_create(&self, name: &str, now: i64) -> Result<(), QueueError> {
        let deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
        match deleted.get(name).is_some_and(|&at| now - at < WINDOW_MS) {
            true => Err(QueueError::DeletedRecently { name: quote(name) }),
            false => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_purge_a_minute_and_no_name_back_within_one() {
        let r = Recent::default();
        assert!(r.purge("q", 0).is_ok());
        let again = r.purge("q", WINDOW_MS - 1).unwrap_err();
        assert_eq!(
            again.to_string(),
            "Only one PurgeQueue operation on q is allowed every 60 seconds."
        );
        assert!(r.purge("other", 1).is_ok());
        assert!(r.purge("q", WINDOW_MS).is_ok());
        r.deleted("q", 100);
        assert!(matches!(
            r.may_create("q", 100 + WINDOW_MS - 1),
            Err(QueueError::DeletedRecently { .. })
        ));
        assert!(r.may_create("q", 100 + WINDOW_MS).is_ok());
        assert!(r.may_create("never", 0).is_ok());
    }

    #[test]
    fn memory_is_bounded_and_ages_out() {
        let r = Recent::default();
        for i in 0..MAX_REMEMBERED + 10 {
            r.deleted(&format!("q{i}"), 0);
        }
        assert_eq!(r.deleted.lock().unwrap().len(), MAX_REMEMBERED);
        r.deleted("late", WINDOW_MS);
        assert_eq!(r.deleted.lock().unwrap().len(), 1, "the old ones pruned");
    }
}
