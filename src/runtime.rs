//! Starting and stopping the proxy: load config, build the first snapshot, bind the
//! app and admin ports, start hot reload, and on shutdown drain before returning.
//!
//! A config that does not load is no reason to stop: the proxy starts unconfigured
//! (see [`reload::load_initial`]) and serves from the first good version. Only what a
//! restart cannot fix either stops it: a port that cannot be bound, a bad `--upstream-ca`.
//!
//! `main.rs` and the tests both go through [`Running::start`], so tests exercise the
//! same wiring the binary uses (on port 0).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState, Health};
use crate::config::ServerSettings;
use crate::http;
use crate::lifecycle::Lifecycle;
use crate::pool::Snapshot;
use crate::proxy::{self, ProxyState};
use crate::reload::{self, ReloadHandle, ReloadSettings};
use crate::telemetry::{self, metrics::ProxyMetrics};

/// What `keyrelay run` was asked to do: where the config comes from, and the flags.
pub use crate::reload::Sources as Options;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    UpstreamCa(#[from] http::client::CaError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// How long the admin port lets a scrape finish after the app port has drained.
const ADMIN_DRAIN_GRACE: Duration = Duration::from_secs(5);

/// The app port's connection settings (`server:`); it drains for `shutdown_grace`.
fn app_settings(server: &ServerSettings) -> http::Settings {
    http::Settings {
        max_connections: server.max_connections,
        header_read_timeout: server.header_read_timeout,
        idle_timeout: Some(server.idle_timeout),
        drain_grace: server.shutdown_grace,
        ..http::Settings::new("app")
    }
}

/// The admin port's: the same timeouts, its own (smaller) cap.
fn admin_settings(server: &ServerSettings) -> http::Settings {
    http::Settings {
        name: "admin",
        max_connections: server.admin_max_connections,
        drain_grace: ADMIN_DRAIN_GRACE,
        ..app_settings(server)
    }
}

/// A started proxy.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub store: Arc<ArcSwap<Snapshot>>,
    pub health: Arc<Health>,
    /// Hot reload: file and API watchers feeding the reloader that swaps `store`.
    reload: ReloadHandle,
    stop_proxy: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    stop_shared: watch::Sender<bool>,
    stop_health: watch::Sender<bool>,
    health_task: JoinHandle<()>,
    proxy_task: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    shared_task: JoinHandle<()>,
}

impl Running {
    pub async fn start(options: Options) -> Result<Running, StartError> {
        Self::start_with(options, ReloadSettings::default()).await
    }

    /// Like [`Running::start`] with explicit reload settings (tests shorten the
    /// debounce and the re-scan period, or hand in a Kubernetes client).
    pub async fn start_with(options: Options, mut reload_settings: ReloadSettings) -> Result<Running, StartError> {
        let initial = reload::load_initial(&options);
        for warning in &initial.warnings {
            tracing::warn!("{warning}");
        }
        let snapshot = initial.snapshot;
        let health = Arc::new(Health::default());
        if let Some(errors) = &snapshot.config_errors {
            for d in errors {
                tracing::error!("config not loaded: {d}");
            }
            health.record_reload_failure(reload::describe(errors));
        }
        let server = snapshot.server.clone();
        let store = Arc::new(ArcSwap::from_pointee(snapshot));

        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
        };
        let proxy_listener = bind(server.listen).await?;
        let admin_listener = bind(server.admin).await?;
        let proxy_addr =
            proxy_listener.local_addr().map_err(|source| StartError::Bind { addr: server.listen, source })?;
        let admin_addr =
            admin_listener.local_addr().map_err(|source| StartError::Bind { addr: server.admin, source })?;

        let (stop_proxy, proxy_stopped) = watch::channel(false);
        let (stop_admin, admin_stopped) = watch::channel(false);
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let metrics = Arc::new(ProxyMetrics::default());
        let state = Arc::new(ProxyState {
            store: Arc::clone(&store),
            client: http::lanes::ProxyClient::verified(server.connect_timeout, options.upstream_ca.as_deref())?,
            body_budget: Arc::default(),
            metrics: Arc::clone(&metrics),
        });
        let lifecycle = Lifecycle::new(Arc::clone(&store), state.client.clone(), Arc::clone(&metrics));
        let (stop_health, health_stopped) = watch::channel(false);
        let health_task = lifecycle.spawn_health_checks(health_stopped);
        reload_settings.lifecycle = Some(lifecycle);
        let (app, admin) = (app_settings(&server), admin_settings(&server));
        let listeners = vec![(app.name, Arc::clone(&app.stats)), (admin.name, Arc::clone(&admin.stats))];
        let proxy_task = tokio::spawn(proxy::serve(proxy_listener, state, app, until_stopped(proxy_stopped)));
        let admin_state =
            Arc::new(AdminState { health: Arc::clone(&health), store: Arc::clone(&store), metrics, listeners });
        let admin_task = tokio::spawn(admin::serve(admin_listener, admin_state, admin, until_stopped(admin_stopped)));

        let (stop_shared, shared_stopped) = watch::channel(false);
        let shared_task = crate::shared::spawn(Arc::clone(&store), Arc::clone(&health.shared), shared_stopped);

        let sources_config = options.config.clone();
        let reload = reload::spawn(options, reload_settings, initial.seed, Arc::clone(&store), Arc::clone(&health));

        let serving = store.load();
        let generation = serving.generation;
        if serving.config_errors.is_none() {
            health.set_ready();
            health.record_reload_applied(generation, "loaded at start");
            tracing::info!(%proxy_addr, %admin_addr, generation, "keyrelay serving");
        } else {
            let source = sources_config.display();
            tracing::warn!(%proxy_addr, %admin_addr, generation, %source,
                "keyrelay started without a valid configuration: every request gets 503 until a good version loads");
        }
        drop(serving);
        Ok(Running {
            proxy_addr,
            admin_addr,
            store,
            health,
            reload,
            stop_proxy,
            stop_admin,
            stop_shared,
            stop_health,
            health_task,
            proxy_task,
            admin_task,
            shared_task,
        })
    }

    /// The serving snapshot's generation, updated right after each reload's swap
    /// (for tests, benchmarks and the demo; requests read `store` directly).
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.reload.generations()
    }

    /// Asks for a reload now, as a change event would (folded into one pending).
    pub fn request_reload(&self) {
        self.reload.request();
    }

    /// Readiness goes false, the app port stops accepting, open requests (streams
    /// too) get up to the grace period to finish; the admin port answers probes
    /// (readiness: 503) until then, and closes last.
    pub async fn shutdown(self) {
        self.reload.stop().await;
        let _ = self.stop_health.send(true);
        let _ = self.health_task.await;
        self.health.set_draining();
        let _ = self.stop_proxy.send(true);
        let _ = self.proxy_task.await;
        let _ = self.stop_admin.send(true);
        let _ = self.admin_task.await;
        let _ = self.stop_shared.send(true);
        let _ = self.shared_task.await;
        // The drained requests' spans have ended: export them before the process exits.
        telemetry::flush().await;
    }
}
