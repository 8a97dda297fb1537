//! `levee-bench`: Levee's own bench command. In one run it measures, side by
//! side with a plain hyper server, warm throughput at concurrency 4 and
//! latency at concurrency 1 (both with `wrk`, keep-alive), then cold starts
//! (the process's own start vs. a cold request through Levee), repeated over
//! interleaved rounds, and prints a Markdown report with medians and targets.
//!
//! Usage: `levee-bench [--rounds 3] [--secs 5] [--cold 15]` (cold starts per
//! round). `levee` and `hello-fn` are taken from this binary's directory.

mod baseline;
mod cold;
mod levee;
mod shield;
mod wrk;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use wrk::WrkResult;

const TARGET_RPS: f64 = 10_000.0;
const TARGET_ADDED_P50_US: f64 = 100.0;
const TARGET_COLD_US: f64 = 5_000.0;
/// Isolated cold-start overhead at the median (issue 13).
const TARGET_ISOLATED_COLD_P50_US: f64 = 500.0;
/// Shield-on throughput as a share of shield-off (DESIGN.md: ≥ 70 %).
const TARGET_SHIELD_RATIO: f64 = 0.70;
/// Key-protected route throughput as a share of an open one (issue 4: ≥ 80 %).
const TARGET_KEYED_RATIO: f64 = 0.80;
/// Throughput with metering on as a share of metering off (issue 7: ≥ 90 %).
const TARGET_METERED_RATIO: f64 = 0.90;
/// Throughput with isolation on as a share of isolation off (issue 13: ≥ 95 %).
const TARGET_ISOLATED_RATIO: f64 = 0.95;

#[derive(Debug)]
struct Args {
    rounds: usize,
    secs: u64,
    cold: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        rounds: 3,
        secs: 5,
        cold: 15,
    };
    let mut it = std::env::args().skip(1);
    let usage = "usage: levee-bench [--rounds N] [--secs S] [--cold N]";
    while let Some(flag) = it.next() {
        let value: usize = it.next().context(usage)?.parse().context(usage)?;
        match flag.as_str() {
            "--rounds" => a.rounds = value.clamp(1, 20),
            "--secs" => a.secs = value.clamp(1, 60) as u64,
            "--cold" => a.cold = value.clamp(1, 50),
            _ => bail!(usage),
        }
    }
    Ok(a)
}

/// Nearest-rank percentile of unsorted samples.
fn pct(samples: &[f64], p: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn median(samples: impl IntoIterator<Item = f64>) -> f64 {
    pct(&samples.into_iter().collect::<Vec<_>>(), 50.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "**PASS**"
    } else {
        "**FAIL**"
    }
}

/// One round's paired Levee and baseline figures.
#[derive(Debug)]
struct Round {
    levee_c4: WrkResult,
    base_c4: WrkResult,
    levee_c1: WrkResult,
    base_c1: WrkResult,
    shield_c4: WrkResult,
    open_c4: WrkResult,
    keyed_c4: WrkResult,
    unkeyed_c4: WrkResult,
    metered_c4: WrkResult,
    unmetered_c4: WrkResult,
    isolated_c4: WrkResult,
    unisolated_c4: WrkResult,
}

/// Runs wrk on both targets, in alternating order per round.
async fn pair(
    levee: &str,
    base: &str,
    swap: bool,
    t: u32,
    c: u32,
    secs: u64,
) -> anyhow::Result<(WrkResult, WrkResult)> {
    if swap {
        let b = wrk::run(base, t, c, secs).await?;
        Ok((wrk::run(levee, t, c, secs).await?, b))
    } else {
        let l = wrk::run(levee, t, c, secs).await?;
        Ok((l, wrk::run(base, t, c, secs).await?))
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, m)| m.trim());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "- Machine: nproc {nproc}, CPU `{model}`, kernel `{}`\n- Date: {date}\n",
        kernel.trim()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("exe dir")?
        .to_path_buf();
    let (levee_bin, hello_fn) = (bin_dir.join("levee"), bin_dir.join("hello-fn"));
    let code = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/hello/code")
        .canonicalize()?;
    let scratch: PathBuf = std::env::temp_dir().join(format!("levee-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;

    let mut cold_functions = String::new();
    for r in 0..a.rounds {
        for i in 0..a.cold {
            cold_functions += &levee::hello_function(
                &format!("cold_{r}_{i}"),
                &format!("/cold_{r}_{i}"),
                &hello_fn,
                &code,
            );
        }
    }
    let mut body = levee::hello_function("echo", "/echo", &hello_fn, &code);
    // The same function behind an API key, on a plan whose limits never bite.
    body += "[[routes]]\nroute = \"GET /keyed\"\nfunction = \"echo\"\napi_key_required = true\n\n";
    body += "[plans.bench]\nthrottle = { rate = 1000000000, burst = 1000000000 }\nquota = { limit = 1000000000000, period = \"DAY\" }\n\n";
    let server = levee::Levee::start(&levee_bin, &scratch, "", &body).await?;
    let shielded_dir = scratch.join("shielded");
    std::fs::create_dir_all(&shielded_dir)?;
    let shielded_body =
        shield::full_stack() + &levee::hello_function("echo", "/echo", &hello_fn, &code);
    let shielded = levee::Levee::start(&levee_bin, &shielded_dir, "", &shielded_body).await?;
    let unmetered_dir = scratch.join("unmetered");
    std::fs::create_dir_all(&unmetered_dir)?;
    let unmetered_body = String::from("[metering]\nenabled = false\n\n")
        + &levee::hello_function("echo", "/echo", &hello_fn, &code);
    let unmetered = levee::Levee::start(&levee_bin, &unmetered_dir, "", &unmetered_body).await?;
    // Twins for isolation on vs off: the same echo and cold functions,
    // differing only in `[server] isolation`.
    let twin_body = format!("[account]\nconcurrency = {}\n\n", a.rounds * a.cold + 10)
        + &levee::hello_function("echo", "/echo", &hello_fn, &code)
        + &cold_functions;
    let mut twins = Vec::new();
    for (name, keys) in [("isolated", ""), ("unisolated", "isolation = \"none\"\n")] {
        let dir = scratch.join(name);
        std::fs::create_dir_all(&dir)?;
        twins.push(levee::Levee::start(&levee_bin, &dir, keys, &twin_body).await?);
    }
    let (isolated, unisolated) = (&twins[0], &twins[1]);
    let servers = Servers {
        main: &server,
        shielded: &shielded,
        unmetered: &unmetered,
        isolated,
        unisolated,
    };
    let result = measure(&a, &servers, &hello_fn, &scratch).await;
    for twin in twins {
        twin.stop().await?;
    }
    server.stop().await?;
    shielded.stop().await?;
    unmetered.stop().await?;
    // LEVEE_LOG=warn: anything here is worth seeing next to the numbers.
    let log = std::fs::read_to_string(scratch.join("levee.stderr")).unwrap_or_default();
    for line in log.lines().take(20) {
        eprintln!("levee-bench: levee logged: {line}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!("{}", result?);
    Ok(())
}

/// The servers measured side by side.
struct Servers<'a> {
    /// Every stage on, instances isolated (the defaults).
    main: &'a levee::Levee,
    shielded: &'a levee::Levee,
    unmetered: &'a levee::Levee,
    /// Twins with the cold functions: isolation on (the default) and off.
    isolated: &'a levee::Levee,
    unisolated: &'a levee::Levee,
}

/// Cold starts on one server: (own start, cold, warm, overhead) samples.
#[derive(Default)]
struct ColdSamples {
    own: Vec<f64>,
    cold: Vec<f64>,
    warm: Vec<f64>,
    over: Vec<f64>,
}

impl ColdSamples {
    async fn sample(
        &mut self,
        server: &levee::Levee,
        path: &str,
        hello_fn: &Path,
        scratch: &Path,
    ) -> anyhow::Result<()> {
        let o = cold::own_start(hello_fn, scratch).await?;
        let mut client = cold::Client::connect(server.edge).await?;
        let (_, c) = client.get(path).await?;
        let (_, w) = client.get(path).await?;
        self.own.push(o);
        self.cold.push(c);
        self.warm.push(w);
        self.over.push(c - w - o);
        Ok(())
    }
}

/// Checks that each cold function started exactly once, without init failures.
async fn check_cold_starts(server: &levee::Levee, expected: usize) -> anyhow::Result<()> {
    let (doc, _) = cold::Client::connect(server.admin)
        .await?
        .get("/admin/functions")
        .await?;
    let doc: serde_json::Value = serde_json::from_slice(&doc)?;
    let (mut starts, mut failures) = (0, 0);
    for f in doc["functions"].as_array().context("no functions")? {
        if f["name"].as_str().is_some_and(|n| n.starts_with("cold_")) {
            starts += f["instances"]["starts"].as_u64().unwrap_or(0);
            failures += f["instances"]["init_failures"].as_u64().unwrap_or(0);
        }
    }
    if starts != expected as u64 || failures != 0 {
        bail!("admin reports {starts} cold starts and {failures} init failures: {doc}");
    }
    Ok(())
}

async fn measure(
    a: &Args,
    servers: &Servers<'_>,
    hello_fn: &Path,
    scratch: &Path,
) -> anyhow::Result<String> {
    let (server, shielded, unmetered) = (servers.main, servers.shielded, servers.unmetered);
    let (echo, _) = cold::Client::connect(server.edge)
        .await?
        .get("/echo")
        .await?;
    let (base_addr, base_task) = baseline::start(echo.clone()).await?;
    let (lurl, burl) = (
        format!("http://{}/echo", server.edge),
        format!("http://{base_addr}/"),
    );
    let surl = format!("http://{}/echo", shielded.edge);
    let kurl = format!("http://{}/keyed", server.edge);
    let uurl = format!("http://{}/echo", unmetered.edge);
    let (onurl, offurl) = (
        format!("http://{}/echo", servers.isolated.edge),
        format!("http://{}/echo", servers.unisolated.edge),
    );
    let key_header = vec![format!("x-api-key: {}", create_key(server).await?)];
    eprintln!("levee-bench: warming up (1 s each)");
    pair(&lurl, &burl, false, 2, 4, 1).await?;
    pair(&surl, &lurl, false, 2, 4, 1).await?;

    let (mut rounds, mut isolated, mut unisolated) =
        (vec![], ColdSamples::default(), ColdSamples::default());
    for r in 0..a.rounds {
        let swap = r % 2 == 1;
        let (levee_c4, base_c4) = pair(&lurl, &burl, swap, 2, 4, a.secs).await?;
        let (levee_c1, base_c1) = pair(&lurl, &burl, swap, 1, 1, a.secs).await?;
        let (shield_c4, open_c4) = pair(&surl, &lurl, swap, 2, 4, a.secs).await?;
        let (keyed_c4, unkeyed_c4) = if swap {
            let u = wrk::run(&lurl, 2, 4, a.secs).await?;
            (wrk::run_with(&kurl, 2, 4, a.secs, &key_header).await?, u)
        } else {
            let k = wrk::run_with(&kurl, 2, 4, a.secs, &key_header).await?;
            (k, wrk::run(&lurl, 2, 4, a.secs).await?)
        };
        for i in 0..a.cold {
            let path = format!("/cold_{r}_{i}");
            // Isolation on and off alternate first, round by round.
            for on in [!swap, swap] {
                let (samples, target) = if on {
                    (&mut isolated, servers.isolated)
                } else {
                    (&mut unisolated, servers.unisolated)
                };
                samples.sample(target, &path, hello_fn, scratch).await?;
                // Cold starts apart, as in real traffic (bursts are cheaper, see docs).
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        eprintln!(
            "levee-bench: round {}: c4 levee {:.0} / base {:.0} req/s; c1 p50 levee {:.0} / base {:.0} us; cold p50 so far {:.0} us",
            r + 1, levee_c4.rps, base_c4.rps, levee_c1.p50_us, base_c1.p50_us, pct(&isolated.cold, 50.0)
        );
        let (metered_c4, unmetered_c4) = pair(&lurl, &uurl, swap, 2, 4, a.secs).await?;
        let (isolated_c4, unisolated_c4) = pair(&onurl, &offurl, swap, 2, 4, a.secs).await?;
        rounds.push(Round {
            levee_c4,
            base_c4,
            levee_c1,
            base_c1,
            shield_c4,
            open_c4,
            keyed_c4,
            unkeyed_c4,
            metered_c4,
            unmetered_c4,
            isolated_c4,
            unisolated_c4,
        });
    }
    base_task.abort();

    check_cold_starts(servers.isolated, a.rounds * a.cold).await?;
    check_cold_starts(servers.unisolated, a.rounds * a.cold).await?;
    Ok(report(a, &rounds, [&isolated, &unisolated], echo.len()))
}

/// Creates a key on the `bench` plan through the admin API; returns its secret.
async fn create_key(server: &levee::Levee) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "-H",
            &format!("authorization: Bearer {}", levee::ADMIN_TOKEN),
        ])
        .args(["-d", r#"{"name":"bench","plan":"bench"}"#])
        .arg(format!("http://{}/admin/keys", server.admin))
        .output()
        .await
        .context("running curl")?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("creating a key: {}", String::from_utf8_lossy(&out.stderr)))?;
    doc["secret"]
        .as_str()
        .map(str::to_owned)
        .context("no secret in the admin API's answer")
}

fn report(a: &Args, rounds: &[Round], cold: [&ColdSamples; 2], body_len: usize) -> String {
    let m = |f: &dyn Fn(&Round) -> f64| median(rounds.iter().map(f));
    let (l_rps, b_rps) = (m(&|r| r.levee_c4.rps), m(&|r| r.base_c4.rps));
    let (l50, b50) = (m(&|r| r.levee_c1.p50_us), m(&|r| r.base_c1.p50_us));
    let (l99, b99) = (m(&|r| r.levee_c1.p99_us), m(&|r| r.base_c1.p99_us));
    let add50 = m(&|r| r.levee_c1.p50_us - r.base_c1.p50_us);
    let add99 = m(&|r| r.levee_c1.p99_us - r.base_c1.p99_us);
    let shield_ratio = m(&|r| r.shield_c4.rps / r.open_c4.rps);
    let keyed_ratio = m(&|r| r.keyed_c4.rps / r.unkeyed_c4.rps);
    let metered_ratio = m(&|r| r.metered_c4.rps / r.unmetered_c4.rps);
    let (me_rps, un_rps) = (m(&|r| r.metered_c4.rps), m(&|r| r.unmetered_c4.rps));
    let (k_rps, u_rps) = (m(&|r| r.keyed_c4.rps), m(&|r| r.unkeyed_c4.rps));
    let (s_rps, o_rps) = (m(&|r| r.shield_c4.rps), m(&|r| r.open_c4.rps));
    let isolated_ratio = m(&|r| r.isolated_c4.rps / r.unisolated_c4.rps);
    let (is_rps, un_is_rps) = (m(&|r| r.isolated_c4.rps), m(&|r| r.unisolated_c4.rps));
    let [isolated, unisolated] = cold;
    let (o50, o99) = (pct(&isolated.over, 50.0), pct(&isolated.over, 99.0));
    let (u50, u99) = (pct(&unisolated.over, 50.0), pct(&unisolated.over, 99.0));
    let n = isolated.own.len();
    let mut s = machine();
    s += &format!(
        "- Rounds: {} × {} s per wrk run (Levee and baseline alternate first), {n} cold starts; JSON body {body_len} bytes\n\n",
        a.rounds, a.secs
    );
    s +=
        "| Metric | Levee | Plain hyper | Derived | Target | Result |\n|---|---|---|---|---|---|\n";
    s += &format!(
        "| Warm throughput, c=4 (median of rounds) | {l_rps:.0} req/s | {b_rps:.0} req/s | Levee/plain = {:.2} | Levee ≥ 10000 req/s | {} |\n",
        l_rps / b_rps, verdict(l_rps >= TARGET_RPS)
    );
    s += &format!(
        "| Latency p50, c=1 | {l50:.0} µs | {b50:.0} µs | added {add50:.0} µs | added ≤ {TARGET_ADDED_P50_US:.0} µs | {} |\n",
        verdict(add50 <= TARGET_ADDED_P50_US)
    );
    s += &format!(
        "| Latency p99, c=1 | {l99:.0} µs | {b99:.0} µs | added {add99:.0} µs | — | — |\n"
    );
    s += &format!(
        "| Shield on (50 rules, rate rule, throttle, key check) vs off, c=4 | {s_rps:.0} req/s on | {o_rps:.0} req/s off | on/off = {shield_ratio:.2} | ≥ {TARGET_SHIELD_RATIO:.2} | {} |\n",
        verdict(shield_ratio >= TARGET_SHIELD_RATIO)
    );
    s += &format!(
        "| API-key route (key check, plan throttle, quota) vs open route, c=4 | {k_rps:.0} req/s keyed | {u_rps:.0} req/s open | keyed/open = {keyed_ratio:.2} | ≥ {TARGET_KEYED_RATIO:.2} | {} |\n",
        verdict(keyed_ratio >= TARGET_KEYED_RATIO)
    );
    s += &format!(
        "| Metering on (meters, budgets, Prometheus, access log off) vs off, c=4 | {me_rps:.0} req/s on | {un_rps:.0} req/s off | on/off = {metered_ratio:.2} | ≥ {TARGET_METERED_RATIO:.2} | {} |\n",
        verdict(metered_ratio >= TARGET_METERED_RATIO)
    );
    s += &format!(
        "| Isolation on vs off, c=4 | {is_rps:.0} req/s on | {un_is_rps:.0} req/s off | on/off = {isolated_ratio:.2} | ≥ {TARGET_ISOLATED_RATIO:.2} | {} |\n",
        verdict(isolated_ratio >= TARGET_ISOLATED_RATIO)
    );
    s += &format!(
        "| Cold-start overhead p50, isolated (n={n}) | | | {:.2} ms (off: {:.2} ms) | ≤ 0.5 ms | {} |\n",
        o50 / 1e3,
        u50 / 1e3,
        verdict(o50 <= TARGET_ISOLATED_COLD_P50_US)
    );
    s += &format!(
        "| Cold-start overhead p99, isolated (n={n}) | | | {:.2} ms (off: {:.2} ms) | ≤ 5 ms | {} |\n\n",
        o99 / 1e3,
        u99 / 1e3,
        verdict(o99 <= TARGET_COLD_US)
    );
    s += "| Cold-start component | isolated p50 | p99 | unisolated p50 | p99 |\n|---|---|---|---|---|\n";
    for (name, on, off) in [
        (
            "own start: spawn `hello-fn` → first `next` (no Levee)",
            &isolated.own,
            &unisolated.own,
        ),
        (
            "first request through Levee (cold)",
            &isolated.cold,
            &unisolated.cold,
        ),
        (
            "second request, same function (warm)",
            &isolated.warm,
            &unisolated.warm,
        ),
        (
            "overhead = cold − warm − own start (paired per sample)",
            &isolated.over,
            &unisolated.over,
        ),
    ] {
        s += &format!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |\n",
            pct(on, 50.0) / 1e3,
            pct(on, 99.0) / 1e3,
            pct(off, 50.0) / 1e3,
            pct(off, 99.0) / 1e3
        );
    }
    s += "\n| Round | Levee c4 req/s | plain c4 req/s | Levee c1 p50/p99 µs | plain c1 p50/p99 µs |\n|---|---|---|---|---|\n";
    for (i, r) in rounds.iter().enumerate() {
        s += &format!(
            "| {} | {:.0} | {:.0} | {:.0} / {:.0} | {:.0} / {:.0} |\n",
            i + 1,
            r.levee_c4.rps,
            r.base_c4.rps,
            r.levee_c1.p50_us,
            r.levee_c1.p99_us,
            r.base_c1.p50_us,
            r.base_c1.p99_us
        );
    }
    s
}
