//! The header shape: Levee's header-order fingerprint of a request, what
//! a flooding tool keeps when it rotates user agents and addresses.
//!
//! Owns the text `hs1-NN-HHHHHHHHHHHHHHHH`: `NN` the number of header
//! fields (at most 99), `H…` the FNV-1a 64 hash of the header names in the
//! order the client sent them (repeats folded into their first place, as
//! the edge's header map keeps them). Names arrive lowercased, so case is
//! not part of it; values never are, so a cookie or a date does not split
//! one client's requests. Fixed in size and built without allocating; it
//! must never depend on anything but the request's header names, so the
//! firewall field and the detector agree on every request.

use http::HeaderMap;

/// Bytes in a shape's text.
pub const SHAPE_LEN: usize = 23;
/// The version prefix: a future definition gets a new one rather than
/// silently meaning something else in a saved rule.
const PREFIX: &[u8; 4] = b"hs1-";
/// Header counts above this show as this.
const MAX_COUNT: usize = 99;

/// A request's header shape, as its text. `Default` is scratch space to
/// compute one into, not the shape of any request.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Shape([u8; SHAPE_LEN]);

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Shape {
    pub fn of(headers: &HeaderMap) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0100_0000_01b3;
        let mut hash = OFFSET;
        for name in headers.keys() {
            // The separator keeps ("ab","c") apart from ("a","bc").
            for &b in name.as_str().as_bytes().iter().chain(b"\n") {
                hash = (hash ^ u64::from(b)).wrapping_mul(PRIME);
            }
        }
        let count = headers.len().min(MAX_COUNT);
        let mut text = [0u8; SHAPE_LEN];
        text[..4].copy_from_slice(PREFIX);
        text[4] = b'0' + (count / 10) as u8;
        text[5] = b'0' + (count % 10) as u8;
        text[6] = b'-';
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, slot) in text[7..].iter_mut().enumerate() {
            *slot = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        }
        Shape(text)
    }

    /// A shape's text back (a saved baseline); `None` unless it is one.
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let ok = b.len() == SHAPE_LEN
            && b.starts_with(PREFIX)
            && b[4..6].iter().all(u8::is_ascii_digit)
            && b[6] == b'-'
            && b[7..]
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Shape(b.try_into().unwrap_or([0; SHAPE_LEN])))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Built from ASCII only (and parse admits nothing else).
        std::str::from_utf8(&self.0).unwrap_or("hs1-00-0000000000000000")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(names: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in names {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_static("v"),
            );
        }
        h
    }

    #[test]
    fn order_and_count_matter_values_and_case_do_not() {
        let a = Shape::of(&map(&["host", "user-agent", "accept"]));
        assert_eq!(a.as_str().len(), SHAPE_LEN);
        assert!(a.as_str().starts_with("hs1-03-"), "{a:?}");
        assert_eq!(a, Shape::of(&map(&["Host", "User-Agent", "Accept"])));
        assert_ne!(a, Shape::of(&map(&["user-agent", "host", "accept"])));
        assert_ne!(a, Shape::of(&map(&["host", "user-agent"])));
        let mut other = map(&["host", "user-agent", "accept"]);
        other.insert("accept", http::HeaderValue::from_static("text/html"));
        assert_eq!(a, Shape::of(&other), "values are not part of it");
        // A repeat counts, and stays in its first place.
        let repeated = Shape::of(&map(&["host", "user-agent", "accept", "user-agent"]));
        assert!(repeated.as_str().starts_with("hs1-04-"));
        assert_eq!(repeated.as_str()[7..], a.as_str()[7..]);
    }

    #[test]
    fn parse_takes_back_only_a_shape() {
        let a = Shape::of(&map(&["host"]));
        assert_eq!(Shape::parse(a.as_str()), Some(a));
        assert!(Shape::of(&HeaderMap::new()).as_str().starts_with("hs1-00-"));
        for bad in [
            "",
            "hs1-",
            "hs2-01-0123456789abcdef",
            "hs1-0x-0123456789abcdef",
            "hs1-01-0123456789ABCDEF",
            "hs1-01-0123456789abcdef0",
        ] {
            assert_eq!(Shape::parse(bad), None, "{bad}");
        }
        let many: Vec<String> = (0..150).map(|i| format!("x-{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(Shape::of(&map(&names)).as_str().starts_with("hs1-99-"));
    }
}
