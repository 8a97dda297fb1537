//! Firewall evaluation cost per request: 50 rules of mixed types, including
//! one rate-based rule and one 100k-entry IP set; an allowed request (runs
//! all 50) and a blocked one (stops at a SQLi rule halfway), plus the IP-set
//! lookup and compile time on their own.
//!
//! Run: `cargo bench -p levee-shield --bench firewall`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use levee_shield::firewall::{Firewall, FirewallConfig, IpSet, RequestView, Verdict};

/// 50k IPv4 /24s and 50k IPv6 /64s, every other block.
fn hundred_k() -> Vec<String> {
    let mut v = Vec::with_capacity(100_000);
    for i in 0..50_000u32 {
        v.push(format!("{}/24", Ipv4Addr::from(0x1400_0000u32 + i * 512)));
        v.push(format!(
            "{}/64",
            Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(i) * 2) << 64)
        ));
    }
    v
}

fn config() -> FirewallConfig {
    let mut rules = String::new();
    let mut add = |i: usize, action: &str, stmt: String| {
        rules.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\npriority = {i}\naction = \"{action}\"\nstatement = {stmt}\n\n"
        ));
    };
    add(0, "block", "{ ip_set = { name = \"big\" } }".into());
    add(
        1,
        "block",
        "{ rate = { limit = 2000000000, window = \"1m\", key = [\"ip\"] } }".into(),
    );
    // 48 more, cycling through the statement kinds a real ACL uses.
    for i in 2..50 {
        let stmt = match i % 8 {
            0 => format!("{{ string_match = {{ field = \"path\", search = \"/blocked-{i}\", position = \"starts_with\" }} }}"),
            1 => format!("{{ string_match = {{ field = {{ header = \"user-agent\" }}, search = \"badbot{i}\", transforms = [\"lowercase\"] }} }}"),
            2 => format!("{{ regex = {{ field = \"query_string\", pattern = \"(?i)(evil{i}|attack{i})=\" }} }}"),
            3 => "{ size = { field = \"query_string\", op = \"gt\", size = 4096 } }".into(),
            4 => "{ sqli = { field = { query_arg = \"id\" }, transforms = [\"url_decode\"] } }".into(),
            5 => "{ xss = { field = \"query_string\", transforms = [\"url_decode\", \"html_entity_decode\"] } }".into(),
            6 => format!(
                "{{ and = [ {{ string_match = {{ field = \"method\", search = \"DELETE\", position = \"exactly\" }} }}, {{ not = {{ string_match = {{ field = {{ header = \"x-admin-{i}\" }}, search = \"yes\" }} }} }} ] }}"
            ),
            _ => format!("{{ string_match = {{ field = {{ cookie = \"session\" }}, search = \"forged{i}\", position = \"exactly\" }} }}"),
        };
        add(i, "block", stmt);
    }
    let toml_src = format!("[ip_sets]\nbig = {:?}\n\n{rules}", hundred_k());
    toml::from_str(&toml_src).expect("bench config parses")
}

fn bench(c: &mut Criterion) {
    let cfg = config();
    let t = Instant::now();
    let fw = Firewall::compile(&cfg).expect("bench config compiles");
    eprintln!("compile (50 rules, 100k-entry set): {:?}", t.elapsed());

    let mut headers = http::HeaderMap::new();
    headers.insert(
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
            .parse()
            .unwrap(),
    );
    headers.insert("cookie", "session=abc123; theme=dark".parse().unwrap());
    headers.insert("accept", "application/json".parse().unwrap());
    let allowed = RequestView {
        client_ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
        forwarded_ip: None,
        method: "GET",
        path: "/api/v1/orders/42",
        query: "id=42&sort=desc&page=2",
        headers: &headers,
        body: Some(b""),
        api_key: None,
    };
    let blocked = RequestView {
        query: "id=1%27%20OR%20%271%27%3D%271&sort=desc",
        ..allowed
    };
    let now = Instant::now();
    assert!(matches!(fw.evaluate(&allowed, now), Verdict::Allow { .. }));
    assert!(matches!(fw.evaluate(&blocked, now), Verdict::Block { .. }));

    c.bench_function("evaluate_50_rules_allowed", |b| {
        b.iter(|| fw.evaluate(black_box(&allowed), now))
    });
    c.bench_function("evaluate_50_rules_blocked_sqli", |b| {
        b.iter(|| fw.evaluate(black_box(&blocked), now))
    });

    let set = IpSet::parse(&hundred_k()).unwrap();
    let probes: Vec<IpAddr> = (0..1024u32)
        .map(|i| match i % 2 {
            0 => IpAddr::V4(Ipv4Addr::from(
                0x1400_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761) >> 6),
            )),
            _ => IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8u128 << 96) | u128::from(i.wrapping_mul(2_654_435_761)) << 60,
            )),
        })
        .collect();
    let mut k = 0usize;
    c.bench_function("ipset_lookup_100k", |b| {
        b.iter(|| {
            k = (k + 1) % probes.len();
            set.contains(black_box(probes[k]))
        })
    });
    c.bench_function("ipset_build_100k", |b| {
        let entries = hundred_k();
        b.iter(|| IpSet::parse(black_box(&entries)).map(|s| s.ranges()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
