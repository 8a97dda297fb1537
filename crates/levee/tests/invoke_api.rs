//! The Lambda Invoke API on the admin listener, driven by an unmodified boto3
//! client (see `tests/python/boto3_invoke.py` for each behaviour checked).

mod support;

use std::process::Command;
use std::time::Duration;

use support::{hello_function, python, workspace, Server};

#[test]
fn boto3_lambda_client_works_unmodified() {
    let s = Server::start(
        "boto3",
        &format!(
            "{}{}[functions.py]\ncommand = [\"{}\", \"-m\", \"awslambdaric\", \"app.handler\"]\ncode = \"{}\"\ntimeout = \"10s\"\n",
            hello_function("hello", "timeout = \"1s\""),
            hello_function("off", "reserved_concurrency = 0"),
            python(),
            workspace().join("examples/python").display()
        ),
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/boto3_invoke.py");
    let out = Command::new(python())
        .arg(&script)
        .arg(format!("http://{}", s.admin))
        .arg(support::ADMIN_TOKEN)
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "boto3 script failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.stderr()
    );
    let event_id = stdout.trim().lines().last().unwrap().to_string();
    assert!(
        s.wait_until(Duration::from_secs(10), || s
            .stderr()
            .contains(&format!("log line for {event_id}"))),
        "the Event invocation {event_id} never ran:\n{}",
        s.stderr()
    );
}

#[test]
fn a_malformed_query_is_a_json_error() {
    let s = Server::start("invokequery", &hello_function("hello", ""));
    let r = s.admin(
        "POST",
        "/2015-03-31/functions/hello/invocations?Qualifier=a&Qualifier=b",
        b"{}",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.header("x-amzn-errortype"),
        Some("InvalidParameterValueException")
    );
    assert!(
        r.json()["message"].as_str().unwrap_or("").contains("query"),
        "{}",
        r.text()
    );
}
