//! JWT authorizers against the real binary, with tokens issued by PyJWT
//! (`tests/python/jwt_issuer.py`, RS256, ES256 and EdDSA keys): good tokens
//! reach the function with their claims, every bad one is refused with
//! API Gateway's status before any invocation, keys rotate in a JWKS file
//! (reload) and behind a JWKS URL over HTTPS (refetched when a token names
//! a new key).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::{hello_function, python, request, scratch, Server};

fn issuer_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/jwt_issuer.py")
}

fn issuer(args: &[&str], stdin: Option<&str>) -> String {
    let out = support::run_with_input(
        Command::new(python()).arg(issuer_script()).args(args),
        stdin.unwrap_or(""),
    );
    assert!(
        out.status.success(),
        "jwt_issuer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

const ISSUER: &str = "https://issuer.test/";

/// Claims a good token carries, changed by `edit`.
fn claims(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut c = json!({
        "iss": ISSUER, "aud": "orders-api", "sub": "alice",
        "exp": now() + 600, "iat": now(), "scope": "orders:read profile",
    })
    .as_object()
    .unwrap()
    .clone();
    edit(&mut c);
    Value::Object(c)
}

/// Tokens for `specs` of (kid, alg, claims, extra header).
fn tokens(dir: &Path, specs: &[(&str, &str, Value, Value)]) -> Vec<String> {
    let specs: Vec<Value> = specs
        .iter()
        .map(|(kid, alg, claims, header)| {
            json!({"kid": kid, "alg": alg, "claims": claims, "header": header})
        })
        .collect();
    let out = issuer(
        &["tokens", dir.to_str().unwrap()],
        Some(&Value::Array(specs).to_string()),
    );
    serde_json::from_str(&out).unwrap()
}

fn config(jwks: &str) -> String {
    format!(
        "[authorizers.users]\ntype = \"jwt\"\nissuer = \"{ISSUER}\"\naudience = [\"orders-api\"]\n{jwks}\n\n{}\n\
         [[routes]]\nroute = \"GET /orders\"\nfunction = \"f\"\nauthorizer = \"users\"\nauthorization_scopes = [\"orders:read\"]\n\n\
         [[routes]]\nroute = \"GET /admin\"\nfunction = \"f\"\nauthorizer = \"users\"\nauthorization_scopes = [\"orders:admin\"]\n\n\
         [[routes]]\nroute = \"GET /open\"\nfunction = \"f\"\n",
        hello_function("f", "timeout = \"10s\"")
    )
}

/// GET `path` with `authorization`; the status, the challenge and the body.
fn call(s: &Server, path: &str, authorization: Option<&str>) -> (u16, String, String) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let r = request(s.edge, "GET", path, &headers, b"");
    let challenge = r.header("www-authenticate").unwrap_or("").to_owned();
    (r.status, challenge, r.text())
}

fn metric(s: &Server, prefix: &str) -> f64 {
    s.admin("GET", "/metrics", b"")
        .text()
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_jwt_authorizer_admits_good_tokens_and_refuses_the_rest_before_any_invocation() {
    let dir = scratch("authorizer-jwt");
    let d = dir.to_str().unwrap();
    issuer(&["keys", d, "r1", "e1", "d1", "r2", "rstranger"], None);
    let jwks = dir.join("jwks.json");
    issuer(&["jwks", d, jwks.to_str().unwrap(), "r1", "e1", "d1"], None);
    let s = Server::start(
        "authorizer-jwt",
        &config(&format!("jwks = \"{}\"", jwks.display())),
    );
    let none = json!({});
    let good = tokens(
        &dir,
        &[
            ("r1", "RS256", claims(|_| {}), none.clone()),
            ("e1", "ES256", claims(|_| {}), none.clone()),
            ("d1", "EdDSA", claims(|_| {}), none.clone()),
        ],
    );
    for token in &good {
        let (status, _, body) = call(&s, "/orders", Some(&format!("Bearer {token}")));
        assert_eq!(status, 200, "{body}");
        let event: Value = serde_json::from_str(&body).unwrap();
        let jwt = &event["requestContext"]["authorizer"]["jwt"];
        assert_eq!(jwt["claims"]["sub"], "alice");
        assert_eq!(jwt["claims"]["iss"], ISSUER);
        assert!(
            jwt["claims"]["exp"].is_string(),
            "claims are strings: {jwt}"
        );
        assert_eq!(jwt["scopes"], json!(["orders:read", "profile"]));
    }
    // Without "Bearer " too, as API Gateway takes it.
    assert_eq!(call(&s, "/orders", Some(&good[0])).0, 200);
    let served = metric(&s, "levee_invocations_total{function=\"f\"");

    let bad = tokens(
        &dir,
        &[
            (
                "r1",
                "RS256",
                claims(|c| {
                    c.insert("exp".into(), (now() - 3600).into());
                }),
                none.clone(),
            ),
            (
                "r1",
                "RS256",
                claims(|c| {
                    c.insert("iss".into(), "https://evil.test/".into());
                }),
                none.clone(),
            ),
            (
                "r1",
                "RS256",
                claims(|c| {
                    c.insert("aud".into(), "other-api".into());
                }),
                none.clone(),
            ),
            (
                "r1",
                "RS256",
                claims(|c| {
                    c.insert("nbf".into(), (now() + 3600).into());
                }),
                none.clone(),
            ),
            // Signed by a key the issuer never published, under a known kid.
            ("rstranger", "RS256", claims(|_| {}), json!({"kid": "r1"})),
            // An RSA key named for an EC algorithm's token.
            ("e1", "ES256", claims(|_| {}), json!({"kid": "r1"})),
            ("r2", "RS256", claims(|_| {}), none.clone()),
        ],
    );
    let reasons = [
        "the token has expired",
        "the token's issuer is not accepted",
        "the token's audience is not accepted",
        "the token is not valid yet",
        "the token's signature does not verify",
        "no key of the issuer matches the token's kid and algorithm",
        "no key of the issuer matches the token's kid and algorithm",
    ];
    for (token, reason) in bad.iter().zip(reasons) {
        let (status, challenge, body) = call(&s, "/orders", Some(&format!("Bearer {token}")));
        assert_eq!(status, 401, "{reason}: {body}");
        assert_eq!(body, r#"{"message":"Unauthorized"}"#);
        assert!(challenge.contains(reason), "{reason}: {challenge}");
    }
    // alg none, garbage, nothing at all.
    let b64 = |v: Value| {
        use std::fmt::Write;
        let text = v.to_string();
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in text.as_bytes().chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                let _ = out.write_char(table[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims(|_| {}))
    );
    for hostile in [unsigned.as_str(), "not.a.jwt", "x", &"A".repeat(20_000)] {
        let (status, _, _) = call(&s, "/orders", Some(&format!("Bearer {hostile}")));
        assert!(status == 401 || status == 431, "{status} for {hostile:.20}");
    }
    let (status, challenge, _) = call(&s, "/orders", None);
    assert_eq!((status, challenge.as_str()), (401, "Bearer"));
    // A good token without the route's scope: 403.
    let (status, challenge, body) = call(&s, "/admin", Some(&format!("Bearer {}", good[0])));
    assert_eq!(status, 403);
    assert_eq!(body, r#"{"message":"Forbidden"}"#);
    assert!(challenge.contains("insufficient_scope"));
    // None of those refusals ran the function.
    assert_eq!(metric(&s, "levee_invocations_total{function=\"f\""), served);
    assert!(
        metric(
            &s,
            "levee_requests_total{route=\"GET /orders\",status=\"401\",decision=\"unauthorized\"}"
        ) >= 11.0
    );
    assert_eq!(
        call(&s, "/open", None).0,
        200,
        "routes without an authorizer are open"
    );

    // Rotation: the file now holds r2 only; a reload reads it.
    issuer(&["jwks", d, jwks.to_str().unwrap(), "r2"], None);
    let r = s.admin("POST", "/admin/reload", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        call(&s, "/orders", Some(&format!("Bearer {}", bad[6]))).0,
        200
    );
    assert_eq!(
        call(&s, "/orders", Some(&format!("Bearer {}", good[0]))).0,
        401
    );
    // A broken file refuses the reload and keeps r2.
    std::fs::write(&jwks, b"{\"keys\": 7}").unwrap();
    assert_ne!(s.admin("POST", "/admin/reload", b"").status, 200);
    assert_eq!(
        call(&s, "/orders", Some(&format!("Bearer {}", bad[6]))).0,
        200
    );
    // `levee check` reads the file as `serve` would.
    let out = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args(["check", "--config"])
        .arg(s.dir.join("levee.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("authorizers.users.jwks") && stderr.contains("not a JWKS document"),
        "{stderr}"
    );
}

/// The issuer's JWKS served over HTTPS by Python, on port 0.
struct JwksServer {
    child: Child,
    url: String,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_jwks(dir: &Path, cert: &Path, key: &Path) -> JwksServer {
    use std::io::BufRead;
    let mut child = Command::new(python())
        .arg(issuer_script())
        .args(["serve", dir.to_str().unwrap()])
        .arg(cert)
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("the JWKS server's port");
    JwksServer {
        child,
        url: format!("https://127.0.0.1:{port}/jwks.json"),
    }
}

#[test]
fn keys_behind_a_jwks_url_are_fetched_over_https_and_refetched_for_a_new_key() {
    let dir = scratch("authorizer-url");
    let d = dir.to_str().unwrap();
    let ca = support::pki::ca(&dir, "ca");
    let site = support::pki::leaf(&ca, "site", "127.0.0.1", &["IP:127.0.0.1"], "serverAuth");
    issuer(&["keys", d, "e1", "e2"], None);
    let jwks = dir.join("jwks.json");
    issuer(&["jwks", d, jwks.to_str().unwrap(), "e1"], None);
    let server = serve_jwks(&dir, &site.cert, &site.key);
    let s = Server::start(
        "authorizer-url",
        &config(&format!(
            "jwks_url = \"{}\"\njwks_ca = \"{}\"\njwks_refresh = \"1h\"",
            server.url,
            ca.cert.display()
        )),
    );
    let none = json!({});
    let t = tokens(
        &dir,
        &[
            ("e1", "ES256", claims(|_| {}), none.clone()),
            ("e2", "ES256", claims(|_| {}), none),
        ],
    );
    assert_eq!(
        call(&s, "/orders", Some(&format!("Bearer {}", t[0]))).0,
        200
    );
    assert_eq!(
        call(&s, "/orders", Some(&format!("Bearer {}", t[1]))).0,
        401
    );
    // The issuer publishes e2; a token naming it makes Levee look again
    // (at most once per 10 s), long before the hourly refresh.
    issuer(&["jwks", d, jwks.to_str().unwrap(), "e1", "e2"], None);
    let admitted = s.wait_until(Duration::from_secs(30), || {
        call(&s, "/orders", Some(&format!("Bearer {}", t[1]))).0 == 200
    });
    assert!(admitted, "the rotated key was never fetched");
}

/// A route behind a Lambda authorizer (Python, under awslambdaric).
fn lambda_config(ttl: &str) -> String {
    format!(
        "[functions.auth]\ncommand = [\"{}\", \"-m\", \"awslambdaric\", \"app.handler\"]\ncode = \"{}\"\ntimeout = \"10s\"\n\n\
         [authorizers.gate]\ntype = \"lambda\"\nfunction = \"auth\"\nttl = \"{ttl}\"\ntimeout = \"1s\"\n\n{}\n\
         [[routes]]\nroute = \"GET /orders/{{id}}\"\nfunction = \"f\"\nauthorizer = \"gate\"\n",
        python(),
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/authorizer")
            .display(),
        hello_function("f", "timeout = \"10s\"")
    )
}

fn invocations(s: &Server, function: &str) -> f64 {
    metric(
        s,
        &format!("levee_invocations_total{{function=\"{function}\""),
    )
}

#[test]
fn a_lambda_authorizer_decides_once_per_identity_and_its_context_reaches_the_function() {
    let s = Server::start("authorizer-lambda", &lambda_config("5m"));
    let (status, _, body) = call(&s, "/orders/7", Some("Bearer good"));
    assert_eq!(status, 200, "{body}\n{}", s.stderr());
    let event: Value = serde_json::from_str(&body).unwrap();
    let context = &event["requestContext"]["authorizer"]["lambda"];
    assert_eq!(context["tenant"], "t-1");
    assert_eq!(context["type"], "REQUEST");
    assert_eq!(context["path"], "/orders/7");
    assert_eq!(context["identitySource"], json!(["Bearer good"]));
    assert_eq!(context["hasBody"], false);
    assert!(context["routeArn"]
        .as_str()
        .unwrap()
        .ends_with(":levee/$default/GET/orders/7"));

    // 1,000 requests with one bad token, 8 at a time: one invocation of the
    // authorizer, none of the route's function.
    let (auth_before, f_before) = (invocations(&s, "auth"), invocations(&s, "f"));
    let edge = s.edge;
    let refused: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(move || {
                    (0..125)
                        .filter(|_| {
                            request(
                                edge,
                                "GET",
                                "/orders/1",
                                &[("authorization", "Bearer bad")],
                                b"",
                            )
                            .status
                                == 403
                        })
                        .count()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    assert_eq!(refused, 1000);
    assert_eq!(invocations(&s, "auth") - auth_before, 1.0);
    assert_eq!(invocations(&s, "f"), f_before);

    // No identity source: 401 without asking the function.
    let before = invocations(&s, "auth");
    assert_eq!(call(&s, "/orders/1", None).0, 401);
    // A function that outlasts the timeout, or answers no simple response:
    // refused with 500, and not cached (asked again next time).
    assert_eq!(call(&s, "/orders/1", Some("Bearer slow")).0, 500);
    let (status, _, _) = call(&s, "/orders/1", Some("Bearer broken"));
    assert_eq!(status, 500);
    assert_eq!(call(&s, "/orders/1", Some("Bearer broken")).0, 500);
    // The slow one is metered when it ends, after its caller was refused.
    let metered = s.wait_until(Duration::from_secs(10), || {
        invocations(&s, "auth") - before == 3.0
    });
    assert!(
        metered,
        "{} authorizer invocations",
        invocations(&s, "auth") - before
    );
}

#[test]
fn without_a_ttl_every_request_asks_the_authorizer() {
    let s = Server::start("authorizer-lambda-nocache", &lambda_config("0s"));
    let before = invocations(&s, "auth");
    for _ in 0..5 {
        assert_eq!(call(&s, "/orders/1", Some("Bearer good")).0, 200);
    }
    assert_eq!(invocations(&s, "auth") - before, 5.0);
}
