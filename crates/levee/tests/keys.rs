//! API keys, usage plans and quotas end to end: the admin API and CLI, the
//! edge's 403/429 answers, exact quotas under concurrency, the period
//! boundary (with the clock shifted), and counts that survive `kill -9`.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{hello_function, request, Server, ADMIN_TOKEN};

const PLANS: &str = r#"
[plans.basic]
quota = { limit = 5, period = "DAY" }

[plans.slow]
throttle = { rate = 0.2, burst = 2 }

[plans.big]
quota = { limit = 100, period = "DAY" }
"#;

fn config(plans: &str) -> String {
    format!(
        "[account]\nconcurrency = 100\n\n[limits]\nmax_connections_per_ip = 400\n\n{}\n[[routes]]\nroute = \"GET /k\"\nfunction = \"f\"\napi_key_required = true\n\n[[routes]]\nroute = \"GET /open\"\nfunction = \"f\"\n\n{plans}",
        hello_function("f", "reserved_concurrency = 50")
    )
}

fn create_key(s: &Server, plan: &str) -> (String, String) {
    let r = s.admin(
        "POST",
        "/admin/keys",
        format!(r#"{{"name":"t","plan":"{plan}"}}"#).as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let doc = r.json();
    (
        doc["key"]["id"].as_str().unwrap().to_string(),
        doc["secret"].as_str().unwrap().to_string(),
    )
}

fn with_key(s: &Server, secret: &str) -> support::Resp {
    request(s.edge, "GET", "/k", &[("x-api-key", secret)], b"")
}

#[test]
fn key_lifecycle_through_the_admin_api() {
    let s = Server::start("keylife", &config(PLANS));
    assert_eq!(
        request(s.edge, "GET", "/open", &[], b"").status,
        200,
        "open routes need no key"
    );
    let missing = request(s.edge, "GET", "/k", &[], b"");
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (403, r#"{"message":"Forbidden"}"#)
    );
    assert_eq!(with_key(&s, "not-a-real-key").status, 403);

    let (id, secret) = create_key(&s, "basic");
    assert_eq!(secret.len(), 40);
    let ok = with_key(&s, &secret);
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("x-quota-limit"), Some("5"));
    assert_eq!(ok.header("x-quota-remaining"), Some("4"));
    assert!(ok
        .header("x-quota-reset")
        .is_some_and(|t| t.ends_with("T00:00:00Z")));

    let listed = s.admin("GET", "/admin/keys", b"").text();
    assert!(
        listed.contains(&id) && !listed.contains(&secret),
        "secrets are never listed"
    );

    assert_eq!(
        s.admin("POST", &format!("/admin/keys/{id}/disable"), b"")
            .status,
        200
    );
    assert_eq!(with_key(&s, &secret).status, 403, "disabled");
    assert_eq!(
        s.admin("POST", &format!("/admin/keys/{id}/enable"), b"")
            .status,
        200
    );
    assert_eq!(with_key(&s, &secret).status, 200);

    let rotated = s
        .admin("POST", &format!("/admin/keys/{id}/rotate"), b"")
        .json();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_eq!(
        with_key(&s, &secret).status,
        403,
        "the old secret stops at once"
    );
    assert_eq!(with_key(&s, new_secret).status, 200);

    assert_eq!(
        s.admin("DELETE", &format!("/admin/keys/{id}"), b"").status,
        204
    );
    assert_eq!(with_key(&s, new_secret).status, 403);
    assert_eq!(
        s.admin("GET", &format!("/admin/keys/{id}"), b"").status,
        404
    );
    let r = s.admin("POST", "/admin/keys", br#"{"name":"x","plan":"nope"}"#);
    assert_eq!(
        r.status,
        400,
        "a key on a plan that does not exist: {}",
        r.text()
    );
    assert!(r.text().contains("nope"), "{}", r.text());
    assert_eq!(
        s.admin(
            "POST",
            "/admin/keys",
            br#"{"name":"x","plan":"basic","extra":1}"#
        )
        .status,
        400
    );
}

#[test]
fn plan_throttle_and_quota_answer_429_and_usage_counts_them() {
    let s = Server::start("plans", &config(PLANS));
    let (slow_id, slow) = create_key(&s, "slow");
    let statuses: Vec<u16> = (0..3).map(|_| with_key(&s, &slow).status).collect();
    assert_eq!(statuses, [200, 200, 429], "burst of 2");
    let r = with_key(&s, &slow);
    assert_eq!(r.json()["limit"], "plan.throttle");
    assert!(r.header("retry-after").is_some());

    let (basic_id, basic) = create_key(&s, "basic");
    let statuses: Vec<u16> = (0..7).map(|_| with_key(&s, &basic).status).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    let over = with_key(&s, &basic).json();
    assert!(
        over["message"]
            .as_str()
            .unwrap()
            .contains("quota is exhausted"),
        "{over}"
    );
    assert!(over["resets_at"].as_str().unwrap().ends_with("T00:00:00Z"));

    let usage = s
        .admin("GET", &format!("/admin/usage?key={basic_id}"), b"")
        .json();
    let row = &usage["usage"][0];
    assert_eq!(
        (row["admitted"].as_u64(), row["over_quota"].as_u64()),
        (Some(5), Some(3)),
        "{usage}"
    );
    let usage = s
        .admin("GET", &format!("/admin/usage?key={slow_id}"), b"")
        .json();
    assert_eq!(usage["usage"][0]["throttled"], 2, "{usage}");
    assert_eq!(
        s.admin("GET", "/admin/usage?from=not-a-date", b"").status,
        400
    );
}

#[test]
fn hundreds_of_concurrent_clients_never_exceed_the_quota() {
    let s = Server::start("quotarace", &config(PLANS));
    let (id, secret) = create_key(&s, "big");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..300)
            .map(|_| scope.spawn(|| with_key(&s, &secret).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|&&c| c == 200).count();
    assert!(ok <= 100, "admitted past the quota: {ok}");
    let usage = s
        .admin("GET", &format!("/admin/usage?key={id}"), b"")
        .json();
    assert_eq!(
        usage["usage"][0]["admitted"], 100,
        "exactly the quota admitted: {usage}"
    );
    assert_eq!(usage["usage"][0]["over_quota"], 200);
}

#[test]
fn quotas_reset_at_the_period_boundary() {
    // Build the function before the clock starts: the lead below must only
    // cover the server's start, a key and three requests.
    let body = config("[plans.tiny]\nquota = { limit = 2, period = \"DAY\" }\n");
    // Shift the server's clock to LEAD seconds before the next UTC midnight.
    const LEAD: i64 = 10;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let midnight = (now / 86_400 + 1) * 86_400;
    let offset = (midnight - LEAD - now).to_string();
    let s = Server::start_with_env("quotareset", &body, &[("LEVEE_CLOCK_OFFSET_SECS", &offset)]);
    let (_, secret) = create_key(&s, "tiny");
    let before: Vec<_> = (0..3).map(|_| with_key(&s, &secret)).collect();
    let statuses: Vec<u16> = before.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let reset = before[0].header("x-quota-reset").unwrap_or_default();
    assert!(reset.ends_with("T00:00:00Z"), "resets at midnight: {reset}");
    assert!(
        s.wait_until(Duration::from_secs(LEAD as u64 + 20), || {
            with_key(&s, &secret).status == 200
        }),
        "the quota never reset (or the set-up took longer than {LEAD} s)"
    );
    let after: Vec<u16> = (0..2).map(|_| with_key(&s, &secret).status).collect();
    assert_eq!(after, [200, 429], "a new day, a new quota of 2");
}

#[test]
fn keys_and_quota_counts_survive_kill_9() {
    let s = Server::start("kill9", &config(PLANS));
    let (id, secret) = create_key(&s, "basic");
    for _ in 0..3 {
        assert_eq!(with_key(&s, &secret).status, 200);
    }
    // The documented flush window is 1 s.
    std::thread::sleep(Duration::from_millis(1500));
    let dir = s.kill9();
    let s = Server::start_in(dir, &config(PLANS), &[]);
    let after: Vec<u16> = (0..3).map(|_| with_key(&s, &secret).status).collect();
    assert_eq!(
        after,
        [200, 200, 429],
        "3 of 5 were already used before the crash"
    );
    assert!(s.admin("GET", &format!("/admin/keys/{id}"), b"").status == 200);
}

#[test]
fn the_cli_manages_keys_and_reports_usage() {
    let s = Server::start("cli-keys", &config(PLANS));
    let admin = format!("http://{}", s.admin);
    let levee_as = |token: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_levee"))
            .args(args)
            .args(["--admin", &admin, "--token", token])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let levee = |args: &[&str]| levee_as(ADMIN_TOKEN, args);
    let (code, none, err) = levee(&["keys", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        none.starts_with("no keys"),
        "an empty list says so: {none:?}"
    );
    let (code, out, err) = levee(&["keys", "create", "--plan", "basic", "--name", "ci"]);
    assert_eq!(code, Some(0), "{err}");
    let id = out.split_whitespace().next().unwrap().to_string();
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .to_string();
    assert_eq!(with_key(&s, &secret).status, 200);
    let (_, list, _) = levee(&["keys", "list"]);
    assert!(
        list.starts_with("id\tname\tplan\tstate\tprefix\n"),
        "{list}"
    );
    assert!(list.contains(&id) && list.contains("enabled"), "{list}");
    let (code, _, err) = levee(&["keys", "disable", &id]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(with_key(&s, &secret).status, 403);
    let (_, usage, _) = levee(&["usage", "--key", &id]);
    assert!(
        usage
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("\t1\t0\t0")),
        "{usage}"
    );

    let (code, _, err) = levee_as("wrong-token-wrong-token", &["keys", "list"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("token was refused"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args([
            "keys",
            "list",
            "--admin",
            "http://127.0.0.1:1",
            "--token",
            ADMIN_TOKEN,
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `levee serve` running?"));
}
