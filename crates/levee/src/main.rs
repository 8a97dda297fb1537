//! The `levee` command: thin. It parses arguments, loads the config, starts
//! the runtime and the listeners, and prints the addresses it bound (tests and
//! scripts read them, since ports may be 0).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use levee_config::Config;

mod client;
mod commands;
mod plans;
mod serve;

use commands::{budgets, costs, keys, plans, queues_cli, usage};

/// Exit status for a config that does not validate.
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "levee",
    version,
    about = "Functions that stay up, and inside budget, under a flood."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the functions and routes of a config file.
    Serve {
        /// The config file.
        #[arg(short, long, default_value = "levee.toml")]
        config: PathBuf,
        /// Override `server.listen` (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override `server.admin_listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Override `server.data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Validate a config file without serving it.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "levee.toml")]
        config: PathBuf,
    },
    /// Manage API keys on a running server.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        admin: client::AdminArgs,
    },
    /// List usage plans on a running server.
    Plans {
        #[command(flatten)]
        admin: client::AdminArgs,
    },
    /// Requests per key per day: admitted, throttled, over quota.
    Usage {
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        /// First day (YYYY-MM-DD, UTC); default 30 days ago.
        #[arg(long)]
        from: Option<String>,
        /// Last day (YYYY-MM-DD, UTC); default today.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        admin: client::AdminArgs,
    },
    /// Spend so far this day or month, by function, route or key.
    Costs {
        /// function, route or key.
        #[arg(long, default_value = "function")]
        by: String,
        /// day or month.
        #[arg(long, default_value = "day")]
        period: String,
        #[command(flatten)]
        admin: client::AdminArgs,
    },
    /// Each budget's spend, forecast and state.
    Budgets {
        #[command(flatten)]
        admin: client::AdminArgs,
    },
    /// Durable queues on a running server.
    Queues {
        #[command(subcommand)]
        command: QueuesCommand,
        #[command(flatten)]
        admin: client::AdminArgs,
    },
    /// Attack a target on loopback and report what legitimate users saw
    /// (see docs/DRILL.md; `levee drill --help`).
    #[command(disable_help_flag = true)]
    Drill {
        /// Arguments for the drill, e.g. --target URL --scenario mixed.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Firewall tools.
    Firewall {
        #[command(subcommand)]
        command: FirewallCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key on a plan; its secret is shown once.
    Create {
        /// The usage plan.
        #[arg(long)]
        plan: String,
        /// A name for the key.
        #[arg(long, default_value = "key")]
        name: String,
    },
    /// List keys (never their secrets).
    List,
    /// Show one key.
    Get {
        /// The key id (key_…).
        id: String,
    },
    /// Stop a key working, keeping it.
    Disable {
        /// The key id.
        id: String,
    },
    /// Make a disabled key work again.
    Enable {
        /// The key id.
        id: String,
    },
    /// Replace a key's secret; the old one stops working at once.
    Rotate {
        /// The key id.
        id: String,
    },
    /// Delete a key.
    Delete {
        /// The key id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum QueuesCommand {
    /// Every queue with its approximate counts.
    List,
    /// Send one message.
    Send {
        /// The queue.
        name: String,
        /// The message body.
        body: String,
    },
    /// Show the next messages without receiving them.
    Peek {
        /// The queue.
        name: String,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 10)]
        max: usize,
    },
}

#[derive(Debug, Subcommand)]
enum FirewallCommand {
    /// Convert an AWS WAF v2 web ACL (JSON from `aws wafv2 get-web-acl` or
    /// the console) into a `[firewall]` section: TOML on stdout, what could
    /// not be converted on stderr.
    Import {
        /// The web ACL JSON file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LEVEE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (path, overrides) = match cli.command {
        Command::Firewall {
            command: FirewallCommand::Import { file },
        } => return import_waf(&file),
        Command::Keys { command, admin } => return run_client(keys(command, admin)),
        Command::Plans { admin } => return run_client(plans(admin)),
        Command::Costs { by, period, admin } => return run_client(costs(admin, by, period)),
        Command::Budgets { admin } => return run_client(budgets(admin)),
        Command::Queues { command, admin } => return run_client(queues_cli(command, admin)),
        Command::Drill { args } => return levee_drill::main(args),
        Command::Usage {
            key,
            from,
            to,
            admin,
        } => return run_client(usage(admin, key, from, to)),
        Command::Check { config } => (config, None),
        Command::Serve {
            config,
            listen,
            admin_listen,
            data_dir,
        } => (config, Some((listen, admin_listen, data_dir))),
    };
    let mut config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for w in &config.warnings {
        let line = w.line.map(|l| format!(":{l}")).unwrap_or_default();
        eprintln!(
            "{}{line}: warning: {}: {}",
            path.display(),
            w.key,
            w.message
        );
    }
    let Some((listen, admin_listen, data_dir)) = overrides else {
        // The certificates are the edge's to parse; a file that would stop
        // `serve` stops `check` too.
        let identities = [
            ("tls", config.tls.as_ref().map(|t| &t.identity)),
            ("admin_tls", config.admin_tls.as_ref()),
        ];
        for (section, identity) in identities {
            if let Some(Err(e)) = identity.map(levee_edge::tls::server_config) {
                eprintln!("{}: {section}: {e}", path.display());
                return ExitCode::from(EXIT_CONFIG);
            }
        }
        for (name, a) in &config.authorizers {
            let levee_config::Authorizer::Jwt { jwt, .. } = a else {
                continue;
            };
            if let levee_config::JwksSource::File(file) = &jwt.jwks {
                if let Err(e) = levee_edge::authorizer::jwks::read_file(file) {
                    eprintln!("{}: authorizers.{name}.jwks: {e}", path.display());
                    return ExitCode::from(EXIT_CONFIG);
                }
            }
        }
        println!(
            "{}: ok ({} functions, {} routes)",
            path.display(),
            config.functions.len(),
            config.routes.len()
        );
        return match levee_runtime::sandbox::describe(&config.server) {
            Ok(layers) => {
                println!("{layers}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("isolation: unavailable: {why}; set [server] isolation = \"none\" to run instances unisolated, as this user");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    };
    if let Some(a) = listen {
        config.server.listen = a;
    }
    if let Some(a) = admin_listen {
        config.server.admin_listen = a;
        // The flag bypasses the file's check; say the same thing for it.
        if let Some(w) = levee_config::exposed_admin(a) {
            eprintln!("levee: warning: --admin-listen: {w}");
        }
    }
    if let Some(d) = data_dir {
        config.server.data_dir = std::path::absolute(d).unwrap_or_default();
    }
    run(
        tokio::runtime::Builder::new_multi_thread(),
        serve::serve(config, path),
    )
}

/// Runs one admin API command; exit 1 with the error on failure.
fn run_client(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    run(tokio::runtime::Builder::new_current_thread(), work)
}

/// Runs `work` on a runtime from `builder`; exit 1 with the error on failure.
fn run(
    mut builder: tokio::runtime::Builder,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> ExitCode {
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("levee: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("levee: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `levee firewall import`: exit 0 with the TOML, 2 if the file is not a
/// web ACL, 1 if it cannot be read.
fn import_waf(file: &std::path::Path) -> ExitCode {
    let json = match std::fs::read_to_string(file) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("levee: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    match levee_shield::firewall::import_waf_json(&json) {
        Ok(import) => {
            print!("{}", import.toml);
            for note in &import.notes {
                eprintln!("levee: not converted: {note}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("levee: {}: {e}", file.display());
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
