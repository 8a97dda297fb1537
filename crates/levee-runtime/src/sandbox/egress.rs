//! `network = "egress"`: outbound access for an instance, never to the host
//! itself or to other instances.
//!
//! Each egress instance gets a veth pair: one end in its network namespace
//! with a /30 of its own from 100.64.0.0/10 (the shared address space, so it
//! never collides with a LAN) and a default route, the other on the host.
//! One nftables table per server (`levee_<pid>`) rejects everything the
//! instances send to the host's own addresses (the input hook: its
//! listeners on any address) and to each other, and masquerades the rest.
//! The address follows the instance's uid, which no other live instance
//! holds. Links, addresses and routes are made over rtnetlink
//! ([`super::netlink`]), the table with `nft`; this module must never
//! touch a link or a table it did not make.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::os::fd::RawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::netlink::{self, Netlink};

/// 100.64.0.0/10 holds 2^20 /30 networks.
const BASE: u32 = u32::from_be_bytes([100, 64, 0, 0]);
const NETWORKS: u32 = 1 << 20;
/// Host-side links are `lv` + the server's pid (6 hex digits) + a counter
/// (6 hex digits): 14 characters, under the kernel's 15.
const LINK_PREFIX: &str = "lv";

/// This server's table and link names.
#[derive(Debug)]
pub(crate) struct Egress {
    table: String,
    links: String,
    next: AtomicU32,
    first_uid: u32,
}

/// One instance's veth pair and addresses.
#[derive(Debug)]
pub(crate) struct Link {
    host: String,
    inside: String,
    host_ip: Ipv4Addr,
    inside_ip: Ipv4Addr,
}

impl Egress {
    /// Turns on forwarding, removes tables of servers that died and makes
    /// this server's.
    pub(crate) fn start(uids: &RangeInclusive<u32>) -> io::Result<Self> {
        let pid = std::process::id();
        let egress = Self {
            table: format!("levee_{pid}"),
            links: format!("{LINK_PREFIX}{:06x}", pid & 0xff_ffff),
            next: AtomicU32::new(0),
            first_uid: *uids.start(),
        };
        // Masquerading needs the host to forward; this is machine-wide.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")?;
        sweep_dead_tables();
        let reject = "reject with icmpx type admin-prohibited";
        let ours = format!("{}*", egress.links);
        nft(&format!(
            "table inet {t} {{\n\
             chain input {{ type filter hook input priority -10; policy accept; iifname \"{ours}\" {reject}; }}\n\
             chain forward {{ type filter hook forward priority -10; policy accept; iifname \"{ours}\" oifname \"{LINK_PREFIX}*\" {reject}; }}\n\
             chain postrouting {{ type nat hook postrouting priority 100; policy accept; ip saddr 100.64.0.0/10 oifname != \"{LINK_PREFIX}*\" masquerade; }}\n\
             }}\n",
            t = egress.table
        ))?;
        Ok(egress)
    }

    /// The pair for the instance holding `uid`; names never repeat within
    /// one server's life, so a pair still being torn down never clashes.
    pub(crate) fn link(&self, uid: u32) -> io::Result<Link> {
        let index = uid - self.first_uid;
        if index >= NETWORKS {
            return Err(io::Error::other(format!(
                "uid {uid} is past the {NETWORKS} egress networks of 100.64.0.0/10; start instance_uids nearer"
            )));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
        let net = BASE + 4 * index;
        Ok(Link {
            host: format!("{}{n:06x}", self.links),
            inside: "eth0".into(),
            host_ip: Ipv4Addr::from(net + 1),
            inside_ip: Ipv4Addr::from(net + 2),
        })
    }

    /// Removes this server's table.
    pub(crate) fn close(&self) {
        let _ = nft(&format!("delete table inet {}\n", self.table));
    }
}

impl Link {
    /// On the spawner thread, inside the instance's fresh network
    /// namespace: the pair, with its host end put in `host_ns`, and the
    /// inside end addressed, up and routed through the host end.
    pub(crate) fn create_inside(&self, host_ns: RawFd) -> io::Result<()> {
        let mut nl = Netlink::open()?;
        nl.add_veth(&self.inside, &self.host, host_ns)?;
        let inside = netlink::index(&self.inside)?;
        nl.add_address(inside, self.inside_ip, 30)?;
        nl.set_up(inside)?;
        nl.add_default_route(self.host_ip)
    }

    /// Back in the host's namespace: the host end addressed and up.
    pub(crate) fn create_host_side(&self) -> io::Result<()> {
        let mut nl = Netlink::open()?;
        let host = netlink::index(&self.host)?;
        nl.add_address(host, self.host_ip, 30)?;
        nl.set_up(host)
    }

    /// Deletes the pair (deleting the host end takes the other with it;
    /// when the instance's namespace went first, the pair is already gone).
    pub(crate) fn remove(&self) {
        if let Ok(mut nl) = Netlink::open() {
            let _ = nl.delete_link(&self.host);
        }
    }
}

fn nft(ruleset: &str) -> io::Result<()> {
    batch(Command::new("nft").arg("-f").arg("-"), ruleset)
}

/// Runs `cmd` with `script` on stdin; an error carries what it printed.
fn batch(cmd: &mut Command, script: &str) -> io::Result<()> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{:?}: {e}", cmd.get_program())))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(1024)]).trim()
        )))
    }
}

/// Deletes `levee_<pid>` tables whose server is gone (killed with -9).
fn sweep_dead_tables() {
    let Ok(out) = Command::new("nft")
        .args(["list", "tables", "inet"])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(pid) = line
            .trim()
            .strip_prefix("table inet levee_")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = nft(&format!("delete table inet levee_{pid}\n"));
        }
    }
}
