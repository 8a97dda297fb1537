//! Lock helpers that can't panic.
//!
//! Owns: taking std locks without `unwrap`. Must never hide a real error: a
//! poisoned lock only means another thread panicked while holding it; every
//! critical section here leaves its maps consistent at each step, so the
//! data is still valid and refusing all later requests would turn one bug
//! into an outage.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
