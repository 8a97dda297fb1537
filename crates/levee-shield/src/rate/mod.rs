//! Per-key request counting for rate-based rules ("at most `limit` requests
//! per `window` per client IP / API key / header value").
//!
//! Owns the counting and the limit decision, plus (in the `table` submodule) the bounded
//! hashed table that `bucket` and `ban` reuse. It must never do I/O, read a
//! clock, allocate per key, grow past its cap, or panic on any input.
//!
//! # Algorithm and accuracy
//!
//! **Fixed windows aligned to the counter's epoch** (the first `now` it is
//! given): window `w` is `[epoch + w·window, epoch + (w+1)·window)`. Every
//! request is counted, refused ones too (HAProxy `http_req_rate` style), so a
//! flooding key stays cut off until its window ends. Within a window the
//! decision is exact and immediate: request number `limit + 1` is the first
//! one refused, and every later one in that window is refused as well;
//! `retry_after` is exactly the time left in the window. (AWS WAF, by
//! contrast, estimates and may react minutes late.)
//!
//! The price of fixed windows is the boundary burst: a key may send `limit`
//! requests at the end of one window and `limit` more at the start of the
//! next, so any sliding span of one window length can see up to
//! `2 × limit` admitted requests. Windows are aligned for all keys, so every
//! limited key is released at the same instant; callers that dislike that
//! synchronised release can stagger rules' windows.
//!
//! # Memory and what happens at the cap
//!
//! Keys are hashed with SipHash under a per-counter random seed (so clients
//! cannot aim collisions) into a sharded open-addressing table of 16-byte
//! entries (`hash, window, count`). Slot arrays grow on demand to at most
//! `max_keys × 5/4 + 1` slots per table (20 MB for 1,000,000 keys; measured
//! 24.2 MB in all, sketch included, after 3,000,000 distinct keys) and never
//! further. An entry whose window has passed is free to reuse. Shards take
//! equal shares of `max_keys`, so one may fill (and start overflowing) a
//! little before the table as a whole: ~99.7 % of 1M distinct keys get slots.
//!
//! When a shard holds its share of `max_keys` live entries, a new key is
//! **not** given a slot by evicting a live one (that would let an attacker
//! reset its own counter by flooding distinct keys). Instead it is counted in
//! a per-shard count-min sketch (4 rows × up to 2048 `u32` cells per shard;
//! ≤ 2 MiB per counter, allocated only on the first overflow) for the current
//! window. The sketch can only **over**-count (distinct keys colliding in all
//! four rows add up), never under-count, and a key that later gets a slot
//! starts from the sketch's estimate. Hence for every key, tracked or not:
//! **no more than `limit` requests are admitted within one window**. The cost
//! at the cap is false positives for keys first seen during the overflow,
//! roughly when `overflow requests this window / (shards × width)` approaches
//! `limit`. Keys already tracked keep exact counts throughout. Counts
//! saturate at `u32::MAX`, which is why `limit` is capped just below it.

pub(crate) mod table;

use std::time::{Duration, Instant};

use table::{BoundedTable, Cell, Epoch};

pub use table::MAX_KEYS_CAP;

/// Shortest window accepted (shorter ones are clamped up).
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// Longest window accepted (longer ones are clamped down).
pub const MAX_WINDOW: Duration = Duration::from_secs(600);
/// Largest limit accepted: counts are `u32` and saturate at `u32::MAX`,
/// which must stay strictly above the limit to keep a flooder limited.
pub const MAX_LIMIT: u64 = u32::MAX as u64 - 1;

/// A limiter parameter out of range (the infallible constructors clamp
/// instead; see each constant for the bound).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    #[error("limit must be 1..={max}, got {got}")]
    Limit { got: u64, max: u64 },
    #[error("window must be {min:?}..={max:?}, got {got:?}")]
    Window {
        got: Duration,
        min: Duration,
        max: Duration,
    },
    #[error("max_keys must be 1..={max}, got {got}")]
    MaxKeys { got: usize, max: usize },
    #[error("rate must be a finite number of tokens per second in {min}..={max}, got {got}")]
    Rate { got: f64, min: f64, max: f64 },
    #[error("burst must be >= 1")]
    Burst,
    #[error("threshold must be >= 1")]
    Threshold,
    #[error("{what} must be {min:?}..={max:?}, got {got:?}")]
    Duration {
        what: &'static str,
        got: Duration,
        min: Duration,
        max: Duration,
    },
}

pub(crate) fn check_max_keys(max_keys: usize) -> Result<(), LimitError> {
    if (1..=MAX_KEYS_CAP).contains(&max_keys) {
        Ok(())
    } else {
        Err(LimitError::MaxKeys {
            got: max_keys,
            max: MAX_KEYS_CAP,
        })
    }
}

/// Outcome of [`RateCounter::hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Under the limit; `count` requests (this one included) so far in the
    /// key's current window.
    Allowed { count: u64 },
    /// Over the limit until the current window ends, `retry_after` from now.
    Limited { retry_after: Duration },
}

/// One key's count in one window. 8 bytes; 16 with the table's hash tag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct WindowCount {
    window: u32,
    count: u32,
}

impl Cell for WindowCount {
    // `now` is the current window index.
    fn is_idle(&self, now: u64) -> bool {
        u64::from(self.window) < now || self.count == 0
    }
    fn evict_rank(&self, now: u64) -> Option<u64> {
        // Live counts are pinned: evicting one would under-count. Overflow
        // goes to the sketch instead.
        self.is_idle(now).then_some(0)
    }
    fn tighter(self, other: Self, now: u64) -> Self {
        if self.current(now) <= other.current(now) {
            self
        } else {
            other
        }
    }
    fn raise(&mut self, v: &Self, now: u64) {
        let count = self.current(now).max(v.current(now));
        *self = WindowCount {
            window: window_u32(now),
            count,
        };
    }
}

impl WindowCount {
    /// Requests counted in window `now` (a stale window counts as 0).
    fn current(&self, now: u64) -> u32 {
        if u64::from(self.window) >= now {
            self.count
        } else {
            0
        }
    }
}

fn window_u32(w: u64) -> u32 {
    // Saturates after 136 years at 1 s windows.
    u32::try_from(w).unwrap_or(u32::MAX)
}

/// Counts requests per key in fixed windows and says when a key is over its
/// limit. See the module docs for accuracy and memory bounds.
#[derive(Debug)]
pub struct RateCounter {
    limit: u32,
    window_ns: u64,
    epoch: Epoch,
    table: BoundedTable<WindowCount>,
}

impl RateCounter {
    /// `limit` requests per `window`, at most `max_keys` keys tracked
    /// exactly. Out-of-range arguments are clamped: limit to
    /// `1..=MAX_LIMIT`, window to `MIN_WINDOW..=MAX_WINDOW`, max_keys to
    /// `1..=MAX_KEYS_CAP`. Use [`RateCounter::try_new`] to reject instead.
    pub fn new(limit: u64, window: Duration, max_keys: usize) -> RateCounter {
        let limit = u32::try_from(limit.clamp(1, MAX_LIMIT)).unwrap_or(u32::MAX - 1);
        let window = window.clamp(MIN_WINDOW, MAX_WINDOW);
        RateCounter {
            limit,
            // At most 6e11 ns: always fits.
            window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
            epoch: Epoch::default(),
            table: BoundedTable::new(max_keys, true),
        }
    }

    /// Like [`RateCounter::new`] but refuses out-of-range arguments.
    pub fn try_new(limit: u64, window: Duration, max_keys: usize) -> Result<Self, LimitError> {
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(LimitError::Limit {
                got: limit,
                max: MAX_LIMIT,
            });
        }
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&window) {
            return Err(LimitError::Window {
                got: window,
                min: MIN_WINDOW,
                max: MAX_WINDOW,
            });
        }
        check_max_keys(max_keys)?;
        Ok(Self::new(limit, window, max_keys))
    }

    /// Counts one request for `key` at `now` and decides on it. Refused
    /// requests count too; the request that crosses the limit is itself
    /// `Limited`, and the key stays limited for the rest of the window.
    pub fn hit(&self, key: &[u8], now: Instant) -> RateDecision {
        let t = self.epoch.nanos(now);
        let w = t / self.window_ns;
        let limit = self.limit;
        let count = self
            .table
            .update(key, w, |c| {
                // A racing thread's older `now` lands in the entry's newer
                // window rather than resetting it.
                if u64::from(c.window) < w {
                    *c = WindowCount {
                        window: window_u32(w),
                        count: 0,
                    };
                }
                c.count = c.count.saturating_add(1);
                (c.window, c.count)
            })
            // The table always has the sketch to fall back on; if that ever
            // failed, refusing is the safe answer.
            .unwrap_or((window_u32(w), u32::MAX));
        let (window, count) = count;
        if count > limit {
            let end = (u64::from(window) + 1).saturating_mul(self.window_ns);
            RateDecision::Limited {
                retry_after: Duration::from_nanos(end.saturating_sub(t)),
            }
        } else {
            RateDecision::Allowed {
                count: u64::from(count),
            }
        }
    }

    /// Approximate heap bytes in use, computed from allocated capacities.
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    /// Keys currently holding a table slot (exactly counted), including
    /// entries of past windows not yet reused.
    pub fn tracked_keys(&self) -> usize {
        self.table.len()
    }

    /// The configured limit after clamping.
    pub fn limit(&self) -> u64 {
        u64::from(self.limit)
    }

    /// The configured window after clamping.
    pub fn window(&self) -> Duration {
        Duration::from_nanos(self.window_ns)
    }
}

#[cfg(test)]
mod tests;
