use std::time::Duration;

const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Parses a duration such as `"250ms"`, `"3s"`, `"1.5s"`, `"5m"`, `"1h"`,
/// `"4d"` or a composite like `"1d12h"` / `"1m30s"` (units from largest to
/// smallest, each at most once).
///
/// Units are `d`, `h`, `m`, `s` and `ms`. A number without a unit is refused
/// rather than guessed, since `timeout = "3"` could mean seconds or millis.
/// Fractions are allowed down to nanosecond precision (9 decimals).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. \"3s\" or \"250ms\"".to_owned());
    }
    if text.starts_with('-') {
        return Err(format!("`{text}` is negative; durations must be positive"));
    }
    let too_large = || format!("`{text}` is too large");
    let mut rest = text;
    let mut total: u128 = 0;
    let mut previous_rank = None;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() {
            return Err(format!(
                "`{text}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let unit_len = tail
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let (rank, unit_nanos) = match unit {
            "d" => (0, 86_400 * NANOS_PER_SECOND),
            "h" => (1, 3600 * NANOS_PER_SECOND),
            "m" => (2, 60 * NANOS_PER_SECOND),
            "s" => (3, NANOS_PER_SECOND),
            "ms" => (4, NANOS_PER_MILLI),
            "" => {
                let place = if number == text {
                    String::new()
                } else {
                    format!(" after `{number}`")
                };
                return Err(format!(
                    "`{text}` has no unit{place}; use ms, s, m, h or d (e.g. \"{number}s\")"
                ));
            }
            other => {
                return Err(format!(
                    "`{text}` has unknown unit `{other}`; use ms, s, m, h or d"
                ))
            }
        };
        if previous_rank.is_some_and(|previous| rank <= previous) {
            return Err(format!(
                "`{text}` repeats or reorders units; write larger units first, e.g. \"1m30s\""
            ));
        }
        previous_rank = Some(rank);
        let amount = scaled(number, unit_nanos)
            .map_err(|why| format!("`{text}` is not a duration: {why}"))?
            .ok_or_else(too_large)?;
        total = total.checked_add(amount).ok_or_else(too_large)?;
        rest = tail;
    }
    u64::try_from(total)
        .map(Duration::from_nanos)
        .map_err(|_| too_large())
}

/// `d` in the largest unit that divides it exactly (`"4d"`, `"90s"`), or in
/// milliseconds below a second: what [`parse_duration`] reads back.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 || (s == 0 && !d.is_zero()) {
        return format!("{}ms", d.as_millis());
    }
    match s {
        0 => "0s".to_owned(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// `number` (digits with an optional fraction) times `unit_nanos`;
/// `Ok(None)` means overflow.
fn scaled(number: &str, unit_nanos: u128) -> Result<Option<u128>, String> {
    let (whole, fraction) = match number.split_once('.') {
        Some((whole, fraction)) if !whole.is_empty() && !fraction.is_empty() => (whole, fraction),
        Some(_) => {
            return Err(format!(
                "`{number}` needs digits on both sides of the point"
            ))
        }
        None => (number, ""),
    };
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{number}` has more than one decimal point"));
    }
    // Digits past nanosecond precision would silently vanish; refuse them.
    if fraction.len() > 9 {
        return Err(format!("`{number}` has more than 9 decimals"));
    }
    let Ok(whole) = whole.parse::<u128>() else {
        return Ok(None);
    };
    let fraction_nanos = match u32::try_from(fraction.len()) {
        Ok(0) | Err(_) => 0,
        Ok(digits) => fraction.parse::<u128>().unwrap_or(0) * unit_nanos / 10u128.pow(digits),
    };
    Ok(whole
        .checked_mul(unit_nanos)
        .and_then(|nanos| nanos.checked_add(fraction_nanos)))
}

/// Parses a byte size: `"1048576"`, `"512KB"`, `"256KiB"`, `"6MB"`, `"6MiB"`.
///
/// `KB`/`MB`/`GB` are decimal (1000-based) and `KiB`/`MiB`/`GiB` binary
/// (1024-based), as their names say. The bare shorthands `K`, `M` and `G` are
/// binary, matching how memory and body limits are written in nginx, Docker
/// and JVM flags. Units are case-insensitive, `B` means bytes, a space may
/// separate number and unit, and only whole numbers are accepted so a limit
/// is always an exact byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty size; write e.g. \"6MB\" or \"256KiB\"".to_owned());
    }
    if text.starts_with('-') {
        return Err(format!("`{text}` is negative; sizes must be positive"));
    }
    let digits_len = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_len);
    if number.is_empty() {
        return Err(format!(
            "`{text}` is not a size: it must start with a number"
        ));
    }
    let unit = unit.trim_start();
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ if unit.starts_with('.') => {
            return Err(format!(
                "`{text}` is fractional; sizes must be whole numbers"
            ))
        }
        _ => {
            return Err(format!(
                "`{text}` has unknown unit `{unit}`; use B, KB, MB, GB, KiB, MiB or GiB"
            ))
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0.25h"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1.000000001s"), Ok(Duration::new(1, 1)));
    }

    #[test]
    fn composite_durations() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(129_600)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::from_millis(3_723_004))
        );
    }

    #[test]
    fn formatted_durations_read_back() {
        for (d, text) in [
            (Duration::from_secs(4 * 86_400), "4d"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_millis(250), "250ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("-3s", "negative"),
            ("3", "no unit"),
            ("1m30", "no unit"),
            ("3 s", "no unit"),
            ("3w", "unknown unit"),
            ("3S", "unknown unit"),
            ("s", "expected a number"),
            ("1.s", "both sides"),
            (".5s", "both sides"),
            ("1.2.3s", "decimal point"),
            ("1.0000000001s", "9 decimals"),
            ("30s1m", "reorders"),
            ("1s1s", "repeats"),
            ("99999999999999999999999999999999999999999h", "too large"),
            ("18446744074s", "too large"),
            ("5000000000000h", "too large"),
            ("3s\u{0}", "expected a number"),
            ("٣s", "expected a number"),
        ];
        for (input, reason) in cases {
            let err = parse_duration(input).expect_err(input);
            assert!(err.contains(reason), "{input:?}: {err}");
        }
    }

    #[test]
    fn sizes_in_every_unit() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("512KB"), Ok(512_000));
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("6MB"), Ok(6_000_000));
        assert_eq!(parse_size("6MiB"), Ok(6 * 1024 * 1024));
        assert_eq!(parse_size("6mib"), Ok(6 * 1024 * 1024));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64k"), Ok(64 * 1024));
        assert_eq!(parse_size("6M"), Ok(6 * 1024 * 1024));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10 B"), Ok(10));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("-1", "negative"),
            ("MB", "start with a number"),
            ("1.5MB", "fractional"),
            ("6TB", "unknown unit"),
            ("6 M B", "unknown unit"),
            ("18446744073709551616", "too large"),
            ("18446744073709551615KiB", "too large"),
        ];
        for (input, reason) in cases {
            let err = parse_size(input).expect_err(input);
            assert!(err.contains(reason), "{input:?}: {err}");
        }
    }
}
