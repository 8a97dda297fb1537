//! `[firewall]`: checked by compiling it with levee-shield, the same
//! compiler the edge runs, so whatever passes here compiles there.
//!
//! Owns only the translation of the compiler's problems (dotted key paths
//! such as `rules[2].statement.regex`) into this crate's. Must never judge a
//! rule itself: the rules' meaning is levee-shield's.

use levee_shield::firewall::{Firewall, FirewallConfig};

use crate::problems::{Found, KeyPath, Segment};

/// Compiles `config`; problems are relative to `[firewall]`.
pub(crate) fn firewall(config: &FirewallConfig, found: &mut Found) {
    let Err(e) = Firewall::compile(config) else {
        return;
    };
    for (key, message) in &e.problems {
        let mut at = KeyPath::parse(key);
        // The compiler names some keys from the section down, others from
        // inside it.
        if matches!(at.0.first(), Some(Segment::Key(k)) if k == "firewall") {
            at.0.remove(0);
        }
        found.push(at, message.clone());
    }
}
