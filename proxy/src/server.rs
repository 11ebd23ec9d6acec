//! Starting and stopping a whole Palisade: data plane, admin listener, optional orchestrator.
//!
//! [`start`] returns a [`Running`] handle with the bound addresses, so the binary and the
//! end-to-end tests start the proxy the same way:
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let config = palisade_proxy::config::Config::load("config/palisade.yaml")?;
//! let running = palisade_proxy::server::start(config, palisade_proxy::server::StartOptions::default())?;
//! println!("proxy on {}", running.listeners[0]);
//! running.shutdown();
//! running.wait();
//! # Ok(()) }
//! ```
//!
//! Shutdown (SIGTERM, SIGINT or [`Running::shutdown`]): `/readyz` turns 503, listeners stop
//! accepting, requests in flight finish until `server.drain_timeout`; streams still live then are
//! ended (AG-UI streams with a `RUN_ERROR` of code `SHUTTING_DOWN`). A second signal exits at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use pingora_core::apps::HttpServerOptions;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::{L4BufferSettings, ListenerConfig};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora_core::services::listening::Service;
use pingora_proxy::HttpProxy;
use tokio::sync::watch;

use crate::admin::{self, AdminState};
use crate::authn::Authenticator;
use crate::config::{Config, Listener};
use crate::lifecycle::Lifecycle;
use crate::listener::conn::{ConnGuard, ConnLimits};
use crate::pipeline::Pipeline;
use crate::reload::{ConfigSource, Reloader};
use crate::telemetry::Metrics;

/// How to start.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// Listen for SIGTERM/SIGINT/SIGHUP (the binary); tests call [`Running::shutdown`] and
    /// [`Reloader::reload`] instead.
    pub handle_signals: bool,
    /// The file (or text) the configuration was loaded from: its hash is on `/readyz` and in
    /// every audit record, and a file is watched and reloaded ([`crate::reload`]). `None`: no
    /// reload, and the hash is that of an empty file.
    pub source: Option<ConfigSource>,
}

/// A started Palisade.
pub struct Running {
    /// Bound public listener addresses, in config order.
    pub listeners: Vec<SocketAddr>,
    /// Bound admin address.
    pub admin: SocketAddr,
    /// Bound address of the embedded orchestrator, when one runs.
    pub orchestrator: Option<SocketAddr>,
    /// Readiness and drain state.
    pub lifecycle: Arc<Lifecycle>,
    /// The proxy's metrics.
    pub metrics: Metrics,
    /// The authentication stage (dev tokens, revocations).
    pub authn: Arc<Authenticator>,
    /// Config and certificate reloads.
    pub config: Arc<Reloader>,
    shutdown: watch::Sender<bool>,
    drained: watch::Receiver<bool>,
    aux: Option<tokio::runtime::Runtime>,
}

impl Running {
    /// Begins a graceful shutdown (as SIGTERM does).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Blocks until the shutdown has drained (or forever, if none was asked for).
    pub fn wait(mut self) {
        let mut drained = self.drained.clone();
        if let Some(aux) = self.aux.as_ref() {
            aux.block_on(async {
                let _ = drained.wait_for(|d| *d).await;
            });
        }
        if let Some(aux) = self.aux.take() {
            aux.shutdown_background();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never block here: a test may drop the handle inside its own runtime.
        if let Some(aux) = self.aux.take() {
            aux.shutdown_background();
        }
    }
}

/// Starts everything `config` describes and returns once all listeners accept connections.
pub fn start(config: Config, options: StartOptions) -> anyhow::Result<Running> {
    let metrics = Metrics::new(prometheus::Registry::new()).context("registering metrics")?;
    let lifecycle = Lifecycle::new();
    // A small runtime beside pingora's for the admin listener, the orchestrator and the drain.
    let aux = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("palisade-aux")
        .enable_all()
        .build()
        .context("starting the admin runtime")?;

    // The audit writer first: a trail that cannot be opened stops the start.
    let audit = Arc::new(
        crate::audit::Auditor::start(&config.audit, metrics.audit.clone())
            .context("opening the audit trail")?,
    );
    let tracing = Arc::new(
        crate::telemetry::otel::Tracing::start(config.tracing.as_ref(), aux.handle())
            .context("starting the OTLP exporter")?,
    );
    let authn = Arc::new(Authenticator::new(&config.authentication).context("authentication")?);
    authn
        .register_metrics(&metrics.registry)
        .context("authentication metrics")?;
    aux.spawn(authn.clone().run_background());
    let readiness_authn = authn.clone();
    lifecycle.add_readiness_check("authentication keys", move || readiness_authn.is_ready());

    // Policies: the config only validates with a good set loaded, so readiness holds from here;
    // the watcher reloads on file change and SIGHUP and keeps the last good set on errors.
    if let Some(authz) = &config.authz {
        authz.watch(aux.handle(), metrics.clone(), options.handle_signals);
        let live = authz.clone();
        lifecycle.add_readiness_check("policies", move || live.has_good_set());
    }

    let orchestrator = match &config.embedded_orchestrator {
        Some(spec) => Some(start_orchestrator(&aux, spec, authn.assertion_jwks())?),
        None => None,
    };

    let admin_listener = bind(config.admin_address)
        .with_context(|| format!("binding the admin listener {}", config.admin_address))?;
    let admin = admin_listener.local_addr()?;
    let mut server_conf = ServerConf {
        threads: config.threads,
        // Drain runs in our own watch; pingora's grace period only has to outlast it.
        grace_period_seconds: Some(config.drain_timeout.as_secs() + 3),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    server_conf.daemon = false;
    let mut server = Server::new_with_opt_and_conf(None, server_conf);
    // One limiter for every listener: counters and stream slots are per process. Built inside
    // the aux runtime: the Redis connection's I/O task lives there.
    let limiter = Arc::new({
        let _runtime = aux.enter();
        crate::ratelimit::RateLimiter::new(config.rate_limits.clone(), metrics.clone())
            .context("rate limits")?
    });
    // What outlives reloads: the core services and each stage's own (approvals: held calls
    // wait on them), whose I/O runs on the aux runtime.
    let core = crate::config::stages::Core {
        metrics: metrics.clone(),
        lifecycle: lifecycle.clone(),
        authn: authn.clone(),
        authz: config.authz.clone(),
        audit: audit.clone(),
        tracing: tracing.clone(),
    };
    let services = crate::config::stages::Services::start(core, &config.stages, aux.handle())?;
    // The TLS material of every listener, reloaded on change with the config file.
    let mut tls = (Vec::new(), Vec::new());
    for l in &config.listeners {
        if let Some(spec) = &l.tls {
            tls.0.push(Arc::new(
                crate::listener::tls::ReloadingCert::load(&l.name, &spec.cert, &spec.key)
                    .with_context(|| format!("TLS certificate of listener {}", l.name))?,
            ));
            if let Some(ca) = &spec.client_ca {
                tls.1.push(Arc::new(
                    crate::listener::tls::ReloadingClientCa::load(
                        &l.name,
                        ca,
                        spec.require_client_cert,
                    )
                    .with_context(|| format!("client CA of listener {}", l.name))?,
                ));
            }
        }
    }
    let source = options.source.clone().unwrap_or_else(|| ConfigSource {
        path: None,
        text: String::new(),
        env: Vec::new(),
    });
    let reloader = Reloader::start(
        &config,
        source,
        services,
        limiter,
        tls.clone(),
        aux.handle().clone(),
    )
    .context("the configuration")?;
    reloader.watch(config.reload_interval, options.handle_signals);
    let admin_router = admin::router(AdminState {
        lifecycle: lifecycle.clone(),
        metrics: metrics.clone(),
        authn: authn.clone(),
        config: reloader.clone(),
    });
    aux.spawn(async move {
        let served = match tokio::net::TcpListener::from_std(admin_listener) {
            Ok(listener) => axum::serve(listener, admin_router).await,
            Err(e) => Err(e),
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "admin listener stopped");
        }
    });

    // One set of connection limits for every public listener: the per-address cap counts a
    // client's connections to all of them.
    let conn_limits = Arc::new(crate::listener::conn::ConnLimits::new(
        config.header_timeout,
        config.max_connections_per_ip,
        metrics
            .client_connections_cut
            .with_label_values(&["per_ip_cap"]),
        metrics
            .client_connections_cut
            .with_label_values(&["header_timeout"]),
    ));
    let mut listeners = Vec::new();
    for l in &config.listeners {
        let address = resolve_port(l.address)
            .with_context(|| format!("listener {} on {}", l.name, l.address))?;
        let pipeline = Pipeline::new(reloader.live(), l.tls.is_some());
        let cert = tls.0.iter().find(|c| c.listener() == l.name).cloned();
        let client_ca = tls.1.iter().find(|c| c.listener() == l.name).cloned();
        let service = proxy_service(
            &server.configuration,
            l,
            address,
            pipeline,
            conn_limits.clone(),
            (cert, client_ca),
        )?;
        server.add_service(service);
        listeners.push(address);
    }

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (drained_tx, drained) = watch::channel(false);
    let signals = Signals {
        trigger: shutdown_rx,
        handle_signals: options.handle_signals,
        lifecycle: lifecycle.clone(),
        drain_timeout: config.drain_timeout,
        aux: aux.handle().clone(),
        drained: Arc::new(drained_tx),
        audit,
        tracing,
    };
    std::thread::Builder::new()
        .name("palisade-server".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(signals),
            })
        })
        .context("starting the data plane")?;

    for address in &listeners {
        wait_until_accepting(*address)
            .with_context(|| format!("listener {address} did not come up"))?;
    }
    lifecycle.set_ready();
    Ok(Running {
        listeners,
        admin,
        orchestrator,
        lifecycle,
        metrics,
        authn,
        config: reloader,
        shutdown,
        drained,
        aux: Some(aux),
    })
}

/// Starts the bundled orchestrator. It verifies the proxy's `X-Palisade-Assertion` against
/// `assertion_jwks`, handed over here instead of fetched from the admin listener.
fn start_orchestrator(
    aux: &tokio::runtime::Runtime,
    spec: &crate::config::spec::EmbeddedOrchestratorSpec,
    assertion_jwks: serde_json::Value,
) -> anyhow::Result<SocketAddr> {
    let listener = bind(
        spec.address
            .parse()
            .context("embedded orchestrator address")?,
    )
    .with_context(|| format!("binding the embedded orchestrator on {}", spec.address))?;
    let address = listener.local_addr()?;
    let mut config = match &spec.config {
        Some(path) => palisade_orchestrator::OrchestratorConfig::load(path.as_ref())
            .with_context(|| format!("embedded orchestrator config {path}"))?,
        // Without a file: sessions in memory, so `palisade dev` leaves no database behind.
        None => palisade_orchestrator::OrchestratorConfig {
            store: palisade_orchestrator::store::StoreConfig::sqlite(":memory:"),
            ..Default::default()
        },
    };
    config.listen = address;
    config.word_delay = std::time::Duration::from_millis(spec.word_delay_ms);
    let jwks = serde_json::from_value(assertion_jwks).context("the assertion JWKS")?;
    let orchestrator = palisade_orchestrator::Orchestrator::new(config).with_jwks(jwks);
    aux.spawn(async move {
        let never = std::future::pending::<()>();
        let served = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => orchestrator.serve(listener, never).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "embedded orchestrator stopped");
        }
    });
    Ok(address)
}

/// Binds a non-blocking std listener, to hand to a runtime without entering it here (so that
/// [`start`] also works from inside an async test).
fn bind(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

fn wait_until_accepting(address: SocketAddr) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// pingora's shutdown trigger: a signal or [`Running::shutdown`], then our drain.
struct Signals {
    trigger: watch::Receiver<bool>,
    handle_signals: bool,
    lifecycle: Arc<Lifecycle>,
    drain_timeout: Duration,
    aux: tokio::runtime::Handle,
    drained: Arc<watch::Sender<bool>>,
    audit: Arc<crate::audit::Auditor>,
    tracing: Arc<crate::telemetry::otel::Tracing>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let mut trigger = self.trigger.clone();
        let by_handle = async move {
            let _ = trigger.wait_for(|t| *t).await;
        };
        if self.handle_signals {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::select! {
                _ = by_handle => {}
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            self.aux.spawn(async move {
                let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
                let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
                tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                tracing::warn!("second shutdown signal: exiting now");
                std::process::exit(1);
            });
        } else {
            by_handle.await;
        }
        tracing::info!(
            drain_timeout_s = self.drain_timeout.as_secs_f64(),
            "shutdown: draining"
        );
        self.lifecycle.start_drain();
        let lifecycle = self.lifecycle.clone();
        let drained = self.drained.clone();
        let audit = self.audit.clone();
        let tracing = self.tracing.clone();
        let deadline = Instant::now() + self.drain_timeout;
        self.aux.spawn(async move {
            // Give pingora a moment to close its listeners before counting what is left.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let ended = lifecycle.drain(deadline, Duration::from_secs(1)).await;
            tracing::info!(streams_ended = ended, "shutdown: drained");
            // Every finished request queued its record before leaving; write them all out
            // before the process may exit.
            audit.flush().await;
            // The exporter's flush blocks on its batch task, which runs on this runtime.
            let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
            let _ = drained.send(true);
        });
        ShutdownSignal::GracefulTerminate
    }
}

/// Builds the pingora service for `listener`, bound to `address` (the listener's address with a
/// port-0 request already resolved to a concrete port), its connections under `limits`. A TLS
/// listener serves the certificate in `tls.0` and verifies clients with `tls.1` (mTLS), both
/// reloading on change.
pub fn proxy_service(
    server_conf: &Arc<ServerConf>,
    listener: &Listener,
    address: SocketAddr,
    pipeline: Pipeline,
    limits: Arc<ConnLimits>,
    tls: (
        Option<Arc<crate::listener::tls::ReloadingCert>>,
        Option<Arc<crate::listener::tls::ReloadingClientCa>>,
    ),
) -> anyhow::Result<Service<ConnGuard<HttpProxy<Pipeline>>>> {
    let name = format!("palisade listener {}", listener.name);
    let mut proxy = pingora_proxy::http_proxy(server_conf, pipeline);
    let mut options = HttpServerOptions::default();
    options.h2c = listener.h2c && listener.tls.is_none();
    // CONNECT reaches the pipeline, which refuses it with the documented 405 body (pingora's
    // own refusal is a bare 405); nothing is ever tunnelled.
    options.allow_connect_method_proxying = true;
    proxy.server_options = Some(options);
    let mut service = Service::new(name, ConnGuard::new(proxy, limits));
    let addr = address.to_string();
    match (&listener.tls, tls.0) {
        (Some(spec), Some(cert)) => {
            let mut settings = match tls.1 {
                Some(client_ca) => {
                    let mut s = TlsSettings::with_callbacks(Box::new(
                        crate::listener::mtls::ClientIdentity,
                    ))?;
                    s.set_client_cert_verifier(client_ca);
                    s
                }
                None => TlsSettings::intermediate(&spec.cert, &spec.key)
                    .with_context(|| format!("TLS settings for listener {}", listener.name))?,
            };
            // The resolver serves the current pair; the paths above are then never read.
            settings.set_cert_resolver(cert);
            settings.enable_h2();
            service.add_listener(
                ListenerConfig::tcp(&addr)
                    .tls(settings)
                    .l4_buffer(L4BufferSettings::default().read(TLS_READ_BUFFER)),
            );
        }
        (Some(_), None) => anyhow::bail!("listener {}: TLS without a certificate", listener.name),
        (None, _) => service.add_listener(
            ListenerConfig::tcp(&addr).l4_buffer(L4BufferSettings::default().read(0)),
        ),
    }
    Ok(service)
}

/// Read buffering on a client connection's socket, under TLS. pingora's default is 64 KiB per
/// connection, allocated at accept and kept for the connection's life. Under TLS the decryptor
/// reads a few KiB at a time, so a buffer saves syscalls; 16 KiB holds a whole TLS record.
/// Without TLS there is no buffer at all: pingora reads request heads and bodies into buffers
/// of its own, sized for them, and a socket buffer in front would only copy them once more.
/// (An idle SSE stream keeps both for hours; see tests/bench's `idle` row.)
const TLS_READ_BUFFER: usize = 16 * 1024;

/// Resolves a port-0 address to a free port by binding and releasing it (for tests and ad-hoc
/// runs; pingora binds by address, so the port must be known up front).
pub fn resolve_port(address: SocketAddr) -> std::io::Result<SocketAddr> {
    if address.port() != 0 {
        return Ok(address);
    }
    std::net::TcpListener::bind(address)?.local_addr()
}
