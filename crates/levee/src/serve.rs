//! `levee serve`: the stack, built top to bottom in the order a request
//! meets it, then run until SIGINT or SIGTERM (SIGHUP reloads the shield,
//! the certificates and the JWKS files). It owns start-up order and
//! shutdown order; it decides nothing about a request itself.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use levee_config::Config;
use levee_edge::apikeys::ApiKeys;
use levee_edge::authorizer::Authorizers;
use levee_edge::billing::Billing;
use levee_edge::cache::EdgeCache;
use levee_edge::client_ip::ClientIdentity;
use levee_edge::clock::Clock;
use levee_edge::invocation;
use levee_edge::listener::Bound;
use levee_edge::queueing::{self, FunctionInvoker};
use levee_edge::shield::{Shield, ShieldHandle};
use levee_edge::tls::{self, TlsHandle};
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
    let tls_listener = match &config.tls {
        Some(tls) => Some(
            TcpListener::bind(tls.listen)
                .await
                .with_context(|| format!("binding tls.listen {}", tls.listen))?,
        ),
        None => None,
    };
    // Certificates are read before anything starts: a bad file stops here.
    let certificates = Certificates::load(&config)?;
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
    // Who may call a route: JWT authorizers and their keys, and functions
    // that decide (invoked like any other, so metered and budgeted).
    let authorizers = Arc::new(
        Authorizers::start(&config.authorizers, &scheduler, &invoker)
            .await
            .context("starting the authorizers")?,
    );
    let router = Router::build(
        &config.routes,
        &scheduler,
        &authorizers,
        config.cors.as_ref(),
    )?;
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
        let certificates = certificates.clone();
        let authorizers = Arc::clone(&authorizers);
        Arc::new(move || reload(&path, &shield, &certificates, &authorizers))
    };

    println!(
        "levee: edge listening on http://{}",
        edge_listener.local_addr()?
    );
    if let Some(tls) = &tls_listener {
        println!("levee: edge listening on https://{}", tls.local_addr()?);
    }
    let admin_scheme = if certificates.admin.is_some() {
        "https"
    } else {
        "http"
    };
    let admin_url = format!("{admin_scheme}://{}", admin_listener.local_addr()?);
    println!("levee: admin listening on {admin_url}");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let limits = config.limits.clone();
    let access_log = config.server.access_log;
    // The port HTTPS is really on (tls.listen may ask for port 0).
    let tls_port = match &tls_listener {
        Some(socket) => Some(socket.local_addr()?.port()),
        None => None,
    };
    let mut edge_tasks = Vec::new();
    if let (Some(socket), Some(tls)) = (tls_listener, &certificates.edge) {
        let (edge, limits) = (Arc::clone(&edge), limits.clone());
        let bound = Bound {
            socket,
            tls: Some(Arc::clone(tls)),
        };
        let shutdown = stopped(stop_rx.clone());
        edge_tasks.push(tokio::spawn(async move {
            listener::serve(bound, edge, &limits, access_log, shutdown).await;
        }));
    }
    let edge_shutdown = stopped(stop_rx.clone());
    let redirect_to = tls_port.filter(|_| config.tls.as_ref().is_some_and(|t| t.redirect));
    edge_tasks.push(tokio::spawn(async move {
        match redirect_to {
            Some(port) => {
                listener::serve_redirect(edge_listener, port, &limits, edge_shutdown).await;
            }
            None => {
                let bound = Bound {
                    socket: edge_listener,
                    tls: None,
                };
                listener::serve(bound, edge, &limits, access_log, edge_shutdown).await;
            }
        }
    }));
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
        base_url: admin_url,
        watch,
    });
    let admin_limits = config.admin_limits.clone();
    let admin_shutdown = stopped(stop_rx);
    let admin_certificates = certificates.admin.clone();
    let admin_task = tokio::spawn(async move {
        let bound = Bound {
            socket: admin_listener,
            tls: admin_certificates,
        };
        listener::serve_router(bound, admin_app, &admin_limits, admin_shutdown).await;
    });

    wait_for_signal(&reload).await?;
    // Shutdown runs the stack backwards: stop taking requests, let in-flight
    // batches finish before their instances go, then flush what is counted.
    tracing::info!("shutting down: draining connections");
    let _ = stop_tx.send(true);
    for task in edge_tasks {
        let _ = task.await;
    }
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

/// The TLS settings of the listeners that speak HTTPS, swappable by a
/// reload.
#[derive(Debug, Clone)]
struct Certificates {
    edge: Option<Arc<TlsHandle>>,
    admin: Option<Arc<TlsHandle>>,
}

impl Certificates {
    fn load(config: &Config) -> anyhow::Result<Certificates> {
        let edge = config.tls.as_ref().map(|t| TlsHandle::load(&t.identity));
        let admin = config.admin_tls.as_ref().map(TlsHandle::load);
        Ok(Certificates {
            edge: edge.transpose().context("loading [tls]")?,
            admin: admin.transpose().context("loading [admin_tls]")?,
        })
    }
}

/// Re-reads the config file and swaps in its firewall, IP sets, throttles
/// and certificates. A file that does not validate, or a certificate that
/// does not load, changes nothing; open connections keep what they
/// were accepted with.
fn reload(
    path: &std::path::Path,
    shield: &ShieldHandle,
    certificates: &Certificates,
    authorizers: &Authorizers,
) -> Result<String, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let next = Shield::build(&config).map_err(|e| e.to_string())?;
    let edge_tls = config.tls.as_ref().map(|t| &t.identity);
    let mut swaps = Vec::new();
    for (section, handle, identity) in [
        ("[tls]", &certificates.edge, edge_tls),
        (
            "[admin_tls]",
            &certificates.admin,
            config.admin_tls.as_ref(),
        ),
    ] {
        match (handle, identity) {
            (Some(handle), Some(identity)) => {
                let tls = tls::server_config(identity).map_err(|e| format!("{section}: {e}"))?;
                swaps.push((handle, tls));
            }
            (None, None) => {}
            _ => return Err(format!("adding or removing {section} takes a restart")),
        }
    }
    // Authorizers' files are read last of what may fail: once they are
    // swapped, nothing below refuses the reload.
    let jwks = authorizers.reload(&config.authorizers)?;
    let rules = next.firewall.as_ref().map_or(0, |f| f.counters().len());
    shield.replace(next);
    let reloaded = swaps.len();
    for (handle, tls) in swaps {
        handle.replace(tls);
    }
    Ok(format!(
        "reloaded {}: {rules} firewall rules, certificates of {reloaded} TLS listeners, {jwks} JWKS files",
        path.display()
    ))
}

/// Waits for SIGINT or SIGTERM; reloads on each SIGHUP meanwhile.
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
                Err(e) => tracing::error!("reload refused, keeping the current rules and certificates:\n{e}"),
            },
        }
    }
}
