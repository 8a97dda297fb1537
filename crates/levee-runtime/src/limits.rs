//! Concurrency accounting: who may start one more invocation right now.
//!
//! Pure bookkeeping on atomics, no I/O and no waiting: a caller either gets a
//! [`Permit`] at once or learns which limit it hit, so a flood is answered 429
//! instead of queueing. The model is Lambda's: a function with reserved
//! concurrency owns exactly that many slots and never touches the shared pool;
//! every other function draws from the unreserved pool (account limit minus all
//! reservations), so one function at its limit cannot take capacity that is
//! reserved for another.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The limit that refused an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The function's own `reserved_concurrency` is in use.
    Reserved {
        /// The configured reservation.
        limit: u32,
    },
    /// The account's unreserved pool is in use.
    Account {
        /// Size of the unreserved pool (account concurrency minus reservations).
        limit: u32,
    },
}

impl Limit {
    /// Lambda's `TooManyRequestsException` reason for this limit.
    pub fn reason(&self) -> &'static str {
        match self {
            Limit::Reserved { .. } => "ReservedFunctionConcurrentInvocationLimitExceeded",
            Limit::Account { .. } => "ConcurrentInvocationLimitExceeded",
        }
    }

    /// The configured number that was hit.
    pub fn value(&self) -> u32 {
        match self {
            Limit::Reserved { limit } | Limit::Account { limit } => *limit,
        }
    }

    /// The config key a user would raise.
    pub fn key(&self) -> &'static str {
        match self {
            Limit::Reserved { .. } => "reserved_concurrency",
            Limit::Account { .. } => "account.concurrency",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {} in use", self.key(), self.value())
    }
}

/// A counter with a ceiling; `try_acquire` never exceeds it, even under races.
#[derive(Debug)]
struct Slots {
    in_use: AtomicU32,
    limit: u32,
}

impl Slots {
    fn new(limit: u32) -> Arc<Self> {
        Arc::new(Self {
            in_use: AtomicU32::new(0),
            limit,
        })
    }

    fn try_acquire(&self) -> bool {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        self.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The account-wide pool shared by every function without a reservation.
#[derive(Debug, Clone)]
pub struct AccountPool {
    unreserved: Arc<Slots>,
}

impl AccountPool {
    /// `account` is the account concurrency, `reserved_total` the sum of all
    /// functions' reservations (validated by the config to be ≤ `account`).
    pub fn new(account: u32, reserved_total: u32) -> Self {
        Self {
            unreserved: Slots::new(account.saturating_sub(reserved_total)),
        }
    }

    /// Invocations currently holding an unreserved slot.
    pub fn in_use(&self) -> u32 {
        self.unreserved.in_use.load(Ordering::Acquire)
    }
}

/// One function's concurrency gate.
#[derive(Debug, Clone)]
pub struct FunctionSlots {
    slots: Arc<Slots>,
    kind: SlotKind,
}

#[derive(Debug, Clone, Copy)]
enum SlotKind {
    Reserved,
    Shared,
}

impl FunctionSlots {
    /// A function with `reserved_concurrency = Some(n)` gets its own `n` slots;
    /// with `None` it shares the account's unreserved pool.
    pub fn new(reserved: Option<u32>, account: &AccountPool) -> Self {
        match reserved {
            Some(n) => Self {
                slots: Slots::new(n),
                kind: SlotKind::Reserved,
            },
            None => Self {
                slots: Arc::clone(&account.unreserved),
                kind: SlotKind::Shared,
            },
        }
    }

    /// Takes one slot or says which limit is full. Never waits.
    pub fn try_acquire(&self) -> Result<Permit, Limit> {
        if self.slots.try_acquire() {
            Ok(Permit {
                slots: Arc::clone(&self.slots),
            })
        } else {
            Err(match self.kind {
                SlotKind::Reserved => Limit::Reserved {
                    limit: self.slots.limit,
                },
                SlotKind::Shared => Limit::Account {
                    limit: self.slots.limit,
                },
            })
        }
    }
}

/// One admitted invocation; the slot returns when this drops, whatever path
/// the invocation took (success, error, timeout, cancelled caller).
#[derive(Debug)]
pub struct Permit {
    slots: Arc<Slots>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slots.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_function_is_capped_at_its_reservation() {
        let account = AccountPool::new(10, 2);
        let f = FunctionSlots::new(Some(2), &account);
        let a = f.try_acquire().unwrap();
        let _b = f.try_acquire().unwrap();
        assert_eq!(
            f.try_acquire().unwrap_err(),
            Limit::Reserved { limit: 2 },
            "third concurrent invocation must be refused"
        );
        drop(a);
        assert!(f.try_acquire().is_ok(), "a released slot is reusable");
        assert_eq!(account.in_use(), 0, "reserved use never touches the pool");
    }

    #[test]
    fn shared_functions_cannot_take_reserved_capacity() {
        // account 5, one function reserves 3: the others share only 2.
        let account = AccountPool::new(5, 3);
        let reserved = FunctionSlots::new(Some(3), &account);
        let a = FunctionSlots::new(None, &account);
        let b = FunctionSlots::new(None, &account);
        let _p1 = a.try_acquire().unwrap();
        let _p2 = b.try_acquire().unwrap();
        assert_eq!(a.try_acquire().unwrap_err(), Limit::Account { limit: 2 });
        assert_eq!(
            b.try_acquire().unwrap_err().reason(),
            "ConcurrentInvocationLimitExceeded"
        );
        let held: Vec<_> = (0..3).map(|_| reserved.try_acquire().unwrap()).collect();
        assert_eq!(
            held.len(),
            3,
            "the reservation is intact while the pool is full"
        );
    }

    #[test]
    fn zero_reservation_disables_the_function() {
        let account = AccountPool::new(10, 0);
        let f = FunctionSlots::new(Some(0), &account);
        assert_eq!(f.try_acquire().unwrap_err(), Limit::Reserved { limit: 0 });
    }

    #[test]
    fn racing_acquirers_never_exceed_the_limit() {
        let account = AccountPool::new(64, 0);
        let f = FunctionSlots::new(None, &account);
        let granted = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(p) = f.try_acquire() {
                            levee_common::sync::lock(&granted).push(p);
                        }
                    }
                });
            }
        });
        assert_eq!(levee_common::sync::lock(&granted).len(), 64);
        assert_eq!(account.in_use(), 64);
        levee_common::sync::lock(&granted).clear();
        assert_eq!(account.in_use(), 0);
    }
}
