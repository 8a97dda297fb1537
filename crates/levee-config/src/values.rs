//! Value shapes several sections share: sizes as written (`"6MB"` or a
//! number of bytes) checked against a range, paths made absolute against
//! the config file's directory, and bounded lists of names in messages.
//!
//! Owns only the shape and the message; each section owns its ranges and
//! defaults. Must never touch the document (problems go to a [`Found`]).

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::problems::{Found, KeyPath};
use levee_common::{format_duration, parse_duration, parse_size};
use std::time::Duration;

/// Keeps messages readable when a file declares thousands of functions.
const MAX_LISTED: usize = 20;

/// `value` (or `default` when absent) if `range` holds it; otherwise the
/// problem "must be between A and B, not V" under `key`, and `default`.
pub(crate) fn bounded<T: PartialOrd + Copy + fmt::Display>(
    key: &str,
    value: Option<T>,
    default: T,
    range: RangeInclusive<T>,
    found: &mut Found,
) -> T {
    let v = value.unwrap_or(default);
    if !range.contains(&v) {
        found.push(
            key,
            format!(
                "must be between {} and {}, not {v}",
                range.start(),
                range.end()
            ),
        );
        return default;
    }
    v
}

/// A size as written: `"6MB"` or a plain integer of bytes.
#[derive(Debug)]
pub(crate) enum RawSize {
    Text(String),
    Bytes(i64),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = RawSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"6MB\" or \"256KiB\", or a number of bytes")
            }

            fn visit_i64<E>(self, bytes: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(bytes))
            }

            fn visit_str<E>(self, text: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(text.to_owned()))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Validates a size key (`16384` or `"16KiB"`) against `range`; a problem
/// names `key` and the range, and leaves `default` in place.
pub(crate) fn checked_size(
    key: &str,
    raw: Option<RawSize>,
    default: u64,
    range: RangeInclusive<u64>,
    found: &mut Found,
) -> u64 {
    let parsed = match raw {
        None => return default,
        Some(RawSize::Bytes(n)) => u64::try_from(n).map_err(|_| "must not be negative".into()),
        Some(RawSize::Text(s)) => parse_size(&s),
    };
    match parsed {
        Ok(n) if range.contains(&n) => n,
        Ok(n) => {
            found.push(
                key,
                format!(
                    "must be between {} and {}, not {n} bytes",
                    binary_size(*range.start()),
                    binary_size(*range.end())
                ),
            );
            default
        }
        Err(e) => {
            found.push(key, format!("invalid size: {e}"));
            default
        }
    }
}

/// `8192` → `8KiB`, `1048576` → `1MiB`; other numbers as bytes.
fn binary_size(n: u64) -> String {
    match n {
        0 => "0 bytes".into(),
        n if n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Makes `text` absolute against the config file's directory; `None` (and
/// a problem at `at`) when it cannot name a path.
pub(crate) fn resolve(
    base_dir: &Path,
    text: &str,
    at: &KeyPath,
    found: &mut Found,
) -> Option<PathBuf> {
    if text.is_empty() {
        found.push(at.clone(), "must not be empty");
        return None;
    }
    if text.contains('\0') {
        found.push(at.clone(), "must not contain a NUL character");
        return None;
    }
    let joined = base_dir.join(text);
    match std::path::absolute(&joined) {
        Ok(absolute) => Some(absolute),
        Err(e) => {
            found.push(
                at.clone(),
                format!("cannot make `{}` absolute: {e}", joined.display()),
            );
            None
        }
    }
}

/// `a, b, c`, or the first [`MAX_LISTED`] and how many more.
pub(crate) fn listing<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> String {
    let more = names.len().saturating_sub(MAX_LISTED);
    let mut text = names.take(MAX_LISTED).collect::<Vec<_>>().join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

/// A duration key within `lo..=hi`, in whole seconds (what SQS and the
/// detector count in); `default` when absent or wrong, which is reported.
pub(crate) fn whole_seconds(
    key: &str,
    text: Option<&str>,
    default: Duration,
    lo: Duration,
    hi: Duration,
    found: &mut Found,
) -> Duration {
    let Some(text) = text else { return default };
    match parse_duration(text) {
        Ok(d) if d.subsec_nanos() != 0 => {
            found.push(key, format!("`{text}` must be whole seconds"));
            default
        }
        Ok(d) if d >= lo && d <= hi => d,
        Ok(_) => {
            found.push(
                key,
                format!(
                    "must be between {} and {}, not `{text}`",
                    format_duration(lo),
                    format_duration(hi)
                ),
            );
            default
        }
        Err(e) => {
            found.push(key, format!("invalid duration: {e}"));
            default
        }
    }
}
