//! Caller-supplied text made safe to quote back in a message.
//!
//! Every error message that repeats input (a function name, a key id, a
//! config key, a query value) goes through here, so that hostile input can
//! neither make a message huge nor garble a terminal: control characters are
//! escaped and each quoted piece is cut at a bound. [`quote`] is for one
//! piece; [`bound_message`] is the backstop for a whole message that may
//! embed input its author did not quote (a serde error, another crate's
//! text). A leaf like the rest of this crate.

/// Longest piece of input [`bound_message`] keeps between backticks.
pub const MAX_QUOTED_CHARS: usize = 80;
/// Longest message [`bound_message`] returns, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// `s` with control characters escaped, at most `max` characters (never
/// cutting a multi-byte one), and `…` when something was cut.
pub fn quote(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().take(max) {
        // Only control characters are escaped: other text (quotes, accents)
        // is shown as the client sent it.
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// A message safe to show: every span between backticks (where messages
/// here quote input, and serde quotes field names) cut at
/// [`MAX_QUOTED_CHARS`], the whole at [`MAX_MESSAGE_CHARS`], control
/// characters escaped. Short messages come back unchanged.
pub fn bound_message(message: &str) -> String {
    let mut out = String::new();
    for (i, piece) in message.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        // Odd pieces are inside backticks (an unpaired last one too: it is
        // input that swallowed its closing backtick).
        let max = if i % 2 == 1 {
            MAX_QUOTED_CHARS
        } else {
            MAX_MESSAGE_CHARS
        };
        out.push_str(&quote(piece, max));
        if out.len() > 4 * MAX_MESSAGE_CHARS {
            break;
        }
    }
    quote(&out, MAX_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_and_bounds() {
        assert_eq!(quote("a\u{1b}b", 10), "a\\u{1b}b");
        assert_eq!(quote("abcdef", 3), "abc…");
        assert_eq!(quote("é", 1), "é");
        assert_eq!(quote("abc", 3), "abc");
    }

    #[test]
    fn messages_keep_their_text_and_cut_what_they_quote() {
        assert_eq!(bound_message("no key `key_1` here"), "no key `key_1` here");
        let long = "x".repeat(10_000);
        let m = bound_message(&format!("unknown field `{long}`, expected one of `a`, `b`"));
        assert!(
            m.starts_with(&format!("unknown field `{}…`", "x".repeat(80))),
            "{m}"
        );
        assert!(m.ends_with("expected one of `a`, `b`"), "{m}");
        // Input outside backticks is still bounded as a whole.
        let m = bound_message(&format!("invalid type: string \"{long}\""));
        assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(m.ends_with('…'));
        // Thousands of backtick pairs cannot grow it either.
        let m = bound_message(&"`a`".repeat(100_000));
        assert!(m.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert_eq!(bound_message("a\nb`\u{7}`"), "a\\nb`\\u{7}`");
    }
}
