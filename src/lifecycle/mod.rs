//! Key lifecycle: a changed key value is checked before it takes traffic, and keys
//! can be checked at an interval before a request fails on them.
//!
//! **Rotation pre-flight.** While the reloader builds a snapshot, [`Lifecycle`]
//! decides for every key whose value changed (same alias, deployment and key name as
//! in the serving snapshot) which value the new snapshot carries: the previous one
//! while a token-free probe of the new one ([`crate::provider::probe`]) is under way
//! or after the provider refused it; the new one once it was accepted, or when the
//! provider could not be reached within `server.timeouts.key_probe` (the user meant
//! the change). The probe's answer only asks the reloader for a rebuild: the new
//! state is built whole and swapped in, as every reload is. A removed key is gone
//! with the next snapshot, probe or not. The old value lives only in the snapshot,
//! so it is gone from memory as soon as a snapshot without it is swapped in.
//!
//! **Active health checks** ([`health`]): off unless an alias (or the server) sets
//! an interval. They use the endpoints' own refused and breaker state, so a key they
//! take out is out for requests too, and back when a probe is accepted.
//!
//! Probes never count as requests: they have their own metric
//! (`keyrelay_probes_total`) and do not touch the endpoints' windows or quota.
//! The pool stays free of I/O: this module does the network side.

mod health;
mod probe;
mod rotation;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::Deployment;
use crate::http::lanes::ProxyClient;
use crate::pool::{Changed, Choice, EndpointId, KeyValues, Rotation, Snapshot};
use crate::provider::probe::Verdict;
use crate::provider::Auth;
use crate::telemetry::metrics::{ProbeLabels, ProxyMetrics, RotationLabels};
use rotation::{Decision, Rotations, Settled};

/// The probing side of the process: one per running proxy.
pub struct Lifecycle {
    store: Arc<ArcSwap<Snapshot>>,
    client: ProxyClient,
    metrics: Arc<ProxyMetrics>,
    rotations: Mutex<Rotations>,
    /// A probe settled: the next reload must build even though no file changed.
    rebuild: AtomicBool,
    /// The reload task's request channel, once it runs.
    reload_requests: OnceLock<mpsc::Sender<()>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle").finish_non_exhaustive()
    }
}

impl Lifecycle {
    /// Must be called inside the tokio runtime that will run the probes.
    pub fn new(store: Arc<ArcSwap<Snapshot>>, client: ProxyClient, metrics: Arc<ProxyMetrics>) -> Arc<Self> {
        Arc::new(Lifecycle {
            store,
            client,
            metrics,
            rotations: Mutex::default(),
            rebuild: AtomicBool::new(false),
            reload_requests: OnceLock::new(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Where to ask for a rebuild (the reload task's channel).
    pub(crate) fn connect(&self, requests: mpsc::Sender<()>) {
        let _ = self.reload_requests.set(requests);
    }

    /// Whether a rebuild was asked for since the last call.
    pub(crate) fn take_rebuild(&self) -> bool {
        self.rebuild.swap(false, Ordering::AcqRel)
    }

    /// The decisions for one snapshot build; `bound` is its `server.timeouts.key_probe`.
    pub(crate) fn values(self: &Arc<Self>, bound: Duration) -> impl KeyValues + '_ {
        Build { lifecycle: self, bound }
    }

    /// After `snapshot` was stored: forget keys that were removed or whose Secret went
    /// back to the value serving.
    pub(crate) fn after_swap(&self, snapshot: &Snapshot) {
        let endpoints = || snapshot.routes().flat_map(|r| &r.endpoints);
        let deciding: std::collections::HashSet<&EndpointId> =
            endpoints().filter(|e| e.rotation.is_some()).map(|e| &e.id).collect();
        let present: std::collections::HashSet<&EndpointId> = endpoints().map(|e| &e.id).collect();
        self.lock()
            .retain(|id, still_deciding| if still_deciding { deciding.contains(id) } else { present.contains(id) });
    }

    /// Starts the active health checks; they run until `stop` turns true.
    pub fn spawn_health_checks(self: &Arc<Self>, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(health::run(Arc::clone(self), stop))
    }

    fn request_rebuild(&self) {
        self.rebuild.store(true, Ordering::Release);
        if let Some(requests) = self.reload_requests.get() {
            // Full: a reload is pending anyway, and it will see `rebuild`.
            let _ = requests.try_send(());
        }
    }

    fn count_probe(&self, kind: &'static str, verdict: Verdict) {
        self.metrics.probes.get_or_create(&ProbeLabels { kind, outcome: verdict.as_str() }).inc();
    }

    fn lock(&self) -> MutexGuard<'_, Rotations> {
        self.rotations.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Probes a changed value of `id` and settles its rotation.
    async fn preflight(
        self: Arc<Self>,
        id: EndpointId,
        deployment: Arc<Deployment>,
        fresh: Auth,
        candidate: u64,
        bound: Duration,
    ) {
        let deadline = tokio::time::Instant::now() + bound;
        let snapshot = self.store.load_full();
        let verdict = probe::until_answered(&self.client, &snapshot, &deployment, &fresh, deadline, |v| {
            self.count_probe("rotation", v)
        })
        .await;
        drop((snapshot, fresh));
        let settled = self.lock().settle(&id, candidate, verdict, std::time::Instant::now());
        let (key, alias, deployment) = (&id.key_name, &id.alias, &deployment.name);
        let outcome = match settled {
            Settled::Stale => return,
            Settled::Switch(outcome) => {
                tracing::info!(%key, model = %alias, %deployment, outcome, "key rotation: the new value serves");
                outcome
            }
            Settled::Rejected(reason) => {
                tracing::warn!(%key, model = %alias, %deployment, reason = reason.as_str(),
                    "key rotation rejected: the provider refused the new value; the previous value keeps serving");
                "rejected"
            }
        };
        self.metrics.key_rotations.get_or_create(&RotationLabels { outcome }).inc();
        self.request_rebuild();
    }
}

/// [`KeyValues`] for one build.
struct Build<'a> {
    lifecycle: &'a Arc<Lifecycle>,
    bound: Duration,
}

impl KeyValues for Build<'_> {
    fn choose(&self, changed: Changed<'_>) -> Choice {
        let now = std::time::Instant::now();
        let decision = self.lifecycle.lock().decide(changed.id, changed.fresh_fingerprint, now);
        match decision {
            Decision::New => Choice::New,
            Decision::Previous(rotation) => Choice::Previous(rotation),
            Decision::Probe => {
                let lifecycle = Arc::clone(self.lifecycle);
                let work = lifecycle.preflight(
                    changed.id.clone(),
                    Arc::clone(changed.deployment),
                    changed.fresh.clone(),
                    changed.fresh_fingerprint,
                    self.bound,
                );
                self.lifecycle.runtime.spawn(work);
                let (key, deployment) = (&changed.id.key_name, &changed.deployment.name);
                tracing::info!(%key, model = %changed.id.alias, %deployment,
                    "key value changed: probing the new value; the previous one serves meanwhile");
                Choice::Previous(Rotation::Pending { since: now })
            }
        }
    }
}
