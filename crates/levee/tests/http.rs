//! HTTP conformance on both protocols, spoken by the real curl (HTTP/1.1,
//! and HTTP/2 cleartext with `--http2-prior-knowledge`): no body on HEAD,
//! 204 or 304; HEAD answered by GET routes; CONNECT and TRACE refused;
//! unknown expectations and doubled chunked codings refused; and the
//! `[limits]` bounds on request heads and bodies, each on both protocols.

mod support;

use support::{curl, hello_function, request, Server};

/// HTTP/1.1, then HTTP/2.
const PROTOCOLS: [&[&str]; 2] = [&[], &["--http2-prior-knowledge"]];

fn server(name: &str) -> Server {
    Server::start(
        name,
        &format!(
            "[limits]\nmax_headers = 50\nmax_header_bytes = \"16KiB\"\n\n{}\n\
             [[routes]]\nroute = \"ANY /any\"\nfunction = \"f\"\n\n\
             [[routes]]\nroute = \"GET /get\"\nfunction = \"f\"\n\n\
             [[routes]]\nroute = \"POST /small\"\nfunction = \"f\"\nmax_body = \"1KiB\"\n",
            hello_function("f", "")
        ),
    )
}

/// curl's status code for one request (`-w %{http_code}`, body discarded).
fn status(proto: &[&str], extra: &[&str], url: &str) -> String {
    let mut args = proto.to_vec();
    args.extend_from_slice(&["-o", "/dev/null", "-w", "%{http_code}"]);
    args.extend_from_slice(extra);
    args.push(url);
    let (rc, out) = curl(&args);
    assert_eq!(rc, 0, "curl {args:?} failed");
    out
}

#[test]
fn head_204_and_304_answers_have_no_body_on_either_protocol() {
    let s = server("nobody");
    let url = |q: &str| format!("http://{}/any{q}", s.edge);
    for proto in PROTOCOLS {
        // The probe: curl fails (rc 92) when a HEAD answer has DATA.
        let mut args = proto.to_vec();
        args.extend_from_slice(&["-I", "--fail"]);
        let head_url = url("?action=status&code=200");
        args.push(&head_url);
        let (rc, head) = curl(&args);
        assert_eq!(rc, 0, "{proto:?}: {head}");
        // The length a GET would have had ("custom status").
        assert!(
            head.to_ascii_lowercase().contains("content-length: 13"),
            "{proto:?}: {head}"
        );
        for code in ["204", "304"] {
            let mut args = proto.to_vec();
            let u = url(&format!("?action=status&code={code}"));
            args.extend_from_slice(&["-i", &u]);
            let (rc, out) = curl(&args);
            assert_eq!(rc, 0, "{proto:?} {code}: {out}");
            assert!(out.contains(&format!(" {code}")), "{out}");
            assert!(
                out.ends_with("\r\n\r\n"),
                "{proto:?} {code}: a body: {out:?}"
            );
            assert!(!out.contains("custom status"), "{out}");
        }
    }
}

#[test]
fn head_is_answered_by_the_get_route_without_a_body() {
    let s = server("headget");
    for proto in PROTOCOLS {
        let mut args = proto.to_vec();
        let u = format!("http://{}/get", s.edge);
        args.extend_from_slice(&["-I", "--fail", &u]);
        let (rc, out) = curl(&args);
        assert_eq!(rc, 0, "{proto:?}: {out}");
    }
    let r = request(s.edge, "HEAD", "/get", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
}

#[test]
fn connect_and_trace_are_refused_and_never_invoke() {
    let s = server("connect");
    let before = s.instances("f")["invocations"].as_u64().unwrap();
    assert_eq!(request(s.edge, "CONNECT", "/any", &[], b"").status, 501);
    for proto in PROTOCOLS {
        let u = format!("http://{}/any", s.edge);
        assert_eq!(status(proto, &["-X", "TRACE"], &u), "501", "{proto:?}");
    }
    assert_eq!(
        s.instances("f")["invocations"].as_u64().unwrap(),
        before,
        "no invocation, no bill"
    );
    // Methods a function can answer still reach ANY.
    let u = format!("http://{}/any", s.edge);
    assert_eq!(status(&[], &["-X", "PURGE"], &u), "200");
}

#[test]
fn unknown_expectations_get_417_and_chunked_twice_gets_400() {
    let s = server("expect");
    let u = format!("http://{}/any", s.edge);
    for proto in PROTOCOLS {
        assert_eq!(status(proto, &["-H", "Expect: 200-ok"], &u), "417");
        assert_eq!(status(proto, &["-H", "Expect: 100-continue"], &u), "200");
    }
    let chunked = b"5\r\nhello\r\n0\r\n\r\n";
    let r = request(
        s.edge,
        "POST",
        "/any",
        &[("transfer-encoding", "chunked, chunked")],
        chunked,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let r = request(
        s.edge,
        "POST",
        "/any",
        &[("transfer-encoding", "chunked")],
        chunked,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["body"], "hello");
}

#[test]
fn head_and_body_limits_hold_on_both_protocols() {
    let s = server("limits");
    let u = format!("http://{}/any", s.edge);
    let many: Vec<String> = (0..60).map(|i| format!("x-h{i}: v")).collect();
    let few: Vec<String> = (0..40).map(|i| format!("x-h{i}: v")).collect();
    let big = format!("x-big: {}", "a".repeat(20 * 1024));
    let as_args = |headers: &[String]| -> Vec<String> {
        headers
            .iter()
            .flat_map(|h| ["-H".to_string(), h.clone()])
            .collect()
    };
    let small = format!("http://{}/small", s.edge);
    let body_ok = "a".repeat(1000);
    let body_big = "a".repeat(2000);
    for proto in PROTOCOLS {
        let args = as_args(&many);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(status(proto, &args, &u), "431", "{proto:?}: max_headers");
        let args = as_args(&few);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(status(proto, &args, &u), "200", "{proto:?}: under it");
        assert_eq!(
            status(proto, &["-H", &big], &u),
            "431",
            "{proto:?}: max_header_bytes"
        );
        assert_eq!(status(proto, &["-d", &body_ok], &small), "200");
        assert_eq!(
            status(proto, &["-d", &body_big], &small),
            "413",
            "{proto:?}: max_body"
        );
    }
}
