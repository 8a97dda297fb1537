//! levee-shield: the decisions that let an attacker's request die early and
//! cheaply — firewall rules over IP sets, string/regex/size/SQLi/XSS matches,
//! rate-based rules, bans and token-bucket throttles.
//!
//! Pure and synchronous: every function takes the request view and the
//! current time as arguments and returns a decision. No sockets, no files, no
//! clocks read behind the caller's back; the edge does the I/O.

pub mod auto;
pub mod ban;
pub mod bucket;
pub mod firewall;
pub mod rate;
