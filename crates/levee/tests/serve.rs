//! `levee serve` end to end: routes, payload 2.0 events, response mapping,
//! the instance environment and function logs, with real runtimes.

mod support;

use support::{get, hello_function, python, request, workspace, Server};

fn hello_server(name: &str) -> Server {
    Server::start(
        name,
        &format!(
            "{}\n[[routes]]\nroute = \"GET /hello/{{name}}\"\nfunction = \"hello\"\n\n[[routes]]\nroute = \"ANY /echo/{{proxy+}}\"\nfunction = \"hello\"\n",
            hello_function("hello", "env = { GREETING = \"hi\" }")
        ),
    )
}

#[test]
fn rust_function_answers_on_its_route() {
    let s = hello_server("hello");
    let r = get(s.edge, "/hello/world");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hi, world!");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(r.header("apigw-requestid").is_some_and(|id| id.len() == 36));
}

#[test]
fn unknown_routes_and_methods_are_404_without_an_invocation() {
    let s = hello_server("notfound");
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/hello/world"),
        ("GET", "/hello/a/b"),
    ] {
        let r = request(s.edge, method, path, &[], b"");
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.json()["message"], "Not Found");
    }
    assert_eq!(
        s.instances("hello")["starts"],
        0,
        "no instance was started for a 404"
    );
}

#[test]
fn the_event_is_payload_2_0() {
    let s = hello_server("event");
    let r = request(
        s.edge,
        "POST",
        "/echo/a/b%20c?x=1&y=2&x=3",
        &[
            ("cookie", "c1=v1; c2=v2"),
            ("x-multi", "one"),
            ("x-multi", "two"),
            ("content-type", "application/octet-stream"),
            ("user-agent", "levee-test"),
        ],
        &[0, 159, 146, 150],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.json();
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "ANY /echo/{proxy+}");
    assert_eq!(e["rawPath"], "/echo/a/b%20c");
    assert_eq!(e["rawQueryString"], "x=1&y=2&x=3");
    assert_eq!(e["queryStringParameters"]["x"], "1,3");
    assert_eq!(e["pathParameters"]["proxy"], "a/b c");
    assert_eq!(e["cookies"], serde_json::json!(["c1=v1", "c2=v2"]));
    assert_eq!(e["headers"]["x-multi"], "one,two");
    assert!(e["headers"].get("cookie").is_none());
    assert_eq!(e["isBase64Encoded"], true);
    assert_eq!(e["body"], "AJ+Slg==");
    let ctx = &e["requestContext"];
    assert_eq!(ctx["http"]["method"], "POST");
    assert_eq!(ctx["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(ctx["http"]["userAgent"], "levee-test");
    assert_eq!(ctx["requestId"], r.header("apigw-requestid").unwrap());
    assert!(ctx["timeEpoch"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(ctx["time"].as_str().unwrap().ends_with(" +0000"));

    let text = request(
        s.edge,
        "PUT",
        "/echo/t",
        &[("content-type", "application/json")],
        br#"{"k":"v"}"#,
    );
    assert_eq!(text.json()["body"], r#"{"k":"v"}"#);
    assert_eq!(text.json()["isBase64Encoded"], false);
}

#[test]
fn responses_follow_the_2_0_mapping_rules() {
    let s = hello_server("mapping");
    let r = get(s.edge, "/echo/x?action=status&code=418");
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "custom status");
    assert_eq!(r.header("x-custom"), Some("yes"));
    assert_eq!(r.headers_named("set-cookie"), vec!["a=1; Path=/", "b=2"]);

    // A bare JSON value (no statusCode) is a 200 application/json body.
    let r = get(s.edge, "/echo/x?action=pid");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.json()["pid"].as_u64().is_some());
}

/// Issue 24 item 4: a 1xx is an interim status, never a final answer. A
/// function that returns one gets the same 502 as 0 or 600, as JSON with the
/// request id, over HTTP/1.1 and HTTP/2, and the metrics count the 502 the
/// client got.
#[test]
fn interim_statuses_from_a_function_are_an_invalid_response() {
    let s = hello_server("interim");
    for code in [100, 101, 103, 199] {
        let r = get(s.edge, &format!("/echo/x?action=status&code={code}"));
        assert_eq!(r.status, 502, "{code}: {}", r.text());
        assert_eq!(r.json()["errorType"], "Function.InvalidResponse", "{code}");
        assert!(r.header("apigw-requestid").is_some(), "{code}");
        assert!(r.header("set-cookie").is_none(), "{code}");

        let out = std::process::Command::new("curl")
            .args(["-s", "--http2-prior-knowledge", "--max-time", "30"])
            .args(["-w", "\n%{http_version} %{http_code}"])
            .arg(format!(
                "http://{}/echo/x?action=status&code={code}",
                s.edge
            ))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').expect("curl output");
        assert_eq!(status, "2 502", "{code}: {text}");
        assert!(body.contains("Function.InvalidResponse"), "{code}: {body}");
    }
    let metrics = s.admin("GET", "/metrics", b"").text();
    assert!(
        metrics.contains(r#"levee_requests_total{route="ANY /echo/{proxy+}",status="502""#),
        "{metrics}"
    );
    assert!(!metrics.contains(r#"status="1"#), "{metrics}");
}

#[test]
fn instances_get_the_lambda_environment_and_nothing_of_the_platforms() {
    let s = Server::start_with_env(
        "env",
        &format!(
            "{}\n[[routes]]\nroute = \"GET /env\"\nfunction = \"hello\"\n",
            hello_function("hello", "env = { GREETING = \"hi\" }\nmemory_mb = 256")
        ),
        &[("LEVEE_TEST_SECRET", "do-not-leak")],
    );
    let env = get(s.edge, "/env?action=env").json();
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "hello");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["GREETING"], "hi");
    assert_eq!(env["AWS_LAMBDA_INITIALIZATION_TYPE"], "on-demand");
    // Lambda names log streams `YYYY/MM/DD/[$LATEST]<instance>`, UTC.
    let stream = env["AWS_LAMBDA_LOG_STREAM_NAME"].as_str().unwrap();
    let (day, instance) = stream.split_at(10);
    let digits: Vec<&str> = day.split('/').collect();
    assert!(
        digits.iter().map(|d| d.len()).eq([4, 2, 2])
            && digits.iter().all(|d| d.bytes().all(|b| b.is_ascii_digit())),
        "{stream}"
    );
    assert!(
        instance.starts_with("/[$LATEST]") && instance.len() > 10,
        "{stream}"
    );
    assert_eq!(
        env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001",
        "inside its own network, as on Lambda"
    );
    assert!(
        env.get("LEVEE_TEST_SECRET").is_none(),
        "platform env leaked: {env}"
    );
    assert!(env.get("LEVEE_LOG").is_none(), "platform env leaked: {env}");
    assert!(env["_X_AMZN_TRACE_ID"]
        .as_str()
        .unwrap()
        .starts_with("Root=1-"));

    assert_eq!(env["LAMBDA_TASK_ROOT"], "/var/task");
    assert_eq!(env["TMPDIR"], "/tmp");
    assert_eq!(env["HOME"], "/tmp");
}

#[test]
fn function_logs_carry_the_function_and_request_id() {
    let s = hello_server("logs");
    let r = get(s.edge, "/echo/x?action=log");
    assert_eq!(r.status, 200);
    let id = r.header("apigw-requestid").unwrap().to_string();
    let found = s.wait_until(std::time::Duration::from_secs(5), || {
        let log = s.stderr();
        log.lines().any(|l| {
            l.contains(&format!("log line for {id}"))
                && l.contains("function=\"hello\"")
                && l.contains(&id)
        }) && log
            .lines()
            .any(|l| l.contains("stderr line") && l.contains("stream=\"stderr\""))
    });
    assert!(found, "function log lines missing:\n{}", s.stderr());
}

#[test]
fn python_function_runs_under_awslambdaric() {
    let s = Server::start(
        "python",
        &format!(
            "[functions.py]\ncommand = [\"{}\", \"-m\", \"awslambdaric\", \"app.handler\"]\ncode = \"{}\"\ntimeout = \"10s\"\nenv = {{ GREETING = \"hey\" }}\n\n[[routes]]\nroute = \"ANY /py/{{name}}\"\nfunction = \"py\"\n",
            python(),
            workspace().join("examples/python").display()
        ),
    );
    let r = get(s.edge, "/py/ada");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.stderr());
    assert_eq!(r.json()["message"], "hey, ada!");
    assert_eq!(r.json()["method"], "GET");

    let ctx = get(s.edge, "/py/x?action=context");
    let c = ctx.json();
    assert_eq!(c["request_id"], ctx.header("apigw-requestid").unwrap());
    assert_eq!(c["function_name"], "py");
    assert_eq!(
        c["arn"],
        "arn:aws:lambda:us-east-1:000000000000:function:py"
    );
    let remaining = c["remaining_ms"].as_i64().unwrap();
    assert!(
        remaining > 0 && remaining <= 10_000,
        "deadline honoured: {remaining}"
    );
    assert_eq!(c["cwd"], c["task_root"]);

    let err = get(s.edge, "/py/x?action=error");
    assert_eq!(err.status, 502);
    assert_eq!(err.json()["errorType"], "ValueError");
    assert_eq!(err.json()["errorMessage"], "bad input on purpose");
    // A function error keeps the instance.
    assert_eq!(get(s.edge, "/py/again").status, 200);
    assert_eq!(s.instances("py")["starts"], 1);
}
