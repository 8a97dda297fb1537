//! The path shape: what a request asks for with its identifiers taken
//! out, so that `/items/123?id=9&page=2` and `/items/77?id=3&page=5` are
//! one thing (`/items/*?id&page`) and a flood that varies numbers or
//! cache-busting arguments still has one shape.
//!
//! Owns the text: each path segment that holds a digit becomes `*`, the
//! query keeps its argument names in the client's order with their values
//! dropped, and the whole is cut at [`PATH_SHAPE_LEN`] bytes on a character
//! boundary. Built without allocating from the raw (percent-encoded)
//! path and query; it must never depend on anything else, so the firewall
//! field and the detector agree on every request.

/// Bytes of a path shape kept; longer ones are cut (and still compared
/// as their first bytes).
pub const PATH_SHAPE_LEN: usize = 96;

/// A request's path shape, inline. `Default` is the empty shape.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PathShape {
    len: u8,
    bytes: [u8; PATH_SHAPE_LEN],
    /// Something did not fit.
    cut: bool,
}

impl Default for PathShape {
    fn default() -> Self {
        Self {
            len: 0,
            bytes: [0; PATH_SHAPE_LEN],
            cut: false,
        }
    }
}

/// Only the bytes in use (the rest are zero, so equality agrees).
impl std::hash::Hash for PathShape {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
        state.write_u8(u8::from(self.cut));
    }
}

impl std::fmt::Debug for PathShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PathShape {
    /// From a raw path and query (without `?`; empty when there is none).
    pub fn of(path: &str, query: &str) -> Self {
        let mut out = Self::default();
        for (i, segment) in path.split('/').enumerate() {
            if i > 0 {
                out.push("/");
            }
            if segment.bytes().any(|b| b.is_ascii_digit()) {
                out.push("*");
            } else {
                out.push(segment);
            }
        }
        if !query.is_empty() {
            out.push("?");
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push("&");
                }
                out.push(pair.split('=').next().unwrap_or_default());
            }
        }
        out
    }

    /// Appends what fits, never half a character.
    fn push(&mut self, text: &str) {
        let at = usize::from(self.len);
        let mut n = text.len().min(PATH_SHAPE_LEN - at);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        self.bytes[at..at + n].copy_from_slice(&text.as_bytes()[..n]);
        self.len = (at + n) as u8;
        self.cut |= n < text.len();
    }

    /// A shape's text back (a saved baseline), cut as [`PathShape::of`]
    /// cuts.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        out.push(text);
        out
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only whole characters of a `str` are ever pushed.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// Whether the text was cut (a rule then matches its start).
    pub fn is_cut(&self) -> bool {
        self.cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_values_are_taken_out() {
        let a = PathShape::of("/items/123", "id=9&page=2");
        assert_eq!(a.as_str(), "/items/*?id&page");
        assert_eq!(a, PathShape::of("/items/77", "id=3&page=5"));
        assert_ne!(
            a,
            PathShape::of("/items/77", "page=5&id=3"),
            "order is kept"
        );
        assert_eq!(PathShape::of("/", "").as_str(), "/");
        assert_eq!(PathShape::of("/a/b9c/", "x").as_str(), "/a/*/?x");
        assert_eq!(PathShape::of("/", "cb=1").as_str(), "/?cb");
        assert_eq!(PathShape::parse(a.as_str()), a);
    }

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let long = format!("/{}", "é".repeat(100));
        let s = PathShape::of(&long, "");
        assert!(s.is_cut());
        assert_eq!(s.as_str().len(), PATH_SHAPE_LEN - 1, "no half character");
        assert!(s.as_str().starts_with("/éé"));
        assert!(!PathShape::of("/short", "").is_cut());
    }
}
