//! End to end against the real `levee` binary: a `mixed` drill from 500
//! attack addresses with a per-IP rate rule in force. Legitimate traffic must
//! get through, and the attack must cause no more invocations than the rule
//! allows. Fails, naming the missing file, if the binaries are not built
//! (`cargo test --workspace` builds `levee`; `scripts/test` builds `hello-fn`).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use levee_drill::plan::{resolve, AdminApi};
use levee_drill::{DrillPlan, Scenario};

const TOKEN: &str = "levee-drill-test-admin-token-0123456789";
/// The rule: `LIMIT` requests per address per minute.
const LIMIT: u64 = 3;
const ATTACK_SOURCES: u32 = 500;

/// Kills the levee child however the test ends.
struct Levee(Child);

impl Drop for Levee {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bins() -> (PathBuf, PathBuf) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let levee = std::env::var_os("LEVEE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/debug/levee"));
    let hello = levee.with_file_name("hello-fn");
    for bin in [&levee, &hello] {
        assert!(
            bin.exists(),
            "{} is not built (set LEVEE_BIN or run `cargo build -p levee -p hello-fn`)",
            bin.display()
        );
    }
    (levee, hello)
}

fn start(levee: &Path, hello: &Path) -> (Levee, SocketAddr, SocketAddr) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("levee-drill-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let config = dir.join("levee.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "data"

[functions.f]
command = ["{}"]
code = "{}"
reserved_concurrency = 64
timeout = "10s"

[[routes]]
route = "ANY /f"
function = "f"

[firewall]
[[firewall.rules]]
name = "per-ip"
priority = 1
action = "block"
response = {{ status = 429 }}
statement = {{ rate = {{ limit = {LIMIT}, window = "60s", key = ["ip"] }} }}
"#,
            hello.display(),
            root.join("examples/hello/code").display()
        ),
    )
    .expect("config");
    let mut child = Command::new(levee)
        .args(["serve", "--config"])
        .arg(&config)
        .env("LEVEE_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("levee.stderr")).expect("stderr file"))
        .spawn()
        .expect("starting levee");
    let stdout = child.stdout.take().expect("stdout");
    let child = Levee(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut edge, mut admin) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while edge.is_none() || admin.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("levee printed its addresses within 30 s");
        let addr = |p: &str| line.strip_prefix(p).and_then(|a| a.trim().parse().ok());
        edge = edge.or(addr("levee: edge listening on http://"));
        admin = admin.or(addr("levee: admin listening on http://"));
    }
    (child, edge.expect("edge"), admin.expect("admin"))
}

#[test]
fn mixed_drill_against_levee_keeps_legit_traffic_and_bounds_attack_invocations() {
    let (levee, hello) = bins();
    let (_server, edge, admin) = start(&levee, &hello);
    let mut plan = DrillPlan::new(&format!("http://{edge}/f"), Scenario::Mixed, false)
        .expect("loopback target");
    plan.duration = Duration::from_secs(5);
    plan.rate = 1000;
    plan.sources = ATTACK_SOURCES;
    // 25 legitimate addresses × 10 r/s × 5 s: 2 requests each, inside the rule.
    plan.legit_rate = 10;
    plan.legit_sources = 25;
    // Fewer attack connections than the function's reservation, so what this
    // measures is the shield rather than the concurrency limit.
    plan.concurrency = 48;
    plan.timeout = Duration::from_secs(5);
    let admin_url = format!("http://{admin}");
    let (_, admin_addr) = resolve(&admin_url, false).expect("admin is loopback");
    plan.admin = Some(AdminApi {
        url: admin_url,
        addr: admin_addr,
        token: TOKEN.into(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(levee_drill::run(plan)).expect("drill ran");
    eprintln!("{}", report.summary());
    let impact = report.levee.as_ref().expect("admin readings");
    assert!(
        report.legit.requests >= 40,
        "legit traffic ran: {}",
        report.legit.requests
    );
    assert!(
        report.legit.success_ratio >= 0.99,
        "legit success {:.4}: {:?}",
        report.legit.success_ratio,
        report.legit.statuses
    );
    assert!(
        report.attack.requests >= 1000,
        "the attack ran: {}",
        report.attack.requests
    );
    assert!(
        report.attack.statuses.get("429").copied().unwrap_or(0) > 0,
        "the rule blocked some of the attack: {:?}",
        report.attack.statuses
    );
    assert!(
        impact.invocations_caused_by_attack <= u64::from(ATTACK_SOURCES) * LIMIT,
        "attack invocations {} > {} addresses × {LIMIT}",
        impact.invocations_caused_by_attack,
        ATTACK_SOURCES
    );
    assert!(
        impact.invocations_caused >= report.legit.success,
        "invocations were counted"
    );
    assert!(
        impact.instances_peak >= 1,
        "instances were seen during the run"
    );
    let memory = impact.memory_peak_bytes.expect("levee's memory was read");
    assert!(
        (1 << 20..1 << 32).contains(&memory),
        "levee's peak memory {memory} B is plausible"
    );
    let html = levee_drill::html::render(&report);
    assert_eq!(html.matches("<svg ").count(), 4);
}
