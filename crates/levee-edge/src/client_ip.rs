//! Client identity: who sent this request. The socket address, unless the
//! connection comes from a trusted proxy; then the forwarding headers are
//! read from the right (the nearest hop first), skipping trusted proxies, and
//! the first untrusted hop is the client. A client can put anything in the
//! left part of `X-Forwarded-For`, so the left part is never believed.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// Most forwarding hops read from a header; the rest is ignored.
const MAX_HOPS: usize = 32;

/// The trusted proxies, from `[client_ip]`.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    trusted: Vec<IpNet>,
}

impl ClientIdentity {
    /// Identity resolution trusting `trusted`.
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request that arrived from `peer`.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.trusted.is_empty() || !self.is_trusted(peer) {
            return peer;
        }
        let hops = forwarded_hops(headers);
        hops.into_iter()
            .rev()
            .find(|ip| !self.is_trusted(*ip))
            .unwrap_or(peer)
    }
}

/// The first (left-most) forwarded hop, for rules that aggregate on the
/// forwarded address as AWS WAF's FORWARDED_IP does. Never used as identity.
pub fn first_forwarded(headers: &HeaderMap) -> Option<IpAddr> {
    forwarded_hops(headers).into_iter().next()
}

/// The hops in order (client first), from `Forwarded` if present, else
/// `X-Forwarded-For`. Unparseable entries end the list at that point, since
/// anything left of garbage cannot be attributed.
fn forwarded_hops(headers: &HeaderMap) -> Vec<IpAddr> {
    let mut hops = Vec::new();
    let forwarded = headers.get_all(http::header::FORWARDED);
    if forwarded.iter().next().is_some() {
        for value in forwarded.iter().filter_map(|v| v.to_str().ok()) {
            for element in value.split(',') {
                let Some(node) = element
                    .split(';')
                    .filter_map(|pair| pair.trim().split_once('='))
                    .find(|(k, _)| k.eq_ignore_ascii_case("for"))
                    .map(|(_, v)| v.trim().trim_matches('"'))
                else {
                    continue;
                };
                hops.push(parse_node(node));
            }
        }
    } else {
        for value in headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            hops.extend(value.split(',').map(|h| parse_node(h.trim())));
        }
    }
    // Keep only the right-most hops (the ones nearest to us).
    let start = hops.len().saturating_sub(MAX_HOPS);
    let hops = &hops[start..];
    // Trust stops at the right-most unparseable hop.
    let from = hops.iter().rposition(Option::is_none).map_or(0, |i| i + 1);
    hops[from..]
        .iter()
        .flatten()
        .copied()
        .map(|ip| ip.to_canonical())
        .collect()
}

/// An address as written in a forwarding header: `1.2.3.4`, `1.2.3.4:80`,
/// `[::1]`, `[::1]:80` or `::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']').and_then(|(ip, _)| ip.parse().ok());
    }
    text.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let id = ClientIdentity::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(id.resolve(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            ClientIdentity::default().resolve(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let id = ClientIdentity::new(vec!["10.0.0.0/8".parse().unwrap()]);
        // spoofed, real client, then an inner trusted proxy
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.1.2.3"),
        ]);
        assert_eq!(id.resolve(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        let all_trusted = headers(&[("x-forwarded-for", "10.9.9.9")]);
        assert_eq!(id.resolve(ip("10.0.0.1"), &all_trusted), ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_header_wins_and_ports_and_brackets_parse() {
        let id = ClientIdentity::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let h = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.60;proto=http, for="[2001:db8::1]:4711""#,
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(id.resolve(ip("127.0.0.1"), &h), ip("2001:db8::1"));
        assert_eq!(first_forwarded(&h), Some(ip("192.0.2.60")));
    }

    #[test]
    fn garbage_stops_the_walk() {
        let id = ClientIdentity::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let h = headers(&[("x-forwarded-for", "1.2.3.4, not-an-ip, 10.0.0.5")]);
        // Nothing left of the garbage can be attributed: the peer stands.
        assert_eq!(id.resolve(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let many = vec!["1.1.1.1"; 1000].join(",");
        let h = headers(&[("x-forwarded-for", &many)]);
        assert_eq!(id.resolve(ip("10.0.0.1"), &h), ip("1.1.1.1"));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        assert_eq!(ip("::ffff:127.0.0.9").to_canonical(), ip("127.0.0.9"));
    }
}
