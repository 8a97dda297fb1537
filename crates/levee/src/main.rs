//! The `levee` command: thin. It parses arguments, loads the config, starts
//! the runtime and the listeners, and prints the addresses it bound (tests and
//! scripts read them, since ports may be 0).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use levee_config::Config;
use levee_edge::apikeys::ApiKeys;
use levee_edge::billing::Billing;
use levee_edge::cache::EdgeCache;
use levee_edge::client_ip::ClientIdentity;
use levee_edge::clock::Clock;
use levee_edge::queueing::{self, FunctionInvoker};
use levee_edge::shield::{Shield, ShieldHandle};
use levee_edge::{admin, listener, BodyPolicy, Edge, Router, Stages};
use levee_runtime::Scheduler;

mod client;
mod plans;
use tokio::net::TcpListener;

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
        println!(
            "{}: ok ({} functions, {} routes)",
            path.display(),
            config.functions.len(),
            config.routes.len()
        );
        return ExitCode::SUCCESS;
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
        serve(config, path),
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

fn print_key(k: &serde_json::Value) {
    println!(
        "{}\t{}\tplan={}\t{}\tprefix={}",
        k["id"].as_str().unwrap_or("?"),
        k["name"].as_str().unwrap_or(""),
        k["plan"].as_str().unwrap_or(""),
        if k["enabled"].as_bool().unwrap_or(false) {
            "enabled"
        } else {
            "disabled"
        },
        k["prefix"].as_str().unwrap_or("")
    );
}

async fn keys(command: KeysCommand, admin: client::AdminArgs) -> anyhow::Result<()> {
    use http::Method;
    let one = |id: &str, action: &str| format!("/admin/keys/{id}/{action}");
    let doc = match &command {
        KeysCommand::Create { plan, name } => {
            let body = serde_json::json!({ "name": name, "plan": plan });
            admin.call(Method::POST, "/admin/keys", Some(body)).await?
        }
        KeysCommand::List => admin.call(Method::GET, "/admin/keys", None).await?,
        KeysCommand::Get { id } => {
            admin
                .call(Method::GET, &format!("/admin/keys/{id}"), None)
                .await?
        }
        KeysCommand::Disable { id } => admin.call(Method::POST, &one(id, "disable"), None).await?,
        KeysCommand::Enable { id } => admin.call(Method::POST, &one(id, "enable"), None).await?,
        KeysCommand::Rotate { id } => admin.call(Method::POST, &one(id, "rotate"), None).await?,
        KeysCommand::Delete { id } => {
            admin
                .call(Method::DELETE, &format!("/admin/keys/{id}"), None)
                .await?;
            println!("deleted {id}");
            return Ok(());
        }
    };
    if let Some(list) = doc["keys"].as_array() {
        if list.is_empty() {
            println!("no keys (create one with `levee keys create --plan NAME`)");
            return Ok(());
        }
        println!("id\tname\tplan\tstate\tprefix");
        for k in list {
            print_key(k);
        }
        return Ok(());
    }
    print_key(&doc["key"]);
    if let Some(secret) = doc["secret"].as_str() {
        println!("secret: {secret}");
        println!("(shown once: store it now; send it as the x-api-key header)");
    }
    Ok(())
}

async fn plans(admin: client::AdminArgs) -> anyhow::Result<()> {
    let doc = admin.call(http::Method::GET, "/admin/plans", None).await?;
    for p in doc["plans"].as_array().into_iter().flatten() {
        println!("{}", serde_json::to_string(p)?);
    }
    Ok(())
}

async fn costs(admin: client::AdminArgs, by: String, period: String) -> anyhow::Result<()> {
    let path = format!("/admin/costs?by={by}&period={period}");
    let doc = admin.call(http::Method::GET, &path, None).await?;
    println!("{by}\trequests\tgb_seconds\tbytes_out\tusd");
    for row in doc["costs"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{:.3}\t{}\t{:.6}",
            row["name"].as_str().unwrap_or("?"),
            row["requests"],
            row["gb_seconds"].as_f64().unwrap_or(0.0),
            row["bytes_out"],
            row["usd"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

async fn queues_cli(command: QueuesCommand, admin: client::AdminArgs) -> anyhow::Result<()> {
    match command {
        QueuesCommand::List => {
            let doc = admin.call(http::Method::GET, "/admin/queues", None).await?;
            println!("queue\tvisible\tin_flight\tdelayed\turl");
            for q in doc["queues"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    q["name"].as_str().unwrap_or("?"),
                    q["approximate_messages"],
                    q["in_flight"],
                    q["delayed"],
                    q["url"].as_str().unwrap_or("")
                );
            }
        }
        QueuesCommand::Send { name, body } => {
            let path = format!("/admin/queues/{name}/messages");
            let doc = admin
                .call_raw(http::Method::POST, &path, body.into_bytes())
                .await?;
            println!("{}", doc["messageId"].as_str().unwrap_or("?"));
        }
        QueuesCommand::Peek { name, max } => {
            let path = format!("/admin/queues/{name}/peek?max={max}");
            let doc = admin.call(http::Method::GET, &path, None).await?;
            for m in doc["messages"].as_array().into_iter().flatten() {
                println!(
                    "{}\t{}",
                    m["message_id"].as_str().unwrap_or("?"),
                    m["body"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}

async fn budgets(admin: client::AdminArgs) -> anyhow::Result<()> {
    let doc = admin
        .call(http::Method::GET, "/admin/budgets", None)
        .await?;
    println!("budget\tperiod\tlimit\tspent\tforecast\tstate\tresets_at");
    for b in doc["budgets"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{:.2}\t{:.4}\t{:.4}\t{}\t{}",
            b["name"].as_str().unwrap_or("?"),
            b["period"].as_str().unwrap_or("?"),
            b["limit"].as_f64().unwrap_or(0.0),
            b["spent"].as_f64().unwrap_or(0.0),
            b["forecast"].as_f64().unwrap_or(0.0),
            b["state"].as_str().unwrap_or("?"),
            b["resets_at_utc"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

async fn usage(
    admin: client::AdminArgs,
    key: Option<String>,
    from: Option<String>,
    to: Option<String>,
) -> anyhow::Result<()> {
    let mut query = Vec::new();
    for (k, v) in [("key", key), ("from", from), ("to", to)] {
        if let Some(v) = v {
            query.push(format!("{k}={v}"));
        }
    }
    let path = format!("/admin/usage?{}", query.join("&"));
    let doc = admin.call(http::Method::GET, &path, None).await?;
    println!("key\tday\tadmitted\tthrottled\tover_quota");
    for row in doc["usage"].as_array().into_iter().flatten() {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            row["key_id"].as_str().unwrap_or("?"),
            row["day"].as_str().unwrap_or("?"),
            row["admitted"],
            row["throttled"],
            row["over_quota"]
        );
    }
    Ok(())
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

async fn serve(config: Config, path: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating data_dir {}", config.server.data_dir.display()))?;
    let edge_listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("binding server.listen {}", config.server.listen))?;
    let admin_listener = TcpListener::bind(config.server.admin_listen)
        .await
        .with_context(|| format!("binding server.admin_listen {}", config.server.admin_listen))?;

    let (token, source) = admin::auth::load_or_create(
        &config.server.data_dir,
        std::env::var("LEVEE_ADMIN_TOKEN").ok(),
    )?;
    if let admin::auth::TokenSource::Created(path) = &source {
        println!(
            "levee: admin token written to {} (mode 0600)",
            path.display()
        );
    }
    // The store holds the data_dir's lock: a second server on the same
    // directory must stop here, before the scheduler clears and re-stages
    // the running server's instance directories.
    let store = Arc::new(
        levee_store::Store::open(&config.server.data_dir).with_context(|| {
            format!("opening the store in {}", config.server.data_dir.display())
        })?,
    );
    let scheduler = Arc::new(Scheduler::start(&config).await?);
    let router = Router::build(&config.routes, &scheduler)?;
    let shield = ShieldHandle::new(Shield::build(&config)?);
    store
        .sync_config_plans(&plans::specs(&config))
        .context("applying [plans] from the config")?;
    let clock = test_clock()?;
    let cache = EdgeCache::new(&config.cache);
    let billing = billing(&config, clock)?;
    let queues = Arc::new(
        levee_queue::Queues::open(&config.server.data_dir).with_context(|| {
            format!("opening the queues in {}", config.server.data_dir.display())
        })?,
    );
    queues
        .sync_config_queues(&queueing::config_queues(&config))
        .await
        .context("applying [queues] from the config")?;
    let pollers = levee_queue::start_pollers(
        Arc::clone(&queues),
        queueing::event_sources(&config.event_sources),
        FunctionInvoker::new(Arc::clone(&scheduler), billing.clone()),
    );
    let edge = Arc::new(Edge::new(Stages {
        queues: Arc::clone(&queues),
        billing: billing.clone(),
        cache: Arc::clone(&cache),
        identity: ClientIdentity::new(config.client_ip.trusted_proxies.clone()),
        shield: Arc::clone(&shield),
        router,
        api_keys: Arc::new(ApiKeys::new(Arc::clone(&store), clock)),
        body: BodyPolicy {
            min_rate: config.limits.body_min_rate,
            grace: config.limits.body_grace,
        },
        max_headers: config.limits.max_headers as usize,
    }));
    let reload: admin::Reload = {
        let shield = Arc::clone(&shield);
        Arc::new(move || reload_shield(&path, &shield))
    };

    println!(
        "levee: edge listening on http://{}",
        edge_listener.local_addr()?
    );
    println!(
        "levee: admin listening on http://{}",
        admin_listener.local_addr()?
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let limits = config.limits.clone();
    let access_log = config.server.access_log;
    let edge_shutdown = stopped(stop_rx.clone());
    let edge_task = tokio::spawn(async move {
        listener::serve(edge_listener, edge, &limits, access_log, edge_shutdown).await;
    });
    let admin_app = admin::router(admin::Admin {
        scheduler: Arc::clone(&scheduler),
        shield: Arc::clone(&shield),
        reload: Arc::clone(&reload),
        token,
        store: Arc::clone(&store),
        clock,
        cache,
        billing: billing.clone(),
        queues,
        base_url: format!("http://{}", admin_listener.local_addr()?),
    });
    let admin_limits = config.admin_limits.clone();
    let admin_shutdown = stopped(stop_rx);
    let admin_task = tokio::spawn(async move {
        listener::serve_router(admin_listener, admin_app, &admin_limits, admin_shutdown).await;
    });

    wait_for_signal(&reload).await?;
    tracing::info!("shutting down: draining connections");
    let _ = stop_tx.send(true);
    let _ = edge_task.await;
    let _ = tokio::time::timeout(listener::DRAIN_TIMEOUT, admin_task).await;
    // In-flight batches finish before their instances go.
    let _ = tokio::time::timeout(listener::DRAIN_TIMEOUT, pollers.shutdown()).await;
    scheduler.shutdown().await;
    store.flush().context("flushing quota counts and usage")?;
    if let Some(b) = &billing {
        b.meters().flush().context("flushing meters")?;
    }
    Ok(())
}

/// Meters, budgets and the Prometheus recorder, unless `[metering]` is off.
fn billing(config: &Config, clock: Clock) -> anyhow::Result<Option<Arc<Billing>>> {
    if !config.metering {
        return Ok(None);
    }
    levee_meter::metrics::install().context("installing the metrics recorder")?;
    let meters = levee_meter::Meters::open(&config.server.data_dir, config.prices)
        .with_context(|| format!("opening the meters in {}", config.server.data_dir.display()))?;
    let alerts = levee_meter::AlertSink::spawn(&tokio::runtime::Handle::current());
    let budgets = levee_meter::Budgets::new(
        config.budgets.values().cloned().collect(),
        Arc::clone(&meters),
        alerts,
    );
    Ok(Some(Arc::new(Billing::new(meters, budgets, clock))))
}

/// The clock quotas use: real time, shifted by `LEVEE_CLOCK_OFFSET_SECS`
/// when set (tests use it to reach a quota period's end without waiting).
fn test_clock() -> anyhow::Result<Clock> {
    match std::env::var("LEVEE_CLOCK_OFFSET_SECS") {
        Err(_) => Ok(Clock::default()),
        Ok(v) => {
            let secs: i64 = v.parse().with_context(|| {
                format!("LEVEE_CLOCK_OFFSET_SECS must be a whole number of seconds, not `{v}`")
            })?;
            tracing::warn!(
                offset_secs = secs,
                "clock shifted by LEVEE_CLOCK_OFFSET_SECS (tests only)"
            );
            Ok(Clock::with_offset(secs))
        }
    }
}

/// Re-reads the config file and swaps in its firewall, IP sets and
/// throttles. A file that does not validate changes nothing.
fn reload_shield(path: &std::path::Path, shield: &ShieldHandle) -> Result<String, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let next = Shield::build(&config).map_err(|e| e.to_string())?;
    let rules = next.firewall.as_ref().map_or(0, |f| f.counters().len());
    shield.replace(next);
    Ok(format!(
        "reloaded {}: {rules} firewall rules",
        path.display()
    ))
}

/// Waits for SIGINT or SIGTERM; reloads the shield on each SIGHUP meanwhile.
async fn wait_for_signal(reload: &admin::Reload) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => return r.context("waiting for SIGINT"),
            _ = term.recv() => return Ok(()),
            _ = hup.recv() => match reload() {
                Ok(done) => tracing::info!("{done}"),
                Err(e) => tracing::error!("reload refused, keeping the current rules:\n{e}"),
            },
        }
    }
}
