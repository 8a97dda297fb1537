//! CORS with curl against the real binary: preflights answered at the edge
//! with no invocation (even on a route behind an authorizer), answers
//! carrying the policy's headers instead of the function's, a route's own
//! policy over `[cors]`, and origins that are not allowed getting none.

mod support;

use support::{curl, hello_function, Server};

/// curl `args` with `-D -` (headers on stdout); the status and the headers,
/// lowercased.
fn heads(args: &[&str]) -> (u16, Vec<(String, String)>) {
    let mut all = vec!["-s", "-o", "/dev/null", "-D", "-"];
    all.extend_from_slice(args);
    let (code, out) = curl(&all);
    assert_eq!(code, 0, "curl {args:?}");
    let mut lines = out.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn preflights_are_answered_at_the_edge_and_answers_carry_the_policy() {
    let s = Server::start(
        "cors",
        &format!(
            "[cors]\nallow_origins = [\"https://app.test\"]\nallow_methods = [\"GET\", \"POST\"]\n\
             allow_headers = [\"authorization\", \"content-type\"]\nexpose_headers = [\"x-cost\"]\n\
             max_age = \"10m\"\nallow_credentials = true\n\n\
             [authorizers.users]\ntype = \"jwt\"\nissuer = \"https://issuer.test/\"\naudience = [\"api\"]\n\
             jwks_url = \"http://127.0.0.1:9/jwks.json\"\n\n{}\n\
             [[routes]]\nroute = \"POST /orders\"\nfunction = \"f\"\nauthorizer = \"users\"\n\n\
             [[routes]]\nroute = \"GET /public/{{x}}\"\nfunction = \"f\"\ncors = {{ allow_origins = [\"*\"], allow_methods = [\"GET\"] }}\n\n\
             [[routes]]\nroute = \"GET /echo\"\nfunction = \"f\"\n",
            hello_function("f", "timeout = \"10s\"")
        ),
    );
    let url = |path: &str| format!("http://{}{path}", s.edge);

    // A browser's preflight for the route behind the authorizer: answered
    // here, no token needed, nothing invoked.
    let orders = url("/orders");
    let (status, h) = heads(&[
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://app.test",
        "-H",
        "Access-Control-Request-Method: POST",
        "-H",
        "Access-Control-Request-Headers: Authorization, Content-Type",
        &orders,
    ]);
    assert_eq!(status, 204);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(header(&h, "access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("authorization,content-type")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("600"));
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    // An origin, method or header not allowed: no CORS headers at all.
    for (origin, method) in [
        ("https://evil.test", "POST"),
        ("https://app.test", "DELETE"),
    ] {
        let (status, h) = heads(&[
            "-X",
            "OPTIONS",
            "-H",
            &format!("Origin: {origin}"),
            "-H",
            &format!("Access-Control-Request-Method: {method}"),
            &orders,
        ]);
        assert_eq!(status, 204);
        assert_eq!(
            header(&h, "access-control-allow-origin"),
            None,
            "{origin} {method}"
        );
    }
    assert_eq!(
        s.instances("f")["invocations"],
        0,
        "a preflight invokes nothing"
    );

    // The authorizer's 401 still carries CORS, so the page can read it.
    let (status, h) = heads(&["-X", "POST", "-H", "Origin: https://app.test", &orders]);
    assert_eq!(status, 401);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(header(&h, "access-control-expose-headers"), Some("x-cost"));

    // A real answer: the function's own CORS header is replaced.
    let echo =
        url("/echo?action=header&name=access-control-allow-origin&value=https://anyone.test");
    let (status, h) = heads(&["-H", "Origin: https://app.test", &echo]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.test")
    );
    assert_eq!(header(&h, "vary"), Some("origin"));
    let (_, h) = heads(&["-H", "Origin: https://evil.test", &echo]);
    assert_eq!(header(&h, "access-control-allow-origin"), None);

    // The route's own policy wins over [cors].
    let public = url("/public/x");
    let (status, h) = heads(&["-H", "Origin: https://evil.test", &public]);
    assert_eq!(status, 200);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&h, "access-control-allow-credentials"), None);
}
