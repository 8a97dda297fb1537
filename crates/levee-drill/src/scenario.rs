//! What each scenario sends, and from where. It owns the request shapes and
//! the source-address plan (legitimate: 127.10.0.x; attack: 127.20.x.y up;
//! a flash crowd: 127.30.x.y to 127.229.x.y, spread over 200 /16s);
//! it must never do I/O: shapes are plain bytes, so they are unit-tested.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::client::{Drip, Shape};
use crate::plan::{Scenario, Target};

/// Pause between a slow client's steps.
const SLOW_GAP: Duration = Duration::from_secs(2);
/// Slow POST's announced body size.
const SLOW_POST_LENGTH: usize = 1_000_000;
/// Big body's size: far past any sane route limit, bounded in what we write.
const BIG_BODY: usize = 16 << 20;
/// How many kinds of bad input rotate.
pub const BAD_INPUTS: u64 = 10;

/// The `n`th legitimate source address (n wraps at `sources`).
pub fn legit_source(n: u64, sources: u32) -> IpAddr {
    let i = n % u64::from(sources.max(1));
    IpAddr::V4(Ipv4Addr::new(127, 10, 0, (i % 250) as u8 + 1))
}

/// The `n`th source of the surge `scenario` sends: a route launch and a
/// bursty replay come from the legitimate clients, a flash crowd from new ones spread wide,
/// an attack from [`attack_source`].
pub fn surge_source(scenario: Scenario, n: u64, sources: u32, legit_sources: u32) -> IpAddr {
    match scenario {
        Scenario::RouteLaunch | Scenario::BurstyReplay => legit_source(n, legit_sources),
        Scenario::FlashCrowd => crowd_source(n, sources),
        _ => attack_source(n, sources),
    }
}

/// The `n`th of a flash crowd's new clients: one /16 after another over
/// 200 of them (127.30/16 … 127.229/16), as people arrive from everywhere.
pub fn crowd_source(n: u64, sources: u32) -> IpAddr {
    let i = n % u64::from(sources.max(1));
    IpAddr::V4(Ipv4Addr::new(
        127,
        30 + (i % 200) as u8,
        (i / 200 % 256) as u8,
        (i / 51_200 % 250) as u8 + 1,
    ))
}

/// The `n`th attack source address: 250 per /24 from 127.20.0.1 on.
pub fn attack_source(n: u64, sources: u32) -> IpAddr {
    let i = n % u64::from(sources.max(1));
    let block = i / 250; // < 256 * 256 for any allowed --sources
    IpAddr::V4(Ipv4Addr::new(
        127,
        20 + (block / 256) as u8,
        (block % 256) as u8,
        (i % 250) as u8 + 1,
    ))
}

fn head(method: &str, path: &str, t: &Target, extra: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {}\r\nuser-agent: levee-drill\r\nconnection: close\r\n{extra}\r\n",
        t.host
    )
    .into_bytes()
}

fn random_token(len: usize) -> String {
    (0..len).map(|_| fastrand::alphanumeric()).collect()
}

fn with_query(path: &str, q: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{q}")
}

/// What legitimate clients send, in turn: browsers and an SDK, each its
/// user agent and its headers in its own order, the variety real traffic
/// has (the attack classes send the tool's own short set, what a flood has
/// in common, with `levee-drill` or, disguised, these user agents).
const LEGIT_CLIENTS: [(&str, &str); 4] = [
    (
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "host: {host}\r\nuser-agent: {agent}\r\naccept: text/html,application/xhtml+xml,*/*;q=0.8\r\naccept-language: en-US,en;q=0.5\r\naccept-encoding: gzip, deflate, br\r\nconnection: close\r\n",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        "host: {host}\r\naccept: text/html,application/xhtml+xml,*/*;q=0.8\r\nsec-fetch-site: none\r\nsec-fetch-mode: navigate\r\nuser-agent: {agent}\r\naccept-language: en-GB,en;q=0.9\r\naccept-encoding: gzip, deflate, br\r\nconnection: close\r\n",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "host: {host}\r\nconnection: close\r\nsec-ch-ua: \"Chromium\";v=\"131\"\r\nsec-ch-ua-mobile: ?0\r\nsec-ch-ua-platform: \"Windows\"\r\nupgrade-insecure-requests: 1\r\nuser-agent: {agent}\r\naccept: text/html,*/*;q=0.8\r\nsec-fetch-site: none\r\nsec-fetch-mode: navigate\r\naccept-encoding: gzip, deflate, br, zstd\r\naccept-language: en-US,en;q=0.9\r\n",
    ),
    (
        "Boto3/1.43.11 md/Botocore#1.43.11 ua/2.1 os/linux lang/python#3.11.7",
        "host: {host}\r\naccept-encoding: identity\r\nuser-agent: {agent}\r\namz-sdk-invocation-id: {id}\r\namz-sdk-request: attempt=1\r\nconnection: close\r\n",
    ),
];

fn legit_client(n: u64) -> (&'static str, &'static str) {
    LEGIT_CLIENTS[(n % LEGIT_CLIENTS.len() as u64) as usize]
}

/// The `n`th legitimate request: `GET` the target's path.
pub fn legit(t: &Target, n: u64) -> Shape {
    let (agent, headers) = legit_client(n);
    let headers = headers
        .replace("{host}", &t.host)
        .replace("{agent}", agent)
        .replace("{id}", &random_token(16));
    Shape::whole(format!("GET {} HTTP/1.1\r\n{headers}\r\n", t.path).into_bytes())
}

/// The `n`th attack request of `scenario`.
pub fn attack(scenario: Scenario, n: u64, t: &Target) -> Shape {
    let path = t.path.as_str();
    match scenario {
        // What a flooding tool sends: the same request, its own user agent.
        Scenario::Flood => Shape::whole(head("GET", &t.path, t, "")),
        // The same tool posing as browsers: their user agents in turn, its
        // own headers in its own order.
        Scenario::DisguisedFlood => Shape::whole(
            format!(
                "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: {}\r\nconnection: close\r\n\r\n",
                t.path,
                t.host,
                legit_client(n).0
            )
            .into_bytes(),
        ),
        // People, not a tool: the legitimate clients' requests (a route
        // launch's target is the new route).
        Scenario::FlashCrowd | Scenario::RouteLaunch | Scenario::BurstyReplay => legit(t, n),
        Scenario::CacheBust => {
            let p = if n.is_multiple_of(2) {
                with_query(
                    path,
                    &format!(
                        "cb={}&{}={}",
                        random_token(12),
                        random_token(4),
                        random_token(8)
                    ),
                )
            } else {
                let base = path.split('?').next().unwrap_or("/").trim_end_matches('/');
                format!("{base}/{}", random_token(12))
            };
            Shape::whole(head("GET", &p, t, ""))
        }
        Scenario::KeyStuffing => Shape::whole(head(
            "GET",
            path,
            t,
            &format!("x-api-key: {}\r\n", random_token(40)),
        )),
        Scenario::BigBody => Shape {
            send: head(
                "POST",
                path,
                t,
                &format!(
                    "content-length: {BIG_BODY}\r\ncontent-type: application/octet-stream\r\n"
                ),
            ),
            filler: BIG_BODY,
            ..Shape::default()
        },
        Scenario::BadInput => bad_input(n, t),
        Scenario::Slowloris => Shape {
            send: format!("GET {path} HTTP/1.1\r\nhost: {}\r\n", t.host).into_bytes(),
            drip: Some(Drip {
                bytes: format!("x-{}: {}\r\n", random_token(4), random_token(8)).into_bytes(),
                gap: SLOW_GAP,
            }),
            ..Shape::default()
        },
        Scenario::SlowPost => Shape {
            send: head(
                "POST",
                path,
                t,
                &format!("content-length: {SLOW_POST_LENGTH}\r\n"),
            ),
            drip: Some(Drip {
                bytes: b"a".to_vec(),
                gap: SLOW_GAP,
            }),
            ..Shape::default()
        },
        Scenario::SlowRead => Shape {
            send: head("GET", path, t, ""),
            slow_read: Some(Drip {
                bytes: vec![0; 64],
                gap: SLOW_GAP / 2,
            }),
            ..Shape::default()
        },
        Scenario::Mixed => {
            let kinds = [
                Scenario::Flood,
                Scenario::CacheBust,
                Scenario::KeyStuffing,
                Scenario::BadInput,
            ];
            attack(kinds[(n % 4) as usize], n / 4, t)
        }
    }
}

/// The `n`th of [`BAD_INPUTS`] kinds of malformed or pathological request.
fn bad_input(n: u64, t: &Target) -> Shape {
    let path = t.path.as_str();
    let host = &t.host;
    let send = match n % BAD_INPUTS {
        0 => b"GARBAGE\x00\x01\x02 / HTTP/9.9\r\n\r\n".to_vec(),
        1 => head(
            "GET",
            path,
            t,
            &format!("x-huge: {}\r\n", "a".repeat(64 * 1024)),
        ),
        2 => head(
            "GET",
            path,
            t,
            &(0..1000)
                .map(|i| format!("x-h{i}: v\r\n"))
                .collect::<String>(),
        ),
        // Inputs that take exponential time in a backtracking regex engine.
        3 => head(
            "GET",
            &with_query(path, &format!("q={}!", "a".repeat(8000))),
            t,
            "",
        ),
        4 => head(
            "GET",
            &with_query(path, &format!("q={}", "(a|aa)*".repeat(500))),
            t,
            "",
        ),
        // Request smuggling shape: both framings, and a broken chunk.
        5 => head(
            "POST",
            path,
            t,
            "content-length: 5\r\ntransfer-encoding: chunked\r\n",
        )
        .into_iter()
        .chain(b"zz\r\nhello\r\n0\r\n\r\n".iter().copied())
        .collect(),
        6 => head("GET", "/%zz%%/../../etc/passwd%00", t, ""),
        7 => head(
            "GET",
            &with_query(path, &format!("u={}", "x".repeat(100 * 1024))),
            t,
            "",
        ),
        8 => head("POST", path, t, "content-length: -1\r\n"),
        _ => format!("GET {path} HTTP/1.1\nhost {host}\nno-colon-here\n\n").into_bytes(),
    };
    Shape::whole(send)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            url: "http://127.0.0.1:8080/f?x=1".into(),
            host: "127.0.0.1:8080".into(),
            addr: "127.0.0.1:8080".parse().unwrap(),
            path: "/f?x=1".into(),
        }
    }

    #[test]
    fn sources_are_distinct_loopback_addresses_in_their_ranges() {
        let attack: std::collections::HashSet<_> =
            (0..64_000).map(|n| attack_source(n, 64_000)).collect();
        assert_eq!(attack.len(), 64_000);
        assert!(attack.iter().all(|a| a.is_loopback()));
        assert_eq!(
            attack_source(0, 10),
            "127.20.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            attack_source(250, 1000),
            "127.20.1.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            attack_source(10, 10),
            attack_source(0, 10),
            "wraps at --sources"
        );
        assert_eq!(legit_source(3, 10), "127.10.0.4".parse::<IpAddr>().unwrap());
        assert!(
            !attack.contains(&legit_source(0, 10)),
            "classes never share an address"
        );
    }

    #[test]
    fn cache_bust_never_repeats_and_bad_input_covers_every_kind() {
        let t = target();
        let a = attack(Scenario::CacheBust, 0, &t).send;
        let b = attack(Scenario::CacheBust, 2, &t).send;
        assert_ne!(a, b);
        assert!(String::from_utf8_lossy(&a).starts_with("GET /f?x=1&cb="));
        assert!(
            String::from_utf8_lossy(&attack(Scenario::CacheBust, 1, &t).send)
                .starts_with("GET /f/")
        );
        let kinds: std::collections::HashSet<_> = (0..BAD_INPUTS)
            .map(|n| attack(Scenario::BadInput, n, &t).send)
            .collect();
        assert_eq!(kinds.len() as u64, BAD_INPUTS);
        let big = attack(Scenario::BigBody, 0, &t);
        assert_eq!(big.filler, BIG_BODY);
        assert!(attack(Scenario::Slowloris, 0, &t).is_slow());
        assert!(!attack(Scenario::Mixed, 5, &t).is_slow());
        let legit_head = String::from_utf8_lossy(&legit(&t, 0).send).into_owned();
        assert!(legit_head.ends_with("\r\n\r\n") && legit_head.contains("host: 127.0.0.1:8080"));
        // Legitimate clients vary; a flood is one tool.
        let agents: std::collections::HashSet<String> = (0..8)
            .map(|n| {
                let head = String::from_utf8_lossy(&legit(&t, n).send).into_owned();
                head.lines()
                    .find(|l| l.starts_with("user-agent:"))
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(agents.len(), 4);
        let flood = String::from_utf8_lossy(&attack(Scenario::Flood, 3, &t).send).into_owned();
        assert!(flood.contains("user-agent: levee-drill\r\n"), "{flood}");
    }

    /// The header names of a request head, in order.
    fn names(send: &[u8]) -> Vec<String> {
        String::from_utf8_lossy(send)
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_disguised_flood_rotates_agents_in_one_order_legitimate_clients_vary_both() {
        let t = target();
        let legit_orders: std::collections::HashSet<_> =
            (0..8).map(|n| names(&legit(&t, n).send)).collect();
        assert_eq!(legit_orders.len(), 4, "{legit_orders:?}");
        let heads: Vec<String> = (0..8)
            .map(|n| {
                String::from_utf8_lossy(&attack(Scenario::DisguisedFlood, n, &t).send).into_owned()
            })
            .collect();
        let orders: std::collections::HashSet<_> =
            heads.iter().map(|h| names(h.as_bytes())).collect();
        assert_eq!(orders.len(), 1, "one tool");
        assert!(!legit_orders.contains(orders.iter().next().unwrap()));
        let agents: std::collections::HashSet<_> = heads
            .iter()
            .map(|h| {
                h.lines()
                    .find(|l| l.starts_with("user-agent:"))
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(agents.len(), 4, "the browsers' agents in turn");
        // A flash crowd and a launch are the legitimate clients' requests.
        assert_eq!(
            names(&attack(Scenario::FlashCrowd, 2, &t).send),
            names(&legit(&t, 2).send)
        );
    }

    #[test]
    fn a_flash_crowd_comes_from_many_networks_a_launch_from_the_known_clients() {
        let crowd: Vec<IpAddr> = (0..10_000)
            .map(|n| surge_source(Scenario::FlashCrowd, n, 10_000, 10))
            .collect();
        let distinct: std::collections::HashSet<_> = crowd.iter().collect();
        assert_eq!(distinct.len(), 10_000);
        let networks: std::collections::HashSet<_> = crowd
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => v4.octets()[1],
                IpAddr::V6(_) => unreachable!(),
            })
            .collect();
        assert_eq!(networks.len(), 200, "/16s");
        let attack: std::collections::HashSet<_> =
            (0..64_000).map(|n| attack_source(n, 64_000)).collect();
        assert!(crowd
            .iter()
            .all(|ip| ip.is_loopback() && !attack.contains(ip)));
        assert!(crowd.iter().all(|ip| *ip != legit_source(0, 10)));
        assert_eq!(
            surge_source(Scenario::RouteLaunch, 3, 1000, 10),
            legit_source(3, 10)
        );
        assert_eq!(
            surge_source(Scenario::Flood, 3, 1000, 10),
            attack_source(3, 1000)
        );
    }
}
