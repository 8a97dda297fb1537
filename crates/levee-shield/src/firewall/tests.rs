//! Engine tests: every statement, action, label flow, ordering, rate-based
//! rules, bans, body continuation, and hostile configs and requests.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use http::HeaderMap;

use super::*;

/// Owned request parts; `view()` borrows them.
struct Req {
    ip: IpAddr,
    fwd: Option<IpAddr>,
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    api_key: Option<String>,
}

fn req(path_and_query: &str) -> Req {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    Req {
        ip: "198.51.100.7".parse().unwrap(),
        fwd: None,
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
        headers: HeaderMap::new(),
        body: Some(Vec::new()),
        api_key: None,
    }
}

impl Req {
    fn h(mut self, k: &'static str, v: &str) -> Self {
        self.headers.append(k, v.parse().unwrap());
        self
    }
    fn ip(mut self, ip: &str) -> Self {
        self.ip = ip.parse().unwrap();
        self
    }
    fn body(mut self, b: Option<&[u8]>) -> Self {
        self.body = b.map(<[u8]>::to_vec);
        self
    }
    fn method(mut self, m: &str) -> Self {
        self.method = m.into();
        self
    }
    fn view(&self) -> RequestView<'_> {
        RequestView {
            client_ip: self.ip,
            forwarded_ip: self.fwd,
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: self.body.as_deref(),
            api_key: self.api_key.as_deref(),
        }
    }
}

/// Parses a `[firewall]` body (without the header) as levee.toml would.
fn fw(toml_src: &str) -> Firewall {
    let cfg: FirewallConfig = toml::from_str(toml_src).unwrap_or_else(|e| panic!("{e}"));
    Firewall::compile(&cfg).unwrap_or_else(|e| panic!("{e}"))
}

fn compile_err(toml_src: &str) -> FirewallError {
    let cfg: FirewallConfig = toml::from_str(toml_src).unwrap_or_else(|e| panic!("{e}"));
    Firewall::compile(&cfg).expect_err("should not compile")
}

fn blocked_by(v: &Verdict) -> Option<&str> {
    match v {
        Verdict::Block { rule, .. } => Some(rule),
        _ => None,
    }
}

fn eval(f: &Firewall, r: &Req) -> Verdict {
    f.evaluate(&r.view(), Instant::now())
}

/// One block rule over `stmt`.
fn one(stmt: &str) -> Firewall {
    fw(&format!(
        "[[rules]]\nname = \"r\"\npriority = 1\naction = \"block\"\nstatement = {stmt}\n"
    ))
}

fn hits(f: &Firewall, r: &Req) -> bool {
    blocked_by(&eval(f, r)) == Some("r")
}

#[test]
fn default_action_and_default_response() {
    assert_eq!(eval(&fw(""), &req("/")), Verdict::Allow { labels: vec![] });
    let f = fw("default_action = \"block\"");
    match eval(&f, &req("/")) {
        Verdict::Block {
            rule,
            status,
            body,
            content_type,
            ..
        } => {
            assert_eq!(
                (&*rule, status, &body[..], content_type.as_str()),
                (
                    "default",
                    403,
                    &br#"{"message":"Forbidden"}"#[..],
                    "application/json"
                )
            );
        }
        v => panic!("{v:?}"),
    }
    let f = fw("default_action = \"block\"\ndefault_response = { status = 451, body = \"gone\" }");
    assert!(matches!(
        eval(&f, &req("/")),
        Verdict::Block { status: 451, .. }
    ));
}

#[test]
fn ip_set_statement_client_and_forwarded() {
    let base = "[ip_sets]\nbad = [\"10.0.0.0/8\", \"2001:db8::1\"]\n";
    let f = fw(&format!("{base}[[rules]]\nname = \"r\"\npriority = 1\naction = \"block\"\nstatement = {{ ip_set = {{ name = \"bad\" }} }}\n"));
    assert!(hits(&f, &req("/").ip("10.9.9.9")));
    assert!(hits(&f, &req("/").ip("2001:db8::1")));
    assert!(hits(&f, &req("/").ip("::ffff:10.0.0.1")));
    assert!(!hits(&f, &req("/").ip("11.0.0.0")));
    let f = fw(&format!(
        "{base}[[rules]]\nname = \"r\"\npriority = 1\naction = \"block\"\nstatement = {{ ip_set = {{ name = \"bad\", source = \"forwarded\" }} }}\n"
    ));
    let mut r = req("/").ip("10.0.0.1");
    assert!(!hits(&f, &r), "no forwarded ip: no match");
    r.fwd = Some("10.1.1.1".parse().unwrap());
    assert!(hits(&f, &r));
}

#[test]
fn string_match_positions_and_fields() {
    let cases: &[(&str, &str, bool)] = &[
        (
            "position = \"exactly\", search = \"/admin\"",
            "/admin",
            true,
        ),
        (
            "position = \"exactly\", search = \"/admin\"",
            "/admin/x",
            false,
        ),
        (
            "position = \"starts_with\", search = \"/admin\"",
            "/admin/x",
            true,
        ),
        (
            "position = \"starts_with\", search = \"/admin\"",
            "/x/admin",
            false,
        ),
        (
            "position = \"ends_with\", search = \".php\"",
            "/index.php",
            true,
        ),
        (
            "position = \"ends_with\", search = \".php\"",
            "/index.php5",
            false,
        ),
        (
            "position = \"contains\", search = \"etc/passwd\"",
            "/a/../../etc/passwd/x",
            true,
        ),
        ("search = \"etc/passwd\"", "/a/etc/shadow", false),
        (
            "position = \"contains_word\", search = \"admin\"",
            "/x/admin/y",
            true,
        ),
        (
            "position = \"contains_word\", search = \"admin\"",
            "/x/administrator",
            false,
        ),
    ];
    for (m, path, want) in cases {
        let f = one(&format!("{{ string_match = {{ field = \"path\", {m} }} }}"));
        assert_eq!(hits(&f, &req(path)), *want, "{m} on {path}");
    }
    // Every field kind, including missing components.
    let r = req("/p?Id=1&x=2&id=evil")
        .h("user-agent", "curl/8")
        .h("cookie", "a=1; session=evil")
        .method("DELETE")
        .body(Some(b"evil body"));
    for (field, want) in [
        ("\"method\"", "DELETE"),
        ("\"path\"", "/p"),
        ("\"query_string\"", "x=2"),
        ("{ query_arg = \"id\" }", "evil"),
        ("{ header = \"User-Agent\" }", "curl"),
        ("{ cookie = \"session\" }", "evil"),
        ("\"body\"", "evil"),
    ] {
        let f = one(&format!(
            "{{ string_match = {{ field = {field}, search = \"{want}\" }} }}"
        ));
        assert!(hits(&f, &r), "{field}");
        assert!(!hits(&f, &req("/")), "{field} missing or different");
    }
    let f = one("{ string_match = { field = { cookie = \"session\" }, search = \"evil\" } }");
    assert!(
        !hits(&f, &req("/").h("cookie", "Session=evil")),
        "cookie names are case-sensitive"
    );
}

#[test]
fn transformations_apply_in_order() {
    let f = one("{ string_match = { field = \"query_string\", search = \"<script\", transforms = [\"url_decode\", \"html_entity_decode\", \"lowercase\"] } }");
    assert!(hits(&f, &req("/?q=%26lt%3BScRiPt")));
    assert!(!hits(&f, &req("/?q=script")));
    let f = one("{ string_match = { field = \"query_string\", search = \"union select\", transforms = [\"url_decode\", \"compress_whitespace\", \"lowercase\"] } }");
    assert!(hits(&f, &req("/?q=1+UNION%09%0A++SELECT")));
}

#[test]
fn regex_size_sqli_xss() {
    let f = one(
        "{ regex = { field = { header = \"user-agent\" }, pattern = \"(?i)(sqlmap|nikto)\" } }",
    );
    assert!(hits(&f, &req("/").h("user-agent", "SQLMap/1.0")));
    assert!(!hits(&f, &req("/").h("user-agent", "Mozilla/5.0")));
    assert!(!hits(&f, &req("/")), "missing header never matches");

    for (op, n, len, want) in [
        ("eq", 3, 3, true),
        ("ne", 3, 3, false),
        ("lt", 3, 2, true),
        ("le", 3, 3, true),
        ("gt", 3, 3, false),
        ("ge", 3, 3, true),
        ("gt", 3, 4, true),
    ] {
        let f = one(&format!(
            "{{ size = {{ field = \"query_string\", op = \"{op}\", size = {n} }} }}"
        ));
        assert_eq!(
            hits(&f, &req(&format!("/?{}", "a".repeat(len)))),
            want,
            "{op} {n} vs {len}"
        );
    }

    let f = one("{ sqli = { field = { query_arg = \"id\" }, transforms = [\"url_decode\"] } }");
    assert!(hits(&f, &req("/?id=1%27%20OR%20%271%27%3D%271")));
    assert!(!hits(&f, &req("/?id=42")));
    assert!(!hits(&f, &req("/?name=O%27Brien")));
    let f = one("{ xss = { field = \"body\" } }");
    assert!(hits(
        &f,
        &req("/").body(Some(b"<img src=x onerror=alert(1)>"))
    ));
    assert!(!hits(
        &f,
        &req("/").body(Some(b"{\"comment\":\"I <3 Rust\"}"))
    ));
}

#[test]
fn and_or_not() {
    let and = one("{ and = [ { string_match = { field = \"method\", search = \"POST\", position = \"exactly\" } }, { string_match = { field = \"path\", search = \"/login\", position = \"exactly\" } } ] }");
    assert!(hits(&and, &req("/login").method("POST")));
    assert!(!hits(&and, &req("/login")));
    let or = one("{ or = [ { string_match = { field = \"path\", search = \"/a\" } }, { string_match = { field = \"path\", search = \"/b\" } } ] }");
    assert!(hits(&or, &req("/b")) && !hits(&or, &req("/c")));
    let not = one("{ not = { string_match = { field = \"method\", search = \"GET\", position = \"exactly\" } } }");
    assert!(hits(&not, &req("/").method("PUT")) && !hits(&not, &req("/")));
}

#[test]
fn actions_priority_labels_and_dry_run() {
    let f = fw(r#"
[[rules]]
name = "late-block"
priority = 30
action = "block"
statement = { label = "bad-bot" }
response = { status = 429, body = "go away", headers = { x-reason = "bot" } }

[[rules]]
name = "tag-bots"
priority = 10
action = "count"
labels = ["bad-bot"]
statement = { regex = { field = { header = "user-agent" }, pattern = "(?i)bot" } }

[[rules]]
name = "allow-office"
priority = 20
action = "allow"
labels = ["office"]
statement = { string_match = { field = { header = "x-office" }, search = "1", position = "exactly" } }

[[rules]]
name = "dry"
priority = 5
action = "block"
dry_run = true
statement = { string_match = { field = "path", search = "/" } }
"#);
    // Count then label-match block; counters show the flow.
    match eval(&f, &req("/").h("user-agent", "EvilBot")) {
        Verdict::Block {
            rule,
            status,
            body,
            content_type,
            headers,
            retry_after,
        } => {
            assert_eq!(
                (&*rule, status, &body[..], retry_after),
                ("late-block", 429, &b"go away"[..], None)
            );
            assert_eq!(content_type, "text/plain; charset=utf-8");
            assert_eq!(headers[0].0, "x-reason");
        }
        v => panic!("{v:?}"),
    }
    // An allow at priority 20 wins over the block at 30, labels accumulate.
    assert_eq!(
        eval(&f, &req("/").h("user-agent", "EvilBot").h("x-office", "1")),
        Verdict::Allow {
            labels: vec!["bad-bot".into(), "office".into()]
        }
    );
    assert_eq!(eval(&f, &req("/")), Verdict::Allow { labels: vec![] });
    let c = f.counters();
    let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["dry", "tag-bots", "allow-office", "late-block"],
        "priority order"
    );
    assert_eq!(
        (c[0].matched, c[0].counted, c[0].blocked),
        (3, 3, 0),
        "dry run only counts"
    );
    assert_eq!((c[1].evaluated, c[1].matched, c[1].counted), (3, 2, 2));
    assert_eq!((c[2].evaluated, c[2].matched), (3, 1));
    assert_eq!((c[3].evaluated, c[3].matched, c[3].blocked), (2, 1, 1));
    let json = serde_json::to_value(&c[3]).unwrap();
    assert_eq!(json["blocked"], 1);
}

fn rate_fw(extra: &str) -> Firewall {
    fw(&format!("[[rules]]\nname = \"r\"\npriority = 1\naction = \"block\"\nstatement = {{ rate = {{ limit = 10, window = \"1m\"{extra} }} }}\n"))
}

#[test]
fn rate_based_eleventh_request_blocked() {
    let f = rate_fw("");
    let now = Instant::now();
    let r = req("/");
    for i in 0..10 {
        assert!(
            matches!(f.evaluate(&r.view(), now), Verdict::Allow { .. }),
            "request {i}"
        );
    }
    match f.evaluate(&r.view(), now) {
        Verdict::Block {
            retry_after,
            status,
            ..
        } => {
            assert_eq!(status, 403);
            assert!(retry_after.is_some_and(|d| d > Duration::ZERO && d <= Duration::from_secs(60)));
        }
        v => panic!("{v:?}"),
    }
    assert!(
        matches!(
            f.evaluate(&req("/").ip("198.51.100.8").view(), now),
            Verdict::Allow { .. }
        ),
        "other IPs unaffected"
    );
    assert!(
        matches!(
            f.evaluate(&r.view(), now + Duration::from_secs(61)),
            Verdict::Allow { .. }
        ),
        "next window"
    );
}

#[test]
fn rate_based_scope_down_and_combined_keys() {
    let f = rate_fw(", key = [\"ip\", { header = \"x-tenant\" }], scope_down = { string_match = { field = \"path\", search = \"/api\", position = \"starts_with\" } }");
    let now = Instant::now();
    for _ in 0..20 {
        assert!(
            matches!(
                f.evaluate(&req("/static").h("x-tenant", "a").view(), now),
                Verdict::Allow { .. }
            ),
            "out of scope"
        );
        assert!(
            matches!(f.evaluate(&req("/api").view(), now), Verdict::Allow { .. }),
            "missing key part: not counted"
        );
    }
    for _ in 0..10 {
        assert!(matches!(
            f.evaluate(&req("/api").h("x-tenant", "a").view(), now),
            Verdict::Allow { .. }
        ));
    }
    assert!(blocked_by(&f.evaluate(&req("/api").h("x-tenant", "a").view(), now)).is_some());
    assert!(
        matches!(
            f.evaluate(&req("/api").h("x-tenant", "b").view(), now),
            Verdict::Allow { .. }
        ),
        "other tenant"
    );
    // Key parts are length-delimited: a long header hashed, still distinct.
    let long = "x".repeat(5000);
    for _ in 0..10 {
        assert!(matches!(
            f.evaluate(&req("/api").h("x-tenant", &long).view(), now),
            Verdict::Allow { .. }
        ));
    }
    assert!(blocked_by(&f.evaluate(&req("/api").h("x-tenant", &long).view(), now)).is_some());
}

#[test]
fn rate_key_variants_compile_and_count() {
    let f = rate_fw(
        ", key = [\"forwarded_ip\", \"api_key\", \"path\", \"method\", { query_arg = \"u\" }]",
    );
    let now = Instant::now();
    let mut r = req("/x?u=1");
    r.fwd = Some("192.0.2.1".parse().unwrap());
    r.api_key = Some("k".into());
    for _ in 0..10 {
        assert!(matches!(f.evaluate(&r.view(), now), Verdict::Allow { .. }));
    }
    assert!(blocked_by(&f.evaluate(&r.view(), now)).is_some());
}

#[test]
fn header_shape_matches_the_order_of_names_and_keys_a_rate() {
    let tool = req("/")
        .h("host", "a")
        .h("user-agent", "Firefox")
        .h("connection", "close");
    let shape = Shape::of(&tool.headers);
    let f = one(&format!(
        "{{ string_match = {{ field = \"header_shape\", search = \"{}\", position = \"exactly\" }} }}",
        shape.as_str()
    ));
    assert!(hits(&f, &tool));
    // Other values, same names in the same order: the same client software.
    let rotated = req("/x")
        .h("host", "b")
        .h("user-agent", "Safari")
        .h("connection", "keep-alive");
    assert!(hits(&f, &rotated));
    let browser = req("/")
        .h("host", "a")
        .h("user-agent", "Firefox")
        .h("accept", "*/*")
        .h("connection", "close");
    assert!(!hits(&f, &browser));
    let reordered = req("/")
        .h("user-agent", "Firefox")
        .h("host", "a")
        .h("connection", "close");
    assert!(!hits(&f, &reordered));
    // As a rate key: one counter per shape.
    let f = rate_fw(", key = [\"header_shape\"]");
    let now = Instant::now();
    for _ in 0..10 {
        assert!(matches!(
            f.evaluate(&tool.view(), now),
            Verdict::Allow { .. }
        ));
    }
    assert!(blocked_by(&f.evaluate(&rotated.view(), now)).is_some());
    assert!(matches!(
        f.evaluate(&browser.view(), now),
        Verdict::Allow { .. }
    ));
}

#[test]
fn path_shape_matches_identifiers_and_arguments_of_any_value_and_keys_a_rate() {
    let f = one(
        "{ string_match = { field = \"path_shape\", search = \"/items/*?id&page\", position = \"exactly\" } }",
    );
    assert!(hits(&f, &req("/items/12?id=1&page=2")));
    assert!(hits(&f, &req("/items/9a?id=&page=x")));
    assert!(!hits(&f, &req("/items/list?id=1&page=2")));
    assert!(!hits(&f, &req("/items/12?page=2&id=1")));
    assert!(!hits(&f, &req("/items/12")));
    let f = rate_fw(", key = [\"path_shape\"]");
    let now = Instant::now();
    for i in 0..10 {
        let r = req(&format!("/p/{i}"));
        assert!(matches!(f.evaluate(&r.view(), now), Verdict::Allow { .. }));
    }
    assert!(blocked_by(&f.evaluate(&req("/p/99").view(), now)).is_some());
    assert!(matches!(
        f.evaluate(&req("/q/1").view(), now),
        Verdict::Allow { .. }
    ));
}

#[test]
fn bans_are_checked_before_rules() {
    let f = fw(r#"
[[rules]]
name = "allow-all"
priority = 2
action = "allow"
statement = { string_match = { field = "path", search = "/" } }

[[rules]]
name = "no-admin"
priority = 1
action = "block"
ban = { after = 3, within = "1m", duration = "10m" }
statement = { string_match = { field = "path", search = "/admin", position = "starts_with" } }
"#);
    let t0 = Instant::now();
    for i in 0..3 {
        assert_eq!(
            blocked_by(&f.evaluate(&req("/admin").view(), t0 + Duration::from_secs(i))),
            Some("no-admin")
        );
    }
    // Banned: even an otherwise allowed request is blocked, with retry-after.
    match f.evaluate(&req("/ok").view(), t0 + Duration::from_secs(5)) {
        Verdict::Block {
            rule, retry_after, ..
        } => {
            assert_eq!(&*rule, "no-admin");
            assert!(retry_after
                .is_some_and(|d| d <= Duration::from_secs(600) && d > Duration::from_secs(500)));
        }
        v => panic!("{v:?}"),
    }
    assert!(
        matches!(
            f.evaluate(&req("/ok").ip("203.0.113.1").view(), t0),
            Verdict::Allow { .. }
        ),
        "others unaffected"
    );
    assert!(
        matches!(
            f.evaluate(&req("/ok").view(), t0 + Duration::from_secs(700)),
            Verdict::Allow { .. }
        ),
        "ban expires"
    );
    let c = f.counters();
    assert_eq!((c[0].blocked, c[0].banned), (4, 1));
}

#[test]
fn need_body_resume_never_double_counts() {
    let f = fw(r#"
body_inspection_bytes = 16

[[rules]]
name = "rate"
priority = 1
action = "block"
labels = ["seen"]
statement = { rate = { limit = 1, window = "1m" } }

[[rules]]
name = "header-only"
priority = 2
action = "count"
labels = ["h"]
statement = { string_match = { field = "method", search = "POST" } }

[[rules]]
name = "body"
priority = 3
action = "block"
statement = { and = [ { string_match = { field = "body", search = "evil" } }, { label = "h" } ] }
"#);
    assert_eq!(f.body_inspection_bytes(), Some(16));
    let now = Instant::now();
    let r = req("/").method("POST").body(None);
    let cont = match f.evaluate(&r.view(), now) {
        Verdict::NeedBody(c) => c,
        v => panic!("{v:?}"),
    };
    let with_body = req("/").method("POST").body(Some(b"0123456789abcdefevil"));
    // "evil" lies beyond the 16 inspected bytes: allowed.
    assert!(matches!(
        f.resume(cont, &with_body.view(), now),
        Verdict::Allow { .. }
    ));
    let c = f.counters();
    assert_eq!(c[0].evaluated, 1, "rate rule evaluated once");
    assert_eq!(c[1].evaluated, 1);
    // Rate limit 1: a second request (first was counted once) is blocked.
    let r2 = req("/").method("POST").body(None);
    assert_eq!(blocked_by(&f.evaluate(&r2.view(), now)), Some("rate"));

    // A GET is decided without the body (the and's label part fails first).
    let f2 = fw("[[rules]]\nname = \"h\"\npriority = 1\naction = \"count\"\nlabels = [\"h\"]\nstatement = { string_match = { field = \"method\", search = \"POST\" } }\n[[rules]]\nname = \"b\"\npriority = 2\naction = \"block\"\nstatement = { and = [ { label = \"h\" }, { xss = { field = \"body\" } } ] }\n");
    assert!(matches!(
        f2.evaluate(&req("/").body(None).view(), now),
        Verdict::Allow { .. }
    ));
    let cont = match f2.evaluate(&req("/").method("POST").body(None).view(), now) {
        Verdict::NeedBody(c) => c,
        v => panic!("{v:?}"),
    };
    assert_eq!(
        blocked_by(
            &f2.resume(
                cont,
                &req("/")
                    .method("POST")
                    .body(Some(b"<script>alert(1)</script>"))
                    .view(),
                now
            )
        ),
        Some("b")
    );
    assert_eq!(
        f2.counters()[0].evaluated,
        2,
        "label rule not re-run on resume"
    );

    // A continuation from another firewall starts over; a missing body counts as empty.
    let cont = match f2.evaluate(&req("/").method("POST").body(None).view(), now) {
        Verdict::NeedBody(c) => c,
        v => panic!("{v:?}"),
    };
    assert!(matches!(
        f.resume(cont, &req("/").body(None).view(), now),
        Verdict::Allow { .. } | Verdict::Block { .. }
    ));
    assert_eq!(fw("").body_inspection_bytes(), None);
}

#[test]
fn compile_errors_name_key_paths() {
    let e = compile_err(
        r#"
body_inspection_bytes = 100000
[ip_sets]
bad = ["1.2.3.4", "not-an-ip"]

[[rules]]
name = "a"
priority = 1
action = "allow"
response = { status = 403 }
statement = { regex = { field = "path", pattern = "(unclosed" } }

[[rules]]
name = "a"
priority = 1
action = "count"
ban = { after = 0, within = "1m", duration = "1m" }
statement = { and = [ { label = "never-added" }, { ip_set = { name = "nope" } }, { rate = { limit = 1, window = 1 } } ] }

[[rules]]
name = "c"
priority = 3
action = "block"
response = { status = 700, headers = { content-length = "1" } }
statement = { rate = { limit = 0, window = "2h", key = [] } }
"#,
    );
    let paths: Vec<&str> = e.problems.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "firewall.body_inspection_bytes",
        "firewall.ip_sets.bad[1]",
        "firewall.rules[0].response",
        "firewall.rules[0].statement.regex.pattern",
        "firewall.rules[1].name",
        "firewall.rules[1].priority",
        "firewall.rules[1].ban",
        "firewall.rules[1].ban.after",
        "firewall.rules[1].statement.and[0].label",
        "firewall.rules[1].statement.and[1].ip_set.name",
        "firewall.rules[1].statement.and[2].rate",
        "firewall.rules[2].response.status",
        "firewall.rules[2].statement.rate.limit",
        "firewall.rules[2].statement.rate.window",
        "firewall.rules[2].statement.rate.key",
    ] {
        assert!(paths.contains(&want), "missing {want} in\n{e}");
    }
    assert_eq!(e.to_string().lines().count(), e.problems.len());
    // Unknown keys are serde errors, not silently ignored.
    assert!(toml::from_str::<FirewallConfig>(
        "[[rules]]\nname=\"a\"\npriority=1\naction=\"block\"\nstatment={}\n"
    )
    .is_err());
    assert!(toml::from_str::<FirewallConfig>("[[rules]]\nname=\"a\"\npriority=1\naction=\"block\"\nstatement={ regex = { field = \"path\", pattern = \"x\", typo = 1 } }\n").is_err());
}

#[test]
fn hostile_configs_are_bounded() {
    // Nesting: 12 nested `not`s exceed MAX_DEPTH.
    let mut s = StatementConfig::StringMatch(StringMatchConfig {
        field: FieldConfig::Path,
        search: "x".into(),
        position: PositionConfig::Contains,
        transforms: vec![],
    });
    for _ in 0..12 {
        s = StatementConfig::Not(Box::new(s));
    }
    let rule = |i: usize, st: StatementConfig| RuleConfig {
        name: format!("r{i}"),
        priority: i as u32,
        action: ActionKind::Block,
        dry_run: false,
        response: None,
        labels: vec![],
        ban: None,
        statement: st,
    };
    let cfg = FirewallConfig {
        rules: vec![rule(0, s.clone())],
        ..Default::default()
    };
    let e = Firewall::compile(&cfg).unwrap_err();
    assert!(e.to_string().contains("deeper than 10"), "{e}");
    // Deep JSON nesting is refused by the parser (beyond its recursion limit)
    // or by the compiler (beyond MAX_DEPTH), and never overflows the stack.
    let nested = |levels: usize| {
        let deep = format!(
            "{}{{\"string_match\":{{\"field\":\"path\",\"search\":\"x\"}}}}{}",
            "{\"not\":".repeat(levels),
            "}".repeat(levels)
        );
        format!("{{\"rules\":[{{\"name\":\"r\",\"priority\":1,\"action\":\"block\",\"statement\":{deep}}}]}}")
    };
    assert!(serde_json::from_str::<FirewallConfig>(&nested(5000)).is_err());
    let cfg: FirewallConfig = serde_json::from_str(&nested(50)).expect("within the parser's limit");
    let e = Firewall::compile(&cfg).expect_err("deeper than MAX_DEPTH");
    assert!(e.to_string().contains("deeper than 10"), "{e}");
    // Rule count.
    let many: Vec<RuleConfig> = (0..=MAX_RULES)
        .map(|i| {
            rule(
                i,
                StatementConfig::Sqli(DetectConfig {
                    field: FieldConfig::Path,
                    transforms: vec![],
                }),
            )
        })
        .collect();
    let e = Firewall::compile(&FirewallConfig {
        rules: many,
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.problems.iter().any(|(p, _)| p == "firewall.rules"));
    // Regex compiled size: a huge counted repetition is refused.
    let e = Firewall::compile(&FirewallConfig {
        rules: vec![rule(
            0,
            StatementConfig::Regex(RegexMatchConfig {
                field: FieldConfig::Path,
                pattern: "(\\w{100}){100}".into(),
                transforms: vec![],
            }),
        )],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        e.problems[0].0, "firewall.rules[0].statement.regex.pattern",
        "{e}"
    );
    // Too many transforms.
    let e = Firewall::compile(&FirewallConfig {
        rules: vec![rule(
            0,
            StatementConfig::Xss(DetectConfig {
                field: FieldConfig::Path,
                transforms: vec![TransformConfig::Lowercase; 11],
            }),
        )],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(
        e.problems[0].0,
        "firewall.rules[0].statement.xss.transforms"
    );
}

#[test]
fn hostile_requests() {
    let f = fw(r#"
[[rules]]
name = "r"
priority = 1
action = "block"
statement = { or = [
  { sqli = { field = { header = "x-a" }, transforms = ["url_decode", "html_entity_decode", "lowercase", "compress_whitespace"] } },
  { xss = { field = { cookie = "c" } } },
  { regex = { field = "body", pattern = "(a+)+$" } },
  { string_match = { field = { query_arg = "q" }, search = "zzz", transforms = ["url_decode"] } },
] }
"#);
    // 1 MiB header of junk, invalid UTF-8 in the header and body, ReDoS-shaped body.
    let big = "%".repeat(1 << 20);
    let mut r = req("/?q%00=1&&&=&q=%zz")
        .h("x-a", &big)
        .h("cookie", ";;;=;c");
    r.headers.append(
        "x-a",
        http::HeaderValue::from_bytes(b"\xff\xfe\x80").unwrap(),
    );
    r.body = Some(
        [b'a'; 60_000]
            .iter()
            .copied()
            .chain([0xffu8, b'!'])
            .collect(),
    );
    let t = Instant::now();
    let _ = eval(&f, &r);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "linear time even in debug builds"
    );
}

#[test]
fn firewall_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Firewall>();
    assert_send_sync::<Verdict>();
}

#[test]
fn durations_parse_and_print() {
    for (s, d) in [
        ("250ms", 250),
        ("1s", 1000),
        ("10m", 600_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("1m30s", 90_000),
        ("1.5s", 1500),
    ] {
        assert_eq!(
            DurationConfig::parse(s),
            Ok(DurationConfig(Duration::from_millis(d)))
        );
    }
    for bad in ["", "s", "10", "10x", "-1s", "99999999999999999999s"] {
        assert!(DurationConfig::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(DurationConfig(Duration::from_secs(600)).to_string(), "10m");
    assert_eq!(
        DurationConfig(Duration::from_millis(1500)).to_string(),
        "1500ms"
    );
    let b: BanConfig = toml::from_str("after = 3\nwithin = 60\nduration = \"10m\"").unwrap();
    assert_eq!(b.within.0, Duration::from_secs(60));
}

#[test]
fn documented_example_compiles_and_behaves() {
    #[derive(serde::Deserialize)]
    struct Root {
        firewall: FirewallConfig,
    }
    let root: Root = toml::from_str(include_str!("testdata/example.toml")).unwrap();
    let f = Firewall::compile(&root.firewall).unwrap();
    assert_eq!(f.body_inspection_bytes(), Some(8192));
    assert_eq!(f.counters().len(), 9);
    assert_eq!(blocked_by(&eval(&f, &req("/ADMIN/x"))), Some("admin-path"));
    assert_eq!(
        blocked_by(&eval(&f, &req("/").method("POST"))),
        Some("writes-need-token")
    );
    assert!(matches!(
        eval(&f, &req("/").method("POST").h("x-csrf-token", "t")),
        Verdict::Allow { .. }
    ));
    assert_eq!(
        blocked_by(&eval(&f, &req("/").h("user-agent", "Nikto"))),
        Some("block-bots")
    );
    assert_eq!(
        blocked_by(&eval(&f, &req("/?q=1%27%20OR%201%3D1--"))),
        Some("sqli")
    );
}

#[test]
fn a_broken_rule_adds_no_labels_so_its_whole_chain_is_reported_at_once() {
    // rule 0 matches a label nothing adds; each later rule matches the label
    // of the one before. One compile must name every rule of the chain (the
    // WAF importer drops them all in one round instead of one per round).
    let mut src = String::from(
        "[[rules]]\nname = \"r0\"\npriority = 0\naction = \"count\"\nlabels = [\"l0\"]\nstatement = { label = \"nobody-adds-this\" }\n",
    );
    for i in 1..50 {
        src.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\npriority = {i}\naction = \"count\"\nlabels = [\"l{i}\"]\nstatement = {{ label = \"l{}\" }}\n",
            i - 1
        ));
    }
    let e = compile_err(&src);
    for i in 0..50 {
        let path = format!("firewall.rules[{i}].statement");
        assert!(
            e.problems.iter().any(|(p, _)| p.starts_with(&path)),
            "rule {i} not reported: {:?}",
            e.problems
        );
    }
}
