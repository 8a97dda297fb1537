//! hello-fn: an unmodified `lambda_runtime` function, used as Levee's example
//! and as its test and benchmark fixture.
//!
//! Through an HTTP route it greets `/hello/{name}` with `$GREETING`. Any other
//! event is echoed back, unless it names an `action` (as a top-level field or
//! a query parameter) that exercises one platform behaviour:
//! `sleep` (`ms`), `crash` (exit 3, after `ms`), `error` (after `ms`),
//! `header` (`name`, `value`), `big` (`bytes`), `alloc` (`mb`), `env`, `log`,
//! `pid` (with `uid` and `instance`, the log stream), `status` (`code`), `spawn` (a child that outlives the invocation
//! unless the platform kills the process group).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (event, ctx) = event.into_parts();
    let arg = |k: &str| -> Option<String> {
        event
            .get("queryStringParameters")
            .and_then(|q| q.get(k))
            .or_else(|| event.get(k))
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
    };
    let num = |k: &str, default: u64| arg(k).and_then(|v| v.parse().ok()).unwrap_or(default);
    match arg("action").as_deref() {
        Some("sleep") => {
            tokio::time::sleep(std::time::Duration::from_millis(num("ms", 1000))).await;
            Ok(json!({ "slept_ms": num("ms", 1000) }))
        }
        Some("crash") => {
            tokio::time::sleep(std::time::Duration::from_millis(num("ms", 0))).await;
            std::process::exit(3)
        }
        Some("error") => {
            tokio::time::sleep(std::time::Duration::from_millis(num("ms", 0))).await;
            Err("something went wrong on purpose".into())
        }
        Some("big") => Ok(Value::String("x".repeat(num("bytes", 7_000_000) as usize))),
        Some("alloc") => {
            let mut v: Vec<u8> = vec![0; (num("mb", 512) * 1024 * 1024) as usize];
            // Touch every page so the memory is really resident.
            for i in (0..v.len()).step_by(4096) {
                v[i] = 1;
            }
            Ok(json!({ "allocated_mb": v.len() / 1024 / 1024 }))
        }
        Some("env") => Ok(json!(
            std::env::vars().collect::<std::collections::BTreeMap<_, _>>()
        )),
        Some("log") => {
            println!("log line for {}", ctx.request_id);
            eprintln!("stderr line");
            Ok(json!({ "logged": true }))
        }
        Some("pid") => {
            use std::os::unix::fs::MetadataExt;
            // `/proc/self` belongs to the process's uid: no libc needed.
            let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
            Ok(json!({
                "pid": std::process::id(),
                "uid": uid,
                "instance": std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").ok(),
                "request_id": ctx.request_id,
                "deadline": ctx.deadline,
                "arn": ctx.invoked_function_arn,
            }))
        }
        Some("status") => Ok(json!({
            "statusCode": num("code", 201),
            "headers": { "content-type": "text/plain", "x-custom": "yes" },
            "cookies": ["a=1; Path=/", "b=2"],
            "body": "custom status",
        })),
        Some("header") => {
            let (name, value) = (
                arg("name").unwrap_or_default(),
                arg("value").unwrap_or_default(),
            );
            Ok(json!({ "statusCode": 200, "headers": { name: value }, "body": "with a header" }))
        }
        Some("spawn") => {
            let child = std::process::Command::new("sleep").arg("300").spawn()?;
            Ok(json!({ "child_pid": child.id() }))
        }
        _ => match event
            .pointer("/pathParameters/name")
            .and_then(Value::as_str)
        {
            Some(name) => {
                let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
                Ok(json!({
                    "statusCode": 200,
                    "headers": { "content-type": "text/plain; charset=utf-8" },
                    "body": format!("{greeting}, {name}!"),
                }))
            }
            None => Ok(event),
        },
    }
}
