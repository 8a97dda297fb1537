//! Validated names: functions, queues, plans and budgets.
//!
//! Owns each kind's rule — which characters, how many — so `levee.toml`, the
//! admin API and the SQS API accept exactly the same names. Every kind today
//! allows 1 to N of `A-Z a-z 0-9 _ -` (the characters that are safe in URLs,
//! ARNs, metric labels and file names without escaping); only N differs,
//! following AWS: Lambda function names stop at 64, SQS queue names at 80,
//! and a queue name may end in `.fifo` (a FIFO queue, as in SQS).
//!
//! Must never accept a name outside its rule, and never echo the rejected
//! input: callers place the name in their own message (a key path, a quoted
//! field), bounded as they see fit.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// A name that breaks its kind's rule; the message states the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameError {
    rule: &'static Rule,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Rule {
            kind, max, note, ..
        } = self.rule;
        write!(
            f,
            "{kind} names are 1 to {max} characters of A-Z a-z 0-9 _ -{note}"
        )
    }
}

impl std::error::Error for NameError {}

/// One kind's rule: the characters are shared, the length is not.
#[derive(Debug, PartialEq, Eq)]
struct Rule {
    kind: &'static str,
    max: usize,
    /// Said after the rule, e.g. the suffix it allows.
    note: &'static str,
    /// An ending allowed after the characters, counted in `max`.
    suffix: Option<&'static str>,
}

impl Rule {
    fn check(&'static self, text: &str) -> Result<(), NameError> {
        let stem = self
            .suffix
            .and_then(|s| text.strip_suffix(s))
            .unwrap_or(text);
        let ok = text.len() <= self.max
            && !stem.is_empty()
            && stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(NameError { rule: self })
        }
    }
}

macro_rules! name {
    ($(#[$doc:meta])* $name:ident, $rule:ident = $kind:literal, $max:expr, $note:literal, $suffix:expr) => {
        static $rule: Rule = Rule {
            kind: $kind,
            max: $max,
            note: $note,
            suffix: $suffix,
        };

        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The longest name allowed, in bytes (every allowed character
            /// is one byte).
            pub const MAX_LEN: usize = $max;

            /// `text` as a name, or the rule it breaks.
            pub fn parse(text: &str) -> Result<Self, NameError> {
                $rule.check(text)?;
                Ok(Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name!(
    /// A function's name: 1 to 64 of `A-Z a-z 0-9 _ -` (Lambda's limit).
    FunctionName,
    FUNCTION = "function",
    64,
    "",
    None
);

name!(
    /// A queue's name: 1 to 80 of `A-Z a-z 0-9 _ -`, or such a stem and
    /// `.fifo` within the 80 for a FIFO queue (SQS's rule).
    QueueName,
    QUEUE = "queue",
    80,
    ", and a FIFO queue's name ends in .fifo",
    Some(".fifo")
);

impl QueueName {
    /// Whether this names a FIFO queue.
    pub fn is_fifo(&self) -> bool {
        self.0.ends_with(".fifo")
    }
}

name!(
    /// A usage plan's name: 1 to 64 of `A-Z a-z 0-9 _ -`. API Gateway allows
    /// free text; Levee keeps plan names identifier-like so they fit in
    /// paths and command lines.
    PlanName,
    PLAN = "plan",
    64,
    "",
    None
);

name!(
    /// A spend budget's name: 1 to 64 of `A-Z a-z 0-9 _ -`; it appears in
    /// paths, metric labels and command lines.
    BudgetName,
    BUDGET = "budget",
    64,
    "",
    None
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_keeps_its_own_length() {
        assert!(FunctionName::parse(&"f".repeat(64)).is_ok());
        assert!(FunctionName::parse(&"f".repeat(65)).is_err());
        assert!(QueueName::parse(&"q".repeat(80)).is_ok());
        assert!(QueueName::parse(&"q".repeat(81)).is_err());
        assert!(PlanName::parse(&"p".repeat(64)).is_ok());
        assert!(PlanName::parse(&"p".repeat(65)).is_err());
        assert!(BudgetName::parse(&"b".repeat(65)).is_err());
    }

    #[test]
    fn the_characters_are_shared() {
        for ok in ["a", "A-b_9", "orders-dlq_1"] {
            assert!(FunctionName::parse(ok).is_ok(), "{ok}");
            assert!(QueueName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a.fifo", "é", "a/b", "a\0"] {
            assert!(FunctionName::parse(bad).is_err(), "{bad:?}");
            assert!(PlanName::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            "",
            "a b",
            ".fifo",
            "a.fifo.fifo",
            "a.FIFO",
            "é",
            "a/b",
            "a\0",
        ] {
            assert!(QueueName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_fifo_queue_name_counts_its_suffix() {
        let fifo = QueueName::parse(&format!("{}.fifo", "a".repeat(75))).unwrap();
        assert!(fifo.is_fifo());
        assert!(QueueName::parse(&format!("{}.fifo", "a".repeat(76))).is_err());
        assert!(!QueueName::parse("orders").unwrap().is_fifo());
    }

    #[test]
    fn the_error_states_the_rule() {
        assert_eq!(
            FunctionName::parse("a b").unwrap_err().to_string(),
            "function names are 1 to 64 characters of A-Z a-z 0-9 _ -"
        );
        assert_eq!(
            QueueName::parse("a.b").unwrap_err().to_string(),
            "queue names are 1 to 80 characters of A-Z a-z 0-9 _ -, and a FIFO queue's name ends in .fifo"
        );
    }

    #[test]
    fn a_name_reads_as_its_text() {
        let name = QueueName::parse("orders").unwrap();
        assert_eq!(name.as_str(), "orders");
        assert_eq!(name.to_string(), "orders");
        assert_eq!(name.len(), 6);
        let set: std::collections::BTreeSet<QueueName> = [name].into();
        assert!(set.contains("orders"));
    }
}
