//! IP sets: CIDR lists compiled into sorted, merged, disjoint address ranges
//! looked up by binary search.
//!
//! Owns parsing (via `ipnet`) and membership. Must never allocate or fail on
//! lookup: a lookup is two `partition_point`s over a slice, O(log n) with no
//! branches an attacker can steer. Sorted ranges beat a bit trie here: one
//! contiguous `Vec` per family (16 or 32 bytes per range) instead of up to 128
//! pointer hops per IPv6 lookup; the bench `ipset_lookup_100k` measures it.

use std::net::IpAddr;

use ipnet::IpNet;

/// Upper bound on entries in one set: keeps a config typo (a pasted log file)
/// from costing gigabytes. 1M ranges is 32 MB for IPv6.
pub const MAX_IP_SET_ENTRIES: usize = 1_000_000;

/// A compiled IP set.
#[derive(Debug, Clone, Default)]
pub struct IpSet {
    /// Disjoint, non-adjacent, ascending inclusive ranges.
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    /// Parses CIDRs or bare addresses. Errors name the offending entry index.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<IpSet, (usize, String)> {
        if entries.len() > MAX_IP_SET_ENTRIES {
            return Err((
                MAX_IP_SET_ENTRIES,
                format!("at most {MAX_IP_SET_ENTRIES} entries per set"),
            ));
        }
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let e = e.as_ref().trim();
            let net = match e.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => match e.parse::<IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => {
                        return Err((i, format!("`{e}` is neither a CIDR nor an IP address")))
                    }
                },
            };
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => {
                    // An IPv4-mapped range is the IPv4 range: lookups canonicalise
                    // `::ffff:a.b.c.d` to IPv4, so store it there too.
                    let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                    const MAPPED: u128 = 0xffff_0000_0000;
                    if lo >> 32 == MAPPED >> 32 && hi >> 32 == MAPPED >> 32 {
                        v4.push((lo as u32, hi as u32));
                    } else {
                        v6.push((lo, hi));
                    }
                }
            }
        }
        Ok(IpSet {
            v4: merge(v4),
            v6: merge(v6),
        })
    }

    /// Whether `ip` is in the set. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => lookup(&self.v4, u32::from(a)),
            IpAddr::V6(a) => lookup(&self.v6, u128::from(a)),
        }
    }

    /// Number of disjoint ranges after merging (for tests and sizing).
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

fn lookup<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // First range whose end is >= x; x is inside iff that range starts <= x.
    let i = ranges.partition_point(|&(_, hi)| hi < x);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= x)
}

/// Sorts and merges overlapping or adjacent ranges.
fn merge<T: Ord + Copy + Adjacent>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1 || last.1.next() == Some(lo) => {
                if hi > last.1 {
                    last.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out.shrink_to_fit();
    out
}

trait Adjacent: Sized {
    fn next(self) -> Option<Self>;
}

impl Adjacent for u32 {
    fn next(self) -> Option<u32> {
        self.checked_add(1)
    }
}

impl Adjacent for u128 {
    fn next(self) -> Option<u128> {
        self.checked_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Instant;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn boundaries_v4_and_v6() {
        let s = IpSet::parse(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]).unwrap();
        for yes in [
            "10.0.0.0",
            "10.255.255.255",
            "192.0.2.7",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "::1",
            "::ffff:10.1.2.3",
        ] {
            assert!(s.contains(ip(yes)), "{yes}");
        }
        for no in [
            "9.255.255.255",
            "11.0.0.0",
            "192.0.2.6",
            "192.0.2.8",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "::2",
            "::",
        ] {
            assert!(!s.contains(ip(no)), "{no}");
        }
    }

    #[test]
    fn extremes_and_merging() {
        let s = IpSet::parse(&[
            "0.0.0.0/1",
            "128.0.0.0/1",
            "255.255.255.255",
            "::/0",
            "::ffff:1.2.3.0/120",
        ])
        .unwrap();
        assert_eq!(
            s.ranges(),
            2,
            "adjacent halves merge; mapped range folds into v4"
        );
        assert!(s.contains(ip("0.0.0.0")) && s.contains(ip("255.255.255.255")));
        assert!(s.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        let e = IpSet::parse(&["1.2.3.4", "nope"]).unwrap_err();
        assert_eq!(e.0, 1);
        assert!(IpSet::parse(&["1.2.3.4/33"]).is_err());
        assert!(!IpSet::default().contains(ip("1.2.3.4")));
    }

    #[test]
    fn hundred_thousand_entries_build_fast_and_look_up_correctly() {
        // 50k disjoint /24s (every other /24 from 20.0.0.0) and 50k /64s.
        let mut entries = Vec::with_capacity(100_000);
        for i in 0..50_000u32 {
            let base = 0x1400_0000u32 + (i * 2) * 256;
            entries.push(format!("{}/24", Ipv4Addr::from(base)));
            let v6 = 0x2001_0db8_0000_0000u128 << 64 | (u128::from(i) * 2) << 64;
            entries.push(format!("{}/64", Ipv6Addr::from(v6)));
        }
        let t = Instant::now();
        let s = IpSet::parse(&entries).unwrap();
        let build = t.elapsed();
        assert_eq!(s.ranges(), 100_000);
        // Generous bound for debug builds on a loaded 2-core machine.
        assert!(build.as_secs() < 5, "built in {build:?}");
        for i in [0u32, 1, 24_999, 49_999] {
            let base = 0x1400_0000u32 + (i * 2) * 256;
            assert!(s.contains(IpAddr::V4(Ipv4Addr::from(base))));
            assert!(s.contains(IpAddr::V4(Ipv4Addr::from(base + 255))));
            assert!(
                !s.contains(IpAddr::V4(Ipv4Addr::from(base + 256))),
                "gap /24"
            );
            assert!(!s.contains(IpAddr::V4(Ipv4Addr::from(base.wrapping_sub(1)))));
            let v6 = 0x2001_0db8_0000_0000u128 << 64 | (u128::from(i) * 2) << 64;
            assert!(s.contains(IpAddr::V6(Ipv6Addr::from(v6))));
            assert!(s.contains(IpAddr::V6(Ipv6Addr::from(v6 | u128::from(u64::MAX)))));
            assert!(!s.contains(IpAddr::V6(Ipv6Addr::from(v6 + (1u128 << 64)))));
        }
    }
}
