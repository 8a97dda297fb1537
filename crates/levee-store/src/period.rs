//! Quota periods and UTC calendar arithmetic.
//!
//! Owns: [`Period`], the meaning of a quota `offset`, and the pure functions
//! that turn "now" into the bounds of the current period and into day
//! numbers. Must never: read the clock, panic or overflow — every input,
//! including `i64::MIN`/`i64::MAX` and out-of-range offsets, gives an answer.
//!
//! # What `offset` means
//! API Gateway's own documents disagree (the API reference calls it "requests
//! subtracted in the initial period", older SDK docs "the day the period
//! starts"). Levee uses one meaning: **where the period starts**, in UTC.
//!
//! | period | offset | the period starts at |
//! |---|---|---|
//! | `DAY` | 0..=23 | that hour of every day (offset 6 → 06:00 to 06:00) |
//! | `WEEK` | 0..=6 | 00:00 of that weekday, 0 = Sunday … 6 = Saturday |
//! | `MONTH` | 0..=27 | 00:00 of day `offset + 1` of every month (0 → the 1st) |
//!
//! Month offsets stop at 27 so the start day (≤ 28th) exists in every month,
//! February included: no period is ever shortened or skipped.

use chrono::{DateTime, Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// Earliest instant the calendar functions represent: 0001-01-01T00:00:00Z.
/// Inputs before it are clamped to it.
pub const MIN_UNIX: i64 = -62_135_596_800;
/// Latest instant represented: 9999-12-31T23:59:59Z. Inputs after it are
/// clamped to it; every derived bound then stays far inside `i64`.
pub const MAX_UNIX: i64 = 253_402_300_799;

const SECS_PER_HOUR: i64 = 3_600;
const SECS_PER_DAY: i64 = 86_400;
/// 1970-01-01 was a Thursday; with 0 = Sunday that is weekday 4.
const EPOCH_WEEKDAY: i64 = 4;
/// Longest period in seconds (a 31-day month); anything that started longer
/// ago than this has certainly ended.
pub const LONGEST_PERIOD_SECS: i64 = 31 * SECS_PER_DAY;

/// A quota period, spelled as API Gateway spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Period {
    #[serde(rename = "DAY", alias = "day")]
    Day,
    #[serde(rename = "WEEK", alias = "week")]
    Week,
    #[serde(rename = "MONTH", alias = "month")]
    Month,
}

impl Period {
    /// Largest valid `offset` for this period (see the module docs).
    pub fn max_offset(self) -> u32 {
        match self {
            Period::Day => 23,
            Period::Week => 6,
            Period::Month => 27,
        }
    }

    /// What the offset counts, for error messages.
    pub fn offset_unit(self) -> &'static str {
        match self {
            Period::Day => "the UTC hour the day starts",
            Period::Week => "the weekday the week starts, 0 = Sunday",
            Period::Month => "days after the 1st the month starts",
        }
    }
}

/// `now` clamped into the supported calendar range.
fn clamp(now_unix: i64) -> i64 {
    now_unix.clamp(MIN_UNIX, MAX_UNIX)
}

/// The `[start, end)` bounds, in unix seconds, of the period containing
/// `now_unix`. An offset above [`Period::max_offset`] is treated as the
/// maximum (validation rejects such plans earlier; this function only
/// promises not to panic), and `now` outside [`MIN_UNIX`]..=[`MAX_UNIX`] is
/// clamped into it.
pub fn period_bounds(now_unix: i64, period: Period, offset: u32) -> (i64, i64) {
    let now = clamp(now_unix);
    let offset = i64::from(offset.min(period.max_offset()));
    match period {
        Period::Day => {
            let shift = offset * SECS_PER_HOUR;
            let start = (now - shift).div_euclid(SECS_PER_DAY) * SECS_PER_DAY + shift;
            (start, start + SECS_PER_DAY)
        }
        Period::Week => {
            let day = now.div_euclid(SECS_PER_DAY);
            let weekday = (day + EPOCH_WEEKDAY).rem_euclid(7);
            let back = (weekday - offset).rem_euclid(7);
            let start = (day - back) * SECS_PER_DAY;
            (start, start + 7 * SECS_PER_DAY)
        }
        Period::Month => month_bounds(now, offset).unwrap_or_else(|| {
            // Unreachable inside the clamped range (chrono covers years
            // ±262,143); a day-long period is the harmless fallback.
            let start = now.div_euclid(SECS_PER_DAY) * SECS_PER_DAY;
            (start, start + SECS_PER_DAY)
        }),
    }
}

fn month_bounds(now: i64, offset: i64) -> Option<(i64, i64)> {
    let date = DateTime::from_timestamp(now, 0)?.date_naive();
    let start_day = u32::try_from(offset + 1).ok()?;
    let this_month = NaiveDate::from_ymd_opt(date.year(), date.month(), start_day)?;
    let start = if date >= this_month {
        this_month
    } else {
        this_month.checked_sub_months(Months::new(1))?
    };
    let end = start.checked_add_months(Months::new(1))?;
    Some((midnight(start)?, midnight(end)?))
}

fn midnight(d: NaiveDate) -> Option<i64> {
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

/// The unix day number (days since 1970-01-01, UTC) containing `now_unix`.
pub fn unix_day(now_unix: i64) -> i64 {
    clamp(now_unix).div_euclid(SECS_PER_DAY)
}

/// Smallest and largest day numbers the store accepts.
pub const MIN_DAY: i64 = MIN_UNIX / SECS_PER_DAY;
pub const MAX_DAY: i64 = MAX_UNIX / SECS_PER_DAY;

/// `YYYY-MM-DD` for a unix day number (clamped to the supported range).
pub fn day_string(day: i64) -> String {
    let secs = day.clamp(MIN_DAY, MAX_DAY) * SECS_PER_DAY;
    match DateTime::from_timestamp(secs, 0) {
        Some(dt) => dt.format("%Y-%m-%d").to_string(),
        None => String::from("0001-01-01"),
    }
}

/// The unix day number of a `YYYY-MM-DD` date, if it is one.
pub fn parse_day(s: &str) -> Option<i64> {
    // Bound the work before chrono sees it: a date is exactly 10 bytes.
    if s.len() != 10 {
        return None;
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(midnight(date)?.div_euclid(SECS_PER_DAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of a UTC date and time, for readable expectations.
    fn at(y: i32, m: u32, d: u32, h: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, 0, 0))
            .map(|t| t.and_utc().timestamp())
            .expect("test date is valid")
    }

    #[test]
    fn day_period_is_utc_midnight_to_midnight() {
        let now = at(2026, 3, 14, 15) + 59;
        assert_eq!(
            period_bounds(now, Period::Day, 0),
            (at(2026, 3, 14, 0), at(2026, 3, 15, 0))
        );
    }

    #[test]
    fn day_offset_moves_the_start_hour() {
        // 05:00 is before a 06:00 start: still yesterday's period.
        assert_eq!(
            period_bounds(at(2026, 3, 14, 5), Period::Day, 6),
            (at(2026, 3, 13, 6), at(2026, 3, 14, 6))
        );
        assert_eq!(
            period_bounds(at(2026, 3, 14, 7), Period::Day, 6),
            (at(2026, 3, 14, 6), at(2026, 3, 15, 6))
        );
    }

    #[test]
    fn the_instant_at_a_boundary_belongs_to_the_new_period() {
        let b = at(2026, 3, 15, 0);
        assert_eq!(period_bounds(b, Period::Day, 0).0, b);
        assert_eq!(period_bounds(b - 1, Period::Day, 0).1, b);
        let m = at(2026, 4, 1, 0);
        assert_eq!(period_bounds(m, Period::Month, 0).0, m);
        assert_eq!(period_bounds(m - 1, Period::Month, 0).1, m);
        // 2026-03-15 is a Sunday.
        assert_eq!(period_bounds(b, Period::Week, 0).0, b);
        assert_eq!(period_bounds(b - 1, Period::Week, 0).1, b);
    }

    #[test]
    fn week_starts_on_the_offset_weekday() {
        // Wednesday 2026-03-18 noon.
        let now = at(2026, 3, 18, 12);
        assert_eq!(
            period_bounds(now, Period::Week, 0),
            (at(2026, 3, 15, 0), at(2026, 3, 22, 0)),
            "Sunday start"
        );
        assert_eq!(
            period_bounds(now, Period::Week, 1),
            (at(2026, 3, 16, 0), at(2026, 3, 23, 0)),
            "Monday start"
        );
        assert_eq!(
            period_bounds(now, Period::Week, 3),
            (at(2026, 3, 18, 0), at(2026, 3, 25, 0)),
            "starts today"
        );
        assert_eq!(
            period_bounds(now, Period::Week, 4),
            (at(2026, 3, 12, 0), at(2026, 3, 19, 0)),
            "Thursday start: last week's period"
        );
    }

    #[test]
    fn week_before_the_epoch() {
        // 1969-12-31 was a Wednesday; its Sunday-start week began 12-28.
        assert_eq!(
            period_bounds(-1, Period::Week, 0),
            (at(1969, 12, 28, 0), at(1970, 1, 4, 0))
        );
    }

    #[test]
    fn month_lengths_including_february_and_leap_2028() {
        assert_eq!(
            period_bounds(at(2027, 2, 10, 0), Period::Month, 0),
            (at(2027, 2, 1, 0), at(2027, 3, 1, 0))
        );
        let (s, e) = period_bounds(at(2028, 2, 29, 23), Period::Month, 0);
        assert_eq!((s, e), (at(2028, 2, 1, 0), at(2028, 3, 1, 0)));
        assert_eq!(e - s, 29 * SECS_PER_DAY);
        let (s, e) = period_bounds(at(2026, 12, 31, 23), Period::Month, 0);
        assert_eq!((s, e), (at(2026, 12, 1, 0), at(2027, 1, 1, 0)));
        assert_eq!(e - s, 31 * SECS_PER_DAY);
    }

    #[test]
    fn month_offset_starts_on_a_later_day() {
        // offset 27 → starts on the 28th, which every month has.
        assert_eq!(
            period_bounds(at(2028, 3, 5, 0), Period::Month, 27),
            (at(2028, 2, 28, 0), at(2028, 3, 28, 0))
        );
        assert_eq!(
            period_bounds(at(2026, 1, 14, 0), Period::Month, 14),
            (at(2025, 12, 15, 0), at(2026, 1, 15, 0)),
            "before the start day: previous month's period, across a year"
        );
        assert_eq!(
            period_bounds(at(2026, 1, 15, 0), Period::Month, 14),
            (at(2026, 1, 15, 0), at(2026, 2, 15, 0))
        );
    }

    #[test]
    fn out_of_range_offsets_are_clamped_not_panicking() {
        assert_eq!(
            period_bounds(at(2026, 3, 14, 12), Period::Month, u32::MAX),
            period_bounds(at(2026, 3, 14, 12), Period::Month, 27)
        );
        assert_eq!(
            period_bounds(0, Period::Day, 99),
            period_bounds(0, Period::Day, 23)
        );
    }

    #[test]
    fn hostile_times_never_panic_and_bounds_contain_the_clamped_now() {
        let offsets = [0, 1, 6, 23, 27, 28, u32::MAX];
        let times = [
            i64::MIN,
            i64::MIN + 1,
            MIN_UNIX - 1,
            -1,
            0,
            MAX_UNIX,
            i64::MAX,
        ];
        for &t in &times {
            for p in [Period::Day, Period::Week, Period::Month] {
                for &o in &offsets {
                    let (s, e) = period_bounds(t, p, o);
                    let now = clamp(t);
                    assert!(s <= now && now < e, "{t} {p:?} {o}: {s}..{e}");
                    assert!(e - s <= LONGEST_PERIOD_SECS, "{t} {p:?} {o}");
                }
            }
        }
    }

    #[test]
    fn days_format_and_parse_round_trip() {
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(unix_day(at(2028, 2, 29, 13))), "2028-02-29");
        assert_eq!(day_string(-1), "1969-12-31");
        assert_eq!(parse_day("2028-02-29"), Some(unix_day(at(2028, 2, 29, 0))));
        assert_eq!(parse_day("2027-02-29"), None);
        assert_eq!(parse_day("2027-2-1"), None);
        assert_eq!(parse_day(&"9".repeat(10_000)), None);
        assert_eq!(day_string(i64::MAX), "9999-12-31");
        assert_eq!(day_string(i64::MIN), "0001-01-01");
        assert_eq!(unix_day(i64::MIN), MIN_DAY);
    }

    #[test]
    fn periods_serialize_like_api_gateway() {
        assert_eq!(
            serde_json::to_string(&Period::Week).ok(),
            Some("\"WEEK\"".into())
        );
        let p: Period = serde_json::from_str("\"MONTH\"").expect("parses");
        assert_eq!(p, Period::Month);
        assert!(serde_json::from_str::<Period>("\"YEAR\"").is_err());
    }
}
