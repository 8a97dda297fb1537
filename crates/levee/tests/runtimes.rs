//! The runtimes a config written for Levee before isolation names, run
//! isolated and unmodified: Python through a bare `python3` found on the
//! server's PATH (a pyenv shim here) under the real awslambdaric, Node.js
//! through `node_modules/.bin/aws-lambda-ric`, and a statically linked Rust
//! binary (the real lambda_runtime).

mod support;

use serde_json::Value;
use support::{get, node_fixture, static_hello_fn, workspace, Server};

fn invoke(s: &Server, function: &str, body: &str) -> Value {
    let r = s.admin(
        "POST",
        &format!("/2015-03-31/functions/{function}/invocations"),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.stderr());
    r.json()
}

#[test]
fn python_found_on_path_runs_under_awslambdaric() {
    let s = Server::start(
        "bare-python",
        &format!(
            "[functions.py]\ncommand = [\"python3\", \"-m\", \"awslambdaric\", \"app.handler\"]\ncode = \"{}\"\ntimeout = \"10s\"\nenv = {{ GREETING = \"hello from Python\" }}\n\n[[routes]]\nroute = \"GET /py/{{name}}\"\nfunction = \"py\"\n",
            workspace().join("examples/python").display()
        ),
    );
    let r = get(s.edge, "/py/levee");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.stderr());
    assert_eq!(r.json()["message"], "hello from Python, levee!");
    let ctx = invoke(&s, "py", r#"{"action": "context"}"#);
    assert_eq!(ctx["task_root"], "/var/task");
    assert_eq!(ctx["cwd"], "/var/task");
}

#[test]
fn node_runs_under_aws_lambda_ric() {
    let code = node_fixture();
    let s = Server::start(
        "node",
        &format!(
            "[functions.node]\ncommand = [\"{}\", \"index.handler\"]\ncode = \"{}\"\ntimeout = \"10s\"\nmemory_mb = 256\n",
            code.join("node_modules/.bin/aws-lambda-ric").display(),
            code.display()
        ),
    );
    let out = invoke(&s, "node", r#"{"hello": "node"}"#);
    assert!(out["node"].as_str().unwrap().starts_with('v'), "{out}");
    assert_eq!(out["echo"]["hello"], "node");
    assert_eq!(out["pid"], 1, "pid 1 of its own namespace: {out}");
    assert!(out["uid"].as_u64().unwrap() >= 200_000, "{out}");
    assert_eq!(out["cwd"], "/var/task");
    assert_eq!(out["taskRoot"], "/var/task");
    assert_eq!(out["runtimeApi"], "127.0.0.1:9001");
    let root: Vec<&str> = out["root"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !root.contains(&"work") && !root.contains(&"home"),
        "{root:?}"
    );
}

#[test]
fn a_static_rust_binary_runs_with_nothing_of_the_host_but_itself() {
    let s = Server::start(
        "static",
        &format!(
            "[functions.s]\ncommand = [\"{}\"]\ncode = \"{}\"\n\n[[routes]]\nroute = \"GET /s/{{name}}\"\nfunction = \"s\"\n",
            static_hello_fn().display(),
            workspace().join("examples/hello/code").display()
        ),
    );
    let r = get(s.edge, "/s/static");
    assert_eq!(r.status, 200, "{}\n{}", r.text(), s.stderr());
    assert_eq!(r.text(), "Hello, static!");
    let me = get(s.edge, "/s/x?action=pid").json();
    assert_eq!(me["pid"], 1);
}
