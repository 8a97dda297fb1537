//! Request smuggling and desync against the real binary, over raw sockets:
//! conflicting or obfuscated framing, bad chunks, CR/LF in header values,
//! oversized chunk extensions, requests pipelined after a refused one, and
//! the HTTP/2 requests that smuggle when a proxy downgrades them to HTTP/1
//! (connection-specific headers, a body longer than its content-length,
//! CR/LF in values).
//! Each attempt carries a second request for `/smuggled` inside what should
//! be the first one's body; the invariant is that `/smuggled`'s function is
//! never invoked, and each attempt gets a 4xx/5xx or a closed connection.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use support::{h2_frame, hello_function, Server};

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n";

fn server() -> Server {
    Server::start(
        "smuggling",
        &format!(
            "{}\n{}\n[[routes]]\nroute = \"ANY /f\"\nfunction = \"f\"\nmax_body = \"1KiB\"\n\n\
             [[routes]]\nroute = \"ANY /smuggled\"\nfunction = \"s\"\n",
            hello_function("f", "timeout = \"10s\""),
            hello_function("s", "timeout = \"10s\"")
        ),
    )
}

/// Sends `raw` on one connection and reads until the server closes it or
/// 3 s pass; every status line the server wrote, in order.
fn exchange(edge: SocketAddr, raw: &[u8]) -> Vec<u16> {
    let mut s = TcpStream::connect(edge).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // The server may close before it has read everything; that is fine.
    let _ = s.write_all(raw);
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

fn invocations(s: &Server, function: &str) -> u64 {
    s.instances(function)["invocations"].as_u64().unwrap_or(0)
}

#[test]
fn no_smuggled_request_ever_reaches_a_function() {
    let s = server();
    let body = format!("0\r\n\r\n{SMUGGLED}");
    let len = body.len();
    let attempts: Vec<(&str, String)> = vec![
        // CL.TE and TE.CL: both framings on one request.
        (
            "content-length and chunked",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\ntransfer-encoding: chunked\r\n\r\n{body}"),
        ),
        (
            "chunked then content-length",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n{body}"),
        ),
        // Obfuscated transfer codings.
        (
            "xchunked",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding: xchunked\r\ncontent-length: {len}\r\n\r\n{body}"),
        ),
        (
            "space before the colon",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding : chunked\r\ncontent-length: {len}\r\n\r\n{body}"),
        ),
        (
            "chunked, identity",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked, identity\r\n\r\n{body}"),
        ),
        (
            "two transfer-encoding headers",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ntransfer-encoding: x\r\n\r\n{body}"),
        ),
        (
            "a tab-folded transfer-encoding",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding:\r\n\tchunked\r\n\r\n{body}"),
        ),
        (
            "two content-lengths",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\ncontent-length: {len}\r\n\r\n{body}"),
        ),
        (
            "a signed content-length",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ncontent-length: +{len}\r\n\r\n{body}"),
        ),
        // Bad chunk sizes.
        (
            "a non-hex chunk size",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{SMUGGLED}"),
        ),
        (
            "a negative chunk size",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n-5\r\n{SMUGGLED}"),
        ),
        (
            "an overflowing chunk size",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n{SMUGGLED}"),
        ),
        (
            "a chunk longer than it says",
            format!("POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n{SMUGGLED}"),
        ),
        (
            "an oversized chunk extension",
            format!(
                "POST /f HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5;{}\r\nhello\r\n0\r\n\r\n{SMUGGLED}",
                "e".repeat(200_000)
            ),
        ),
        // CR and LF where they do not belong.
        (
            "a bare CR in a header value",
            "GET /f HTTP/1.1\r\nhost: x\r\nx-a: a\rGET /smuggled HTTP/1.1\r\n\r\n".to_string(),
        ),
        (
            "an obs-folded header",
            format!("GET /f HTTP/1.1\r\nhost: x\r\nx-a: a\r\n b\r\n\r\n{SMUGGLED}"),
        ),
        // A refused request whose body holds the next one: the body is
        // never read as a request.
        (
            "a body over the route's limit",
            format!(
                "POST /f HTTP/1.1\r\nhost: x\r\ncontent-length: 2000\r\n\r\n{SMUGGLED}{}",
                "a".repeat(2000 - SMUGGLED.len())
            ),
        ),
        (
            "a body to a route that does not exist",
            format!("POST /nowhere HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
        (
            "an unmet Expect",
            format!("POST /f HTTP/1.1\r\nhost: x\r\nexpect: nonsense\r\ncontent-length: {}\r\n\r\n{SMUGGLED}", SMUGGLED.len()),
        ),
    ];
    let mut outcomes = Vec::new();
    for (what, raw) in &attempts {
        let statuses = exchange(s.edge, raw.as_bytes());
        outcomes.push(format!("{what}: {statuses:?}"));
        // One request was sent; whatever followed it was its body or
        // garbage, so at most one answer.
        assert!(statuses.len() <= 1, "{what}: {statuses:?}");
    }
    assert_eq!(
        invocations(&s, "s"),
        0,
        "a smuggled request reached a function:\n{}",
        outcomes.join("\n")
    );
    eprintln!("{}", outcomes.join("\n"));
    // The edge still serves ordinary requests on fresh connections.
    assert_eq!(
        exchange(
            s.edge,
            b"GET /f HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        ),
        vec![200]
    );
}

#[test]
fn a_well_framed_pipeline_is_served_in_order_and_only_as_sent() {
    let s = server();
    // Two honest requests pipelined on one connection, the first with a
    // body that looks like a request: both answered, the body stays a body.
    let first = format!(
        "POST /f HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    let second = "GET /f HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let statuses = exchange(s.edge, format!("{first}{second}").as_bytes());
    assert_eq!(statuses, vec![200, 200]);
    assert_eq!(invocations(&s, "s"), 0);
    assert_eq!(invocations(&s, "f"), 2);
}

/// An HPACK header block of literal fields, never indexed, no Huffman
/// (RFC 7541 §6.2.3); names and values under 127 bytes.
fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        assert!(name.len() < 127 && value.len() < 127);
        block.push(0x10);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Speaks HTTP/2 (prior knowledge) with `frames` after the preface and
/// SETTINGS; the frame types the server sent back within 2 s, and whether
/// any HEADERS it sent began with `:status: 200` (static index 8).
fn h2_exchange(edge: SocketAddr, frames: &[Vec<u8>]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(edge).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[]));
    for f in frames {
        out.extend_from_slice(f);
    }
    let _ = s.write_all(&out);
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let (mut kinds, mut ok) = (Vec::new(), false);
    let mut rest = &got[..];
    while rest.len() >= 9 {
        let len = (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
        let Some(payload) = rest.get(9..9 + len) else {
            break;
        };
        kinds.push(rest[3]);
        if rest[3] == 0x1 && payload.first() == Some(&0x88) {
            ok = true;
        }
        rest = &rest[9 + len..];
    }
    (kinds, ok)
}

#[test]
fn http2_requests_that_would_smuggle_on_a_downgrade_are_refused() {
    let s = server();
    let edge = s.edge;
    let base = |path: &'static str| {
        vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "x"),
            (":path", path),
        ]
    };
    let headers = |fields: Vec<(&str, &str)>, end_stream: bool| {
        let flags = 0x4 | if end_stream { 0x1 } else { 0 };
        h2_frame(0x1, flags, 1, &hpack(&fields))
    };
    let with = |extra: (&'static str, &'static str)| {
        let mut fields = base("/f");
        fields.push(extra);
        fields
    };
    let attempts: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "transfer-encoding in HTTP/2",
            vec![
                headers(with(("transfer-encoding", "chunked")), false),
                h2_frame(0x0, 0x1, 1, format!("0\r\n\r\n{SMUGGLED}").as_bytes()),
            ],
        ),
        (
            "a connection header",
            vec![headers(with(("connection", "keep-alive")), true)],
        ),
        (
            "a body longer than its content-length",
            vec![
                headers(with(("content-length", "3")), false),
                h2_frame(0x0, 0x1, 1, format!("abc{SMUGGLED}").as_bytes()),
            ],
        ),
        (
            "CR LF in a header value",
            vec![headers(with(("x-a", "a\r\nGET /smuggled HTTP/1.1")), true)],
        ),
        (
            "CR LF in the path",
            vec![headers(
                vec![
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":authority", "x"),
                    (":path", "/f HTTP/1.1\r\nhost: x\r\n\r\nGET /smuggled"),
                ],
                true,
            )],
        ),
    ];
    let mut outcomes = Vec::new();
    for (what, frames) in &attempts {
        let (kinds, ok) = h2_exchange(edge, frames);
        outcomes.push(format!("{what}: frames {kinds:?}, 200: {ok}"));
        assert!(!ok, "{what} was answered 200: {kinds:?}");
    }
    eprintln!("{}", outcomes.join("\n"));
    assert_eq!(invocations(&s, "s"), 0, "{}", outcomes.join("\n"));
    assert_eq!(invocations(&s, "f"), 0, "{}", outcomes.join("\n"));
    // A well-formed HTTP/2 request on the same edge is served.
    let (_, ok) = h2_exchange(edge, &[headers(base("/f"), true)]);
    assert!(ok, "a plain HTTP/2 POST was not served");
}
