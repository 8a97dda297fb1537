//! Arbitrary JSON -> FirewallConfig -> compile -> evaluate (and resume) one
//! request built from the same input. Must never panic, hang or blow the stack.
#![no_main]

use std::time::Instant;

use levee_shield::firewall::{Firewall, FirewallConfig, RequestView, Verdict};
use libfuzzer_sys::fuzz_target;

fn text(b: Option<&[u8]>) -> &str {
    b.and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
}

fuzz_target!(|data: &[u8]| {
    // First line: the config; the rest: request parts split on '\n'.
    let mut parts = data.split(|&b| b == b'\n');
    let Some(cfg) = parts.next() else { return };
    let Ok(cfg) = serde_json::from_slice::<FirewallConfig>(cfg) else {
        return;
    };
    let Ok(fw) = Firewall::compile(&cfg) else {
        return;
    };
    let method = text(parts.next());
    let path = text(parts.next());
    let query = text(parts.next());
    let mut headers = http::HeaderMap::new();
    if let Some(h) = parts.next() {
        if let Ok(v) = http::HeaderValue::from_bytes(h) {
            headers.append("user-agent", v.clone());
            headers.append("cookie", v);
        }
    }
    let body = parts.next();
    let req = RequestView {
        client_ip: "198.51.100.1".parse().unwrap(),
        forwarded_ip: Some("::ffff:10.0.0.1".parse().unwrap()),
        method,
        path,
        query,
        headers: &headers,
        body: None,
        api_key: Some("k"),
    };
    let now = Instant::now();
    if let Verdict::NeedBody(cont) = fw.evaluate(&req, now) {
        let req = RequestView {
            body: Some(body.unwrap_or_default()),
            ..req
        };
        let _ = fw.resume(cont, &req, now);
    }
    let _ = fw.counters();
});
