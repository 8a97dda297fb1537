//! Measurement: latency histograms, status counts and the per-second series
//! of one traffic class. It owns the maths (nearest-rank percentiles over a
//! log-linear histogram, relative error ≤ 1/32) and the memory bound: one
//! fixed-size histogram per class plus one per second of the run. It must
//! never grow with the number of requests.

use std::collections::BTreeMap;

use crate::report::{ClassReport, LatencyMs, SecondReport};

/// Values below this (µs) have a bucket each: exact.
const LINEAR: u64 = 64;
/// Sub-buckets per power of two above [`LINEAR`] (so ≤ 1/32 relative error).
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Bucket count: 64 exact + 32 per power of two from 2^6 to 2^63.
const BUCKETS: usize = (LINEAR + (64 - 6) * SUB) as usize;

/// A latency histogram in microseconds. Fixed memory (15 KiB once used; none
/// before the first sample).
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    sum: u128,
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = u64::from(63 - v.leading_zeros()); // ≥ 6
    let sub = (v >> (e - u64::from(SUB_BITS))) & (SUB - 1);
    (LINEAR + (e - 6) * SUB + sub) as usize
}

/// The largest value that falls in bucket `i`.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let e = (i - LINEAR) / SUB + 6;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (e - u64::from(SUB_BITS));
    ((SUB + sub) << (e - u64::from(SUB_BITS))).saturating_add(width - 1)
}

impl Histogram {
    /// Records one value (µs).
    pub fn record(&mut self, us: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        if let Some(c) = self.counts.get_mut(index(us)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(us);
        self.sum += u128::from(us);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (0 if none).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean (0 if none).
    pub fn mean(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        }
    }

    /// Nearest-rank percentile `p` in 0..=100 (0 if empty): the upper edge of
    /// the bucket holding the rank, never above the maximum seen.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let p = if p.is_finite() {
            p.clamp(0.0, 100.0)
        } else {
            100.0
        };
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper(i).min(self.max);
            }
        }
        self.max
    }

    /// p50/p90/p99/max/mean in milliseconds.
    pub fn summary(&self) -> LatencyMs {
        let ms = |us: u64| us as f64 / 1000.0;
        LatencyMs {
            p50: ms(self.percentile(50.0)),
            p90: ms(self.percentile(90.0)),
            p99: ms(self.percentile(99.0)),
            max: ms(self.max),
            mean: self.mean() / 1000.0,
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// The connection could not be made.
    ConnectFailed,
    /// No complete answer within the per-request timeout.
    Timeout,
    /// The server closed the connection without a response (or, for a slow
    /// reader, before the whole response was read).
    Closed,
    /// A slow client still held its connection when the run ended.
    Held,
}

impl Outcome {
    /// The key in the report's status map.
    pub fn key(self) -> String {
        match self {
            Outcome::Status(s) => s.to_string(),
            Outcome::ConnectFailed => "connect-failed".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Closed => "closed".into(),
            Outcome::Held => "held".into(),
        }
    }

    /// A 2xx answer.
    pub fn is_success(self) -> bool {
        matches!(self, Outcome::Status(200..=299))
    }
}

/// One second of one class.
#[derive(Debug, Clone, Default)]
struct Second {
    requests: u64,
    success: u64,
    latency: Histogram,
}

/// Everything measured for one class (legitimate or attack).
#[derive(Debug, Clone)]
pub struct ClassStats {
    requests: u64,
    skipped: u64,
    success: u64,
    statuses: BTreeMap<String, u64>,
    latency: Histogram,
    /// One bucket per second of the run, fixed at the start: bounded.
    seconds: Vec<Second>,
}

impl ClassStats {
    /// Stats for a run of `secs` seconds (at least one bucket).
    pub fn new(secs: u64) -> ClassStats {
        ClassStats {
            requests: 0,
            skipped: 0,
            success: 0,
            statuses: BTreeMap::new(),
            latency: Histogram::default(),
            seconds: vec![Second::default(); secs.max(1) as usize],
        }
    }

    /// Records an attempt that started `second` seconds into the run (late
    /// ones land in the last bucket) and took `us` microseconds.
    pub fn record(&mut self, second: u64, outcome: Outcome, us: u64) {
        self.requests += 1;
        *self.statuses.entry(outcome.key()).or_insert(0) += 1;
        self.latency.record(us);
        let last = self.seconds.len().saturating_sub(1);
        let ok = outcome.is_success();
        if ok {
            self.success += 1;
        }
        if let Some(s) = self.seconds.get_mut((second as usize).min(last)) {
            s.requests += 1;
            s.success += u64::from(ok);
            s.latency.record(us);
        }
    }

    /// Counts a request the generator did not send because the class was at
    /// its connection cap (open loop: never queued).
    pub fn skip(&mut self) {
        self.skipped += 1;
    }

    /// Requests recorded so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// 2xx so far.
    pub fn success(&self) -> u64 {
        self.success
    }

    /// p99 so far, ms.
    pub fn p99_ms(&self) -> f64 {
        self.latency.percentile(99.0) as f64 / 1000.0
    }

    /// The report section.
    pub fn report(&self, sources: u32) -> ClassReport {
        ClassReport {
            sources,
            requests: self.requests,
            skipped: self.skipped,
            success: self.success,
            success_ratio: if self.requests == 0 {
                0.0
            } else {
                self.success as f64 / self.requests as f64
            },
            statuses: self.statuses.clone(),
            latency_ms: self.latency.summary(),
            series: self
                .seconds
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let l = s.latency.summary();
                    SecondReport {
                        second: i as u64,
                        requests: s.requests,
                        success: s.success,
                        p50_ms: l.p50,
                        p90_ms: l.p90,
                        p99_ms: l.p99,
                        max_ms: l.max,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact_percentiles() {
        let mut h = Histogram::default();
        for v in 1..=50 {
            h.record(v);
        }
        // Nearest rank: ceil(p/100 * n).
        assert_eq!(h.percentile(50.0), 25);
        assert_eq!(h.percentile(90.0), 45);
        assert_eq!(h.percentile(99.0), 50);
        assert_eq!(h.percentile(100.0), 50);
        assert_eq!(h.max(), 50);
        assert!((h.mean() - 25.5).abs() < 1e-9);
    }

    #[test]
    fn large_values_stay_within_one_thirty_second() {
        let mut h = Histogram::default();
        for v in (1..=10_000u64).map(|i| i * 1_000) {
            h.record(v);
        }
        for (p, exact) in [
            (50.0, 5_000_000.0),
            (90.0, 9_000_000.0),
            (99.0, 9_900_000.0),
        ] {
            let got = h.percentile(p) as f64;
            assert!(
                (got - exact).abs() / exact <= 1.0 / 32.0,
                "p{p}: {got} vs {exact}"
            );
            assert!(got >= exact, "upper edge: p{p} {got} < {exact}");
        }
        h.record(u64::MAX);
        assert_eq!(
            h.percentile(100.0),
            u64::MAX,
            "extremes are recorded, not dropped"
        );
    }

    #[test]
    fn every_bucket_edge_is_consistent() {
        for i in 0..BUCKETS {
            assert_eq!(index(upper(i)), i, "bucket {i}");
            if i + 1 < BUCKETS {
                assert_eq!(index(upper(i) + 1), i + 1, "bucket {i} + 1");
            }
        }
    }

    #[test]
    fn empty_and_odd_percentiles_do_not_panic() {
        let h = Histogram::default();
        assert_eq!(h.percentile(99.0), 0);
        let mut h = Histogram::default();
        h.record(7);
        assert_eq!(h.percentile(f64::NAN), 7);
        assert_eq!(h.percentile(-5.0), 7);
        assert_eq!(h.percentile(500.0), 7);
    }

    #[test]
    fn time_series_has_one_bucket_per_second_and_late_requests_land_last() {
        let mut c = ClassStats::new(3);
        c.record(0, Outcome::Status(200), 1_000);
        c.record(0, Outcome::Status(429), 2_000);
        c.record(2, Outcome::Timeout, 3_000);
        c.record(99, Outcome::Status(204), 4_000);
        c.skip();
        let r = c.report(5);
        assert_eq!(r.series.len(), 3);
        assert_eq!(
            r.series
                .iter()
                .map(|s| (s.requests, s.success))
                .collect::<Vec<_>>(),
            [(2, 1), (0, 0), (2, 1)]
        );
        assert_eq!(r.requests, 4);
        assert_eq!(r.skipped, 1);
        assert_eq!(r.success, 2);
        assert_eq!(r.success_ratio, 0.5);
        assert_eq!(r.statuses["429"], 1);
        assert_eq!(r.statuses["timeout"], 1);
        assert_eq!(r.latency_ms.max, 4.0);
        assert_eq!(r.series[0].p99_ms, 2.0);
        assert_eq!(r.series[0].max_ms, 2.0);
        assert_eq!(r.series[1].max_ms, 0.0, "an empty second");
    }
}
