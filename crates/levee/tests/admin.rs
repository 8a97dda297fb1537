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
            assert_eq!(
                r.text(),
                r#"{"message":"Unauthorized"}"#,
                "nothing else revealed"
            );
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
