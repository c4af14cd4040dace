//! State that replicas sharing keys share through Redis: per-key request and token
//! counts against declared rpm/tpm, cooldowns, the provider's last quota report and
//! key refusals (see `pool::state::shared` for the endpoint's side).
//!
//! One background task per process exchanges everything every `sync_interval`, and
//! at once when a lease runs out or a cooldown is news; requests never wait on it
//! (they spend leases). Redis slow or gone: after `timeout` the task gives up on the
//! round, endpoints count on local state, `/status`, `/readyz` and
//! `keyrelay_shared_state_up` say so, and the next rounds reconnect by themselves.
//!
//! Latency, in-flight counts and breakers stay local: they describe this pod's path to
//! the provider and its own concurrency, and change on every request, so sharing
//! them would cost a round trip per request for numbers that are worse than local.

pub mod script;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

use crate::http::resolve::Resolver;
use crate::pool::shared_target::Target;
use crate::pool::{Endpoint, LinkSettings, Snapshot, SyncSignal};

/// What `/status`, `/readyz` and `/metrics` show about shared state.
#[derive(Debug, Default)]
pub struct Status {
    up: AtomicBool,
    /// Exchange rounds that failed (timeout or error) since start.
    pub failed_rounds: AtomicU64,
    pub rounds: AtomicU64,
    pub signal: Arc<SyncSignal>,
    text: Mutex<StatusText>,
}

#[derive(Debug, Default, Clone)]
pub struct StatusText {
    /// `redis://host:port/db` (never credentials), when configured.
    pub redis: Option<String>,
    /// Why sharing is down, while it is.
    pub error: Option<String>,
}

impl Status {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn text(&self) -> StatusText {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Requests that went out on local state because Redis did not answer in time.
    pub fn lease_timeouts(&self) -> u64 {
        self.signal.lease_timeouts.load(Ordering::Relaxed)
    }

    /// One line for `/readyz`'s body, when sharing is configured.
    pub fn describe(&self) -> Option<String> {
        let text = self.text();
        let redis = text.redis?;
        Some(match (self.is_up(), text.error) {
            (true, _) => format!("shared state: up ({redis})"),
            (false, Some(e)) => format!("shared state: DOWN ({redis}): {e}; serving on local state"),
            (false, None) => format!("shared state: connecting ({redis}); serving on local state"),
        })
    }

    fn set(&self, up: bool, redis: Option<String>, error: Option<String>) {
        let mut text = self.text.lock().unwrap_or_else(|e| e.into_inner());
        let was_up = self.up.swap(up, Ordering::Relaxed);
        let shown = redis.clone().unwrap_or_default();
        match (&error, was_up, up) {
            // Logged once per outage (and once more if the reason changes).
            (Some(e), _, false) if text.error.as_ref() != Some(e) => {
                tracing::error!(redis = %shown, "shared state unavailable, serving on local state: {e}")
            }
            (None, false, true) => tracing::info!(redis = %shown, "shared state connected"),
            _ => {}
        }
        *text = StatusText { redis, error };
    }
}

/// A multiplexed, self-reconnecting connection.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// How long connecting may take (off the request path).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Waits between connection attempts, doubling up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// With nothing configured, how often the task looks again.
const IDLE_RECHECK: Duration = Duration::from_secs(1);
/// Extra exchanges asked for (a spent lease, a cooldown) come at most this often.
const MIN_GAP: Duration = Duration::from_millis(2);

async fn connect(target: &Target) -> Result<Conn, String> {
    let describe = |e: redis::RedisError| match e.kind() {
        redis::ErrorKind::AuthenticationFailed => {
            format!("authentication failed, check the password (shared.password / redis_password): {e}")
        }
        _ => e.to_string(),
    };
    let attempt = async {
        if target.cluster {
            let client = redis::cluster::ClusterClientBuilder::new(vec![target.info.clone()])
                .async_dns_resolver(Resolver::from_system())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(target.timeout)
                .build()
                .map_err(describe)?;
            client.get_async_connection().await.map(Conn::Cluster).map_err(describe)
        } else {
            let client = redis::Client::open(by_address(&target.info).await?).map_err(describe)?;
            // The manager retries a refused login until its deadline; one plain
            // connection first says why it is refused (a wrong password).
            drop(client.get_multiplexed_async_connection().await.map_err(describe)?);
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(target.timeout))
                .set_max_delay(RETRY_MAX);
            ConnectionManager::new_with_config(client, config).await.map(Conn::Single).map_err(describe)
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt).await.map_err(|_| "connect timed out".to_owned())?
}

/// A plain-TCP Redis named by host is connected to by an address found in-process
/// (`crate::http::resolve`: the image has no NSS for the connection manager's own
/// lookups), found each time the task connects; the manager's own reconnects reuse
/// that address. TLS keeps the
/// name, which its certificate check needs (that lookup is the Redis client's own).
async fn by_address(info: &redis::ConnectionInfo) -> Result<redis::ConnectionInfo, String> {
    match info.addr() {
        redis::ConnectionAddr::Tcp(host, port) if host.parse::<std::net::IpAddr>().is_err() => {
            let addrs = Resolver::from_system().lookup(host, *port).await.map_err(|e| e.to_string())?;
            let first = addrs.first().ok_or_else(|| format!("no address for {host}"))?;
            Ok(info.clone().set_addr(redis::ConnectionAddr::Tcp(first.ip().to_string(), *port)))
        }
        _ => Ok(info.clone()),
    }
}

/// Runs the exchange task until `stop` turns true.
pub fn spawn(
    store: Arc<ArcSwap<Snapshot>>,
    status: Arc<Status>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let writer = format!("{:016x}", rand::random::<u64>());
        let mut connected: Option<(Arc<Target>, Conn)> = None;
        let mut retry = RETRY_MIN;
        let mut wait = Duration::ZERO;
        loop {
            let woken = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = status.signal.wake.notified() => true,
                _ = stop.wait_for(|s| *s) => return,
            };
            if woken {
                tokio::time::sleep(MIN_GAP).await;
            }
            let snapshot = store.load_full();
            let Some(target) = snapshot.shared.clone() else {
                if connected.take().is_some() {
                    unlink_all(&snapshot);
                }
                status.set(false, None, None);
                wait = IDLE_RECHECK;
                continue;
            };
            if connected.as_ref().is_none_or(|(t, _)| !t.same_server(&target)) {
                unlink_all(&snapshot);
                connected = None;
                match connect(&target).await {
                    Ok(conn) => {
                        connected = Some((Arc::clone(&target), conn));
                        retry = RETRY_MIN;
                    }
                    Err(e) => {
                        status.set(false, Some(target.shown.clone()), Some(e));
                        wait = retry;
                        retry = (retry * 2).min(RETRY_MAX);
                        continue;
                    }
                }
            }
            let Some((_, conn)) = &connected else { continue };
            let ok = round(&snapshot, &target, conn, &status, &writer).await;
            status.rounds.fetch_add(1, Ordering::Relaxed);
            match ok {
                Ok(()) => status.set(true, Some(target.shown.clone()), None),
                Err(e) => {
                    status.failed_rounds.fetch_add(1, Ordering::Relaxed);
                    unlink_all(&snapshot);
                    status.set(false, Some(target.shown.clone()), Some(e));
                }
            }
            wait = target.sync_interval;
        }
    })
}

fn endpoints(snapshot: &Snapshot) -> impl Iterator<Item = &Arc<Endpoint>> {
    snapshot.routes().flat_map(|r| &r.endpoints)
}

fn unlink_all(snapshot: &Snapshot) {
    endpoints(snapshot).for_each(|e| e.state.shared_unlink());
}

/// One exchange for every endpoint, all in flight at once on the multiplexed
/// connection (so one round trip in effect), bounded by `timeout` in total.
async fn round(snapshot: &Snapshot, target: &Target, conn: &Conn, status: &Status, writer: &str) -> Result<(), String> {
    let now = std::time::Instant::now();
    let link = LinkSettings {
        signal: Arc::clone(&status.signal),
        bound: target.timeout,
        stale_after: target.sync_interval.saturating_mul(3).saturating_add(target.timeout),
    };
    let work: Vec<_> = endpoints(snapshot)
        .map(|e| {
            let out = e.state.shared_outgoing(&e.limits(), now);
            (e, out, script::keys(&target.key_prefix, &e.shared_fingerprint, &e.id))
        })
        .collect();
    let calls = work.iter().map(|(_, out, keys)| {
        let mut conn = conn.clone();
        async move {
            match &mut conn {
                Conn::Single(c) => script::exchange(c, keys, out, writer).await,
                Conn::Cluster(c) => script::exchange(c, keys, out, writer).await,
            }
        }
    });
    let results = tokio::time::timeout(target.timeout, futures_util::future::join_all(calls)).await;
    let now = std::time::Instant::now();
    let Ok(results) = results else {
        for (endpoint, out, _) in work {
            endpoint.state.shared_failed(out, now);
        }
        return Err(format!("Redis did not answer within {:?}", target.timeout));
    };
    let mut first_error = None;
    for ((endpoint, out, _), result) in work.into_iter().zip(results) {
        match result {
            Ok(reply) => endpoint.state.shared_incoming(reply, &link, now),
            Err(e) => {
                endpoint.state.shared_failed(out, now);
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
