//! `[server]` (where Levee listens and keeps its state) and `[account]`
//! (what all functions share).
//!
//! Owns their defaults and the listener rules: two listeners that could not
//! both be bound are refused, and an admin listener off loopback is a
//! warning. Must never bind, create `data_dir` or otherwise touch the
//! network or disk: `data_dir` need not exist yet.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::Path;

use serde::Deserialize;

use crate::model::{AccessLog, Account, Isolation, Server};
use crate::problems::{Found, KeyPath};
use crate::values::resolve;

const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8081);
const DEFAULT_DATA_DIR: &str = ".levee";
const DEFAULT_CONCURRENCY: u32 = 100;
const CONCURRENCY: RangeInclusive<u32> = 1..=100_000;
/// 65,536 ids above the 16-bit range that distributions hand to people.
const DEFAULT_INSTANCE_UIDS: RangeInclusive<u32> = 200_000..=265_535;
/// Below this are the machine's own users; `u32::MAX` is "no uid".
const INSTANCE_UIDS: RangeInclusive<u32> = 1000..=u32::MAX - 1;
/// Fewer ids than this could not hold one function's standby and instances.
const MIN_INSTANCE_UIDS: u32 = 16;

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawIsolation {
    #[default]
    Namespaces,
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    data_dir: Option<String>,
    access_log: Option<AccessLog>,
    #[serde(default)]
    isolation: RawIsolation,
    instance_uids: Option<Vec<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccount {
    concurrency: Option<u32>,
}

/// Whether two listeners could not both be bound.
pub(crate) fn collide(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Validates `[server]`; `data_dir` is resolved against `base_dir`.
pub(crate) fn server(
    raw: RawServer,
    base_dir: &Path,
    found: &mut Found,
    warnings: &mut Found,
) -> Server {
    let listen = raw.listen.unwrap_or(DEFAULT_LISTEN);
    let admin_listen = raw.admin_listen.unwrap_or(DEFAULT_ADMIN_LISTEN);
    if collide(listen, admin_listen) {
        found.push(
            "admin_listen",
            format!("{admin_listen} clashes with server.listen ({listen}); the admin API needs its own port"),
        );
    }
    if let Some(message) = crate::model::exposed_admin(admin_listen) {
        warnings.push("admin_listen", message);
    }
    let data_dir = raw.data_dir.as_deref().unwrap_or(DEFAULT_DATA_DIR);
    let data_dir = resolve(base_dir, data_dir, &KeyPath::of("data_dir"), found).unwrap_or_default();
    Server {
        listen,
        admin_listen,
        data_dir,
        access_log: raw.access_log.unwrap_or_default(),
        isolation: match raw.isolation {
            RawIsolation::Namespaces => Isolation::Namespaces,
            RawIsolation::None => Isolation::None,
        },
        instance_uids: instance_uids(raw.instance_uids, found),
    }
}

/// `instance_uids = [first, last]`, inclusive, outside the machine's own users.
fn instance_uids(raw: Option<Vec<u32>>, found: &mut Found) -> RangeInclusive<u32> {
    let Some(ids) = raw else {
        return DEFAULT_INSTANCE_UIDS;
    };
    match ids[..] {
        [first, last]
            if INSTANCE_UIDS.contains(&first)
                && INSTANCE_UIDS.contains(&last)
                && last >= first
                && last - first + 1 >= MIN_INSTANCE_UIDS =>
        {
            first..=last
        }
        [first, last] => {
            found.push(
                "instance_uids",
                format!(
                    "[{first}, {last}] must lie within {}..={} and hold at least {MIN_INSTANCE_UIDS} ids, first before last",
                    INSTANCE_UIDS.start(),
                    INSTANCE_UIDS.end()
                ),
            );
            DEFAULT_INSTANCE_UIDS
        }
        _ => {
            found.push(
                "instance_uids",
                "must be two numbers, [first, last], e.g. [200000, 265535]",
            );
            DEFAULT_INSTANCE_UIDS
        }
    }
}

/// Validates `[account]`.
pub(crate) fn account(raw: RawAccount, found: &mut Found) -> Account {
    let concurrency = raw.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
    if !CONCURRENCY.contains(&concurrency) {
        found.push(
            "concurrency",
            format!(
                "must be between {} and {}, not {concurrency}",
                CONCURRENCY.start(),
                CONCURRENCY.end()
            ),
        );
    }
    Account { concurrency }
}

/// The account's concurrency when it is valid: checks against an
/// out-of-range limit would only echo its problem.
pub(crate) fn concurrency_limit(account: &Account) -> Option<u32> {
    CONCURRENCY
        .contains(&account.concurrency)
        .then_some(account.concurrency)
}
