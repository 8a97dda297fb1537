//! What a drill will do: argument parsing, bounds and the target-safety check.
//! It owns every limit a run is held to (duration, request count, rates,
//! sources, connections) and the rule that a target must be loopback unless the
//! operator says they own it. It must never open a connection: resolution of
//! the host name is the only I/O here.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::error::DrillError;

/// Longest run (10 min): a drill always stops by itself.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Most requests (attack and legitimate together) one run may send.
pub const MAX_REQUESTS: u64 = 10_000_000;
/// Highest attack rate, requests (or connections) per second.
pub const MAX_RATE: u32 = 100_000;
/// Highest legitimate rate, requests per second.
pub const MAX_LEGIT_RATE: u32 = 10_000;
/// Most attack source addresses: 127.20.0.1 … 127.20.255.250 (+ 127.21.…), 250 per /24.
pub const MAX_SOURCES: u32 = 64_000;
/// Most legitimate source addresses: 127.10.0.1 … 127.10.0.250.
pub const MAX_LEGIT_SOURCES: u32 = 250;
/// Most connections open at once per class. The workplace's hard open-file
/// limit is 20 000 and the target may share the machine, so stay well below.
pub const MAX_CONCURRENCY: u32 = 8_000;
/// Defaults, shared by the command line and [`DrillPlan::new`].
const DEFAULT_SECS: u64 = 10;
const DEFAULT_RATE: u32 = 500;
const DEFAULT_SOURCES: u32 = 1000;
const DEFAULT_LEGIT_RATE: u32 = 20;
const DEFAULT_LEGIT_SOURCES: u32 = 10;
const DEFAULT_CONCURRENCY: u32 = 256;
const DEFAULT_LEGIT_CONCURRENCY: u32 = 64;
/// A bursty replay sends for one second in every this many.
pub const BURST_EVERY_SECS: u64 = 4;
/// Longest `--launch-path`.
pub const MAX_LAUNCH_PATH: usize = 1024;
/// Per-request timeout bounds.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
/// See [`MIN_TIMEOUT`].
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// The attack to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Plain requests from many source addresses at a high rate.
    Flood,
    /// Request heads that never end: a header line every few seconds.
    Slowloris,
    /// A large Content-Length, then a body trickled a few bytes at a time.
    SlowPost,
    /// A request for a response, read a few bytes per second through a tiny window.
    SlowRead,
    /// Random query strings and paths, so every request misses a cache.
    CacheBust,
    /// Bodies far beyond any sane limit.
    BigBody,
    /// Malformed HTTP, huge heads, pathological regex inputs.
    BadInput,
    /// Random API keys.
    KeyStuffing,
    /// A rotation of flood, cache-bust, key-stuffing and bad-input.
    Mixed,
    /// A flood rotating browsers' user agents, in a tool's header order.
    DisguisedFlood,
    /// Not an attack: new clients from many networks, browsers' and SDKs'
    /// variety, at `--rate`; automatic mitigation must leave it alone.
    FlashCrowd,
    /// Not an attack: the legitimate clients calling `--launch-path` at
    /// `--rate`; automatic mitigation must leave it alone.
    RouteLaunch,
    /// Not an attack: the legitimate clients' own requests replayed in
    /// bursts, `--rate` for one second in every four; automatic mitigation
    /// must leave it alone.
    BurstyReplay,
}

impl Scenario {
    /// The kebab-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Flood => "flood",
            Scenario::Slowloris => "slowloris",
            Scenario::SlowPost => "slow-post",
            Scenario::SlowRead => "slow-read",
            Scenario::CacheBust => "cache-bust",
            Scenario::BigBody => "big-body",
            Scenario::BadInput => "bad-input",
            Scenario::KeyStuffing => "key-stuffing",
            Scenario::Mixed => "mixed",
            Scenario::DisguisedFlood => "disguised-flood",
            Scenario::FlashCrowd => "flash-crowd",
            Scenario::RouteLaunch => "route-launch",
            Scenario::BurstyReplay => "bursty-replay",
        }
    }

    /// Traffic an automatic defence must not refuse.
    pub fn is_benign(self) -> bool {
        matches!(
            self,
            Scenario::FlashCrowd | Scenario::RouteLaunch | Scenario::BurstyReplay
        )
    }
}

/// A parsed `http://host[:port][/path]` target, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The `Host` header to send.
    pub host: String,
    /// The address connected to.
    pub addr: SocketAddr,
    /// Path and query of every legitimate request (and the base of attack ones).
    pub path: String,
}

/// Levee's admin API, to count what the attack cost.
#[derive(Debug, Clone)]
pub struct AdminApi {
    /// The admin base URL, as given.
    pub url: String,
    /// The resolved admin address.
    pub addr: SocketAddr,
    /// The bearer token.
    pub token: String,
}

/// Everything one run needs; build with [`DrillPlan::from_args`] or
/// [`DrillPlan::new`] (both apply the safety check and the bounds).
#[derive(Debug, Clone)]
pub struct DrillPlan {
    /// Where to send traffic.
    pub target: Target,
    /// Which attack.
    pub scenario: Scenario,
    /// How long the attack and the legitimate traffic run.
    pub duration: Duration,
    /// Attack requests (slow scenarios: new connections) per second.
    pub rate: u32,
    /// Distinct attack source addresses.
    pub sources: u32,
    /// Legitimate requests per second (0: none).
    pub legit_rate: u32,
    /// Distinct legitimate source addresses.
    pub legit_sources: u32,
    /// Most attack connections open at once (the generator skips, and counts,
    /// a request that would exceed it, rather than queue it: open loop).
    pub concurrency: u32,
    /// Most legitimate connections open at once.
    pub legit_concurrency: u32,
    /// Per-request timeout (non-slow requests).
    pub timeout: Duration,
    /// Most requests of both classes together.
    pub max_requests: u64,
    /// The new route a route launch calls (path and query); `None`: the
    /// target's.
    pub launch_path: Option<String>,
    /// The attack's rate rises evenly from 0 to `rate` over this long
    /// (zero: at full rate from the start).
    pub ramp: Duration,
    /// Levee's admin API, if the target is levee.
    pub admin: Option<AdminApi>,
    /// Where to write `drill-*.json` / `.html` (None: no files).
    pub report_dir: Option<PathBuf>,
    /// No progress line.
    pub quiet: bool,
    /// The operator owns a non-loopback target.
    pub i_own_this_target: bool,
}

/// `levee drill` arguments.
#[derive(Debug, Parser)]
#[command(
    name = "levee drill",
    about = "Attack a target you own and report what legitimate users saw and what the attack cost"
)]
struct Cli {
    /// Target URL, e.g. http://127.0.0.1:8080/f (plain HTTP; loopback unless --i-own-this-target).
    #[arg(long)]
    target: String,
    /// Attack scenario.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// How long to run, e.g. 10s, 500ms, 2m (max 10m).
    #[arg(long, default_value = "10s", value_parser = levee_common::parse_duration)]
    duration: Duration,
    /// Attack requests per second (slow scenarios: new connections per
    /// second); 0 for none, legitimate traffic only (a baseline to learn).
    #[arg(long, default_value_t = DEFAULT_RATE)]
    rate: u32,
    /// Distinct attack source addresses (127.20.x.y).
    #[arg(long, default_value_t = DEFAULT_SOURCES)]
    sources: u32,
    /// Legitimate requests per second during the attack (0 for none).
    #[arg(long, default_value_t = DEFAULT_LEGIT_RATE)]
    legit_rate: u32,
    /// Distinct legitimate source addresses (127.10.0.x).
    #[arg(long, default_value_t = DEFAULT_LEGIT_SOURCES)]
    legit_sources: u32,
    /// Most attack connections open at once.
    #[arg(long, default_value_t = DEFAULT_CONCURRENCY)]
    concurrency: u32,
    /// Most legitimate connections open at once.
    #[arg(long, default_value_t = DEFAULT_LEGIT_CONCURRENCY)]
    legit_concurrency: u32,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = levee_common::parse_duration)]
    timeout: Duration,
    /// Most requests in all (max 10 000 000).
    #[arg(long, default_value_t = MAX_REQUESTS)]
    max_requests: u64,
    /// The new route a route-launch scenario calls, e.g. /v2/items (default: the target's path).
    #[arg(long)]
    launch_path: Option<String>,
    /// Raise the attack's rate evenly from 0 to --rate over this long, e.g. 10s (default: at once).
    #[arg(long, default_value = "0s", value_parser = levee_common::parse_duration)]
    ramp: Duration,
    /// Levee's admin URL (e.g. http://127.0.0.1:9090), to count invocations and spend caused.
    #[arg(long)]
    admin: Option<String>,
    /// Admin bearer token.
    #[arg(long, env = "LEVEE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Directory for the JSON and HTML reports.
    #[arg(long, default_value = "drill-reports")]
    report_dir: PathBuf,
    /// Write no report files.
    #[arg(long)]
    no_report: bool,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Allow a target that is not a loopback address. Only for systems you own.
    #[arg(long)]
    i_own_this_target: bool,
}

/// Splits `http://host[:port][/path]` into host, port and path.
pub fn parse_url(url: &str) -> Result<(String, u16, String), DrillError> {
    let usage = |why: &str| DrillError::Usage(format!("--target/--admin `{url}`: {why}"));
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err(usage(
            "https is not supported; the drill speaks plain HTTP/1.1",
        ));
    } else {
        return Err(usage("must start with http://"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| usage("unclosed `[`"))?;
        (h.to_string(), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(usage("no host"));
    }
    let port = match port {
        Some(p) => p.parse().map_err(|_| usage("bad port"))?,
        None => 80,
    };
    Ok((host, port, path))
}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The safety rule: every address the target resolves to must be loopback,
/// unless the operator owns the target. Returns the address to use (IPv4
/// preferred: distinct 127.x.y.z sources only exist there).
pub fn check_addresses(
    url: &str,
    addrs: &[SocketAddr],
    i_own_this_target: bool,
) -> Result<SocketAddr, DrillError> {
    if !i_own_this_target {
        if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.ip())) {
            return Err(DrillError::NotLoopback {
                target: url.to_string(),
                addr: bad.ip(),
            });
        }
    }
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| DrillError::Resolve {
            target: url.to_string(),
            reason: "no addresses".into(),
        })
}

/// Parses and resolves a URL, applying the safety rule.
pub fn resolve(url: &str, i_own_this_target: bool) -> Result<(Target, SocketAddr), DrillError> {
    let (host, port, path) = parse_url(url)?;
    // IP literals never touch the resolver, so the check is exact and offline.
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| DrillError::Resolve {
                target: url.to_string(),
                reason: e.to_string(),
            })?
            .take(16) // a name with hundreds of records: the first few decide
            .collect(),
    };
    let addr = check_addresses(url, &addrs, i_own_this_target)?;
    let host_header = if port == 80 {
        host.clone()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok((
        Target {
            url: url.to_string(),
            host: host_header,
            addr,
            path,
        },
        addr,
    ))
}

fn in_range<T: PartialOrd + std::fmt::Debug>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), DrillError> {
    if v < lo || v > hi {
        return Err(DrillError::Usage(format!(
            "--{name} {v:?} is out of range ({lo:?} ..= {hi:?})"
        )));
    }
    Ok(())
}

impl DrillPlan {
    /// A plan with the defaults of the command line, after the safety check.
    pub fn new(
        target_url: &str,
        scenario: Scenario,
        i_own_this_target: bool,
    ) -> Result<DrillPlan, DrillError> {
        let (target, _) = resolve(target_url, i_own_this_target)?;
        Ok(DrillPlan {
            target,
            scenario,
            duration: Duration::from_secs(DEFAULT_SECS),
            rate: DEFAULT_RATE,
            sources: DEFAULT_SOURCES,
            legit_rate: DEFAULT_LEGIT_RATE,
            legit_sources: DEFAULT_LEGIT_SOURCES,
            concurrency: DEFAULT_CONCURRENCY,
            legit_concurrency: DEFAULT_LEGIT_CONCURRENCY,
            timeout: Duration::from_secs(DEFAULT_SECS),
            max_requests: MAX_REQUESTS,
            launch_path: None,
            ramp: Duration::ZERO,
            admin: None,
            report_dir: None,
            quiet: true,
            i_own_this_target,
        })
    }

    /// Parses the arguments after `levee drill`.
    pub fn from_args(args: &[String]) -> Result<DrillPlan, DrillError> {
        let cli = Cli::try_parse_from(
            std::iter::once("levee drill".to_string()).chain(args.iter().cloned()),
        )
        .map_err(|e| match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                DrillError::Help(e.to_string())
            }
            _ => DrillError::Usage(e.to_string()),
        })?;
        let mut plan = DrillPlan::new(&cli.target, cli.scenario, cli.i_own_this_target)?;
        plan.duration = cli.duration;
        plan.rate = cli.rate;
        plan.sources = cli.sources;
        plan.legit_rate = cli.legit_rate;
        plan.legit_sources = cli.legit_sources;
        plan.concurrency = cli.concurrency;
        plan.legit_concurrency = cli.legit_concurrency;
        plan.timeout = cli.timeout;
        plan.max_requests = cli.max_requests;
        plan.launch_path = cli.launch_path;
        plan.ramp = cli.ramp;
        plan.quiet = cli.quiet;
        plan.report_dir = (!cli.no_report).then_some(cli.report_dir);
        plan.admin = match (cli.admin, cli.token) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(DrillError::Usage(
                    "--admin needs --token (or LEVEE_ADMIN_TOKEN)".into(),
                ))
            }
            (Some(url), Some(token)) => {
                let (_, addr) = resolve(&url, cli.i_own_this_target)?;
                Some(AdminApi { url, addr, token })
            }
        };
        plan.validate()?;
        Ok(plan)
    }

    /// Checks every bound and the safety rule again (a plan may have been
    /// edited after [`DrillPlan::new`]).
    pub fn validate(&self) -> Result<(), DrillError> {
        check_addresses(
            &self.target.url,
            &[self.target.addr],
            self.i_own_this_target,
        )?;
        if let Some(admin) = &self.admin {
            check_addresses(&admin.url, &[admin.addr], self.i_own_this_target)?;
        }
        in_range(
            "duration",
            self.duration,
            Duration::from_secs(1),
            MAX_DURATION,
        )?;
        in_range("rate", self.rate, 0, MAX_RATE)?;
        if self.rate == 0 && self.legit_rate == 0 {
            return Err(DrillError::Usage(
                "--rate 0 and --legit-rate 0 together send nothing".into(),
            ));
        }
        in_range("sources", self.sources, 1, MAX_SOURCES)?;
        in_range("legit-rate", self.legit_rate, 0, MAX_LEGIT_RATE)?;
        in_range("legit-sources", self.legit_sources, 1, MAX_LEGIT_SOURCES)?;
        in_range("concurrency", self.concurrency, 1, MAX_CONCURRENCY)?;
        in_range(
            "legit-concurrency",
            self.legit_concurrency,
            1,
            MAX_CONCURRENCY,
        )?;
        in_range("timeout", self.timeout, MIN_TIMEOUT, MAX_TIMEOUT)?;
        in_range("max-requests", self.max_requests, 1, MAX_REQUESTS)?;
        in_range("ramp", self.ramp, Duration::ZERO, self.duration)?;
        if let Some(path) = &self.launch_path {
            if self.scenario != Scenario::RouteLaunch {
                return Err(DrillError::Usage(
                    "--launch-path is for --scenario route-launch".into(),
                ));
            }
            // It goes into a request line: nothing that could end one.
            let printable = path.bytes().all(|b| b.is_ascii_graphic());
            if !path.starts_with('/') || !printable || path.len() > MAX_LAUNCH_PATH {
                return Err(DrillError::Usage(format!(
                    "--launch-path must start with / and be at most {MAX_LAUNCH_PATH} printable ASCII characters, without spaces"
                )));
            }
        }
        Ok(())
    }

    /// How many seconds' worth of `--rate` the surge class has sent
    /// `elapsed` into the run: a bursty replay sends only in the first
    /// second of every [`BURST_EVERY_SECS`], and a ramp rises evenly
    /// over `ramp` (so half its length's worth by its end).
    pub fn surge_seconds(&self, elapsed: f64) -> f64 {
        let on = if self.scenario == Scenario::BurstyReplay {
            let every = BURST_EVERY_SECS as f64;
            (elapsed / every).floor() + (elapsed % every).min(1.0)
        } else {
            elapsed
        };
        let ramp = self.ramp.as_secs_f64();
        if on < ramp {
            on * on / (2.0 * ramp)
        } else {
            on - ramp / 2.0
        }
    }

    /// Where the surge class sends: the target, or for a route launch its
    /// new route.
    pub fn surge_target(&self) -> Target {
        let mut target = self.target.clone();
        if let (Scenario::RouteLaunch, Some(path)) = (self.scenario, &self.launch_path) {
            target.path.clone_from(path);
        }
        target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_ramp_rises_evenly_and_a_replay_comes_in_bursts() {
        let mut plan = DrillPlan::new("http://127.0.0.1:9/f", Scenario::Flood, false).unwrap();
        assert_eq!(plan.surge_seconds(3.0), 3.0);
        plan.ramp = Duration::from_secs(10);
        assert_eq!(plan.surge_seconds(0.0), 0.0);
        assert_eq!(
            plan.surge_seconds(5.0),
            1.25,
            "a quarter of the ramp's area"
        );
        assert_eq!(plan.surge_seconds(10.0), 5.0);
        assert_eq!(plan.surge_seconds(12.0), 7.0, "full rate after it");
        plan.duration = Duration::from_secs(5);
        assert!(plan.validate().is_err(), "a ramp longer than the run");
        let plan = DrillPlan::new("http://127.0.0.1:9/f", Scenario::BurstyReplay, false).unwrap();
        let sent: Vec<f64> = [0.5, 1.0, 3.9, 4.5, 8.0, 9.0]
            .map(|t| plan.surge_seconds(t))
            .into();
        assert_eq!(sent, [0.5, 1.0, 1.0, 1.5, 2.0, 3.0]);
        assert!(Scenario::BurstyReplay.is_benign());
    }

    #[test]
    fn launch_path_is_for_a_route_launch_and_stays_one_request_line() {
        let base = "--target http://127.0.0.1:1/f --scenario";
        let plan = DrillPlan::from_args(&args(&format!(
            "{base} route-launch --launch-path /v2/items?x=1 --no-report"
        )))
        .unwrap();
        assert_eq!(plan.surge_target().path, "/v2/items?x=1");
        assert_eq!(plan.target.path, "/f");
        let plain = DrillPlan::from_args(&args(&format!("{base} route-launch"))).unwrap();
        assert_eq!(plain.surge_target().path, "/f");
        for bad in [
            format!("{base} flood --launch-path /x"),
            format!("{base} route-launch --launch-path x"),
            format!(
                "{base} route-launch --launch-path /{}",
                "a".repeat(MAX_LAUNCH_PATH)
            ),
        ] {
            let err = DrillPlan::from_args(&args(&bad)).unwrap_err().to_string();
            assert!(err.contains("--launch-path"), "{bad}: {err}");
        }
        let mut injected = plain.clone();
        injected.launch_path = Some("/x HTTP/1.1\r\nx: y".into());
        assert!(injected.validate().is_err());
    }

    #[test]
    fn the_command_line_and_new_share_their_defaults() {
        let url = "http://127.0.0.1:9/f";
        let cli = DrillPlan::from_args(&args(&format!("--target {url} --scenario flood"))).unwrap();
        let new = DrillPlan::new(url, Scenario::Flood, false).unwrap();
        assert_eq!(
            (
                cli.duration,
                cli.rate,
                cli.sources,
                cli.legit_rate,
                cli.legit_sources
            ),
            (
                new.duration,
                new.rate,
                new.sources,
                new.legit_rate,
                new.legit_sources
            )
        );
        assert_eq!(
            (
                cli.concurrency,
                cli.legit_concurrency,
                cli.timeout,
                cli.max_requests
            ),
            (
                new.concurrency,
                new.legit_concurrency,
                new.timeout,
                new.max_requests
            )
        );
    }

    #[test]
    fn loopback_targets_are_accepted() {
        for url in [
            "http://127.0.0.1:8080/f",
            "http://127.3.4.5/",
            "http://[::1]:9/x",
            "http://localhost:1",
        ] {
            let (t, addr) = resolve(url, false).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(is_loopback(addr.ip()), "{url}");
            assert_eq!(t.url, url);
        }
        let (t, _) = resolve("http://127.0.0.1:8080/f?a=1", false).unwrap();
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/f?a=1")
        );
    }

    #[test]
    fn other_targets_are_refused_without_the_flag() {
        let e = resolve("http://10.0.0.1:80/", false).unwrap_err();
        assert!(matches!(e, DrillError::NotLoopback { .. }), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--i-own-this-target"), "{e}");
        assert!(
            resolve("http://10.0.0.1:80/", true).is_ok(),
            "the flag allows it"
        );
        // A public name is refused either because it resolves elsewhere or
        // because it does not resolve here (no network): never attacked.
        let e = resolve("http://example.com/", false).unwrap_err();
        assert!(
            matches!(
                e,
                DrillError::NotLoopback { .. } | DrillError::Resolve { .. }
            ),
            "{e}"
        );
        assert_eq!(e.exit_code(), 2);
        let mixed = [
            "127.0.0.1:80".parse().unwrap(),
            "93.184.216.34:80".parse().unwrap(),
        ];
        assert!(
            check_addresses("x", &mixed, false).is_err(),
            "one non-loopback record is enough to refuse"
        );
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("::ffff:10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn a_plan_edited_after_the_check_is_checked_again() {
        let mut p = DrillPlan::new("http://127.0.0.1:1/", Scenario::Flood, false).unwrap();
        assert!(p.validate().is_ok());
        p.target.addr = "10.0.0.1:1".parse().unwrap();
        assert!(matches!(p.validate(), Err(DrillError::NotLoopback { .. })));
    }

    #[test]
    fn arguments_are_validated() {
        let base = "--target http://127.0.0.1:9/f --scenario mixed --no-report";
        let p = DrillPlan::from_args(&args(&format!(
            "{base} --duration 1m30s --rate 300 --sources 600"
        )))
        .unwrap();
        assert_eq!(
            (p.duration, p.rate, p.sources, p.scenario),
            (Duration::from_secs(90), 300, 600, Scenario::Mixed)
        );
        assert!(p.report_dir.is_none());
        let baseline = DrillPlan::from_args(&args(&format!("{base} --rate 0"))).unwrap();
        assert_eq!(
            (baseline.rate, baseline.legit_rate),
            (0, 20),
            "legitimate traffic alone"
        );
        for bad in [
            "--duration 11m",
            "--duration 0s",
            "--duration soon",
            "--duration 10",
            "--rate 0 --legit-rate 0",
            "--rate 100001",
            "--sources 64001",
            "--legit-sources 251",
            "--concurrency 0",
            "--timeout 50ms",
            "--max-requests 10000001",
            "--admin http://127.0.0.1:1",
            "--scenario nope",
        ] {
            let e = DrillPlan::from_args(&args(&format!("{base} {bad}"))).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        for bad in [
            "--target ftp://127.0.0.1/ --scenario flood",
            "--target https://127.0.0.1/ --scenario flood",
            "--target http://:80/ --scenario flood",
            "--target http://127.0.0.1:99999/ --scenario flood",
            "--scenario flood",
        ] {
            assert!(
                matches!(DrillPlan::from_args(&args(bad)), Err(DrillError::Usage(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            DrillPlan::from_args(&args("--help")),
            Err(DrillError::Help(_))
        ));
        for name in [
            "flood",
            "slowloris",
            "slow-post",
            "slow-read",
            "cache-bust",
            "big-body",
            "bad-input",
            "key-stuffing",
            "mixed",
        ] {
            let p = DrillPlan::from_args(&args(&format!(
                "--target http://127.0.0.1:9/ --scenario {name}"
            )))
            .unwrap();
            assert_eq!(p.scenario.name(), name);
        }
    }
}
