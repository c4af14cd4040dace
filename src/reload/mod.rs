//! Hot reload: rotate keys and change models by updating the mounted Secret and
//! ConfigMap (or, with `kubernetes:`, the objects themselves), with no restart and no
//! failed request.
//!
//! Watchers only *ask* for a reload: the directory watcher ([`files`]), a periodic
//! re-scan (a missed event must not mean a missed rotation) and the optional API watch
//! ([`kube`]) all send on one channel. A single task debounces those requests and runs
//! the [`Reloader`] off the request path: it re-reads the config and every secret it
//! names, skips the reload when the content hash is unchanged, builds a whole new
//! [`Snapshot`] (endpoint state carried over) and swaps it in with one atomic store.
//! Requests in flight keep the snapshot they loaded. A bad reload keeps the running
//! snapshot and is reported on `/readyz`; nothing here can stop the process. That holds
//! from the start: a process whose first version is bad runs unconfigured until a good
//! one arrives.

pub mod api_source;
mod content;
pub mod files;
mod health;
mod reloader;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{ConfigErrors, Diagnostic};
use crate::pool::Snapshot;

pub use content::{Initial, Seed};
pub use health::{Health, ReloadEvent};
pub use reloader::{Outcome, Reloader};

/// Where the configuration comes from and the flags that override it: what `run` was
/// given (`runtime::Options` is this type), read again on every reload.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config: PathBuf,
    pub secrets_dir: Option<PathBuf>,
    /// `--listen`: wins over `server.listen` on every reload too.
    pub listen: Option<SocketAddr>,
    /// `--admin`: wins over `server.admin` on every reload too.
    pub admin: Option<SocketAddr>,
    /// `--upstream-ca`: a PEM CA bundle trusted for upstream TLS besides the built-in
    /// roots. Read once at start (the process's upstream client is built from it).
    pub upstream_ca: Option<PathBuf>,
}

/// How eagerly to reload. The defaults suit production; tests shorten them.
#[derive(Clone)]
pub struct ReloadSettings {
    /// Quiet time after the last change event before reading: kubelet's swap and an
    /// editor's save are several filesystem events, and reading between them would
    /// see half an update (a new key's name not linked yet, a truncated file).
    pub debounce: Duration,
    /// Full re-read this often even without events (a no-op when nothing changed).
    pub rescan: Duration,
    /// Watch the directories with inotify (or the platform's equivalent). Off in
    /// tests that prove the re-scan alone catches changes.
    pub watch_files: bool,
    /// Client for the `kubernetes:` API watch. `None`: inferred (in-cluster service
    /// account, else kubeconfig) when the config has that section.
    pub kube_client: Option<kube::Client>,
    /// How long the API may stay unreachable before its last known data is dropped
    /// and the files (which kubelet keeps syncing) are used alone again.
    pub api_stale_after: Duration,
    /// Probes changed key values before they serve; `None`: they serve at once.
    pub lifecycle: Option<Arc<crate::lifecycle::Lifecycle>>,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            rescan: Duration::from_secs(10),
            watch_files: true,
            kube_client: None,
            api_stale_after: Duration::from_secs(120),
            lifecycle: None,
        }
    }
}

impl std::fmt::Debug for ReloadSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadSettings")
            .field("debounce", &self.debounce)
            .field("rescan", &self.rescan)
            .field("watch_files", &self.watch_files)
            .field("kube_client", &self.kube_client.is_some())
            .field("api_stale_after", &self.api_stale_after)
            .field("lifecycle", &self.lifecycle.is_some())
            .finish()
    }
}

/// Reads the first configuration. A failure here is not fatal either: the process
/// starts unconfigured (every request 503 naming the errors, `/readyz` 503) and serves
/// from the first good version the reload loop sees. Exiting instead would put the pod
/// in CrashLoopBackOff, whose back-off delays the fix by minutes after it is applied.
pub fn load_initial(sources: &Sources) -> Initial {
    content::load_initial(sources)
}

/// The running reload machinery; dropping it stops the file watcher, [`stop`](Self::stop)
/// also ends the reload task.
pub struct ReloadHandle {
    requests: mpsc::Sender<()>,
    generations: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    api_task: Option<JoinHandle<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl ReloadHandle {
    /// Asks for a reload now (as a change event would). Never blocks: if one is
    /// already pending, this one is folded into it.
    pub fn request(&self) {
        let _ = self.requests.try_send(());
    }

    /// The generation of the snapshot serving, updated right after each swap.
    pub fn generations(&self) -> watch::Receiver<u64> {
        self.generations.clone()
    }

    /// Stops watching and ends the reload task; a reload in progress is not waited for.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(api) = &self.api_task {
            api.abort();
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ReloadHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(api) = &self.api_task {
            api.abort();
        }
    }
}

/// Starts watching and reloading. `seed` comes from [`load_initial`], whose snapshot
/// `store` now serves.
pub fn spawn(
    sources: Sources,
    settings: ReloadSettings,
    seed: Seed,
    store: Arc<ArcSwap<Snapshot>>,
    health: Arc<Health>,
) -> ReloadHandle {
    // Capacity 1: a request while one is pending adds nothing.
    let (requests, rx) = mpsc::channel(1);
    let (generation_tx, generations) = watch::channel(store.load().generation);
    let (stop, stop_rx) = watch::channel(false);
    let api = Arc::new(api_source::ApiView::default());

    let watcher = if settings.watch_files {
        let mut dirs = vec![files::config_dir(&sources.config)];
        dirs.extend(sources.secrets_dir.clone());
        files::watch_dirs(&dirs, requests.clone())
    } else {
        None
    };
    let api_task = seed.kubernetes().map(|source| {
        let watch = api_source::ApiWatch {
            source: source.clone(),
            client: settings.kube_client.clone(),
            view: Arc::clone(&api),
            requests: requests.clone(),
            stale_after: settings.api_stale_after,
        };
        tokio::spawn(watch.run())
    });

    if let Some(lifecycle) = &settings.lifecycle {
        lifecycle.connect(requests.clone());
    }
    let mut reloader = Reloader::new(sources, seed, store, Arc::clone(&health), api, generation_tx);
    reloader.lifecycle = settings.lifecycle.clone();
    let task = tokio::spawn(run(Arc::new(Mutex::new(reloader)), health, rx, settings, stop_rx));
    ReloadHandle { requests, generations, stop, task: Some(task), api_task, _watcher: watcher }
}

/// The reload loop: wait for a request (or the re-scan tick), let the burst settle,
/// reload on a blocking thread, repeat until stopped.
async fn run(
    reloader: Arc<Mutex<Reloader>>,
    health: Arc<Health>,
    mut requests: mpsc::Receiver<()>,
    settings: ReloadSettings,
    mut stop: watch::Receiver<bool>,
) {
    let rescan = settings.rescan.max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval_at(Instant::now() + rescan, rescan);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            // Only `true` is ever sent, and a dropped handle also ends the wait.
            _ = stop.changed() => return,
            request = requests.recv() => {
                if request.is_none() {
                    return;
                }
                settle(&mut requests, settings.debounce).await;
            }
            _ = ticker.tick() => {}
        }
        let reloader = Arc::clone(&reloader);
        let work = tokio::task::spawn_blocking(move || {
            reloader.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).reload()
        });
        // Stopping never waits for a read stuck in the kernel: the blocking thread is
        // left behind (it only ever swaps in a complete snapshot).
        let outcome = tokio::select! {
            biased;
            _ = stop.changed() => return,
            outcome = work => outcome,
        };
        if let Err(e) = outcome {
            // A bug, not bad input: keep serving and say so, never take the process down.
            tracing::error!(error = %e, "config reload crashed; still serving the previous configuration");
            health.record_reload_failure(format!("internal error while reloading: {e}"));
        }
    }
}

/// Waits until no request arrived for `debounce`, but at most ten debounce periods
/// in all, so a steady trickle of events cannot postpone a reload forever.
async fn settle(requests: &mut mpsc::Receiver<()>, debounce: Duration) {
    let give_up = Instant::now() + debounce * 10;
    loop {
        let quiet_until = (Instant::now() + debounce).min(give_up);
        match tokio::time::timeout_at(quiet_until, requests.recv()).await {
            Ok(Some(())) if Instant::now() < give_up => continue,
            _ => return,
        }
    }
}

/// One line per diagnostic, for logs and `/readyz`.
pub(crate) fn describe(errors: &[Diagnostic]) -> String {
    ConfigErrors(errors.to_vec()).to_string()
}
