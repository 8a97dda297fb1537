//! The crash loop, short version (issue 21, item 1): a sender keeps
//! putting messages into a durable queue while the server is killed with
//! SIGKILL at a random moment, ten times, restarted each time. After each
//! kill every database passes `PRAGMA integrity_check` and no instance
//! process outlives the server; at the end every acknowledged message is
//! delivered and no deleted one comes back. Bounded: ten cycles, each
//! under a second of load.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{hello_function, processes_of_uid, python, try_sqs_call, Server};

const CYCLES: u32 = 10;

fn sqs(admin: SocketAddr, action: &str, payload: &Value) -> Option<Value> {
    let r = try_sqs_call(admin, action, payload).ok()?;
    (r.status == 200).then(|| r.json())
}

/// `PRAGMA integrity_check` on every database in `data`, by Python's
/// sqlite3; the answers.
fn integrity(data: &std::path::Path) -> Vec<String> {
    let dbs: Vec<_> = std::fs::read_dir(data)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "db"))
        .collect();
    let out = Command::new(python())
        .args([
            "-c",
            "import sqlite3, sys\nfor p in sys.argv[1:]:\n    print(p, sqlite3.connect(p).execute('pragma integrity_check').fetchone()[0])",
        ])
        .args(&dbs)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Receives and deletes up to `max` messages; their bodies.
fn take(admin: SocketAddr, url: &str, max: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    while bodies.len() < max {
        let got = sqs(
            admin,
            "ReceiveMessage",
            &json!({"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0}),
        )
        .expect("ReceiveMessage");
        let messages = got["Messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            let handle = &m["ReceiptHandle"];
            sqs(
                admin,
                "DeleteMessage",
                &json!({"QueueUrl": url, "ReceiptHandle": handle}),
            )
            .expect("DeleteMessage");
            bodies.push(m["Body"].as_str().unwrap().to_owned());
        }
    }
    bodies
}

#[test]
fn acknowledged_messages_survive_ten_kill_9s_under_load() {
    let body = format!(
        "[queues.jobs]\nvisibility_timeout = \"1h\"\n\n{}",
        hello_function("f", "")
    );
    let mut s = Server::start("crashloop", &body);
    let (mut acked, mut deleted) = (HashSet::new(), HashSet::new());
    let mut slowest_start = Duration::ZERO;
    for cycle in 0..CYCLES {
        let url = s.admin_sqs("GetQueueUrl", &json!({"QueueName": "jobs"}))["QueueUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        // Some of what earlier cycles left is taken and deleted for good.
        deleted.extend(take(s.admin, &url, 5));
        let admin = s.admin;
        let sender = std::thread::spawn(move || {
            let mut sent = Vec::new();
            for n in 0..100_000 {
                let body = format!("m-{cycle}-{n}");
                let payload = json!({"QueueUrl": url, "MessageBody": body});
                match sqs(admin, "SendMessage", &payload) {
                    Some(_) => sent.push(body),
                    None => break,
                }
            }
            sent
        });
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_millis(100 + u64::from(nanos % 600)));
        let uids = s.uids.clone();
        let dir = s.kill9();
        acked.extend(sender.join().unwrap());
        for line in integrity(&dir.join("data")) {
            assert!(line.ends_with(" ok"), "cycle {cycle}: {line}");
        }
        let alone = (0..50).any(|_| {
            let left = (*uids.start()..=*uids.end()).any(|uid| !processes_of_uid(uid).is_empty());
            if left {
                std::thread::sleep(Duration::from_millis(100));
            }
            !left
        });
        assert!(
            alone,
            "cycle {cycle}: instance processes outlived the server"
        );
        let started = Instant::now();
        s = Server::start_in(dir, &body, &[]);
        slowest_start = slowest_start.max(started.elapsed());
    }
    let url = s.admin_sqs("GetQueueUrl", &json!({"QueueName": "jobs"}))["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let delivered: HashSet<String> = take(s.admin, &url, 1_000_000).into_iter().collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|m| !delivered.contains(*m) && !deleted.contains(*m))
        .collect();
    let back: Vec<_> = deleted.intersection(&delivered).collect();
    eprintln!(
        "{CYCLES} kill -9 cycles: {} messages acknowledged, {} deleted, {} delivered at the end; lost {}, deleted and back {}; slowest restart {slowest_start:?}",
        acked.len(),
        deleted.len(),
        delivered.len(),
        lost.len(),
        back.len()
    );
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(back.is_empty(), "deleted and delivered again: {back:?}");
}
