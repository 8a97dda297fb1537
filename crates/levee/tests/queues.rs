//! Durable queues end to end: the SQS API with an unmodified boto3 client;
//! batches through a real runtime with partial failures and dead-letter
//! redrive; an async route under a flood; every acknowledged message
//! surviving `kill -9`; the CLI.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{hello_function, python, request, workspace, Collector, Server, ADMIN_TOKEN};

fn py_function(name: &str, processed: &Collector, extra: &str) -> String {
    format!(
        "[functions.{name}]\ncommand = [\"{}\", \"-m\", \"awslambdaric\", \"app.handler\"]\ncode = \"{}\"\ntimeout = \"2s\"\nenv = {{ PROCESSED_ADDR = \"{addr}\" }}\nforward = [\"{addr}\"]\n{extra}\n",
        python(),
        workspace().join("examples/python").display(),
        addr = processed.addr
    )
}

/// The bodies `examples/python`'s `sqs_batch` processed, in arrival order
/// (the ones it reported failed are left out).
fn processed_bodies(processed: &Collector) -> Vec<String> {
    let mut lines = processed.lines();
    lines.retain(|l| !l.starts_with("failed:"));
    lines
}

fn queue_count(s: &Server, name: &str) -> u64 {
    let doc = s.admin("GET", "/admin/queues", b"").json();
    doc["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .map(|q| {
            q["approximate_messages"].as_u64().unwrap_or(0) + q["in_flight"].as_u64().unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Runs one of `tests/python`'s SQS client scripts against a fresh server;
/// the script exits non-zero on the first behaviour that differs from SQS's.
fn run_sqs_client(name: &str, script: &str) {
    let s = Server::start(name, &hello_function("f", ""));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new(python())
        .arg(&script)
        .arg(format!("http://{}", s.admin))
        .arg(ADMIN_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.stderr()
    );
}

#[test]
fn query_protocol_clients_send_receive_delete_and_read_errors() {
    run_sqs_client("querysqs", "query_sqs.py");
}

#[test]
fn errors_are_the_ones_aws_answers_word_for_word() {
    run_sqs_client("sqserrors", "boto3_sqs_errors.py");
}

/// The AWS CLI (v1, from PyPI) against the admin listener; its output
/// parsed as JSON, or its exit code and stderr on failure.
fn aws_cli(s: &Server, args: &[&str]) -> Result<serde_json::Value, (i32, String)> {
    let out = Command::new(python())
        .args(["-m", "awscli", "sqs"])
        .args(args)
        .args(["--endpoint-url", &format!("http://{}", s.admin)])
        .args(["--region", "us-east-1", "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", ADMIN_TOKEN)
        .env("AWS_SECRET_ACCESS_KEY", "unused")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .unwrap();
    match out.status.success() {
        true if out.stdout.is_empty() => Ok(serde_json::Value::Null),
        true => Ok(serde_json::from_slice(&out.stdout).unwrap()),
        false => Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )),
    }
}

#[test]
fn the_aws_cli_creates_sends_receives_deletes_tags_and_reads_errors() {
    let s = Server::start("awscli", &hello_function("f", ""));
    let made = aws_cli(
        &s,
        &[
            "create-queue",
            "--queue-name",
            "cli.fifo",
            "--attributes",
            "FifoQueue=true,ContentBasedDeduplication=true",
            "--tags",
            "team=payments",
        ],
    )
    .unwrap();
    let url = made["QueueUrl"].as_str().unwrap().to_string();
    assert!(url.ends_with("/000000000000/cli.fifo"), "{made}");
    let sent = aws_cli(
        &s,
        &[
            "send-message",
            "--queue-url",
            &url,
            "--message-body",
            "first",
            "--message-group-id",
            "g",
        ],
    )
    .unwrap();
    assert!(sent["SequenceNumber"].is_string(), "{sent}");
    aws_cli(
        &s,
        &[
            "send-message",
            "--queue-url",
            &url,
            "--message-body",
            "second",
            "--message-group-id",
            "g",
        ],
    )
    .unwrap();
    let got = aws_cli(
        &s,
        &[
            "receive-message",
            "--queue-url",
            &url,
            "--max-number-of-messages",
            "10",
            "--attribute-names",
            "All",
        ],
    )
    .unwrap();
    let messages = got["Messages"].as_array().unwrap();
    let bodies: Vec<&str> = messages
        .iter()
        .map(|m| m["Body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["first", "second"], "one group, in order: {got}");
    assert_eq!(messages[0]["Attributes"]["MessageGroupId"], "g");
    for m in messages {
        let handle = m["ReceiptHandle"].as_str().unwrap();
        aws_cli(
            &s,
            &[
                "delete-message",
                "--queue-url",
                &url,
                "--receipt-handle",
                handle,
            ],
        )
        .unwrap();
    }
    let attrs = aws_cli(
        &s,
        &[
            "get-queue-attributes",
            "--queue-url",
            &url,
            "--attribute-names",
            "All",
        ],
    )
    .unwrap();
    assert_eq!(
        attrs["Attributes"]["ApproximateNumberOfMessages"], "0",
        "{attrs}"
    );
    assert_eq!(attrs["Attributes"]["FifoQueue"], "true");
    aws_cli(
        &s,
        &["tag-queue", "--queue-url", &url, "--tags", "env=test"],
    )
    .unwrap();
    let tags = aws_cli(&s, &["list-queue-tags", "--queue-url", &url]).unwrap();
    assert_eq!(
        tags["Tags"],
        serde_json::json!({"team": "payments", "env": "test"})
    );
    let (code, stderr) = aws_cli(&s, &["get-queue-url", "--queue-name", "ghost"]).unwrap_err();
    assert_eq!(code, 255, "CLI v1's exit code for a service error");
    assert_eq!(
        stderr,
        "An error occurred (AWS.SimpleQueueService.NonExistentQueue) when calling the GetQueueUrl operation: The specified queue does not exist."
    );
    let (_, stderr) = aws_cli(
        &s,
        &[
            "send-message",
            "--queue-url",
            &url,
            "--message-body",
            "no group",
        ],
    )
    .unwrap_err();
    assert_eq!(
        stderr,
        "An error occurred (MissingParameter) when calling the SendMessage operation: The request must contain the parameter MessageGroupId."
    );
}

#[test]
fn fifo_queues_keep_group_order_and_deduplicate() {
    run_sqs_client("fifo", "boto3_sqs_fifo.py");
}

#[test]
fn fifo_deduplication_survives_kill_9() {
    let body = hello_function("f", "");
    let s = Server::start("fifodedup", &body);
    let created = s.admin_sqs(
        "CreateQueue",
        &serde_json::json!({"QueueName": "once.fifo", "Attributes": {"FifoQueue": "true"}}),
    );
    let url = created["QueueUrl"].as_str().unwrap().to_string();
    let send = |s: &Server| {
        s.admin_sqs(
            "SendMessage",
            &serde_json::json!({"QueueUrl": url, "MessageBody": "charge card", "MessageGroupId": "order-7", "MessageDeduplicationId": "charge-7"}),
        )
    };
    let first = send(&s);
    let dir = s.kill9();
    let s = Server::start_in(dir, &body, &[]);
    let again = send(&s);
    assert_eq!(first["MessageId"], again["MessageId"], "{first} {again}");
    assert_eq!(first["SequenceNumber"], again["SequenceNumber"]);
    assert_eq!(queue_count(&s, "once.fifo"), 1, "the retry sent nothing");
}

#[test]
fn boto3_sqs_client_works_unmodified() {
    run_sqs_client("boto3sqs", "boto3_sqs.py");
}

#[test]
fn batches_reach_the_function_with_partial_failures_and_redrive() {
    let processed = Collector::start();
    let s = Server::start(
        "batches",
        &format!(
            r#"{}
[queues.jobs]
visibility_timeout = "3s"
dead_letter = {{ queue = "jobs-dlq", max_receive_count = 2 }}

[queues.jobs-dlq]

[[event_sources]]
queue = "jobs"
function = "worker"
batch_size = 10
max_batching_window = "1s"
max_concurrency = 2
report_batch_item_failures = true
"#,
            py_function("worker", &processed, "reserved_concurrency = 2")
        ),
    );
    for i in 0..30 {
        let r = s.admin(
            "POST",
            "/admin/queues/jobs/messages",
            format!("m{i}").as_bytes(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for i in 0..2 {
        s.admin(
            "POST",
            "/admin/queues/jobs/messages",
            format!("fail-{i}").as_bytes(),
        );
    }
    assert!(
        s.wait_until(Duration::from_secs(30), || processed_bodies(&processed)
            .len()
            >= 30),
        "processed {} of 30:\n{}",
        processed_bodies(&processed).len(),
        s.stderr()
    );
    let mut got = processed_bodies(&processed);
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 30, "every good message processed");
    assert!(
        s.wait_until(Duration::from_secs(30), || queue_count(&s, "jobs-dlq") == 2),
        "the two failing messages land in the dead-letter queue after 2 receives"
    );
    let invocations = s.instances("worker")["invocations"].as_u64().unwrap();
    // 32 messages in batches of 10, plus the failing ones' second receive.
    assert!(
        (4..=12).contains(&invocations),
        "invocations ≈ messages / batch_size: {invocations}"
    );
    assert_eq!(queue_count(&s, "jobs"), 0);
}

/// A FIFO queue declared in levee.toml feeds a function group by group: a
/// failing message holds the rest of its group (other groups go on) until
/// it reaches the dead-letter queue, and each group is processed in order.
#[test]
fn a_fifo_event_source_keeps_each_group_in_order_through_a_failure() {
    let processed = Collector::start();
    let s = Server::start(
        "fifosource",
        &format!(
            r#"{}
[queues."orders.fifo"]
visibility_timeout = "3s"
content_based_deduplication = true
dead_letter = {{ queue = "orders-dlq.fifo", max_receive_count = 3 }}

[queues."orders-dlq.fifo"]

[[event_sources]]
queue = "orders.fifo"
function = "worker"
batch_size = 10
max_concurrency = 4
report_batch_item_failures = true
"#,
            py_function("worker", &processed, "reserved_concurrency = 4")
        ),
    );
    let url = s.admin_sqs(
        "GetQueueUrl",
        &serde_json::json!({"QueueName": "orders.fifo"}),
    )["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    const GROUPS: usize = 5;
    const PER_GROUP: usize = 20;
    let body = |g: usize, i: usize| match (g, i) {
        (0, 9) => "g0-09-fail".to_string(),
        _ => format!("g{g}-{i:02}"),
    };
    // Group by group, ten to a send: g0-09 fails at the end of g0's first
    // delivery and then at the head of the next ones, with group-mates
    // behind it. Held mates are received again, so their receive count
    // grows as in SQS; they stay one receive behind g0-09 and so stay out
    // of the dead-letter queue.
    let mut entries = Vec::new();
    for g in 0..GROUPS {
        for i in 0..PER_GROUP {
            entries.push(serde_json::json!({
                "Id": format!("e{g}x{i}"),
                "MessageBody": body(g, i),
                "MessageGroupId": format!("g{g}"),
            }));
        }
    }
    for chunk in entries.chunks(10) {
        let sent = s.admin_sqs(
            "SendMessageBatch",
            &serde_json::json!({"QueueUrl": url, "Entries": chunk}),
        );
        assert!(
            sent.get("Failed")
                .is_none_or(|f| f.as_array().unwrap().is_empty()),
            "{sent}"
        );
    }
    let good = GROUPS * PER_GROUP - 1;
    let distinct = || {
        let mut got = processed_bodies(&processed);
        got.sort();
        got.dedup();
        got.len()
    };
    assert!(
        s.wait_until(Duration::from_secs(60), || distinct() >= good),
        "processed {} of {good}:\n{}",
        distinct(),
        s.stderr()
    );
    assert!(
        s.wait_until(Duration::from_secs(30), || queue_count(
            &s,
            "orders-dlq.fifo"
        ) == 1),
        "only the failing message lands in the FIFO dead-letter queue: {:?}",
        processed.lines()
    );
    assert_eq!(queue_count(&s, "orders.fifo"), 0);
    let lines = processed.lines();
    // Held means not finished early: every later message of g0 is last
    // processed after g0-09's final failure, so it ran (again) once the
    // failure had gone to the dead-letter queue.
    let last_failure = lines
        .iter()
        .rposition(|l| l == "failed:g0-09-fail")
        .expect("the failing message reached the function");
    for i in 10..PER_GROUP {
        let last = lines.iter().rposition(|l| *l == body(0, i)).unwrap();
        assert!(
            last > last_failure,
            "g0-{i:02} finished before g0-09 was resolved: {lines:?}"
        );
    }
    let lines = processed_bodies(&processed);
    for g in 0..GROUPS {
        let prefix = format!("g{g}-");
        // Held messages may run twice (the function saw them beside the
        // failure); the order each is first seen in is the group's order.
        let mut first_seen: Vec<&String> = Vec::new();
        for line in lines.iter().filter(|l| l.starts_with(&prefix)) {
            if !first_seen.contains(&line) {
                first_seen.push(line);
            }
        }
        let expected: Vec<String> = (0..PER_GROUP)
            .filter(|&i| (g, i) != (0, 9))
            .map(|i| body(g, i))
            .collect();
        let first_seen: Vec<String> = first_seen.into_iter().cloned().collect();
        assert_eq!(first_seen, expected, "group g{g} in order");
    }
    let dead = s.admin_sqs(
        "ReceiveMessage",
        &serde_json::json!({
            "QueueUrl": url.replace("orders.fifo", "orders-dlq.fifo"),
            "AttributeNames": ["MessageGroupId"],
        }),
    );
    assert_eq!(dead["Messages"][0]["Body"], "g0-09-fail", "{dead}");
    assert_eq!(dead["Messages"][0]["Attributes"]["MessageGroupId"], "g0");
}

#[test]
fn an_async_route_queues_under_a_flood_and_the_function_stays_within_its_limit() {
    let processed = Collector::start();
    let s = Server::start(
        "asyncflood",
        &format!(
            r#"[limits]
max_connections_per_ip = 400

{}
[queues.inbox]
visibility_timeout = "5s"
max_messages = 50

[[event_sources]]
queue = "inbox"
function = "worker"
batch_size = 10
max_concurrency = 2

[[routes]]
route = "POST /submit"
function = "worker"
async = true
queue = "inbox"
"#,
            py_function("worker", &processed, "reserved_concurrency = 2")
        ),
    );
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..300)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    request(
                        s.edge,
                        "POST",
                        "/submit",
                        &[],
                        format!("order-{i}").as_bytes(),
                    )
                    .status
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = statuses.iter().filter(|&&c| c == 202).count();
    let refused = statuses.iter().filter(|&&c| c == 503).count();
    assert_eq!(accepted + refused, 300, "only 202 or 503: {statuses:?}");
    assert!(refused > 0, "a full queue refuses");
    assert!(accepted >= 50, "the queue took at least its bound");
    assert!(s.instances("worker")["live"].as_u64().unwrap() <= 2);
    assert!(
        s.wait_until(Duration::from_secs(60), || processed.lines().len()
            >= accepted),
        "every accepted request reaches the function: {} of {accepted}",
        processed.lines().len()
    );
    assert!(
        s.instances("worker")["live"].as_u64().unwrap() <= 2,
        "never past its concurrency"
    );
}

/// SendMessage over the SQS JSON protocol; the body if acknowledged.
fn send(admin: std::net::SocketAddr, queue_url: &str, body: &str) -> Option<String> {
    let payload = serde_json::json!({ "QueueUrl": queue_url, "MessageBody": body }).to_string();
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let r = std::panic::catch_unwind(|| {
        request(
            admin,
            "POST",
            "/",
            &[
                ("authorization", auth.as_str()),
                ("x-amz-target", "AmazonSQS.SendMessage"),
                ("content-type", "application/x-amz-json-1.0"),
            ],
            payload.as_bytes(),
        )
    })
    .ok()?;
    (r.status == 200).then(|| body.to_owned())
}

#[test]
fn every_acknowledged_message_survives_kill_9_and_deleted_ones_stay_deleted() {
    let body = format!("{}\n[queues.durable]\n", hello_function("f", ""));
    let s = Server::start("queuekill", &body);
    let admin = s.admin;
    let url = format!("http://{admin}/000000000000/durable");
    // Five messages received and deleted before the crash must not return.
    for i in 0..5 {
        assert!(send(admin, &url, &format!("gone-{i}")).is_some());
    }
    let sqs = |target: &str, payload: serde_json::Value| s.admin_sqs(target, &payload);
    let received = sqs(
        "ReceiveMessage",
        serde_json::json!({ "QueueUrl": url, "MaxNumberOfMessages": 10 }),
    );
    for m in received["Messages"].as_array().unwrap() {
        sqs(
            "DeleteMessage",
            serde_json::json!({ "QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"] }),
        );
    }
    // Send under load from a thread; kill -9 the server in the middle.
    let sender = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..100_000 {
            match send(admin, &url, &format!("keep-{i}")) {
                Some(b) => acked.push(b),
                None => break,
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(700));
    let dir = s.kill9();
    let acked = sender.join().unwrap();
    assert!(acked.len() > 10, "the load ran: {}", acked.len());
    let s = Server::start_in(dir, &body, &[]);
    let url = format!("http://{}/000000000000/durable", s.admin);
    // Drain it all (received messages stay hidden for the rest of the test).
    let mut bodies: Vec<String> = Vec::new();
    for _ in 0..20_000 {
        let got = s.admin_sqs(
            "ReceiveMessage",
            &serde_json::json!({ "QueueUrl": url, "MaxNumberOfMessages": 10, "VisibilityTimeout": 600 }),
        );
        let Some(messages) = got["Messages"].as_array() else {
            break;
        };
        bodies.extend(
            messages
                .iter()
                .map(|m| m["Body"].as_str().unwrap().to_owned()),
        );
    }
    bodies.sort();
    for b in &acked {
        assert!(
            bodies.binary_search(b).is_ok(),
            "acknowledged `{b}` lost ({} acked)",
            acked.len()
        );
    }
    assert!(
        !bodies.iter().any(|b| b.starts_with("gone-")),
        "deleted messages came back"
    );
}

#[test]
fn the_cli_lists_sends_and_peeks() {
    let s = Server::start(
        "queuecli",
        &format!("{}\n[queues.q1]\n", hello_function("f", "")),
    );
    let admin = format!("http://{}", s.admin);
    let levee = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_levee"))
            .args(args)
            .args(["--admin", &admin, "--token", ADMIN_TOKEN])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, id) = levee(&["queues", "send", "q1", "hello from the cli"]);
    assert_eq!(code, Some(0));
    let (_, list) = levee(&["queues", "list"]);
    assert!(list.lines().any(|l| l.starts_with("q1\t1\t")), "{list}");
    let (_, peek) = levee(&["queues", "peek", "q1"]);
    assert!(
        peek.contains(id.trim()) && peek.contains("hello from the cli"),
        "{peek}"
    );
    let (code, _) = levee(&["queues", "send", "nope", "x"]);
    assert_eq!(code, Some(1));
}

#[test]
fn an_async_route_refuses_what_the_queue_cannot_hold_with_the_right_status() {
    let s = Server::start(
        "asyncbad",
        &format!(
            r#"{}
[queues.inbox]
max_message_size = "2KiB"

[[routes]]
route = "POST /submit"
function = "worker"
async = true
queue = "inbox"
"#,
            support::hello_function("worker", "")
        ),
    );
    let post = |body: &[u8]| request(s.edge, "POST", "/submit", &[], body);
    assert_eq!(post(b"fine").status, 202);
    let too_big = post(&[b'x'; 4096]);
    assert_eq!(too_big.status, 413, "{}", too_big.text());
    // Valid UTF-8 that SQS does not allow in a message is the client's
    // mistake, not a size problem.
    let bad = post("a\u{FFFF}b".as_bytes());
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("U+FFFF"), "{}", bad.text());
}

#[test]
fn queues_the_config_declares_cannot_be_deleted_or_reconfigured_through_sqs() {
    let s = Server::start(
        "declaredq",
        &format!(
            r#"{}
[queues.inbox]

[[routes]]
route = "POST /submit"
function = "worker"
async = true
queue = "inbox"
"#,
            support::hello_function("worker", "")
        ),
    );
    let url = s.admin_sqs("GetQueueUrl", &serde_json::json!({"QueueName": "inbox"}))["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let delete = s.admin_sqs_call("DeleteQueue", &serde_json::json!({"QueueUrl": url}));
    assert_eq!(delete.status, 403, "{}", delete.text());
    assert!(delete.text().contains("AccessDenied"), "{}", delete.text());
    assert!(delete.text().contains("levee.toml"), "{}", delete.text());
    let set = s.admin_sqs_call(
        "SetQueueAttributes",
        &serde_json::json!({"QueueUrl": url, "Attributes": {"VisibilityTimeout": "7"}}),
    );
    assert_eq!(set.status, 403, "{}", set.text());
    let tag = s.admin_sqs_call(
        "TagQueue",
        &serde_json::json!({"QueueUrl": url, "Tags": {"team": "a"}}),
    );
    assert_eq!(tag.status, 403, "{}", tag.text());
    let accepted = request(s.edge, "POST", "/submit", &[], b"still queued");
    assert_eq!(accepted.status, 202, "{}", accepted.text());
    // Queues made through the API stay the API's to delete.
    let made = s.admin_sqs("CreateQueue", &serde_json::json!({"QueueName": "scratch"}));
    s.admin_sqs(
        "DeleteQueue",
        &serde_json::json!({"QueueUrl": made["QueueUrl"]}),
    );
}
