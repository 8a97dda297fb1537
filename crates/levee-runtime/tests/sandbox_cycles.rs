//! 1,000 back-to-back instance starts and stops through the real sandbox,
//! isolated and unisolated alternately, then 100 with `network = "egress"`:
//! each start ends at the function's first Runtime API connection, each
//! stop at the end of teardown. They must leave no mounts, cgroups, network
//! namespaces, links or processes of instance uids behind. Prints the timings `docs/BENCHMARKS.md` records:
//! `cargo test --release -p levee-runtime --test sandbox_cycles -- --nocapture`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use levee_config::Config;
use levee_runtime::sandbox::{self, InstanceSpec, Sandbox};

const CYCLES: usize = 1000;
const EGRESS_CYCLES: usize = 100;
const UIDS: (u32, u32) = (300_000, 300_063);

fn hello_fn() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", "hello-fn"])
        .current_dir(&workspace);
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().unwrap().success(), "building hello-fn");
    profile.join("hello-fn")
}

fn config(dir: &Path, isolation: &str, hello: &Path, code: &Path) -> Config {
    let text = format!(
        "[server]\ndata_dir = \"{}\"\nisolation = \"{isolation}\"\ninstance_uids = [{}, {}]\n\n[functions.f]\ncommand = [\"{hello}\"]\ncode = \"{code}\"\n\n[functions.e]\ncommand = [\"{hello}\"]\ncode = \"{code}\"\nnetwork = \"egress\"\n",
        dir.join(isolation).display(),
        UIDS.0,
        UIDS.1,
        hello = hello.display(),
        code = code.display()
    );
    Config::parse(&text, "cycles.toml", dir).unwrap()
}

fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * p / 100.0).round() as usize]
}

/// What could be left behind: mount lines, the server's cgroup children,
/// distinct network namespaces in use, processes of the instance uids, and
/// network links.
fn leftovers() -> (usize, usize, usize, usize, usize) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let cgroups = ["memory", "pids"]
        .iter()
        .map(|h| {
            let root = format!("/sys/fs/cgroup/{h}/levee/{}", std::process::id());
            std::fs::read_dir(root)
                .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
                .unwrap_or(0)
        })
        .sum();
    let (mut nets, mut uids) = (HashSet::new(), 0);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(ns) = std::fs::read_link(entry.path().join("ns/net")) {
            nets.insert(ns);
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let uid: u32 = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let zombie = status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'));
        if (UIDS.0..=UIDS.1).contains(&uid) && !zombie {
            uids += 1;
        }
    }
    let links = std::fs::read_dir("/sys/class/net").map_or(0, |d| d.count());
    (mounts, cgroups, nets.len(), uids, links)
}

/// One start and stop of function `f`'s instance: (prepare+spawn,
/// gate→connect, teardown) in µs.
async fn cycle(
    sandbox: &Sandbox,
    f: &levee_config::Function,
    needs: &sandbox::Needs,
    code: &Path,
    name: &str,
) -> [f64; 3] {
    let spec = InstanceSpec {
        function: f,
        needs,
        instance_name: name,
        staged_code: code,
        init_type: "on-demand",
    };
    let t0 = Instant::now();
    let prepared = sandbox.prepare(&spec).unwrap();
    let mut spawned = prepared.spawn(&spec).await.unwrap();
    let prepare = t0.elapsed().as_secs_f64() * 1e6;
    let listener = tokio::net::TcpListener::from_std(spawned.take_api_listener().unwrap()).unwrap();
    let t1 = Instant::now();
    sandbox::open_gate(spawned.take_gate().unwrap())
        .await
        .unwrap();
    let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
    assert!(
        matches!(accepted, Ok(Ok(_))),
        "{name}: the function never connected"
    );
    let connect = t1.elapsed().as_secs_f64() * 1e6;
    let t2 = Instant::now();
    spawned.teardown().await;
    [prepare, connect, t2.elapsed().as_secs_f64() * 1e6]
}

#[allow(unsafe_code)]
fn is_root() -> bool {
    // SAFETY: plain syscall with no arguments.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_starts_and_stops_leave_nothing_behind() {
    if !is_root() {
        eprintln!("skipped: isolation needs root");
        return;
    }
    let dir = std::env::temp_dir().join(format!("levee-cycles-{}", std::process::id()));
    let code = dir.join("code");
    std::fs::create_dir_all(&code).unwrap();
    let hello = hello_fn();
    let mut modes = Vec::new();
    for isolation in ["namespaces", "none"] {
        let c = config(&dir, isolation, &hello, &code);
        let sandbox = Sandbox::new(&c.server, isolation == "namespaces").unwrap();
        let (f, e) = (c.functions["f"].clone(), c.functions["e"].clone());
        let needs = sandbox::resolve_needs(&f.command[0], &f.code).await;
        modes.push((sandbox, f, e, needs));
    }
    let before = leftovers();
    // [isolated, unisolated, egress] × [prepare, connect, teardown]
    let mut times: [[Vec<f64>; 3]; 3] = Default::default();
    for i in 0..CYCLES + EGRESS_CYCLES {
        let (m, (sandbox, f, e, needs)) = match i {
            i if i < CYCLES => (i % 2, &modes[i % 2]),
            _ => (2, &modes[0]),
        };
        let function = if m == 2 { e } else { f };
        let sample = cycle(sandbox, function, needs, &code, &format!("c{i}")).await;
        for (all, one) in times[m].iter_mut().zip(sample) {
            all.push(one);
        }
    }
    // Network namespaces die asynchronously once their last socket closes.
    // Nothing may be added; what was there before may go (another test
    // binary's servers can still be winding down when this one starts).
    let none_added = |before: (usize, usize, usize, usize, usize),
                      after: (usize, usize, usize, usize, usize)| {
        after.0 <= before.0
            && after.1 <= before.1
            && after.2 <= before.2
            && after.3 <= before.3
            && after.4 <= before.4
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = leftovers();
    while !none_added(before, after) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = leftovers();
    }
    assert!(
        none_added(before, after),
        "(mounts, cgroups, net namespaces, instance processes, links) before {before:?} and after {after:?} {CYCLES} + {EGRESS_CYCLES} cycles"
    );
    for (m, label) in ["isolated", "unisolated", "egress"].iter().enumerate() {
        let [prepare, connect, stop] = &mut times[m];
        println!(
            "{label}: prepare+spawn p50 {:.0} µs p99 {:.0} µs; gate→connect p50 {:.0} µs p99 {:.0} µs; teardown p50 {:.0} µs p99 {:.0} µs (n={})",
            pct(prepare, 50.0),
            pct(prepare, 99.0),
            pct(connect, 50.0),
            pct(connect, 99.0),
            pct(stop, 50.0),
            pct(stop, 99.0),
            prepare.len()
        );
    }
    for (sandbox, ..) in &modes {
        sandbox.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
