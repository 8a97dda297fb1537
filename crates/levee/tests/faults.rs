//! Faults end to end: timeouts, crashes, init failures with backoff, function
//! errors, oversized responses and requests, and the memory limit.

mod support;

use support::{
    empty_code, get, hello_function, processes_of_uid, python, request, scratch, workspace, Server,
};

fn one(name: &str, extra: &str) -> Server {
    Server::start(
        name,
        &format!(
            "{}\n[[routes]]\nroute = \"ANY /f\"\nfunction = \"f\"\n",
            hello_function("f", extra)
        ),
    )
}

#[test]
fn timeout_kills_the_process_group_answers_504_and_a_fresh_instance_follows() {
    let s = one("timeout", "timeout = \"700ms\"");
    get(s.edge, "/f?action=spawn");
    let first = get(s.edge, "/f?action=pid").json();
    let uid = first["uid"].as_u64().unwrap();
    assert!(
        processes_of_uid(uid).len() >= 2,
        "the function and its child run until the timeout"
    );

    let r = get(s.edge, "/f?action=sleep&ms=5000");
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.json()["errorType"], "Sandbox.Timedout");
    assert_eq!(
        r.json()["errorMessage"],
        "Task timed out after 0.70 seconds"
    );
    assert!(
        s.wait_until(std::time::Duration::from_secs(5), || processes_of_uid(uid)
            .is_empty()),
        "instance processes survived the timeout"
    );
    let next = get(s.edge, "/f?action=pid");
    assert_eq!(next.status, 200);
    assert_ne!(next.json()["instance"], first["instance"]);
}

#[test]
fn crash_mid_invocation_is_502_exit_error() {
    let s = one("crash", "");
    let r = get(s.edge, "/f?action=crash");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["errorType"], "Runtime.ExitError");
    assert!(
        r.json()["errorMessage"]
            .as_str()
            .unwrap()
            .contains("exit status: 3"),
        "{}",
        r.text()
    );
    assert_eq!(
        get(s.edge, "/f?action=pid").status,
        200,
        "a new instance serves next"
    );
}

#[test]
fn function_error_is_502_with_type_and_message_and_keeps_the_instance() {
    let s = one("fnerror", "");
    let r = get(s.edge, "/f?action=error");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["errorMessage"], "something went wrong on purpose");
    assert!(r.json()["errorType"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(get(s.edge, "/f?action=pid").status, 200);
    assert_eq!(s.instances("f")["starts"], 1);
}

#[test]
fn response_over_6mb_is_502_and_the_instance_is_reused() {
    let s = one("bigresp", "");
    let r = get(s.edge, "/f?action=big&bytes=7000000");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["errorType"], "Function.ResponseSizeTooLarge");
    let ok = get(s.edge, "/f?action=big&bytes=5000000");
    assert_eq!(ok.status, 200, "5 MB is under the limit");
    assert_eq!(ok.body.len(), 5_000_000);
    assert_eq!(s.instances("f")["starts"], 1, "instance reused");
    // Far over: Levee stops reading at 4 × the limit and the runtime sees its
    // connection cut. Whether it exits or carries on, callers never notice.
    for _ in 0..3 {
        let r = get(s.edge, "/f?action=big&bytes=50000000");
        assert_eq!(r.json()["errorType"], "Function.ResponseSizeTooLarge");
        let next = get(s.edge, "/f?action=pid");
        assert_eq!(next.status, 200, "{}", next.text());
    }
}

/// A runtime written against the raw Runtime API that answers, and after a
/// request whose query says `die` exits 0.5 s later without asking for more
/// work: an instance that dies while idle, with no race to lose.
const DIES_WHEN_TOLD: &str = r#"
import json, os, sys, time, urllib.request
base = "http://%s/2018-06-01/runtime/invocation" % os.environ["AWS_LAMBDA_RUNTIME_API"]
while True:
    with urllib.request.urlopen(base + "/next") as r:
        rid = r.headers["Lambda-Runtime-Aws-Request-Id"]
        event = json.loads(r.read())
    body = json.dumps({"statusCode": 200, "body": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]}).encode()
    urllib.request.urlopen(urllib.request.Request(base + "/%s/response" % rid, data=body)).read()
    if "die" in event.get("rawQueryString", ""):
        time.sleep(0.5)
        sys.exit(3)
"#;

#[test]
fn an_instance_that_dies_idle_costs_no_caller_its_request() {
    let code = scratch("dies-idle");
    std::fs::write(code.join("runtime.py"), DIES_WHEN_TOLD).unwrap();
    let s = Server::start(
        "dies-idle",
        &format!(
            "[functions.f]\ncommand = [\"{}\", \"runtime.py\"]\ncode = \"{}\"\n\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
            python(),
            code.display()
        ),
    );
    for _ in 0..3 {
        let first = get(s.edge, "/f?die");
        assert_eq!(first.status, 200, "{}", first.text());
        // Sent while the instance is idle and alive; it dies holding this
        // request without having taken it.
        let next = get(s.edge, "/f");
        assert_eq!(next.status, 200, "{}", next.text());
        assert_ne!(next.text(), first.text(), "a fresh instance answered");
    }
    assert_eq!(
        s.instances("f")["invocations"],
        6,
        "each request counted once"
    );
}

#[test]
fn request_body_over_the_route_limit_is_413_before_buffering() {
    let s = Server::start(
        "body",
        &format!(
            "{}\n[[routes]]\nroute = \"POST /f\"\nfunction = \"f\"\nmax_body = \"1KB\"\n",
            hello_function("f", "")
        ),
    );
    let r = request(s.edge, "POST", "/f", &[], &[b'a'; 2000]);
    assert_eq!(r.status, 413);
    // A declared length over the limit is refused without sending the body.
    let r = request(s.edge, "POST", "/f", &[("content-length", "50000000")], b"");
    assert_eq!(r.status, 413);
    // Chunked bodies without a length are cut at the limit too.
    let chunk = format!("{:x}\r\n{}\r\n0\r\n\r\n", 1500, "b".repeat(1500));
    let r = request(
        s.edge,
        "POST",
        "/f",
        &[("transfer-encoding", "chunked")],
        chunk.as_bytes(),
    );
    assert_eq!(r.status, 413);
    assert_eq!(request(s.edge, "POST", "/f", &[], b"small").status, 200);
    assert_eq!(
        s.instances("f")["starts"],
        1,
        "only the small request invoked"
    );
}

#[test]
fn init_failures_are_502_and_back_off_instead_of_spinning() {
    let s = Server::start(
        "initfail",
        &format!(
            "[functions.f]\ncommand = [\"/bin/false\"]\ncode = \"{}\"\n\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
            empty_code().display()
        ),
    );
    for _ in 0..20 {
        let r = get(s.edge, "/f");
        assert_eq!(r.status, 502);
        assert_eq!(r.json()["errorType"], "Runtime.ExitError", "{}", r.text());
    }
    let starts = s.instances("f")["starts"].as_u64().unwrap();
    assert!(
        starts <= 3,
        "20 requests must not start 20 processes: {starts}"
    );
}

#[test]
fn missing_executable_is_a_clear_init_error() {
    let s = Server::start(
        "noexec",
        &format!(
            "[functions.f]\ncommand = [\"/nonexistent/bootstrap\"]\ncode = \"{}\"\n\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
            empty_code().display()
        ),
    );
    let r = get(s.edge, "/f");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["errorType"], "Runtime.InvalidEntrypoint");
}

#[test]
fn python_init_error_reports_its_type() {
    let s = Server::start(
        "pyinit",
        &format!(
            "[functions.f]\ncommand = [\"{}\", \"-m\", \"awslambdaric\", \"missing_module.handler\"]\ncode = \"{}\"\n\n[[routes]]\nroute = \"GET /f\"\nfunction = \"f\"\n",
            python(),
            workspace().join("examples/python").display()
        ),
    );
    let r = get(s.edge, "/f");
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json()["errorType"],
        "Runtime.ImportModuleError",
        "{}",
        r.text()
    );
}

#[test]
fn instance_over_its_memory_is_killed_with_out_of_memory() {
    let s = one("oom", "memory_mb = 128\ntimeout = \"20s\"");
    let r = get(s.edge, "/f?action=alloc&mb=400");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["errorType"], "Runtime.OutOfMemory", "{}", r.text());
    let ok = get(s.edge, "/f?action=alloc&mb=16");
    assert_eq!(ok.status, 200, "a fresh instance serves within its memory");
}
