//! One reload: read, skip if unchanged, build the whole new snapshot, swap it in.
//!
//! Runs on a blocking thread, never on the request path. The only thing requests
//! ever see is the single `store` at the end: before it they load the old snapshot,
//! after it the new one, and an old one stays alive until its last request finishes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::api_source::ApiView;
use super::content::{self, HashSeeds, Seed};
use super::describe;
use super::Health;
use super::Sources;
use crate::config::{Config, Diagnostic, KubernetesSource, Origin};
use crate::lifecycle::Lifecycle;
use crate::pool::Snapshot;

/// What a call to [`Reloader::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Same content as the last attempt (good or bad): nothing done.
    Unchanged,
    /// A new snapshot serves.
    Applied { generation: u64 },
    /// The content is bad: the previous snapshot keeps serving.
    Rejected,
}

/// Re-reads the sources and swaps in new snapshots. Owned by the reload task.
pub struct Reloader {
    sources: Sources,
    hash_seeds: HashSeeds,
    fixed: Fixed,
    /// Hash of the content last attempted, applied or rejected: a bad version is
    /// reported once, not at every re-scan.
    last: Option<u128>,
    /// The restart note last shown, to log a change of it once.
    note: Option<String>,
    store: Arc<ArcSwap<Snapshot>>,
    health: Arc<Health>,
    api: Arc<ApiView>,
    generations: watch::Sender<u64>,
    /// Decides which value a changed key serves (rotation pre-flight).
    pub(crate) lifecycle: Option<Arc<Lifecycle>>,
}

impl Reloader {
    pub(crate) fn new(
        sources: Sources,
        seed: Seed,
        store: Arc<ArcSwap<Snapshot>>,
        health: Arc<Health>,
        api: Arc<ApiView>,
        generations: watch::Sender<u64>,
    ) -> Self {
        Reloader {
            sources,
            fixed: Fixed::of(&seed.config),
            hash_seeds: seed.hash_seeds,
            last: Some(seed.hash),
            note: None,
            store,
            health,
            api,
            generations,
            lifecycle: None,
        }
    }

    /// Reads everything once and applies it if it changed and is valid. The snapshot
    /// is built from that one read, so a secret changing meanwhile is the next
    /// reload's content, never half of this one.
    pub fn reload(&mut self) -> Outcome {
        let api = self.api.get();
        let read = content::read(&self.sources, &api, &self.hash_seeds);
        // A settled key probe changes what serves without any file changing.
        let probed = self.lifecycle.as_ref().is_some_and(|l| l.take_rebuild());
        if self.last == Some(read.hash) && !probed {
            return Outcome::Unchanged;
        }
        self.last = Some(read.hash);
        let mut parsed = match read.result {
            Ok(parsed) => parsed,
            Err(errors) => return self.reject(&errors),
        };
        for warning in &parsed.warnings {
            tracing::warn!("{warning}");
        }
        let note = self.fixed.pin(&mut parsed.config);

        let current = self.store.load_full();
        let built = match &self.lifecycle {
            Some(lifecycle) => {
                let values = lifecycle.values(parsed.config.server.key_probe_timeout);
                Snapshot::build_with(&parsed.config, &parsed.secrets, Some(&current), &values)
            }
            None => Snapshot::build(&parsed.config, &parsed.secrets, Some(&current)),
        };
        let snapshot = match built {
            Ok(snapshot) => snapshot,
            Err(errors) => return self.reject(&errors),
        };
        if let Some(empty) = snapshot.routes().find(|r| r.endpoints.is_empty()) {
            // Unreachable through validation today (every deployment has a key and a
            // key that does not resolve is an error), kept so it stays true.
            let message = format!("model {:?} has no keys left", empty.settings.alias);
            let d = Diagnostic { file: parsed.config.source.clone(), origin: Origin::default(), message };
            return self.reject(&[d]);
        }
        let generation = snapshot.generation;
        let (models, endpoints) = snapshot.routes().fold((0, 0), |(m, e), r| (m + 1, e + r.endpoints.len()));
        let snapshot = Arc::new(snapshot);
        self.store.store(Arc::clone(&snapshot));
        if let Some(lifecycle) = &self.lifecycle {
            lifecycle.after_swap(&snapshot);
        }
        drop((current, snapshot));
        self.health.set_last_error(None);
        self.health.record_reload_applied(generation, &format!("{models} models, {endpoints} endpoints"));
        // The first good version of a process that started unconfigured.
        self.health.set_ready();
        self.set_note(note);
        // Last: whoever waits for the generation then sees the health that goes with it.
        self.generations.send_replace(generation);
        let source = parsed.config.source.display();
        tracing::info!(generation, models, endpoints, %source, "configuration reloaded");
        Outcome::Applied { generation }
    }

    fn reject(&self, errors: &[Diagnostic]) -> Outcome {
        for d in errors {
            tracing::error!("config reload rejected: {d}");
        }
        let current = self.store.load_full();
        if current.config_errors.is_some() {
            // Nothing serves yet: requests name the errors of the latest version.
            self.store.store(Arc::new(Snapshot::unconfigured(current.server.clone(), errors.to_vec())));
            tracing::warn!(errors = errors.len(), "still no valid configuration: answering every request with 503");
        } else {
            let generation = current.generation;
            tracing::warn!(generation, errors = errors.len(), "still serving the previous configuration");
        }
        self.health.record_reload_failure(describe(errors));
        Outcome::Rejected
    }

    fn set_note(&mut self, note: Option<String>) {
        if note != self.note {
            if let Some(note) = &note {
                tracing::warn!("config change not applied, restart required: {note}");
            }
            self.note = note.clone();
        }
        self.health.set_restart_note(note);
    }
}

/// Settings fixed for the life of the process: sockets are bound, the upstream
/// client and the drain deadline are built, the API watch is running.
#[derive(Debug, Clone, PartialEq)]
struct Fixed {
    listen: SocketAddr,
    admin: SocketAddr,
    connect_timeout: Duration,
    shutdown_grace: Duration,
    max_connections: usize,
    admin_max_connections: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    kubernetes: Option<KubernetesSource>,
}

impl Fixed {
    fn of(config: &Config) -> Self {
        Fixed {
            listen: config.server.listen,
            admin: config.server.admin,
            connect_timeout: config.server.connect_timeout,
            shutdown_grace: config.server.shutdown_grace,
            max_connections: config.server.max_connections,
            admin_max_connections: config.server.admin_max_connections,
            header_read_timeout: config.server.header_read_timeout,
            idle_timeout: config.server.idle_timeout,
            kubernetes: config.kubernetes.clone(),
        }
    }

    /// Puts the values in effect back into `config` (so the snapshot says what really
    /// applies) and describes each one the new config wanted to change.
    fn pin(&self, config: &mut Config) -> Option<String> {
        let mut changes = Vec::new();
        let mut note = |field: &str, wanted: String, running: String| {
            changes.push(format!("{field} is {wanted} in the config but {running} is in use"));
        };
        let s = &mut config.server;
        if s.listen != self.listen {
            note("server.listen", s.listen.to_string(), self.listen.to_string());
            s.listen = self.listen;
        }
        if s.admin != self.admin {
            note("server.admin", s.admin.to_string(), self.admin.to_string());
            s.admin = self.admin;
        }
        if s.connect_timeout != self.connect_timeout {
            note("server.timeouts.connect", format!("{:?}", s.connect_timeout), format!("{:?}", self.connect_timeout));
            s.connect_timeout = self.connect_timeout;
        }
        if s.shutdown_grace != self.shutdown_grace {
            let (wanted, running) = (format!("{:?}", s.shutdown_grace), format!("{:?}", self.shutdown_grace));
            note("server.timeouts.shutdown_grace", wanted, running);
            s.shutdown_grace = self.shutdown_grace;
        }
        let caps = [
            ("server.max_connections", &mut s.max_connections, self.max_connections),
            ("server.admin_max_connections", &mut s.admin_max_connections, self.admin_max_connections),
        ];
        for (field, slot, running) in caps {
            if *slot != running {
                note(field, slot.to_string(), running.to_string());
                *slot = running;
            }
        }
        let timeouts = [
            ("server.timeouts.header_read", &mut s.header_read_timeout, self.header_read_timeout),
            ("server.timeouts.idle", &mut s.idle_timeout, self.idle_timeout),
        ];
        for (field, slot, running) in timeouts {
            if *slot != running {
                note(field, format!("{slot:?}"), format!("{running:?}"));
                *slot = running;
            }
        }
        if config.kubernetes != self.kubernetes {
            note("kubernetes", describe_k8s(&config.kubernetes), describe_k8s(&self.kubernetes));
            config.kubernetes = self.kubernetes.clone();
        }
        (!changes.is_empty()).then(|| format!("{} (the rest of the config is applied)", changes.join("; ")))
    }
}

fn describe_k8s(k: &Option<KubernetesSource>) -> String {
    match k {
        None => "absent".to_owned(),
        Some(k) => format!(
            "{{namespace: {}, secret: {}, config_map: {}}}",
            k.namespace.as_deref().unwrap_or("(pod's)"),
            k.secret.as_deref().unwrap_or("-"),
            k.config_map.as_deref().unwrap_or("-")
        ),
    }
}
