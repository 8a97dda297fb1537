//! The admin listener's front door: the admin token, from the environment or
//! a private file created on first start, and nothing revealed without it.

mod support;

use support::{get, hello_function, request, Server};

#[test]
fn without_the_token_the_admin_api_answers_a_bare_401() {
    let s = Server::start("admin401", &hello_function("f", ""));
    for (method, path) in [
        ("GET", "/admin/functions"),
        ("GET", "/admin/firewall"),
        ("POST", "/admin/reload"),
        ("POST", "/2015-03-31/functions/f/invocations"),
        ("GET", "/admin/does-not-exist"),
    ] {
        for auth in [
            None,
            Some("Bearer wrong-token-wrong-token"),
            Some("Basic YWRtaW46YWRtaW4="),
        ] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", *a)).collect();
            let r = request(s.admin, method, path, &headers, b"");
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}");
            // The Invoke API says it in Lambda's shape; nothing else revealed.
            let expected = if path.starts_with("/2015-03-31/") {
                r#"{"Message":"Unauthorized","Type":"User","message":"Unauthorized"}"#
            } else {
                r#"{"message":"Unauthorized"}"#
            };
            assert_eq!(r.text(), expected, "nothing else revealed");
        }
    }
    assert_eq!(get(s.admin, "/healthz").status, 200, "health stays open");
    assert_eq!(s.admin("GET", "/admin/functions", b"").status, 200);
}

#[test]
fn a_token_file_is_created_private_on_first_start_and_its_path_printed_once() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start_with_token_file("tokenfile", &hello_function("f", ""));
    let file = s.dir.join("data/admin.token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        s.printed
            .iter()
            .any(|l| l.contains("admin token written to") && l.contains("admin.token")),
        "{:?}",
        s.printed
    );
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    let auth = format!("Bearer {token}");
    let r = request(
        s.admin,
        "GET",
        "/admin/functions",
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200);
}

/// A raw exchange that tolerates the server closing early (a 413 can be
/// sent before the whole body is read).
fn raw_exchange(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

#[test]
fn every_admin_error_is_json_and_every_invoke_error_lambda_shaped() {
    let s = Server::start("adminjson", &hello_function("f", ""));
    let auth = format!("Bearer {}", support::ADMIN_TOKEN);
    // 413 over axum's body limit.
    let body = vec![b'{'; 3 * 1024 * 1024];
    let head = format!(
        "POST /admin/plans HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = raw_exchange(s.admin, &head, &body);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:.300}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{answer:.300}"
    );
    assert!(answer.contains(r#"{"message":"#), "{answer:.300}");
    // 405 and an undecodable path segment.
    for (method, path, status) in [
        ("GET", "/admin/reload", 405),
        ("GET", "/admin/keys/%ff", 400),
    ] {
        let r = s.admin(method, path, b"");
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.json()["message"].is_string(), "{}", r.text());
    }
    // The Invoke API: Lambda's error shape even for a path axum rejects
    // and for the token check.
    let r = s.admin("POST", "/2015-03-31/functions/%ff/invocations", b"{}");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.header("x-amzn-errortype").is_some(), "{:?}", r.headers);
    assert_eq!(r.json()["Type"], "User");
    assert!(r.json()["message"].is_string());
    let r = request(
        s.admin,
        "POST",
        "/2015-03-31/functions/f/invocations",
        &[],
        b"{}",
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("UnrecognizedClientException")
    );
    assert_eq!(r.json()["message"], "Unauthorized");
}

#[test]
fn input_is_quoted_back_short() {
    let s = Server::start("adminecho", &hello_function("f", ""));
    let name = "n".repeat(10 * 1024);
    let r = s.admin(
        "POST",
        &format!("/2015-03-31/functions/{name}/invocations"),
        b"{}",
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("ResourceNotFoundException")
    );
    assert!(r.body.len() < 1024, "{} bytes", r.body.len());
    let id = "k".repeat(5000);
    let r = s.admin("GET", &format!("/admin/keys/{id}"), b"");
    assert_eq!(r.status, 404);
    assert!(r.body.len() < 512, "{} bytes: {}", r.body.len(), r.text());
    assert!(r.json()["message"].as_str().unwrap().contains('…'));
}
