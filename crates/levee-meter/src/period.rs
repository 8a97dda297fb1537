//! UTC periods and the spend forecast, pure.
//!
//! Owns: the bounds of the hour, day and month containing an instant, and
//! the projection of spend to a period's end. Must never read the clock,
//! panic or overflow: instants outside years 1..=9999 are clamped.
//!
//! # Forecast
//! `forecast = spent × period_length / elapsed`: spend at the current
//! average rate, carried to the period's end. Right after a period starts
//! `elapsed` is tiny and one invocation would project to a fortune, so
//! `elapsed` is taken as at least [`MIN_ELAPSED_DAY`] (1 hour) for a day and
//! [`MIN_ELAPSED_MONTH`] (1 day) for a month. The forecast is never below
//! the actual spend.

use chrono::{DateTime, Datelike, Months, NaiveDate};

use crate::model::BudgetPeriod;

pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;
/// Smallest elapsed time a day's forecast divides by.
pub const MIN_ELAPSED_DAY: i64 = HOUR;
/// Smallest elapsed time a month's forecast divides by.
pub const MIN_ELAPSED_MONTH: i64 = DAY;
/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: inputs are clamped here.
const MIN_UNIX: i64 = -62_135_596_800;
const MAX_UNIX: i64 = 253_402_300_799;

fn clamp(t: i64) -> i64 {
    t.clamp(MIN_UNIX, MAX_UNIX)
}

/// Start of the UTC hour containing `t`.
pub fn hour_start(t: i64) -> i64 {
    clamp(t).div_euclid(HOUR) * HOUR
}

/// `[start, end)` of the period containing `t`.
pub fn bounds(period: BudgetPeriod, t: i64) -> (i64, i64) {
    let t = clamp(t);
    let day = t.div_euclid(DAY) * DAY;
    match period {
        BudgetPeriod::Day => (day, day + DAY),
        // Unreachable fallback inside the clamped range: a day is harmless.
        BudgetPeriod::Month => month_bounds(t).unwrap_or((day, day + DAY)),
    }
}

fn month_bounds(t: i64) -> Option<(i64, i64)> {
    let date = DateTime::from_timestamp(t, 0)?.date_naive();
    let start = NaiveDate::from_ymd_opt(date.year(), date.month(), 1)?;
    let end = start.checked_add_months(Months::new(1))?;
    let unix = |d: NaiveDate| Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp());
    Some((unix(start)?, unix(end)?))
}

/// Spend projected to the end of the period containing `now` (see module
/// docs); `spent` that is NaN or negative projects to 0.
pub fn forecast(period: BudgetPeriod, spent: f64, now: i64) -> f64 {
    if !(spent.is_finite() && spent > 0.0) {
        return 0.0;
    }
    let (start, end) = bounds(period, now);
    let length = end - start;
    let floor = match period {
        BudgetPeriod::Day => MIN_ELAPSED_DAY,
        BudgetPeriod::Month => MIN_ELAPSED_MONTH,
    };
    let elapsed = (clamp(now) - start).clamp(floor, length);
    (spent * length as f64 / elapsed as f64).max(spent)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn at(y: i32, m: u32, d: u32, h: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, 0, 0))
            .map(|t| t.and_utc().timestamp())
            .unwrap_or(0)
    }

    #[test]
    fn days_months_and_hours_are_utc() {
        let t = at(2024, 2, 29, 13) + 125;
        assert_eq!(hour_start(t), at(2024, 2, 29, 13));
        assert_eq!(
            bounds(BudgetPeriod::Day, t),
            (at(2024, 2, 29, 0), at(2024, 3, 1, 0))
        );
        assert_eq!(
            bounds(BudgetPeriod::Month, t),
            (at(2024, 2, 1, 0), at(2024, 3, 1, 0))
        );
        assert_eq!(
            bounds(BudgetPeriod::Month, at(2025, 12, 31, 23)),
            (at(2025, 12, 1, 0), at(2026, 1, 1, 0))
        );
        // Extremes give an answer, not a panic.
        let (s, e) = bounds(BudgetPeriod::Month, i64::MAX);
        assert!(s < e);
        assert!(hour_start(i64::MIN) <= 0);
    }

    #[test]
    fn forecast_projects_the_average_rate_with_a_floor() {
        // Half the day gone, $1 spent: $2 by midnight.
        let noon = at(2026, 3, 14, 12);
        assert!((forecast(BudgetPeriod::Day, 1.0, noon) - 2.0).abs() < 1e-12);
        // One second in: divides by an hour, not a second (24×, not 86400×).
        let early = at(2026, 3, 14, 0) + 1;
        assert!((forecast(BudgetPeriod::Day, 1.0, early) - 24.0).abs() < 1e-12);
        // Month floor is a day: 31-day March, 1 s in → ×31.
        let m = at(2026, 3, 1, 0) + 1;
        assert!((forecast(BudgetPeriod::Month, 1.0, m) - 31.0).abs() < 1e-12);
        assert_eq!(forecast(BudgetPeriod::Day, f64::NAN, noon), 0.0);
        assert_eq!(forecast(BudgetPeriod::Day, -3.0, noon), 0.0);
    }
}
