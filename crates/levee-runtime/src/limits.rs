//! Concurrency accounting and fair admission: who may start one more
//! invocation, now or after a short wait.
//!
//! The model is Lambda's: a function with reserved concurrency owns exactly
//! that many slots and never touches the shared pool; every other function
//! draws from the unreserved pool (account limit minus all reservations), so
//! one function at its limit cannot take capacity reserved for another.
//!
//! Beyond Lambda (whose answer at the limit is 429 at once): a caller may
//! wait a bounded time in a bounded queue for a slot, as behind HAProxy's
//! `maxconn` for `timeout queue`; a freed slot goes straight to a waiter.
//! Clients admitted while a pool was under no pressure are remembered, and
//! wait ahead of clients first seen during a surge, which a full queue
//! drops first. No I/O; the only waiting is for a slot, never unbounded.

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long after a pool last made someone wait (or refused them) its
/// admissions stop teaching it who the usual clients are.
const PRESSURE_MEMORY: Duration = Duration::from_secs(10);
/// Clients remembered per account: one u64 each, 512 KiB in all; a newer
/// client can take an older one's place.
const KNOWN_CLIENTS: usize = 1 << 16;

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

/// How long a caller may wait for a slot, and in how long a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patience {
    /// Zero: refuse at once when every slot is taken (Lambda's behaviour).
    pub wait: Duration,
    /// Most callers waiting for this function's slots at once.
    pub depth: usize,
}

/// Who is asking, for the order a full pool serves its waiters in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    /// Admitted before while the pool had room.
    Known,
    /// First seen while the pool was full.
    New,
}

/// Clients seen while there was no pressure: a fixed table of keyed
/// hashes, so neither its size nor its lookups depend on the traffic.
#[derive(Debug)]
struct KnownClients {
    hasher: RandomState,
    table: Box<[AtomicU64]>,
}

impl KnownClients {
    fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            table: (0..KNOWN_CLIENTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// A client's IPv4 address, or its IPv6 /64 (one host's usual range).
    fn key(&self, ip: IpAddr) -> u64 {
        let bits: u128 = match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => (u128::from(v6) >> 64) | (1 << 127),
        };
        // Zero marks an empty entry.
        self.hasher.hash_one(bits) | 1
    }

    fn entry(&self, key: u64) -> &AtomicU64 {
        &self.table[(key >> 1) as usize % KNOWN_CLIENTS]
    }

    fn remember(&self, key: u64) {
        self.entry(key).store(key, Ordering::Relaxed);
    }

    fn knows(&self, key: u64) -> bool {
        self.entry(key).load(Ordering::Relaxed) == key
    }
}

/// Callers waiting for a slot, the known ones first; each gets its permit
/// through its own channel.
#[derive(Debug, Default)]
struct Waiters {
    known: VecDeque<oneshot::Sender<Permit>>,
    new: VecDeque<oneshot::Sender<Permit>>,
}

impl Waiters {
    fn len(&self) -> usize {
        self.known.len() + self.new.len()
    }

    fn pop(&mut self) -> Option<oneshot::Sender<Permit>> {
        self.known.pop_front().or_else(|| self.new.pop_front())
    }

    /// Forgets waiters that gave up (their wait timed out).
    fn prune(&mut self) {
        self.known.retain(|w| !w.is_closed());
        self.new.retain(|w| !w.is_closed());
    }
}

/// A counter with a ceiling, and the callers waiting for it; never more
/// than `limit` permits exist, even under races.
#[derive(Debug)]
struct Slots {
    in_use: AtomicU32,
    limit: u32,
    /// Entries in `waiters`, read without the lock on every release.
    waiting: AtomicUsize,
    waiters: Mutex<Waiters>,
    known: Arc<KnownClients>,
    /// Milliseconds since `epoch` until which the pool counts as pressed.
    pressed_until_ms: AtomicU64,
    epoch: Instant,
}

impl Slots {
    fn new(limit: u32, known: Arc<KnownClients>) -> Arc<Self> {
        Arc::new(Self {
            in_use: AtomicU32::new(0),
            limit,
            waiting: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
            known,
            pressed_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn pressed(&self) {
        let until = self
            .now_ms()
            .saturating_add(PRESSURE_MEMORY.as_millis() as u64);
        self.pressed_until_ms.fetch_max(until, Ordering::Relaxed);
    }

    fn try_take(&self) -> bool {
        self.in_use
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// A slot back: to the first waiter still waiting, else to the pool.
    /// `waiting` is read after the decrement and written before a waiter's
    /// last try (both SeqCst), so a waiter can't miss a slot freed while it
    /// queued up.
    fn release(self: &Arc<Self>) {
        self.in_use.fetch_sub(1, Ordering::SeqCst);
        while self.waiting.load(Ordering::SeqCst) > 0 {
            let waiter = {
                let mut waiters = levee_common::sync::lock(&self.waiters);
                if !self.try_take() {
                    // Taken already; its own release hands it on.
                    return;
                }
                let Some(waiter) = waiters.pop() else {
                    self.in_use.fetch_sub(1, Ordering::SeqCst);
                    return;
                };
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                waiter
            };
            match waiter.send(Permit {
                slots: Arc::clone(self),
            }) {
                Ok(()) => return,
                // That one gave up: the slot goes on to the next, without
                // running this permit's drop.
                Err(permit) => {
                    std::mem::forget(permit);
                    self.in_use.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

/// The account-wide pool shared by every function without a reservation,
/// and the account's memory of its usual clients.
#[derive(Debug, Clone)]
pub struct AccountPool {
    unreserved: Arc<Slots>,
    known: Arc<KnownClients>,
}

impl AccountPool {
    /// `account` is the account concurrency, `reserved_total` the sum of all
    /// functions' reservations (validated by the config to be ≤ `account`).
    pub fn new(account: u32, reserved_total: u32) -> Self {
        let known = Arc::new(KnownClients::new());
        Self {
            unreserved: Slots::new(account.saturating_sub(reserved_total), Arc::clone(&known)),
            known,
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
                slots: Slots::new(n, Arc::clone(&account.known)),
                kind: SlotKind::Reserved,
            },
            None => Self {
                slots: Arc::clone(&account.unreserved),
                kind: SlotKind::Shared,
            },
        }
    }

    fn limit(&self) -> Limit {
        match self.kind {
            SlotKind::Reserved => Limit::Reserved {
                limit: self.slots.limit,
            },
            SlotKind::Shared => Limit::Account {
                limit: self.slots.limit,
            },
        }
    }

    fn permit(&self) -> Permit {
        Permit {
            slots: Arc::clone(&self.slots),
        }
    }

    /// Takes one slot or says which limit is full. Never waits.
    pub fn try_acquire(&self) -> Result<Permit, Limit> {
        match self.slots.try_take() {
            true => Ok(self.permit()),
            false => Err(self.limit()),
        }
    }

    /// Callers waiting for a slot now (some may have just given up).
    pub fn queued(&self) -> usize {
        self.slots.waiting.load(Ordering::Relaxed)
    }

    /// Takes one slot, waiting up to `patience.wait` in a queue of at most
    /// `patience.depth` when all are taken. `client` is who asks; `None`
    /// (the platform's own callers: the Invoke API and queue pollers) gets
    /// Lambda's answer, a refusal at once. A client admitted while the pool
    /// had room is remembered and, when the pool is full, waits ahead of
    /// clients it has not seen; a full queue makes room for a known client
    /// by refusing the newest unknown one.
    pub async fn acquire(
        &self,
        client: Option<IpAddr>,
        patience: Patience,
    ) -> Result<Permit, Limit> {
        let slots = &self.slots;
        let key = client.map(|ip| slots.known.key(ip));
        // Nobody waiting: the fast path, and while the pool is at ease,
        // what teaches it its clients.
        if slots.waiting.load(Ordering::SeqCst) == 0 && slots.try_take() {
            if let Some(key) = key {
                if slots.now_ms() >= slots.pressed_until_ms.load(Ordering::Relaxed) {
                    slots.known.remember(key);
                }
            }
            return Ok(self.permit());
        }
        slots.pressed();
        let Some(key) = key.filter(|_| !patience.wait.is_zero() && patience.depth > 0) else {
            return Err(self.limit());
        };
        let standing = match slots.known.knows(key) {
            true => Standing::Known,
            false => Standing::New,
        };
        let waiting = {
            let mut waiters = levee_common::sync::lock(&slots.waiters);
            slots.waiting.fetch_add(1, Ordering::SeqCst);
            if let Ok(permit) = self.try_acquire() {
                slots.waiting.fetch_sub(1, Ordering::SeqCst);
                return Ok(permit);
            }
            if waiters.len() >= patience.depth {
                let before = waiters.len();
                waiters.prune();
                slots
                    .waiting
                    .fetch_sub(before - waiters.len(), Ordering::SeqCst);
            }
            if waiters.len() >= patience.depth {
                // Full of live waiters: a known client takes the place of
                // the newest unknown one, whose wait ends now.
                let displaced = standing == Standing::Known && waiters.new.pop_back().is_some();
                slots.waiting.fetch_sub(1, Ordering::SeqCst);
                if !displaced {
                    return Err(self.limit());
                }
            }
            let (tx, rx) = oneshot::channel();
            match standing {
                Standing::Known => waiters.known.push_back(tx),
                Standing::New => waiters.new.push_back(tx),
            }
            rx
        };
        match tokio::time::timeout(patience.wait, waiting).await {
            Ok(Ok(permit)) => Ok(permit),
            // Timed out, or dropped from a full queue. A permit sent just
            // as the wait ended is dropped with the channel and goes on.
            _ => Err(self.limit()),
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

    const PATIENT: Patience = Patience {
        wait: Duration::from_secs(5),
        depth: 4,
    };

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[tokio::test]
    async fn a_caller_waits_for_a_freed_slot_or_times_out() {
        let account = AccountPool::new(10, 1);
        let f = FunctionSlots::new(Some(1), &account);
        let held = f.acquire(ip(1), PATIENT).await.unwrap();
        let waiter = {
            let f = f.clone();
            tokio::spawn(async move { f.acquire(ip(2), PATIENT).await })
        };
        while f.queued() == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let got = waiter
            .await
            .unwrap()
            .expect("the freed slot went to the waiter");
        let brief = Patience {
            wait: Duration::from_millis(20),
            depth: 4,
        };
        assert_eq!(
            f.acquire(ip(3), brief).await.unwrap_err(),
            Limit::Reserved { limit: 1 }
        );
        let zero = Patience {
            wait: Duration::ZERO,
            depth: 4,
        };
        assert!(f.acquire(ip(4), zero).await.is_err(), "0s: refused at once");
        drop(got);
        assert!(
            f.try_acquire().is_ok(),
            "no slot was lost to the timed-out waiter"
        );
    }

    #[tokio::test]
    async fn known_clients_are_served_first_and_displace_new_ones() {
        let account = AccountPool::new(10, 1);
        let f = FunctionSlots::new(Some(1), &account);
        // At ease: client 1 is admitted at once and so becomes known.
        drop(f.acquire(ip(1), PATIENT).await.unwrap());
        let held = f.acquire(ip(9), PATIENT).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let wait_for = |client: u8| {
            let (f, order) = (f.clone(), Arc::clone(&order));
            tokio::spawn(async move {
                let got = f.acquire(ip(client), PATIENT).await;
                if let Ok(permit) = got {
                    levee_common::sync::lock(&order).push(client);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    drop(permit);
                    return true;
                }
                false
            })
        };
        // Four new clients fill the queue; then the known one arrives.
        let mut new = Vec::new();
        for client in 20..24 {
            new.push(wait_for(client));
            while f.queued() < usize::from(client - 19) {
                tokio::task::yield_now().await;
            }
        }
        let known = wait_for(1);
        while levee_common::sync::lock(&f.slots.waiters).known.is_empty() {
            tokio::task::yield_now().await;
        }
        drop(held);
        assert!(known.await.unwrap(), "the known client got a slot");
        let mut served_new = 0;
        for n in new {
            served_new += usize::from(n.await.unwrap());
        }
        assert_eq!(served_new, 3, "the newest unknown waiter made room");
        assert_eq!(levee_common::sync::lock(&order)[0], 1, "and went first");
        assert!(f.try_acquire().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waiters_timing_out_leak_no_slot() {
        let account = AccountPool::new(2, 0);
        let f = FunctionSlots::new(None, &account);
        let brief = Patience {
            wait: Duration::from_millis(2),
            depth: 1000,
        };
        let tasks: Vec<_> = (0..400u32)
            .map(|i| {
                let f = f.clone();
                tokio::spawn(async move {
                    let client = Some(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]));
                    if let Ok(p) = f.acquire(client, brief).await {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        drop(p);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(account.in_use(), 0, "every permit came back");
        let both = (f.try_acquire(), f.try_acquire());
        assert!(both.0.is_ok() && both.1.is_ok());
    }

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
