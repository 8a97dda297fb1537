//! Request collapsing: at most one fill per key in flight; identical requests
//! arriving meanwhile wait for its outcome instead of invoking the function.
//!
//! It owns the in-flight table and the waiting bounds: at most
//! [`MAX_WAITERS`] requests wait on one key, each at most [`COLLAPSE_WAIT`].
//! A fill that dies without an outcome (its task panicked) releases its
//! waiters with [`Abandoned::LeaderFailed`] and removes itself, so the next
//! request starts one new fill — never one per waiter. The table holds one
//! row per fill running, so it is bounded by the requests in flight, which the
//! connection guard caps. It must never run a fill or decide what an outcome
//! means; `super` does.

use levee_common::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use tokio::sync::watch;

use super::entry::Entry;

/// Most requests waiting on one key; later ones are refused at once (503, or
/// a stale copy) rather than queued without bound or sent to the function.
pub const MAX_WAITERS: usize = 4096;
/// Longest a request waits for another's fill (API Gateway's own integration
/// timeout is 30 s); then it gets 503 or a stale copy, never its own
/// invocation, so a slow function is not stampeded.
pub const COLLAPSE_WAIT: Duration = Duration::from_secs(30);

/// What a fill produced, for everyone who waited on it.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A stored entry, or a stale one served in place of a failure.
    Entry { entry: Arc<Entry>, stale: bool },
    /// An answer anyone may get, not stored (no-store, zero TTL, too big, an
    /// error with no stale copy).
    Shared(Snapshot),
    /// An answer for the requester alone (Set-Cookie, private, Vary). The
    /// leader takes it; waiters invoke the function themselves.
    Personal(Mutex<Option<Response<Bytes>>>),
}

/// A response that can be handed out many times.
#[derive(Debug)]
pub(crate) struct Snapshot {
    status: StatusCode,
    headers: HeaderMap,
    /// What the edge attached (e.g. a budget refusal's marker), for every
    /// requester's metrics, not only the leader's.
    extensions: http::Extensions,
    body: Bytes,
}

impl Snapshot {
    pub(crate) fn new(resp: Response<Bytes>) -> Snapshot {
        let (parts, body) = resp.into_parts();
        Snapshot {
            status: parts.status,
            headers: parts.headers,
            extensions: parts.extensions,
            body,
        }
    }

    pub(crate) fn to_response(&self) -> Response<Bytes> {
        let mut resp = Response::new(self.body.clone());
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers.clone();
        *resp.extensions_mut() = self.extensions.clone();
        resp
    }
}

/// Why a wait ended without an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Abandoned {
    #[error("the fill did not finish within the collapse wait")]
    TimedOut,
    #[error("the fill ended without an outcome")]
    LeaderFailed,
}

type Slot = Option<Arc<Outcome>>;

#[derive(Debug)]
struct Flight {
    tx: watch::Sender<Slot>,
    /// Kept apart from `tx` so a waiter's count does not keep the sender
    /// alive (a dead fill must close the channel).
    waiters: Arc<AtomicUsize>,
}

/// The in-flight table.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Arc<Mutex<HashMap<Arc<str>, Flight>>>,
}

/// How a request joined a key's fill.
#[derive(Debug)]
pub(crate) enum Join {
    /// No fill was running: this request must run one.
    Lead(Lead, Ticket),
    /// A fill is running: wait on the ticket.
    Wait(Ticket),
    /// A fill is running and already has [`MAX_WAITERS`] waiters.
    Full,
}

/// The right (and duty) to finish a key's fill. Dropping it without
/// [`Lead::finish`] abandons the waiters; either way the row is removed.
#[derive(Debug)]
pub(crate) struct Lead {
    map: Arc<Mutex<HashMap<Arc<str>, Flight>>>,
    key: Arc<str>,
}

/// A place in the queue for a fill's outcome.
#[derive(Debug)]
pub(crate) struct Ticket {
    rx: watch::Receiver<Slot>,
    count: Option<Arc<AtomicUsize>>,
}

impl Flights {
    /// Joins the fill of `key`, or starts it. `wait = false` (a background
    /// refresh) never queues: it leads or gets `Full`.
    pub(crate) fn join(&self, key: &str, wait: bool) -> Join {
        let mut map = lock(&self.map);
        if let Some(f) = map.get(key) {
            if !wait || f.waiters.fetch_add(1, Ordering::AcqRel) >= MAX_WAITERS {
                if wait {
                    f.waiters.fetch_sub(1, Ordering::AcqRel);
                }
                return Join::Full;
            }
            return Join::Wait(Ticket {
                rx: f.tx.subscribe(),
                count: Some(Arc::clone(&f.waiters)),
            });
        }
        let (tx, rx) = watch::channel(None);
        let key: Arc<str> = Arc::from(key);
        map.insert(
            Arc::clone(&key),
            Flight {
                tx,
                waiters: Arc::default(),
            },
        );
        Join::Lead(
            Lead {
                map: Arc::clone(&self.map),
                key,
            },
            Ticket { rx, count: None },
        )
    }

    /// Fills running now.
    pub(crate) fn in_flight(&self) -> usize {
        lock(&self.map).len()
    }
}

impl Lead {
    /// Hands `outcome` to every waiter and ends the fill.
    pub(crate) fn finish(self, outcome: Outcome) {
        if let Some(f) = lock(&self.map).get(&self.key) {
            f.tx.send_replace(Some(Arc::new(outcome)));
        }
        // Drop removes the row.
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        // Removing the row drops the sender: waiters that got no outcome see
        // the channel close. Later requests find the stored entry, or start
        // one new fill.
        lock(&self.map).remove(&self.key);
    }
}

impl Ticket {
    /// Waits for the outcome, at most `limit`.
    pub(crate) async fn wait(mut self, limit: Duration) -> Result<Arc<Outcome>, Abandoned> {
        let waited = tokio::time::timeout(limit, self.rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(slot)) => slot.clone().ok_or(Abandoned::LeaderFailed),
            Ok(Err(_)) => Err(Abandoned::LeaderFailed),
            Err(_) => Err(Abandoned::TimedOut),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(c) = &self.count {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_leads_the_rest_wait_and_all_get_the_outcome() {
        let flights = Flights::default();
        let Join::Lead(lead, mine) = flights.join("k", true) else {
            panic!("first joiner leads");
        };
        let Join::Wait(theirs) = flights.join("k", true) else {
            panic!("second joiner waits");
        };
        assert!(
            matches!(flights.join("k", false), Join::Full),
            "refresh never queues"
        );
        lead.finish(Outcome::Personal(Mutex::new(None)));
        assert_eq!(flights.in_flight(), 0);
        assert!(mine.wait(COLLAPSE_WAIT).await.is_ok());
        assert!(theirs.wait(COLLAPSE_WAIT).await.is_ok());
        assert!(
            matches!(flights.join("k", true), Join::Lead(..)),
            "next fill"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waits_are_bounded_in_count_and_time_and_a_dead_lead_releases() {
        let flights = Flights::default();
        let Join::Lead(lead, _mine) = flights.join("k", true) else {
            panic!("leads");
        };
        let tickets: Vec<Ticket> = (0..MAX_WAITERS)
            .map(|_| match flights.join("k", true) {
                Join::Wait(t) => t,
                other => panic!("expected a ticket, got {other:?}"),
            })
            .collect();
        assert!(matches!(flights.join("k", true), Join::Full));
        let mut tickets = tickets.into_iter();
        let first = tickets.next().expect("one");
        assert_eq!(
            first.wait(COLLAPSE_WAIT).await.err(),
            Some(Abandoned::TimedOut)
        );
        // One place freed.
        assert!(matches!(flights.join("k", true), Join::Wait(_)));
        drop(lead);
        let second = tickets.next().expect("two");
        assert_eq!(
            second.wait(COLLAPSE_WAIT).await.err(),
            Some(Abandoned::LeaderFailed)
        );
    }
}
