//! Running `wrk` (keep-alive, `--latency`) against a loopback URL and parsing
//! its requests/s and latency percentiles.

use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::Command;

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkResult {
    pub rps: f64,
    /// Latency percentiles in microseconds.
    pub p50_us: f64,
    pub p99_us: f64,
}

/// `wrk -t<threads> -c<conns> -d<secs>s --latency <url>`, bounded to secs + 30 s.
pub async fn run(url: &str, threads: u32, conns: u32, secs: u64) -> anyhow::Result<WrkResult> {
    run_with(url, threads, conns, secs, &[]).await
}

/// [`run`] with extra request headers (`"name: value"`).
pub async fn run_with(
    url: &str,
    threads: u32,
    conns: u32,
    secs: u64,
    headers: &[String],
) -> anyhow::Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    let out = cmd
        .args([
            format!("-t{threads}"),
            format!("-c{conns}"),
            format!("-d{secs}s"),
            "--latency".into(),
            url.into(),
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(secs + 30), out)
        .await
        .context("wrk did not finish in time")?
        .context("running wrk (apt-get install -y wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    parse(&text).with_context(|| format!("unexpected wrk output:\n{text}"))
}

fn parse(text: &str) -> anyhow::Result<WrkResult> {
    if let Some(bad) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        bail!("wrk saw errors: {}", bad.trim());
    }
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
            .with_context(|| format!("no `{prefix}` line"))
    };
    Ok(WrkResult {
        rps: field("Requests/sec:")?.parse()?,
        p50_us: micros(field("50%")?)?,
        p99_us: micros(field("99%")?)?,
    })
}

/// `85.00us`, `1.20ms`, `2.00s` → microseconds.
fn micros(v: &str) -> anyhow::Result<f64> {
    let split = v
        .find(|c: char| c.is_ascii_alphabetic())
        .context("no unit")?;
    let n: f64 = v[..split].parse()?;
    Ok(match &v[split..] {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        u => bail!("unknown unit {u}"),
    })
}
