use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfigError, Problem};
use crate::guard::{ClientIp, Limits, Throttle};
use crate::load;
use crate::route::Route;

/// A validated `levee.toml`. Every path in it is absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub server: Server,
    pub account: Account,
    pub functions: BTreeMap<String, Function>,
    pub routes: Vec<Route>,
    /// `[cors]`: CORS for every route without its own.
    pub cors: Option<crate::cors::Cors>,
    /// `[authorizers.NAME]`: JWT authorizers routes may name.
    pub authorizers: BTreeMap<String, crate::authorizers::Authorizer>,
    /// `[limits]`: the connection guard.
    pub limits: Limits,
    /// `[admin_limits]`: the admin listener's connection guard.
    pub admin_limits: Limits,
    /// `[tls]`: HTTPS on the edge, when set.
    pub tls: Option<crate::tls::Tls>,
    /// `[admin_tls]`: HTTPS on the admin listener, when set.
    pub admin_tls: Option<crate::tls::TlsIdentity>,
    /// `[client_ip]`: trusted proxies.
    pub client_ip: ClientIp,
    /// `[throttle]`: the account-wide token bucket, if any.
    pub throttle: Option<Throttle>,
    /// `[firewall]`: rules, IP sets, rate-based rules and bans (validated by
    /// compiling them; the edge compiles its own copy).
    pub firewall: Option<levee_shield::firewall::FirewallConfig>,
    /// `[plans.NAME]`: usage plans for API keys.
    pub plans: BTreeMap<String, crate::plans::Plan>,
    /// `[cache]`: the edge cache's size and compression threshold.
    pub cache: crate::cache::CacheSettings,
    /// `[prices]`: what invocations cost (default: Lambda's x86 list prices).
    pub prices: crate::budgets::Prices,
    /// `[budgets.NAME]`: spend budgets and their actions.
    pub budgets: BTreeMap<String, crate::budgets::Budget>,
    /// `[metering] enabled` (default true).
    pub metering: bool,
    /// `[queues.NAME]`: durable queues.
    pub queues: BTreeMap<String, crate::queues::QueueConfig>,
    /// `[[event_sources]]`: queue → function mappings.
    pub event_sources: Vec<crate::queues::EventSourceConfig>,
    /// `[auto_mitigation]`: automatic attack detection.
    pub auto_mitigation: crate::auto::AutoMitigation,
    /// Allowed but probably a mistake: printed by `levee check`, never
    /// fatal.
    pub warnings: Vec<Problem>,
}

impl Config {
    /// Reads and validates the file. Relative paths (`data_dir`, `code`, and
    /// `command[0]` when it contains a `/`) are resolved against the file's
    /// directory and made absolute; `data_dir` need not exist yet.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                &origin,
                vec![Problem {
                    line: None,
                    key: String::new(),
                    message: format!("cannot read the file: {e}"),
                }],
            )
        })?;
        let base_dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        Config::parse(&text, &origin, base_dir)
    }

    /// Same as [`Config::load`] from text: `origin` names the file in
    /// messages and `base_dir` resolves relative paths.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        load::parse(text, origin, base_dir)
    }
}

/// Why an admin address is risky, or `None` for loopback. The admin API is
/// the control plane: off loopback, anyone who can reach the port can try
/// tokens and hold its connections.
pub fn exposed_admin(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "{addr} is not a loopback address: whoever can reach it can try admin tokens; \
             keep it on 127.0.0.1 or ::1 unless a firewall guards the port"
        )
    })
}

/// `[server]`: where Levee listens and keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Public invoke endpoint; default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Admin API; default `127.0.0.1:8081`.
    pub admin_listen: SocketAddr,
    /// Default `.levee` next to the config file.
    pub data_dir: PathBuf,
    /// One line per request under the `levee::access` log target.
    pub access_log: AccessLog,
    /// How instances are kept apart; default [`Isolation::Namespaces`].
    pub isolation: Isolation,
    /// The uids (and equal gids) handed to live instances, one each;
    /// default 200000..=265535.
    pub instance_uids: std::ops::RangeInclusive<u32>,
}

/// `[server] isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Own uid, namespaces, read-only root, bounded /tmp, seccomp, no
    /// network (`"namespaces"`, the default). Levee refuses to start
    /// functions where this cannot be had.
    #[default]
    Namespaces,
    /// Instances run as Levee's own user in its namespaces (`"none"`):
    /// for machines where namespaces are not available, never by accident.
    None,
}

/// `[functions.<name>] network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// An empty network namespace with `lo` up: only the instance's own
    /// Runtime API and the addresses in `forward` answer.
    #[default]
    None,
    /// Outbound access through a veth pair and NAT, never to the host's
    /// own addresses or to other instances.
    Egress,
}

/// `[server] access_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// No access log.
    Off,
    /// `key=value` text (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[account]`: limits shared by all functions, like a Lambda account's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Concurrent executions across all functions; default 100, 1..=100000.
    pub concurrency: u32,
}

/// How a function's instances are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeKind {
    /// A child process speaking the Lambda Runtime API (`"process"`).
    #[default]
    Process,
}

/// `[functions.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// The table key.
    pub name: levee_common::name::FunctionName,
    pub runtime: RuntimeKind,
    /// Program and arguments; never empty, no empty elements.
    pub command: Vec<String>,
    /// The `_HANDLER` value; defaults to the last element of `command` as written.
    pub handler: String,
    /// Existing directory the instance runs in (`LAMBDA_TASK_ROOT`).
    pub code: PathBuf,
    /// 128..=10240; default 128.
    pub memory_mb: u32,
    /// 1ms..=900s; default 3s.
    pub timeout: Duration,
    /// `Some(0)` disables the function, as in Lambda.
    pub reserved_concurrency: Option<u32>,
    /// Instances kept warm; default 0.
    pub provisioned: u32,
    /// How long an invocation may wait for a slot at the concurrency
    /// limit before its 429; 0..=30s, default 250ms (0: Lambda's 429 at
    /// once).
    pub queue_timeout: Duration,
    /// Most invocations waiting for a slot at once; 0..=10 000, default 100.
    pub queue_depth: usize,
    /// How long an idle instance lives; 1s..=24h, default 5m.
    pub idle_timeout: Duration,
    pub env: BTreeMap<String, String>,
    /// Request body limit from `max_body`; default and maximum 6 MiB.
    pub max_body_bytes: u64,
    /// Size of the instance's private `/tmp`; default 512 MiB, at most 10 GiB.
    pub ephemeral_storage_bytes: u64,
    /// Absolute host paths made visible read-only at the same place inside
    /// the instance (layers under `/opt`, a runtime outside `/usr`).
    pub runtime_paths: Vec<PathBuf>,
    pub network: Network,
    /// Host services on loopback reachable at the same address inside the
    /// instance.
    pub forward: Vec<SocketAddr>,
}
