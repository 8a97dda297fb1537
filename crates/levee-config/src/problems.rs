//! Where a problem is, and the one collector every section validator
//! pushes its problems to.
//!
//! Owns [`KeyPath`] (`functions.hello.env.FOO`, `routes[2].route`) and
//! [`Found`], the problems found so far with their key paths. A validator
//! is given the table it checks and a `Found`, and names keys relative to
//! that table; the loader re-bases them under the table's own path. Must
//! never look at the document: turning a key path into a line is
//! `locate`'s job, so validators stay testable without a file.

use std::fmt;

use levee_common::text::MAX_QUOTED_CHARS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// Where a problem is, e.g. `functions.hello.env.FOO` or `routes[2].route`.
/// The empty path is the table a validator was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyPath(pub(crate) Vec<Segment>);

impl KeyPath {
    /// The path of one key.
    pub(crate) fn of(name: &str) -> KeyPath {
        KeyPath::default().key(name)
    }

    /// Parses a dotted path with indices, as other crates report them:
    /// `firewall.rules[2].statement.regex`.
    pub(crate) fn parse(text: &str) -> KeyPath {
        let mut path = KeyPath::default();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let mut pieces = part.split('[');
            if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
                path.0.push(Segment::Key(name.to_owned()));
            }
            for index in pieces {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    path.0.push(Segment::Index(i));
                }
            }
        }
        path
    }

    pub(crate) fn key(&self, name: &str) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Key(name.to_owned()));
        path
    }

    pub(crate) fn index(&self, index: usize) -> KeyPath {
        let mut path = self.clone();
        path.0.push(Segment::Index(index));
        path
    }

    /// `inner`, which was relative to this path, made relative to the root.
    pub(crate) fn join(&self, inner: &KeyPath) -> KeyPath {
        let mut path = self.clone();
        path.0.extend(inner.0.iter().cloned());
        path
    }
}

/// A single key: `"limit"` is the path `limit`, never parsed for dots (a
/// route key such as `GET /a.json` is one key).
impl From<&str> for KeyPath {
    fn from(name: &str) -> KeyPath {
        KeyPath::of(name)
    }
}

impl From<&KeyPath> for KeyPath {
    fn from(path: &KeyPath) -> KeyPath {
        path.clone()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    // A key is input: shown cut, so a 10 MB key name makes
                    // a short line, not a 10 MB one.
                    let shown: String = name.chars().take(MAX_QUOTED_CHARS).collect();
                    if bare {
                        f.write_str(&shown)?;
                    } else {
                        write!(f, "{shown:?}")?;
                    }
                    if name.chars().nth(MAX_QUOTED_CHARS).is_some() {
                        f.write_str("…")?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// One problem: where, what, and — for a problem the TOML deserializer
/// found — the byte offset it pointed at, which places it more exactly than
/// the key path can (a bad element inside an inline array).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) at: KeyPath,
    pub(crate) offset: Option<usize>,
    pub(crate) message: String,
}

/// The problems found so far, in the order they were found.
#[derive(Debug, Default)]
pub(crate) struct Found(Vec<Entry>);

impl Found {
    /// Runs a validator with a fresh collector and returns both.
    pub(crate) fn collect<T>(validate: impl FnOnce(&mut Found) -> T) -> (T, Found) {
        let mut found = Found::default();
        let value = validate(&mut found);
        (value, found)
    }

    /// An entry's name if its rule allows it, else `None` and the rule as a
    /// problem on the entry's own table (validators run at that table).
    pub(crate) fn named<T>(
        &mut self,
        parsed: Result<T, levee_common::name::NameError>,
    ) -> Option<T> {
        parsed
            .map_err(|e| self.push(KeyPath::default(), e.to_string()))
            .ok()
    }

    /// Records that the key at `at` is wrong, and why.
    pub(crate) fn push(&mut self, at: impl Into<KeyPath>, message: impl Into<String>) {
        self.0.push(Entry {
            at: at.into(),
            offset: None,
            message: message.into(),
        });
    }

    /// Like [`Found::push`], placed at a byte offset of the document.
    pub(crate) fn push_at_offset(&mut self, at: KeyPath, offset: usize, message: String) {
        self.0.push(Entry {
            at,
            offset: Some(offset),
            message,
        });
    }

    /// Takes `inner`'s problems, whose paths are relative to `base`.
    pub(crate) fn nest(&mut self, base: &KeyPath, inner: Found) {
        self.0.extend(inner.0.into_iter().map(|entry| Entry {
            at: base.join(&entry.at),
            ..entry
        }));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many problems so far: a validator compares it before and after
    /// to tell whether what it checked was valid.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn into_entries(self) -> Vec<Entry> {
        self.0
    }

    /// The key paths, as printed.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> Vec<String> {
        self.0.iter().map(|entry| entry.at.to_string()).collect()
    }

    /// The messages, in order.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> Vec<&str> {
        self.0.iter().map(|entry| entry.message.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_print_like_toml_keys() {
        let path = KeyPath::of("routes").index(2).key("GET /a.json").key("x");
        assert_eq!(path.to_string(), "routes[2].\"GET /a.json\".x");
        assert_eq!(
            KeyPath::parse("firewall.rules[2].statement").to_string(),
            "firewall.rules[2].statement"
        );
        assert_eq!(KeyPath::default().to_string(), "");
    }

    #[test]
    fn nested_problems_are_rebased_in_order() {
        let (_, inner) = Found::collect(|f| {
            f.push("limit", "bad");
            f.push(KeyPath::default(), "the table");
        });
        let mut outer = Found::default();
        outer.push("first", "x");
        outer.nest(&KeyPath::of("budgets").key("daily"), inner);
        assert_eq!(
            outer.keys(),
            ["first", "budgets.daily.limit", "budgets.daily"]
        );
        assert_eq!(outer.messages(), ["x", "bad", "the table"]);
    }
}
