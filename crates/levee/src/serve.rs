//! `levee serve`: the stack, built top to bottom in the order a request
//! meets it, then run until SIGINT or SIGTERM (SIGHUP reloads the shield).
//! It owns start-up order and shutdown order; it decides nothing about a
//! request itself.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use levee_config::Config;
use levee_edge::apikeys::ApiKeys;
use levee_edge::billing::Billing;
use levee_edge::cache::EdgeCache;
use levee_edge::client_ip::ClientIdentity;
use levee_edge::clock::Clock;
use levee_edge::invocation;
use levee_edge::queueing::{self, FunctionInvoker};
use levee_edge::shield::{Shield, ShieldHandle};
use levee_edge::watch::Watch;
use levee_edge::{admin, listener, BodyPolicy, Edge, Router, Stages};
use levee_queue::Queues;
use levee_runtime::Scheduler;
use levee_store::Store;
use tokio::net::TcpListener;

use crate::plans;

pub(crate) async fn serve(config: Config, path: PathBuf) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.server.data_dir)
        .with_context(|| format!("creating data_dir {}", config.server.data_dir.display()))?;
    // Bind first: a port in use fails before anything is started.
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
    let data_dir = &config.server.data_dir;
    let store = Arc::new(opened("store", data_dir, Store::open(data_dir))?);
    store
        .sync_config_plans(&plans::specs(&config))
        .context("applying [plans] from the config")?;
    let clock = test_clock()?;

    // The stack, in the order a request meets it.
    // Who is asking: a trusted proxy may speak for its client.
    let identity = ClientIdentity::new(config.client_ip.trusted_proxies.clone());
    // Firewall and throttles, one swappable unit so SIGHUP replaces it whole.
    let shield = ShieldHandle::new(Shield::build(&config)?);
    // Instances, started on demand; the router needs their handles.
    let scheduler = Arc::new(Scheduler::start(&config).await?);
    let router = Router::build(&config.routes, &scheduler)?;
    // Keys, plans and quotas, from memory on the hot path.
    let api_keys = Arc::new(ApiKeys::new(Arc::clone(&store), clock));
    // Async routes queue their events here, durably, before answering 202.
    let queues = Arc::new(opened("queues", data_dir, Queues::open(data_dir))?);
    queues
        .sync_config_queues(&queueing::config_queues(&config))
        .await
        .context("applying [queues] from the config")?;
    // Shared answers, so a flood of one GET is one invocation.
    let cache = EdgeCache::new(&config.cache);
    // Budgets before and meters after every invocation, on every path.
    let billing = billing(&config, clock)?;
    let invoker = invocation::invoker(billing.clone());
    // Automatic attack detection: samples from every request, one thread.
    let watch = Watch::start(
        &config.auto_mitigation,
        data_dir,
        event_alerts(&config.auto_mitigation),
        billing.as_ref().map(|b| Arc::clone(b.budgets())),
    )
    .context("starting the attack detector")?;
    let edge = Arc::new(Edge::new(Stages {
        identity,
        max_headers: config.limits.max_headers as usize,
        shield: Arc::clone(&shield),
        router,
        api_keys,
        body: BodyPolicy {
            min_rate: config.limits.body_min_rate,
            grace: config.limits.body_grace,
        },
        queues: Arc::clone(&queues),
        cache: Arc::clone(&cache),
        invoker: Arc::clone(&invoker),
        watch: watch.clone(),
    }));
    // Event sources drain queues through the same invoker.
    let pollers = levee_queue::start_pollers(
        Arc::clone(&queues),
        queueing::event_sources(&config.event_sources),
        FunctionInvoker::new(Arc::clone(&scheduler), Arc::clone(&invoker)),
    );
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
        invoker,
        queues,
        base_url: format!("http://{}", admin_listener.local_addr()?),
        watch,
    });
    let admin_limits = config.admin_limits.clone();
    let admin_shutdown = stopped(stop_rx);
    let admin_task = tokio::spawn(async move {
        listener::serve_router(admin_listener, admin_app, &admin_limits, admin_shutdown).await;
    });

    wait_for_signal(&reload).await?;
    // Shutdown runs the stack backwards: stop taking requests, let in-flight
    // batches finish before their instances go, then flush what is counted.
    tracing::info!("shutting down: draining connections");
    let _ = stop_tx.send(true);
    let _ = edge_task.await;
    let _ = tokio::time::timeout(listener::DRAIN_TIMEOUT, admin_task).await;
    let _ = tokio::time::timeout(listener::DRAIN_TIMEOUT, pollers.shutdown()).await;
    scheduler.shutdown().await;
    store.flush().context("flushing quota counts and usage")?;
    if let Some(b) = &billing {
        b.meters().flush().context("flushing meters")?;
    }
    Ok(())
}

/// Meters, budgets and the Prometheus recorder, unless `[metering]` is off.
/// The webhook sender of automatic-mitigation events: a task of its own
/// when a webhook is set (so a slow one never delays budget alerts).
fn event_alerts(config: &levee_config::AutoMitigation) -> levee_meter::AlertSink {
    match config.webhook {
        Some(_) => levee_meter::AlertSink::spawn(&tokio::runtime::Handle::current()),
        None => levee_meter::AlertSink::disabled(),
    }
}

fn billing(config: &Config, clock: Clock) -> anyhow::Result<Option<Arc<Billing>>> {
    if !config.metering {
        return Ok(None);
    }
    levee_meter::metrics::install().context("installing the metrics recorder")?;
    let data_dir = &config.server.data_dir;
    let meters = opened(
        "meters",
        data_dir,
        levee_meter::Meters::open(data_dir, config.prices),
    )?;
    let alerts = levee_meter::AlertSink::spawn(&tokio::runtime::Handle::current());
    let budgets = levee_meter::Budgets::new(
        config.budgets.values().cloned().collect(),
        Arc::clone(&meters),
        alerts,
    );
    Ok(Some(Arc::new(Billing::new(meters, budgets, clock))))
}

/// What opening `what` in `data_dir` gave, with the directory named in its
/// error.
fn opened<T, E>(what: &str, data_dir: &std::path::Path, result: Result<T, E>) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    result.with_context(|| format!("opening the {what} in {}", data_dir.display()))
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
