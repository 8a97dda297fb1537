//! Lock helpers that can't panic.
//!
//! Owns: taking std locks without `unwrap`. Must never: hide a real error —
//! a poisoned lock only means another thread panicked while holding it; the
//! store's critical sections keep their maps consistent at every step (no
//! half-applied updates), so the data behind a poisoned lock is still valid
//! and refusing all further requests would turn one bug into an outage.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}
