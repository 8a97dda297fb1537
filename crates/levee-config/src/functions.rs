//! `[functions.NAME]`: what to run, from which directory, with what memory,
//! timeouts, concurrency and environment.
//!
//! Owns the function rules, which follow Lambda's where Levee mimics it
//! (names, memory, timeout, reserved variables, the 4 KB environment, the
//! 6 MB payload), and the relation of code to `data_dir`. Must never do I/O
//! beyond looking at the `code` directories it names: staging them is the
//! runtime's job.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::{Function, Network, RuntimeKind};
use crate::problems::{Found, KeyPath};
use crate::values::{checked_size, listing, resolve, RawSize};
use levee_common::name::FunctionName;
use levee_common::{parse_duration, parse_size};

const DEFAULT_MEMORY_MB: u32 = 128;
const MEMORY_MB: RangeInclusive<u32> = 128..=10_240;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
const TIMEOUT: RangeInclusive<Duration> = Duration::from_millis(1)..=Duration::from_secs(900);
/// `queue_timeout`: long enough to ride out a burst on a busy function,
/// short enough that a client under a flood hears 429 quickly.
const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(250);
const QUEUE_TIMEOUT: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(30);
const DEFAULT_QUEUE_DEPTH: usize = 100;
const MAX_QUEUE_DEPTH: usize = 10_000;
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const IDLE_TIMEOUT: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 60 * 60);
/// Lambda's synchronous invocation payload limit.
const MAX_BODY_BYTES: u64 = 6 * 1024 * 1024;
/// Lambda's limit on the combined size of a function's variables.
const MAX_ENV_BYTES: usize = 4096;
/// Variables the Lambda runtime sets itself; a function overriding them would
/// lie to its own runtime client.
const RESERVED_ENV: [&str; 10] = [
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];
const RESERVED_ENV_PREFIX: &str = "AWS_LAMBDA_";
const MIB: u64 = 1 << 20;
/// Lambda's default `/tmp`.
const DEFAULT_EPHEMERAL_STORAGE: u64 = 512 * MIB;
/// Lambda's range, 512 to 10,240 MB, where Lambda's MB are MiB.
const EPHEMERAL_STORAGE: RangeInclusive<u64> = 512 * MIB..=10_240 * MIB;
/// Most `forward` addresses and `runtime_paths` per function: each is a
/// listener or a mount in every instance.
const MAX_FORWARDS: usize = 16;
const MAX_RUNTIME_PATHS: usize = 16;
/// Where every instance finds its own Runtime API, as on Lambda.
pub const RUNTIME_API_PORT: u16 = 9001;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawNetwork {
    #[default]
    None,
    Egress,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawRuntime {
    #[default]
    Process,
}

// Durations and sizes stay text here and are parsed during validation, so a
// bad one is reported alongside the function's other problems.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFunction {
    #[serde(default)]
    runtime: RawRuntime,
    command: Vec<String>,
    handler: Option<String>,
    code: String,
    memory_mb: Option<u32>,
    timeout: Option<String>,
    reserved_concurrency: Option<u32>,
    #[serde(default)]
    provisioned: u32,
    queue_timeout: Option<String>,
    queue_depth: Option<usize>,
    idle_timeout: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    max_body: Option<RawSize>,
    ephemeral_storage: Option<RawSize>,
    #[serde(default)]
    runtime_paths: Vec<String>,
    #[serde(default)]
    network: RawNetwork,
    #[serde(default)]
    forward: Vec<String>,
}

/// Validates one function; keys are relative to `[functions.NAME]`, paths
/// resolve against `base_dir`, and `limit` is the account's concurrency
/// when valid. `None` when its name broke the rule (reported by [`name`]);
/// the rest is still checked, so every problem is reported at once.
pub(crate) fn function(
    name: Option<FunctionName>,
    raw: RawFunction,
    base_dir: &Path,
    limit: Option<u32>,
    found: &mut Found,
) -> Option<Function> {
    let handler = match raw.handler {
        Some(handler) => {
            if handler.is_empty() || handler.contains('\0') {
                found.push("handler", "must be non-empty and free of NUL characters");
            }
            handler
        }
        None => raw.command.last().cloned().unwrap_or_default(),
    };
    let command = command(raw.command, base_dir, found);
    let code = code(&raw.code, base_dir, found);
    let memory_mb = raw.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
    if !MEMORY_MB.contains(&memory_mb) {
        found.push(
            "memory_mb",
            format!(
                "must be between {} and {} (MB), not {memory_mb}",
                MEMORY_MB.start(),
                MEMORY_MB.end()
            ),
        );
    }
    let timeout = duration(
        raw.timeout,
        "timeout",
        DEFAULT_TIMEOUT,
        TIMEOUT,
        "1ms and 900s",
        found,
    );
    let idle_timeout = duration(
        raw.idle_timeout,
        "idle_timeout",
        DEFAULT_IDLE_TIMEOUT,
        IDLE_TIMEOUT,
        "1s and 24h",
        found,
    );
    let queue_timeout = duration(
        raw.queue_timeout,
        "queue_timeout",
        DEFAULT_QUEUE_TIMEOUT,
        QUEUE_TIMEOUT,
        "0s and 30s",
        found,
    );
    let queue_depth = raw.queue_depth.unwrap_or(DEFAULT_QUEUE_DEPTH);
    if queue_depth > MAX_QUEUE_DEPTH {
        found.push(
            "queue_depth",
            format!("must be between 0 and {MAX_QUEUE_DEPTH}, not {queue_depth}"),
        );
    }
    let provisioned = raw.provisioned;
    match (raw.reserved_concurrency, limit) {
        (Some(reserved), _) if provisioned > reserved => found.push(
            "provisioned",
            format!("{provisioned} warm instances exceed reserved_concurrency ({reserved})"),
        ),
        (_, Some(limit)) if provisioned > limit => found.push(
            "provisioned",
            format!("{provisioned} warm instances exceed account.concurrency ({limit})"),
        ),
        _ => {}
    }
    env(&raw.env, found);
    let max_body_bytes = max_body(raw.max_body, "max_body", found).unwrap_or(MAX_BODY_BYTES);
    let ephemeral_storage_bytes = checked_size(
        "ephemeral_storage",
        raw.ephemeral_storage,
        DEFAULT_EPHEMERAL_STORAGE,
        EPHEMERAL_STORAGE,
        found,
    );
    let network = match raw.network {
        RawNetwork::None => Network::None,
        RawNetwork::Egress => Network::Egress,
    };
    Some(Function {
        name: name?,
        runtime: match raw.runtime {
            RawRuntime::Process => RuntimeKind::Process,
        },
        command,
        handler,
        code,
        memory_mb,
        timeout,
        reserved_concurrency: raw.reserved_concurrency,
        provisioned,
        queue_timeout,
        queue_depth: queue_depth.min(MAX_QUEUE_DEPTH),
        idle_timeout,
        env: raw.env,
        max_body_bytes,
        ephemeral_storage_bytes,
        runtime_paths: runtime_paths(raw.runtime_paths, found),
        network,
        forward: forward(raw.forward, found),
    })
}

/// Absolute, existing paths other than `/` itself.
fn runtime_paths(paths: Vec<String>, found: &mut Found) -> Vec<PathBuf> {
    let at = KeyPath::of("runtime_paths");
    if paths.len() > MAX_RUNTIME_PATHS {
        found.push(
            at.clone(),
            format!("{} paths is more than {MAX_RUNTIME_PATHS}", paths.len()),
        );
    }
    let mut valid = Vec::new();
    for (i, text) in paths.into_iter().enumerate() {
        let path = PathBuf::from(&text);
        if !path.is_absolute() || text.contains('\0') {
            found.push(at.index(i), format!("`{text}` must be an absolute path"));
        } else if path.parent().is_none() {
            found.push(
                at.index(i),
                "`/` would show the whole machine; name what the runtime needs",
            );
        } else if let Err(e) = std::fs::symlink_metadata(&path) {
            found.push(at.index(i), format!("cannot use `{text}`: {e}"));
        } else {
            valid.push(path);
        }
    }
    valid
}

/// Loopback IPv4 addresses with a port, other than the Runtime API's own.
fn forward(addrs: Vec<String>, found: &mut Found) -> Vec<std::net::SocketAddr> {
    let at = KeyPath::of("forward");
    if addrs.len() > MAX_FORWARDS {
        found.push(
            at.clone(),
            format!("{} addresses is more than {MAX_FORWARDS}", addrs.len()),
        );
    }
    let mut valid: Vec<std::net::SocketAddr> = Vec::new();
    for (i, text) in addrs.iter().enumerate() {
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) if !addr.ip().is_loopback() || !addr.is_ipv4() || addr.port() == 0 => {
                found.push(
                    at.index(i),
                    format!("`{text}` must be a loopback IPv4 address with a port, like \"127.0.0.1:5432\""),
                );
            }
            Ok(addr)
                if addr.port() == RUNTIME_API_PORT
                    && addr.ip() == std::net::Ipv4Addr::LOCALHOST =>
            {
                found.push(
                    at.index(i),
                    format!("`{text}` is where the instance finds its own Runtime API"),
                );
            }
            Ok(addr) if valid.contains(&addr) => {
                found.push(at.index(i), format!("`{text}` is listed twice"));
            }
            Ok(addr) => valid.push(addr),
            Err(e) => found.push(at.index(i), format!("`{text}` is not an address: {e}")),
        }
    }
    valid
}

fn command(mut command: Vec<String>, base_dir: &Path, found: &mut Found) -> Vec<String> {
    let path = KeyPath::of("command");
    let mut valid = !command.is_empty();
    if !valid {
        found.push(
            path.clone(),
            "must name the program to run, e.g. [\"./hello-fn\"]",
        );
    }
    for (i, arg) in command.iter().enumerate() {
        if arg.is_empty() || arg.contains('\0') {
            valid = false;
            found.push(
                path.index(i),
                "must be non-empty and free of NUL characters",
            );
        }
    }
    // A bare name like `python3` is looked up on PATH; only paths are
    // tied to the config file's directory.
    if valid && command[0].contains('/') {
        let resolved = resolve(base_dir, &command[0], &path.index(0), found)
            .map(|program| program.into_os_string().into_string());
        match resolved {
            Some(Ok(program)) => command[0] = program,
            Some(Err(program)) => found.push(
                path.index(0),
                format!(
                    "resolves to a path that is not UTF-8: {}",
                    program.to_string_lossy()
                ),
            ),
            None => {}
        }
    }
    command
}

fn code(text: &str, base_dir: &Path, found: &mut Found) -> PathBuf {
    let path = KeyPath::of("code");
    let Some(code) = resolve(base_dir, text, &path, found) else {
        return PathBuf::new();
    };
    match std::fs::metadata(&code) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(_) => found.push(path, format!("`{}` is not a directory", code.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            found.push(
                path,
                format!("directory `{}` does not exist", code.display()),
            );
        }
        Err(e) => found.push(path, format!("cannot use `{}`: {e}", code.display())),
    }
    code
}

fn duration(
    text: Option<String>,
    key: &str,
    default: Duration,
    bounds: RangeInclusive<Duration>,
    bounds_text: &str,
    found: &mut Found,
) -> Duration {
    let Some(text) = text else {
        return default;
    };
    match parse_duration(&text) {
        Ok(duration) if bounds.contains(&duration) => duration,
        Ok(_) => {
            found.push(key, format!("must be between {bounds_text}, not `{text}`"));
            default
        }
        Err(e) => {
            found.push(key, format!("invalid duration: {e}"));
            default
        }
    }
}

/// A `max_body` (a function's, or a route's override), at most Lambda's
/// payload limit; `None` when absent or refused.
pub(crate) fn max_body(raw: Option<RawSize>, key: &str, found: &mut Found) -> Option<u64> {
    let parsed = match raw? {
        RawSize::Bytes(bytes) => u64::try_from(bytes)
            .map_err(|_| format!("`{bytes}` is negative; sizes must be positive")),
        RawSize::Text(text) => parse_size(&text),
    };
    match parsed {
        Ok(bytes) if bytes <= MAX_BODY_BYTES => Some(bytes),
        Ok(bytes) => {
            found.push(
                key,
                format!("{bytes} bytes is over the limit of 6MiB ({MAX_BODY_BYTES} bytes)"),
            );
            None
        }
        Err(e) => {
            found.push(key, format!("invalid size: {e}"));
            None
        }
    }
}

fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn env(env: &BTreeMap<String, String>, found: &mut Found) {
    let path = KeyPath::of("env");
    let mut total = 0usize;
    for (name, value) in env {
        let at = path.key(name);
        if RESERVED_ENV.contains(&name.as_str()) || name.starts_with(RESERVED_ENV_PREFIX) {
            found.push(
                at.clone(),
                format!("`{name}` is reserved by the Lambda runtime"),
            );
        } else if !valid_env_name(name) {
            found.push(
                at.clone(),
                format!("`{name}` is not a valid variable name: use letters, digits and `_`, starting with a letter"),
            );
        }
        if value.contains('\0') {
            found.push(at, "the value must not contain a NUL character");
        }
        total = total.saturating_add(name.len()).saturating_add(value.len());
    }
    if total > MAX_ENV_BYTES {
        found.push(
            path,
            format!("names and values total {total} bytes, over Lambda's limit of 4 KB ({MAX_ENV_BYTES} bytes)"),
        );
    }
}

/// `path` with symbolic links and `..` resolved as far as it exists: the
/// data dir may not have been created yet.
fn real_path(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Staging copies each function's `code` into `data_dir`: a code
/// directory that holds the data dir would copy itself into itself until
/// paths grow too long. Keys are relative to `[functions]`.
pub(crate) fn code_outside_data_dir(
    functions: &BTreeMap<String, Function>,
    data_dir: &Path,
    found: &mut Found,
) {
    let data_dir = real_path(data_dir);
    for (name, function) in functions {
        let Ok(code) = function.code.canonicalize() else {
            continue;
        };
        if data_dir.starts_with(&code) {
            found.push(
                KeyPath::of(name).key("code"),
                format!(
                    "`{}` holds server.data_dir (`{}`), and each start copies `code` into the data dir; use a directory of its own, or move data_dir out of it",
                    code.display(),
                    data_dir.display()
                ),
            );
        }
    }
}

/// Reservations must fit in the account's `limit`; the problem is on
/// `concurrency`, relative to `[account]`.
pub(crate) fn total_reserved(
    functions: &BTreeMap<String, Function>,
    limit: u32,
    found: &mut Found,
) {
    let reserved: Vec<String> = functions
        .values()
        .filter_map(|f| {
            f.reserved_concurrency
                .map(|reserved| format!("{}={reserved}", f.name))
        })
        .collect();
    let total: u64 = functions
        .values()
        .filter_map(|f| f.reserved_concurrency)
        .map(u64::from)
        .sum();
    if total > u64::from(limit) {
        found.push(
            "concurrency",
            format!(
                "functions reserve {total} in total ({}), more than account.concurrency ({limit})",
                listing(reserved.iter().map(String::as_str))
            ),
        );
    }
}
