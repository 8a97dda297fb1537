//! The edge-defence sections: `[limits]` and `[admin_limits]` (the
//! connection guard of each listener), `[client_ip]`
//! (whose forwarded address to believe) and `[throttle]` (token buckets, also
//! per route). Raw shapes and their validation; the edge enforces them.
//!
//! Must never read the document or the loader's state: it is given raw
//! shapes and a [`Found`], so every rule here is testable on its own.

use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Deserialize;

use crate::problems::{Found, KeyPath};
use crate::values::{bounded, checked_size, RawSize};
use levee_common::parse_duration;

/// `[limits]` (the edge) or `[admin_limits]` (the admin listener): what one
/// client and all clients together may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections in total; beyond it new connections are closed at
    /// once. Default 10000; at most 19000 (these machines cap open files at
    /// 20000, and the server needs some for itself).
    pub max_connections: u32,
    /// Open connections per client address; default 100.
    pub max_connections_per_ip: u32,
    /// Time to receive a whole request head (slowloris); default 10 s.
    pub header_timeout: Duration,
    /// A connection with no bytes moving either way is closed; default 60 s.
    pub idle_timeout: Duration,
    /// A response write that makes no progress for this long ends the
    /// connection (slow read); default 30 s.
    pub send_timeout: Duration,
    /// Slowest acceptable request body, bytes per second, after
    /// `body_grace` (slow POST); default 1024.
    pub body_min_rate: u64,
    /// Time a body may take before `body_min_rate` applies; default 5 s.
    pub body_grace: Duration,
    /// Largest request head in bytes (431 beyond); default 16 KiB, 8 KiB..1 MiB.
    pub max_header_bytes: u64,
    /// Most request headers (431 beyond); default 100.
    pub max_headers: u32,
    /// Concurrent streams per HTTP/2 connection; default 100.
    pub h2_max_streams: u32,
    /// Kernel send buffer of each client connection (`SO_SNDBUF`), bytes;
    /// default 256 KiB, 4 KiB..16 MiB. Without a cap Linux grows it to
    /// 4 MiB, which swallows a whole response for a client that never reads
    /// it; capped, the write waits and `send_timeout` ends the connection.
    pub send_buffer: u64,
    /// Time a TLS handshake may take from accept; default 10 s (admin 5 s).
    pub handshake_timeout: Duration,
    /// TLS handshakes in progress at once, in total; default 1024 (admin
    /// 64). Beyond it a new connection is closed before a byte is read.
    pub max_handshakes: u32,
    /// TLS handshakes in progress from one address; default 16 (admin 8).
    pub max_handshakes_per_ip: u32,
    /// TLS handshakes one address may start per second (a token bucket with
    /// a burst of the same size); default 32 (admin 16).
    pub handshake_rate_per_ip: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 100,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            body_min_rate: 1024,
            body_grace: Duration::from_secs(5),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            h2_max_streams: 100,
            send_buffer: 256 * 1024,
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 1024,
            max_handshakes_per_ip: 16,
            handshake_rate_per_ip: 32,
        }
    }
}

impl Limits {
    /// The admin listener's defaults: it serves a few operators and tools,
    /// so a few hundred connections and a short head before the token is
    /// checked, and its descriptors can never starve the edge's.
    pub fn admin_default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_ip: 64,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            h2_max_streams: 32,
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: 64,
            max_handshakes_per_ip: 8,
            handshake_rate_per_ip: 16,
            ..Self::default()
        }
    }
}

/// `[client_ip]`: the socket address is the client unless the connection
/// comes from a trusted proxy, whose `X-Forwarded-For` / `Forwarded` is then
/// read from the right, skipping trusted hops.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientIp {
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// A token bucket: `rate` requests per second refill, `burst` bucket size
/// (API Gateway's throttle semantics).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// Requests per second, > 0 (fractions allowed).
    pub rate: f64,
    /// Bucket size, ≥ 1.
    pub burst: u32,
}

// Throttle holds an f64 but never NaN (validated), so equality is total.
impl Eq for Throttle {}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    max_connections: Option<u32>,
    max_connections_per_ip: Option<u32>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    send_timeout: Option<String>,
    body_min_rate: Option<u64>,
    body_grace: Option<String>,
    max_header_bytes: Option<RawSize>,
    max_headers: Option<u32>,
    h2_max_streams: Option<u32>,
    send_buffer: Option<RawSize>,
    handshake_timeout: Option<String>,
    max_handshakes: Option<u32>,
    max_handshakes_per_ip: Option<u32>,
    handshake_rate_per_ip: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientIp {
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawThrottle {
    rate: f64,
    burst: u32,
}

/// A duration in `range`, `default` when unset; a problem on `key` otherwise.
pub(crate) fn duration(
    key: &str,
    text: Option<&str>,
    default: Duration,
    range: RangeInclusive<Duration>,
    found: &mut Found,
) -> Duration {
    let Some(text) = text else { return default };
    match parse_duration(text) {
        Ok(d) if range.contains(&d) => d,
        Ok(_) => {
            found.push(
                key,
                format!(
                    "must be between {:?} and {:?}, not `{text}`",
                    range.start(),
                    range.end()
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

/// Most open files these machines allow a process (`ulimit -n`), less what
/// the server needs for itself; both listeners together stay under it.
const MAX_OPEN_CONNECTIONS: u32 = 19_000;

/// `[limits]`: the edge's connection guard.
pub(crate) fn limits(raw: RawLimits, found: &mut Found) -> Limits {
    checked_limits(raw, Limits::default(), found)
}

/// `[admin_limits]`: the admin listener's guard. The same keys as
/// `[limits]` but for the body rate, which only the edge's pipeline enforces.
pub(crate) fn admin_limits(raw: RawLimits, found: &mut Found) -> Limits {
    let mut unused = Vec::new();
    if raw.body_min_rate.is_some() {
        unused.push("body_min_rate");
    }
    if raw.body_grace.is_some() {
        unused.push("body_grace");
    }
    let limits = checked_limits(raw, Limits::admin_default(), found);
    for key in unused {
        found.push(
            key,
            "only the edge limits request bodies by rate; set it in [limits]",
        );
    }
    limits
}

/// Both listeners' connection caps together, checked against the open-file
/// budget; the problem is on `max_connections`, relative to `[admin_limits]`.
pub(crate) fn total_connections(edge: &Limits, admin: &Limits, found: &mut Found) {
    let total = edge.max_connections + admin.max_connections;
    if total > MAX_OPEN_CONNECTIONS {
        found.push(
            "max_connections",
            format!(
                "[limits] and [admin_limits] together allow {total} connections; at most {MAX_OPEN_CONNECTIONS} (open-file limit)"
            ),
        );
    }
}

fn checked_limits(raw: RawLimits, d: Limits, f: &mut Found) -> Limits {
    let max_connections = bounded(
        "max_connections",
        raw.max_connections,
        d.max_connections,
        1..=MAX_OPEN_CONNECTIONS,
        f,
    );
    let max_connections_per_ip = bounded(
        "max_connections_per_ip",
        raw.max_connections_per_ip,
        d.max_connections_per_ip,
        1..=max_connections,
        f,
    );
    let secs = Duration::from_secs;
    let max_handshakes = bounded(
        "max_handshakes",
        raw.max_handshakes,
        d.max_handshakes.min(max_connections),
        1..=max_connections,
        f,
    );
    let max_header_bytes = checked_size(
        "max_header_bytes",
        raw.max_header_bytes,
        d.max_header_bytes,
        8 * 1024..=1024 * 1024,
        f,
    );
    let send_buffer = checked_size(
        "send_buffer",
        raw.send_buffer,
        d.send_buffer,
        4 * 1024..=16 * 1024 * 1024,
        f,
    );
    Limits {
        max_connections,
        max_connections_per_ip,
        header_timeout: duration(
            "header_timeout",
            raw.header_timeout.as_deref(),
            d.header_timeout,
            secs(1)..=secs(300),
            f,
        ),
        idle_timeout: duration(
            "idle_timeout",
            raw.idle_timeout.as_deref(),
            d.idle_timeout,
            secs(1)..=secs(3600),
            f,
        ),
        send_timeout: duration(
            "send_timeout",
            raw.send_timeout.as_deref(),
            d.send_timeout,
            secs(1)..=secs(3600),
            f,
        ),
        body_min_rate: bounded(
            "body_min_rate",
            raw.body_min_rate,
            d.body_min_rate,
            1..=1 << 30,
            f,
        ),
        body_grace: duration(
            "body_grace",
            raw.body_grace.as_deref(),
            d.body_grace,
            Duration::ZERO..=secs(300),
            f,
        ),
        max_header_bytes,
        max_headers: bounded("max_headers", raw.max_headers, d.max_headers, 1..=1000, f),
        h2_max_streams: bounded(
            "h2_max_streams",
            raw.h2_max_streams,
            d.h2_max_streams,
            1..=1000,
            f,
        ),
        send_buffer,
        handshake_timeout: duration(
            "handshake_timeout",
            raw.handshake_timeout.as_deref(),
            d.handshake_timeout,
            secs(1)..=secs(60),
            f,
        ),
        max_handshakes,
        max_handshakes_per_ip: bounded(
            "max_handshakes_per_ip",
            raw.max_handshakes_per_ip,
            d.max_handshakes_per_ip.min(max_handshakes),
            1..=max_handshakes,
            f,
        ),
        handshake_rate_per_ip: bounded(
            "handshake_rate_per_ip",
            raw.handshake_rate_per_ip,
            d.handshake_rate_per_ip,
            1..=100_000,
            f,
        ),
    }
}

/// Most trusted proxy entries; a list longer than this is a mistake.
const MAX_TRUSTED_PROXIES: usize = 1024;

pub(crate) fn client_ip(raw: RawClientIp, found: &mut Found) -> ClientIp {
    if raw.trusted_proxies.len() > MAX_TRUSTED_PROXIES {
        found.push(
            "trusted_proxies",
            format!("at most {MAX_TRUSTED_PROXIES} entries"),
        );
        return ClientIp::default();
    }
    let mut trusted = Vec::new();
    for (i, text) in raw.trusted_proxies.iter().enumerate() {
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => trusted.push(net.trunc()),
            Err(_) => found.push(
                KeyPath::of("trusted_proxies").index(i),
                format!("`{text}` is not an IP address or CIDR (e.g. 10.0.0.0/8)"),
            ),
        }
    }
    ClientIp {
        trusted_proxies: trusted,
    }
}

/// A token bucket; `None` (and a problem on `rate` or `burst`) when invalid.
pub(crate) fn throttle(raw: RawThrottle, found: &mut Found) -> Option<Throttle> {
    use levee_shield::bucket::{MAX_RATE, MIN_RATE};
    // The bucket clamps to these bounds; a config outside them is refused
    // rather than silently changed.
    if !(raw.rate.is_finite() && (MIN_RATE..=MAX_RATE).contains(&raw.rate)) {
        found.push(
            "rate",
            format!(
                "must be between one request per day ({MIN_RATE:.8}/s) and {MAX_RATE:e}/s, not {}",
                raw.rate
            ),
        );
        return None;
    }
    if raw.burst == 0 {
        found.push("burst", "must be at least 1");
        return None;
    }
    Some(Throttle {
        rate: raw.rate,
        burst: raw.burst,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hold_and_bad_values_name_their_key() {
        let (l, found) = Found::collect(|f| limits(RawLimits::default(), f));
        assert_eq!(l, Limits::default());
        assert!(found.is_empty());
        let raw = RawLimits {
            max_connections: Some(50_000),
            header_timeout: Some("forever".into()),
            max_header_bytes: Some(RawSize::Text("1KiB".into())),
            send_buffer: Some(RawSize::Text("lots".into())),
            ..RawLimits::default()
        };
        let (_, found) = Found::collect(|f| limits(raw, f));
        assert_eq!(
            found.keys(),
            [
                "max_connections",
                "max_header_bytes",
                "send_buffer",
                "header_timeout"
            ]
        );
        let (l, found) = Found::collect(|f| {
            limits(
                RawLimits {
                    send_buffer: Some(RawSize::Bytes(65536)),
                    ..RawLimits::default()
                },
                f,
            )
        });
        assert_eq!(l.send_buffer, 65536);
        assert!(found.is_empty());
        let (_, found) = Found::collect(|f| {
            limits(
                RawLimits {
                    send_buffer: Some(RawSize::Text("1KiB".into())),
                    ..RawLimits::default()
                },
                f,
            )
        });
        assert_eq!(
            found.messages(),
            ["must be between 4KiB and 16MiB, not 1024 bytes"]
        );
    }

    #[test]
    fn trusted_proxies_parse_cidrs_and_addresses() {
        let (c, found) = Found::collect(|f| {
            client_ip(
                RawClientIp {
                    trusted_proxies: vec![
                        "10.0.0.0/8".into(),
                        "::1".into(),
                        "192.168.1.7/24".into(),
                        "nope".into(),
                    ],
                },
                f,
            )
        });
        assert_eq!(c.trusted_proxies.len(), 3);
        assert_eq!(c.trusted_proxies[2].to_string(), "192.168.1.0/24");
        assert_eq!(found.keys(), ["trusted_proxies[3]"]);
        assert_eq!(
            found.messages(),
            ["`nope` is not an IP address or CIDR (e.g. 10.0.0.0/8)"]
        );
    }

    /// The key a refused throttle names, or `None` when it is accepted.
    fn refused(rate: f64, burst: u32) -> Option<(String, String)> {
        let (throttle, found) = Found::collect(|f| throttle(RawThrottle { rate, burst }, f));
        match throttle {
            Some(_) => None,
            None => Some((found.keys().remove(0), found.messages()[0].to_owned())),
        }
    }

    #[test]
    fn throttles_need_a_positive_rate_and_burst() {
        assert_eq!(refused(0.5, 1), None);
        assert_eq!(refused(0.0, 1).unwrap().0, "rate");
        for rate in [f64::NAN, 1e-9, 2e9] {
            let (key, message) = refused(rate, 1).unwrap();
            assert_eq!(key, "rate");
            assert!(message.contains("one request per day"), "{message}");
        }
        assert_eq!(refused(1.0, 0).unwrap().0, "burst");
    }
}
