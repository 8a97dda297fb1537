//! Lambda billing arithmetic, pure.
//!
//! Owns: how an invocation becomes [`Usage`] (billed milliseconds rounded
//! up, at least 1 ms, times configured memory) and how usage becomes money
//! under [`Prices`]. Must never do I/O, lose precision by summing floats
//! (usage is kept in integers: MB·ms, exact; only the final price is a
//! float), or overflow (sums saturate).
//!
//! Billing (Lambda since Dec 2020): billed ms = ⌈duration in ms⌉, minimum
//! 1; GB-s = billed_ms / 1000 × memory_mb / 1024; cost = requests ×
//! per_million / 1e6 + GB-s × per_gb_second.

use std::time::Duration;

use serde::Serialize;

use crate::model::Prices;

/// MB·ms per GB-second: 1000 ms × 1024 MB.
const MB_MS_PER_GB_S: f64 = 1_024_000.0;

/// Metered quantities; integers so sums are exact.
///
/// Bound: `mb_ms` saturates at `u64::MAX` ≈ 1.8e19, i.e. two billion
/// 15-minute invocations at 10 GB in one bucket; past that a bucket stops
/// growing rather than wrapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub requests: u64,
    /// Billed milliseconds × memory MB.
    pub mb_ms: u64,
    pub bytes_out: u64,
}

impl Usage {
    /// Adds `other`, saturating.
    pub fn add(&mut self, other: &Usage) {
        self.requests = self.requests.saturating_add(other.requests);
        self.mb_ms = self.mb_ms.saturating_add(other.mb_ms);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
    }

    /// GB-seconds of billed duration.
    pub fn gb_seconds(&self) -> f64 {
        self.mb_ms as f64 / MB_MS_PER_GB_S
    }

    pub fn is_zero(&self) -> bool {
        *self == Usage::default()
    }
}

/// Billed milliseconds: rounded up to the next millisecond, at least 1.
pub fn billed_ms(duration: Duration) -> u64 {
    let ms = duration.as_nanos().div_ceil(1_000_000).max(1);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The usage of one invocation.
pub fn invocation_usage(duration: Duration, memory_mb: u32, bytes_out: u64) -> Usage {
    Usage {
        requests: 1,
        mb_ms: billed_ms(duration).saturating_mul(u64::from(memory_mb)),
        bytes_out,
    }
}

/// What `usage` costs under `prices`. Non-finite or negative prices count
/// as 0, so a corrupt table can't produce NaN spend (which would compare
/// false against every limit and so never stop anything).
pub fn cost(prices: &Prices, usage: &Usage) -> f64 {
    let sane = |p: f64| if p.is_finite() && p > 0.0 { p } else { 0.0 };
    usage.requests as f64 * sane(prices.per_million_requests) / 1e6
        + usage.gb_seconds() * sane(prices.per_gb_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_million_small_invocations_cost_what_lambda_charges() {
        let mut total = Usage::default();
        let one = invocation_usage(Duration::from_millis(100), 128, 10);
        for _ in 0..1_000_000 {
            total.add(&one);
        }
        assert_eq!(total.requests, 1_000_000);
        assert_eq!(total.gb_seconds(), 12_500.0);
        assert_eq!(total.bytes_out, 10_000_000);
        // $0.20 for requests + 12,500 GB-s × $0.0000166667 = $0.20833375.
        let c = cost(&Prices::default(), &total);
        assert!(close(c, 0.408_333_75), "{c}");
    }

    #[test]
    fn duration_is_rounded_up_to_the_millisecond_with_a_1ms_minimum() {
        assert_eq!(billed_ms(Duration::from_micros(1_200)), 2);
        assert_eq!(billed_ms(Duration::from_millis(2)), 2);
        assert_eq!(billed_ms(Duration::from_nanos(2_000_001)), 3);
        assert_eq!(billed_ms(Duration::ZERO), 1);
        assert_eq!(billed_ms(Duration::from_nanos(1)), 1);
        assert_eq!(billed_ms(Duration::MAX), u64::MAX);
        let u = invocation_usage(Duration::from_micros(1_200), 1024, 0);
        assert_eq!(u.mb_ms, 2 * 1024);
        assert!(close(u.gb_seconds(), 0.002));
    }

    #[test]
    fn sums_saturate_and_bad_prices_cost_nothing() {
        let mut u = invocation_usage(Duration::MAX, u32::MAX, u64::MAX);
        u.add(&u.clone());
        assert_eq!(u.mb_ms, u64::MAX);
        assert_eq!(u.bytes_out, u64::MAX);
        let nan = Prices {
            per_million_requests: f64::NAN,
            per_gb_second: -1.0,
        };
        assert_eq!(cost(&nan, &u), 0.0);
    }
}
