//! The `kubernetes:` API watch: follow the named Secret and ConfigMap through the API
//! server, so a rotation lands in about a second instead of after kubelet's 60-90 s
//! volume sync.
//!
//! Each object is followed with kube's `watcher` (list, then watch, resumed on
//! errors with kube's default backoff) and a field selector on its name, so the RBAC
//! needed is `get`, `list`, `watch` on those two objects and nothing else is read.
//! What it sees goes into an [`ApiView`] and asks for a reload; the reloader reads the
//! view like it reads the files. The files stay the fallback: when the API was never
//! reached, when the object is deleted, and when the API has been unreachable for
//! `stale_after` (by then kubelet has synced anything the API last showed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret as K8sSecret};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::config::KubernetesSource;
use crate::secret::Secret;

/// The ConfigMap key holding the config text (as in the chart and manifests).
pub const CONFIG_KEY: &str = "config.yaml";

/// The latest data seen through the API, shared with the reloader.
#[derive(Debug, Default)]
pub struct ApiView(Mutex<ApiData>);

/// One consistent copy of the view. `None` fields mean "use the files".
#[derive(Debug, Clone, Default)]
pub struct ApiData {
    /// A label naming the ConfigMap (used as the file name in messages) and its text.
    pub config: Option<(PathBuf, Arc<str>)>,
    /// The Secret's data, by key name.
    pub secret: Option<Arc<BTreeMap<String, Secret>>>,
}

impl ApiView {
    pub fn get(&self) -> ApiData {
        self.lock().clone()
    }

    /// Returns whether anything changed.
    fn set_config(&self, config: Option<(PathBuf, Arc<str>)>) -> bool {
        let mut data = self.lock();
        let changed = data.config != config;
        data.config = config;
        changed
    }

    fn set_secret(&self, secret: Option<BTreeMap<String, Secret>>) -> bool {
        let mut data = self.lock();
        let changed = data.secret.as_deref() != secret.as_ref();
        data.secret = secret.map(Arc::new);
        changed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ApiData> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
impl ApiView {
    pub(crate) fn set_for_tests(&self, config: String, secret: &[(&str, &str)]) {
        self.set_config(Some((PathBuf::from("configmap/test/keyrelay:config.yaml"), Arc::from(config))));
        self.set_secret(Some(secret.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect()));
    }

    pub(crate) fn clear_for_tests(&self) {
        self.set_config(None);
        self.set_secret(None);
    }
}

/// The API watch task's inputs.
pub struct ApiWatch {
    pub source: KubernetesSource,
    /// `None`: inferred (in-cluster service account, else kubeconfig).
    pub client: Option<Client>,
    pub view: Arc<ApiView>,
    pub requests: mpsc::Sender<()>,
    pub stale_after: Duration,
}

impl ApiWatch {
    /// Follows the Secret and the ConfigMap until aborted. Never fails: without an
    /// API server the files are used, as if there were no `kubernetes:` section.
    pub async fn run(self) {
        let client = match self.client {
            Some(client) => client,
            None => match Client::try_default().await {
                Ok(client) => client,
                Err(e) => {
                    tracing::warn!(error = %e, "kubernetes: no API client; following the mounted files only");
                    return;
                }
            },
        };
        let namespace = self.source.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        let secret = self.source.secret.clone().map(|name| {
            let view = Arc::clone(&self.view);
            let api: Api<K8sSecret> = Api::namespaced(client.clone(), &namespace);
            let apply = move |obj: Option<&K8sSecret>| view.set_secret(obj.map(secret_data));
            follow(api, name, "secret", self.stale_after, apply, self.requests.clone())
        });
        let config_map = self.source.config_map.clone().map(|name| {
            let view = Arc::clone(&self.view);
            let label = PathBuf::from(format!("configmap/{namespace}/{name}:{CONFIG_KEY}"));
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            let apply = move |obj: Option<&ConfigMap>| view.set_config(config_text(obj, &label));
            follow(api, name, "configmap", self.stale_after, apply, self.requests.clone())
        });
        tracing::info!(
            %namespace,
            secret = ?self.source.secret,
            config_map = ?self.source.config_map,
            "kubernetes: watching through the API server"
        );
        tokio::join!(run_opt(secret), run_opt(config_map));
    }
}

async fn run_opt(task: Option<impl std::future::Future<Output = ()>>) {
    if let Some(task) = task {
        task.await;
    }
}

/// Follows one object by name. `apply` stores what it saw (`None`: absent) and says
/// whether that changed anything; a change asks for a reload.
async fn follow<K>(
    api: Api<K>,
    name: String,
    kind: &'static str,
    stale_after: Duration,
    apply: impl Fn(Option<&K>) -> bool,
    requests: mpsc::Sender<()>,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    // During a (re)list, the object seen so far; applied at `InitDone`.
    let mut listing: Option<Option<K>> = None;
    let mut failing_since: Option<Instant> = None;
    let mut dropped = false;
    let changed = |applied: bool| {
        if applied {
            tracing::info!(kind, %name, "kubernetes: object changed");
            let _ = requests.try_send(());
        }
    };
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                let since = *failing_since.get_or_insert_with(|| {
                    tracing::warn!(
                        kind,
                        %name,
                        error = %e,
                        "kubernetes: watch failed; retrying, files stay the fallback"
                    );
                    Instant::now()
                });
                tracing::debug!(kind, %name, error = %e, "kubernetes: watch still failing");
                if !dropped && since.elapsed() >= stale_after {
                    tracing::warn!(kind, %name, "kubernetes: API unreachable too long; using the mounted files");
                    dropped = true;
                    changed(apply(None));
                }
                continue;
            }
        };
        if failing_since.take().is_some() {
            tracing::info!(kind, %name, "kubernetes: watch recovered");
        }
        dropped = false;
        match event {
            watcher::Event::Init => listing = Some(None),
            watcher::Event::InitApply(obj) => listing = Some(Some(obj)),
            watcher::Event::InitDone => {
                let obj = listing.take().flatten();
                if obj.is_none() {
                    tracing::warn!(kind, %name, "kubernetes: object not found; using the mounted files");
                }
                changed(apply(obj.as_ref()));
            }
            watcher::Event::Apply(obj) => changed(apply(Some(&obj))),
            watcher::Event::Delete(_) => changed(apply(None)),
        }
    }
}

/// A Secret's `data` as key values; a value that is not UTF-8 cannot be an API key
/// and is skipped (by name).
fn secret_data(secret: &K8sSecret) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    for (name, value) in secret.data.iter().flatten() {
        match std::str::from_utf8(&value.0) {
            Ok(text) => {
                out.insert(name.clone(), Secret::new(text));
            }
            Err(_) => tracing::warn!(key = %name, "kubernetes: secret value is not UTF-8; ignored"),
        }
    }
    out
}

fn config_text(config_map: Option<&ConfigMap>, label: &std::path::Path) -> Option<(PathBuf, Arc<str>)> {
    let config_map = config_map?;
    match config_map.data.as_ref().and_then(|d| d.get(CONFIG_KEY)) {
        Some(text) => Some((label.to_path_buf(), Arc::from(text.as_str()))),
        None => {
            let configmap = label.display();
            tracing::warn!(%configmap, "kubernetes: ConfigMap has no {CONFIG_KEY}; using the config file");
            None
        }
    }
}
