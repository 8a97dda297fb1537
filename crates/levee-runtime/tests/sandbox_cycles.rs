//! 1,000 back-to-back instance starts and stops through the real sandbox,
//! isolated and unisolated alternately: each start ends at the function's
//! first Runtime API connection, each stop at the end of teardown. They must
//! leave no mounts, cgroups, network namespaces or processes of instance
//! uids behind. Prints the timings `docs/BENCHMARKS.md` records:
//! `cargo test --release -p levee-runtime --test sandbox_cycles -- --nocapture`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use levee_config::Config;
use levee_runtime::sandbox::{self, PrepareSpec, Sandbox, SpawnSpec};

const CYCLES: usize = 1000;
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
        "[server]\ndata_dir = \"{}\"\nisolation = \"{isolation}\"\ninstance_uids = [{}, {}]\n\n[functions.f]\ncommand = [\"{}\"]\ncode = \"{}\"\n",
        dir.join(isolation).display(),
        UIDS.0,
        UIDS.1,
        hello.display(),
        code.display()
    );
    Config::parse(&text, "cycles.toml", dir).unwrap()
}

fn pct(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * p / 100.0).round() as usize]
}

/// What could be left behind: mount lines, the server's cgroup children,
/// distinct network namespaces in use, processes of the instance uids.
fn leftovers() -> (usize, usize, usize, usize) {
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
    (mounts, cgroups, nets.len(), uids)
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
    let modes: Vec<(bool, Sandbox, levee_config::Function, sandbox::Needs)> = {
        let mut modes = Vec::new();
        for isolation in ["namespaces", "none"] {
            let c = config(&dir, isolation, &hello, &code);
            let sandbox = Sandbox::new(&c.server).unwrap();
            let f = c.functions["f"].clone();
            let needs = sandbox::resolve_needs(&f.command[0], &f.code).await;
            modes.push((isolation == "namespaces", sandbox, f, needs));
        }
        modes
    };
    let before = leftovers();
    let mut prepare_us: [Vec<f64>; 2] = Default::default();
    let mut connect_us: [Vec<f64>; 2] = Default::default();
    let mut stop_us: [Vec<f64>; 2] = Default::default();
    for i in 0..CYCLES {
        let (isolated, sandbox, f, needs) = &modes[i % 2];
        let m = usize::from(!isolated);
        let name = format!("c{i}");
        let t0 = Instant::now();
        let prepared = sandbox
            .prepare(&PrepareSpec {
                function: f,
                instance_name: &name,
                staged_code: &code,
                needs,
            })
            .unwrap();
        let mut spawned = prepared
            .spawn(&SpawnSpec {
                function: f,
                needs,
                instance_name: &name,
                init_type: "on-demand",
            })
            .await
            .unwrap();
        prepare_us[m].push(t0.elapsed().as_secs_f64() * 1e6);
        let listener =
            tokio::net::TcpListener::from_std(spawned.take_api_listener().unwrap()).unwrap();
        let t1 = Instant::now();
        sandbox::open_gate(spawned.take_gate().unwrap())
            .await
            .unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await;
        assert!(
            matches!(accepted, Ok(Ok(_))),
            "cycle {i}: the function never connected"
        );
        connect_us[m].push(t1.elapsed().as_secs_f64() * 1e6);
        let t2 = Instant::now();
        spawned.teardown().await;
        stop_us[m].push(t2.elapsed().as_secs_f64() * 1e6);
    }
    // Network namespaces die asynchronously once their last socket closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = leftovers();
    while after != before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = leftovers();
    }
    assert_eq!(
        before, after,
        "(mounts, cgroups, net namespaces, instance processes) before and after {CYCLES} cycles"
    );
    for (m, label) in ["isolated", "unisolated"].iter().enumerate() {
        println!(
            "{label}: prepare+spawn p50 {:.0} µs p99 {:.0} µs; gate→connect p50 {:.0} µs p99 {:.0} µs; teardown p50 {:.0} µs p99 {:.0} µs (n={})",
            pct(&mut prepare_us[m], 50.0),
            pct(&mut prepare_us[m], 99.0),
            pct(&mut connect_us[m], 50.0),
            pct(&mut connect_us[m], 99.0),
            pct(&mut stop_us[m], 50.0),
            pct(&mut stop_us[m], 99.0),
            prepare_us[m].len()
        );
    }
    for (_, sandbox, _, _) in &modes {
        sandbox.close();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
