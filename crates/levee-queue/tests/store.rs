//! The queue store through its public API: delivery, visibility, delay,
//! retention, redrive, bounds, long polling and durability across reopen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use levee_queue::{
    AttributeValue, ManualClock, MessageAttribute, MessageAttributes, NewMessage, QueueError,
    QueueSettings, Queues, ReceiveOptions, Redrive,
};

const T0: i64 = 1_700_000_000_000;

fn open(dir: &std::path::Path) -> (Arc<Queues>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_ms(T0));
    let q = Queues::open_with_clock(dir, clock.clone()).expect("opens");
    (Arc::new(q), clock)
}

fn take(n: usize) -> ReceiveOptions {
    ReceiveOptions {
        max_messages: n,
        ..ReceiveOptions::default()
    }
}

fn msg(body: &str) -> NewMessage {
    NewMessage {
        body: body.into(),
        ..NewMessage::default()
    }
}

async fn send(q: &Queues, queue: &str, body: &str) {
    q.send(
        queue,
        Bytes::from(body.to_string()),
        MessageAttributes::new(),
    )
    .await
    .expect("sent");
}

#[tokio::test]
async fn send_receive_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _clock) = open(dir.path());
    q.create_queue("jobs", QueueSettings::default())
        .await
        .expect("created");
    let sent = q
        .send(
            "jobs",
            Bytes::from_static(b"hello"),
            MessageAttributes::new(),
        )
        .await
        .expect("sent");
    assert_eq!(sent.md5_of_body, "5d41402abc4b2a76b9719d911017c592");
    let got = q.receive("jobs", take(10)).await.expect("received");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "hello");
    assert_eq!(got[0].message_id, sent.message_id);
    assert_eq!(got[0].receive_count, 1);
    assert_eq!(got[0].first_receive_ms, T0);
    // Hidden while in flight.
    assert!(q.receive("jobs", take(10)).await.expect("ok").is_empty());
    q.delete_message("jobs", &got[0].receipt_handle)
        .await
        .expect("deleted");
    let info = q.info("jobs", "http://h").expect("info");
    assert_eq!((info.approximate_messages, info.in_flight), (0, 0));
    assert_eq!(info.url, "http://h/000000000000/jobs");
    assert!(matches!(
        q.delete_message("jobs", "garbage").await,
        Err(QueueError::ReceiptHandleIsInvalid { .. })
    ));
    assert!(matches!(
        q.receive("nope", take(1)).await,
        Err(QueueError::NotFound { .. })
    ));
}

#[tokio::test]
async fn visibility_timeout_expiry_redelivers_with_a_new_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, clock) = open(dir.path());
    let s = QueueSettings {
        visibility_timeout: 30,
        ..QueueSettings::default()
    };
    q.create_queue("v", s).await.expect("created");
    send(&q, "v", "x").await;
    let first = q.receive("v", take(1)).await.expect("ok");
    clock.advance_ms(29_999);
    assert!(q.receive("v", take(1)).await.expect("ok").is_empty());
    clock.advance_ms(1);
    let second = q.receive("v", take(1)).await.expect("ok");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].receive_count, 2);
    assert_eq!(second[0].first_receive_ms, T0);
    assert_ne!(second[0].receipt_handle, first[0].receipt_handle);
    // The stale handle deletes nothing (as in SQS) and can't change
    // visibility.
    q.delete_message("v", &first[0].receipt_handle)
        .await
        .expect("ok");
    assert_eq!(q.info("v", "").expect("info").in_flight, 1);
    let r = q
        .change_visibility("v", vec![(first[0].receipt_handle.clone(), 0)])
        .await
        .expect("ok");
    assert!(
        matches!(&r[..], [Err(QueueError::MessageNotInflight { .. })]),
        "{r:?}"
    );
    // The current one can make it visible at once.
    let r = q
        .change_visibility("v", vec![(second[0].receipt_handle.clone(), 0)])
        .await
        .expect("ok");
    assert_eq!(r, vec![Ok(())]);
    assert_eq!(q.receive("v", take(1)).await.expect("ok").len(), 1);
}

#[tokio::test]
async fn delay_hides_new_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, clock) = open(dir.path());
    let s = QueueSettings {
        delay: 10,
        ..QueueSettings::default()
    };
    q.create_queue("d", s).await.expect("created");
    send(&q, "d", "queue delay").await;
    let per_message = NewMessage {
        delay: Some(0),
        ..msg("no delay")
    };
    q.send_batch("d", vec![per_message]).await.expect("sent");
    let got = q.receive("d", take(10)).await.expect("ok");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "no delay");
    assert_eq!(q.info("d", "").expect("info").delayed, 1);
    clock.advance_ms(10_000);
    let got = q.receive("d", take(10)).await.expect("ok");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "queue delay");
}

#[tokio::test]
async fn retention_expires_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, clock) = open(dir.path());
    let s = QueueSettings {
        retention: 60,
        max_messages: 1,
        ..QueueSettings::default()
    };
    q.create_queue("r", s).await.expect("created");
    send(&q, "r", "old").await;
    clock.advance_ms(60_000);
    assert!(q.receive("r", take(1)).await.expect("ok").is_empty());
    assert!(q.peek("r", 10).expect("peek").is_empty());
    // The expired message no longer counts toward the depth bound.
    send(&q, "r", "new").await;
    assert_eq!(q.receive("r", take(1)).await.expect("ok")[0].body, "new");
}

#[tokio::test]
async fn a_full_queue_refuses_instead_of_growing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _clock) = open(dir.path());
    let s = QueueSettings {
        max_messages: 3,
        ..QueueSettings::default()
    };
    q.create_queue("f", s).await.expect("created");
    let out = q
        .send_batch("f", (0..5).map(|i| msg(&i.to_string())).collect())
        .await
        .expect("batch");
    assert_eq!(out.iter().filter(|r| r.is_ok()).count(), 3);
    assert!(matches!(out[3], Err(QueueError::Full { max: 3, .. })));
    let err = q
        .send("f", Bytes::from_static(b"x"), MessageAttributes::new())
        .await
        .expect_err("full");
    assert_eq!(err.aws_code().status, 503);
    let got = q.receive("f", take(1)).await.expect("ok");
    q.delete_message("f", &got[0].receipt_handle)
        .await
        .expect("deleted");
    send(&q, "f", "room again").await;
}

#[tokio::test]
async fn receive_counts_lead_to_the_dead_letter_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, clock) = open(dir.path());
    q.create_queue("dlq", QueueSettings::default())
        .await
        .expect("dlq");
    let s = QueueSettings {
        visibility_timeout: 1,
        redrive: Some(Redrive {
            dead_letter: "dlq".into(),
            max_receive_count: 2,
        }),
        ..QueueSettings::default()
    };
    q.create_queue("src", s).await.expect("src");
    send(&q, "src", "poison").await;
    for expected in 1..=2 {
        let got = q.receive("src", take(1)).await.expect("ok");
        assert_eq!(got[0].receive_count, expected);
        clock.advance_ms(1000);
    }
    // The third receive moves it instead of delivering it.
    assert!(q.receive("src", take(1)).await.expect("ok").is_empty());
    assert_eq!(q.info("src", "").expect("info").approximate_messages, 0);
    let dead = q.receive("dlq", take(1)).await.expect("ok");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].sent_ms, T0, "keeps its original send time");
}

#[tokio::test]
async fn redrive_rules_need_an_existing_other_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _clock) = open(dir.path());
    let to = |name: &str| QueueSettings {
        redrive: Some(Redrive {
            dead_letter: name.into(),
            max_receive_count: 1,
        }),
        ..QueueSettings::default()
    };
    assert!(q.create_queue("a", to("missing")).await.is_err());
    assert!(q.create_queue("a", to("a")).await.is_err());
    // Config sync creates in two passes, so order doesn't matter.
    q.sync_config_queues(&[
        ("orders".into(), to("orders-dlq")),
        ("orders-dlq".into(), QueueSettings::default()),
    ])
    .await
    .expect("synced");
    assert_eq!(q.settings("orders"), Some(to("orders-dlq")));
    // Same name, other settings: Exists for CreateQueue, update for sync.
    assert!(matches!(
        q.create_queue("orders-dlq", to("orders")).await,
        Err(QueueError::Exists { .. })
    ));
    let longer = QueueSettings {
        visibility_timeout: 99,
        ..QueueSettings::default()
    };
    q.sync_config_queues(&[("orders-dlq".into(), longer.clone())])
        .await
        .expect("updated");
    assert_eq!(q.settings("orders-dlq"), Some(longer));
}

#[tokio::test]
async fn attributes_are_stored_with_their_digest_and_invalid_messages_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _clock) = open(dir.path());
    q.create_queue("a", QueueSettings::default())
        .await
        .expect("created");
    let mut attrs = MessageAttributes::new();
    attrs.insert(
        "a".into(),
        MessageAttribute {
            data_type: "String".into(),
            value: AttributeValue::String("b".into()),
        },
    );
    let sent = q
        .send("a", Bytes::from_static(b"hello"), attrs.clone())
        .await
        .expect("sent");
    assert_eq!(
        sent.md5_of_attributes.as_deref(),
        Some("bef8bf215374a0a228d67533b1a488be")
    );
    let got = q.receive("a", take(1)).await.expect("ok");
    assert_eq!(got[0].attributes, attrs);
    assert_eq!(got[0].md5_of_attributes, sent.md5_of_attributes);
    let too_big = vec![b'x'; 256 * 1024 + 1];
    assert!(matches!(
        q.send("a", Bytes::from(too_big), MessageAttributes::new())
            .await,
        Err(QueueError::MessageTooLong { .. })
    ));
    assert!(matches!(
        q.send("a", Bytes::from_static(b"\xff"), MessageAttributes::new())
            .await,
        Err(QueueError::InvalidMessageContents { .. })
    ));
}

#[tokio::test]
async fn peek_changes_nothing_and_purge_empties() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _clock) = open(dir.path());
    q.create_queue("p", QueueSettings::default())
        .await
        .expect("created");
    for b in ["1", "2", "3"] {
        send(&q, "p", b).await;
    }
    let seen = q.peek("p", 2).expect("peek");
    assert_eq!(
        seen.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["1", "2"]
    );
    assert_eq!(seen[0].receive_count, 0);
    assert_eq!(q.receive("p", take(10)).await.expect("ok").len(), 3);
    let listed = q.list("http://h").expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].approximate_messages, listed[0].in_flight),
        (0, 3)
    );
    q.purge("p").await.expect("purged");
    assert_eq!(q.info("p", "").expect("info").in_flight, 0);
    q.delete_queue("p").await.expect("deleted");
    assert!(q.list("").expect("list").is_empty());
}

#[tokio::test]
async fn long_poll_wakes_on_send_and_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(levee_queue::SystemClock);
    let q = Arc::new(Queues::open_with_clock(dir.path(), clock).expect("opens"));
    q.create_queue("lp", QueueSettings::default())
        .await
        .expect("created");
    let waiter = {
        let q = Arc::clone(&q);
        tokio::spawn(async move {
            let started = Instant::now();
            let got = q
                .receive(
                    "lp",
                    ReceiveOptions {
                        wait: Duration::from_secs(10),
                        ..ReceiveOptions::default()
                    },
                )
                .await
                .expect("ok");
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&q, "lp", "wake").await;
    let (got, waited) = waiter.await.expect("joined");
    assert_eq!(got.len(), 1);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let started = Instant::now();
    let got = q
        .receive(
            "lp",
            ReceiveOptions {
                wait: Duration::from_millis(300),
                ..ReceiveOptions::default()
            },
        )
        .await
        .expect("ok");
    assert!(got.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn among_many_long_polls_each_send_wakes_one_and_none_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Arc::new(
        Queues::open_with_clock(dir.path(), Arc::new(levee_queue::SystemClock)).expect("opens"),
    );
    q.create_queue("many", QueueSettings::default())
        .await
        .expect("created");
    let mut waiters = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let q = Arc::clone(&q);
        waiters.spawn(async move {
            let options = ReceiveOptions {
                max_messages: 1,
                wait: Duration::from_secs(20),
                ..ReceiveOptions::default()
            };
            q.receive("many", options).await.expect("ok")
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        send(&q, "many", &format!("m{i}")).await;
    }
    // Each send wakes one waiter; every message reaches one, long before
    // the 20 s polls would time out on their own.
    let mut bodies = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        while bodies.len() < 5 {
            let got = waiters
                .join_next()
                .await
                .expect("a waiter")
                .expect("joined");
            bodies.extend(got.into_iter().map(|m| m.body));
        }
    })
    .await;
    assert!(done.is_ok(), "woken: {bodies:?}");
    bodies.sort();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    waiters.abort_all();
}

#[tokio::test]
async fn messages_and_deletes_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kept;
    {
        let (q, _clock) = open(dir.path());
        q.create_queue("durable", QueueSettings::default())
            .await
            .expect("created");
        for b in ["a", "b", "c"] {
            send(&q, "durable", b).await;
        }
        let got = q.receive("durable", take(2)).await.expect("ok");
        q.delete_message("durable", &got[0].receipt_handle)
            .await
            .expect("deleted");
        kept = got[1].body.clone();
        // A second process may not open the same directory.
        assert!(matches!(
            Queues::open(dir.path()),
            Err(QueueError::Locked { .. })
        ));
    }
    let (q, clock) = open(dir.path());
    // The in-flight message comes back after its visibility timeout; the
    // deleted one never does.
    clock.advance_ms(30_000);
    let mut bodies: Vec<String> = q
        .receive("durable", take(10))
        .await
        .expect("ok")
        .into_iter()
        .map(|m| m.body)
        .collect();
    bodies.sort();
    assert_eq!(bodies, vec![kept, "c".to_string()]);
    assert_eq!(q.settings("durable"), Some(QueueSettings::default()));
}

#[tokio::test]
async fn receive_bounds_messages_and_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, _clock) = open(dir.path());
    q.create_queue("b", QueueSettings::default())
        .await
        .expect("created");
    q.send_batch("b", (0..5).map(|_| msg("0123456789")).collect())
        .await
        .expect("sent");
    let got = q
        .receive(
            "b",
            ReceiveOptions {
                max_messages: 5,
                max_bytes: 25,
                ..ReceiveOptions::default()
            },
        )
        .await
        .expect("ok");
    assert_eq!(got.len(), 2);
    assert!(q.receive("b", take(0)).await.is_err());
    assert!(q.receive("b", take(10_001)).await.is_err());
}

/// Enqueue rate with SendMessageBatch-sized batches from concurrent
/// senders. Run: `cargo test -p levee-queue --release --test store --
/// --ignored --nocapture enqueue_rate`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn enqueue_rate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = Arc::new(Queues::open(dir.path()).expect("opens"));
    let s = QueueSettings {
        max_messages: 10_000_000,
        ..QueueSettings::default()
    };
    q.create_queue("bench", s).await.expect("created");
    const SENDERS: usize = 64;
    const BATCHES: usize = 300;
    let body = "x".repeat(200);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let q = Arc::clone(&q);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..BATCHES {
                let batch = (0..10).map(|_| msg(&body)).collect();
                let out = q.send_batch("bench", batch).await.expect("sent");
                assert!(out.iter().all(|r| r.is_ok()));
            }
        }));
    }
    for t in tasks {
        t.await.expect("joined");
    }
    let secs = started.elapsed().as_secs_f64();
    let n = SENDERS * BATCHES * 10;
    let rate = n as f64 / secs;
    println!(
        "enqueued {n} messages ({}-byte bodies) in {secs:.2}s: {rate:.0} msg/s",
        body.len()
    );
    assert_eq!(
        q.info("bench", "").expect("info").approximate_messages,
        n as u64
    );
    assert!(rate >= 20_000.0, "{rate:.0} msg/s");
}

/// Single sends per second with 0 and with 500 long polls waiting on the
/// queue (each woken waiter costs a receive on the one writer thread).
/// Run: `cargo test -p levee-queue --release --test store -- --ignored
/// --nocapture sends_beside_long_polls`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn sends_beside_long_polls() {
    for waiting in [0usize, 500] {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = Arc::new(Queues::open(dir.path()).expect("opens"));
        q.create_queue("lp", QueueSettings::default())
            .await
            .expect("created");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..waiting {
            let (q, stop) = (Arc::clone(&q), Arc::clone(&stop));
            waiters.spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let options = ReceiveOptions {
                        max_messages: 10,
                        wait: Duration::from_secs(1),
                        ..ReceiveOptions::default()
                    };
                    let _ = q.receive("lp", options).await;
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        const SENDS: usize = 3000;
        let started = Instant::now();
        for i in 0..SENDS {
            send(&q, "lp", &format!("m{i}")).await;
        }
        let rate = SENDS as f64 / started.elapsed().as_secs_f64();
        println!("{waiting} long polls waiting: {rate:.0} sends/s");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        while waiters.join_next().await.is_some() {}
    }
}

/// A FIFO receive walks the groups from where the last one stopped: each
/// group's messages come in order and together, a group with one in flight
/// gives nothing, and with more groups than one receive looks at, every
/// group is still served within a round of receives.
#[tokio::test]
async fn fifo_receives_go_round_the_groups_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (q, clock) = open(dir.path());
    let fifo = QueueSettings {
        fifo: Some(levee_queue::model::FifoSettings {
            content_based_dedup: true,
            ..Default::default()
        }),
        ..QueueSettings::default()
    };
    q.create_queue("o.fifo", fifo).await.expect("created");
    // 600 groups of 3, sent interleaved: g0-0, g1-0, …, g599-0, g0-1, …
    const GROUPS: usize = 600;
    for i in 0..3 {
        for batch in (0..GROUPS).collect::<Vec<_>>().chunks(10) {
            let messages = batch
                .iter()
                .map(|g| NewMessage {
                    group_id: Some(format!("g{g:03}")),
                    ..msg(&format!("g{g:03}-{i}"))
                })
                .collect();
            for r in q.send_batch("o.fifo", messages).await.expect("sent") {
                r.expect("each sent");
            }
        }
    }
    // Each receive of 10 takes one group's three messages, in order, plus
    // the head of the next groups; no group is taken twice while in flight.
    let mut seen: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut receives = 0;
    while seen.values().map(Vec::len).sum::<usize>() < GROUPS * 3 {
        receives += 1;
        assert!(receives <= GROUPS, "every message within {GROUPS} receives");
        for m in q.receive("o.fifo", take(10)).await.expect("received") {
            let (group, _) = m.body.split_once('-').unwrap();
            seen.entry(group.to_string())
                .or_default()
                .push(m.body.clone());
            q.delete_message("o.fifo", &m.receipt_handle)
                .await
                .expect("deleted");
        }
    }
    assert_eq!(seen.len(), GROUPS);
    for (g, bodies) in &seen {
        assert_eq!(
            bodies,
            &[format!("{g}-0"), format!("{g}-1"), format!("{g}-2")]
        );
    }
    // 600 groups in flight, and one message in a group among them: a
    // receive looks at a bounded number of groups, so it may take a second
    // receive to reach it, never more.
    for batch in (0..GROUPS).collect::<Vec<_>>().chunks(10) {
        let messages = batch
            .iter()
            .map(|g| NewMessage {
                group_id: Some(format!("g{g:03}")),
                ..msg(&format!("g{g:03}-late"))
            })
            .collect();
        q.send_batch("o.fifo", messages).await.expect("sent");
    }
    let mut held = 0;
    while held < GROUPS {
        held += q.receive("o.fifo", take(10)).await.expect("received").len();
    }
    let m = NewMessage {
        group_id: Some("g400x".into()),
        ..msg("g400x-0")
    };
    q.send_batch("o.fifo", vec![m]).await.expect("sent");
    let mut found = Vec::new();
    for _ in 0..2 {
        found.extend(q.receive("o.fifo", take(10)).await.expect("received"));
    }
    let bodies: Vec<&str> = found.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["g400x-0"]);
    q.purge("o.fifo").await.expect("purged");
    // In flight holds a group; after its visibility timeout its head comes
    // back first, with the receive count up.
    for g in ["a", "b"] {
        for i in 0..2 {
            let m = NewMessage {
                group_id: Some(g.into()),
                ..msg(&format!("{g}{i}"))
            };
            q.send_batch("o.fifo", vec![m]).await.expect("sent");
        }
    }
    let first = q.receive("o.fifo", take(1)).await.expect("received");
    let held = first[0].body.clone();
    let other = q.receive("o.fifo", take(10)).await.expect("received");
    assert_eq!(other.len(), 2, "the other group, whole: {other:?}");
    assert!(other.iter().all(|m| m.body[..1] != held[..1]));
    assert!(q.receive("o.fifo", take(10)).await.expect("ok").is_empty());
    clock.advance_ms(31_000);
    let again = q.receive("o.fifo", take(10)).await.expect("received");
    let group: Vec<_> = again.iter().filter(|m| m.body[..1] == held[..1]).collect();
    assert_eq!(group.len(), 2, "{again:?}");
    assert_eq!(group[0].body, held);
    assert_eq!(group[0].receive_count, 2);
    assert_eq!(group[1].body, format!("{}1", &held[..1]));
}
