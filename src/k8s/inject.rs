//! The injector's decision, as a pure function from a Pod to an RFC 6902 JSON patch.
//!
//! Kept free of I/O so every rule (annotations, idempotence, env precedence, indices)
//! is unit-tested without a TLS server or a cluster. The patch is written by hand
//! rather than diffed: only `add` operations on the fields we own, so fields this
//! crate's Pod type does not know (newer Kubernetes) are never rewritten.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use serde::Serialize;
use serde_json::Value;

use super::sidecar::{
    self, InjectSettings, SidecarMode, API_TOKEN_VOLUME, CONFIG_VOLUME, CONTAINER_NAME, SECRETS_VOLUME,
};
use super::{api_watch, conflicts};

/// `"true"` asks for the sidecar.
pub const INJECT_ANNOTATION: &str = "keyrelay.dev/inject";
/// Name of the ConfigMap holding `config.yaml`.
pub const CONFIG_ANNOTATION: &str = "keyrelay.dev/config";
/// Name of the Secret holding the keys, one entry per key name.
pub const SECRET_ANNOTATION: &str = "keyrelay.dev/secret";
/// Set by the injector on the pods it changed; with the `keyrelay` container it marks
/// a pod as already injected (a `keyrelay` container without it is a name clash).
pub const STATUS_ANNOTATION: &str = "keyrelay.dev/status";
/// `"true"` lets a hostNetwork pod be injected, with its ports on the node's network.
pub const ALLOW_HOST_NETWORK_ANNOTATION: &str = "keyrelay.dev/allow-host-network";
pub use super::api_watch::API_WATCH_ANNOTATION;
/// On every pod the injector changed: what the chart's PodMonitor selects.
pub const INJECTED_LABEL: &str = "keyrelay.dev/injected";
/// The annotation-based scrape convention (Prometheus' kubernetes_sd examples).
const SCRAPE_ANNOTATION: &str = "prometheus.io/scrape";
/// Lets `kubectl logs/exec` pick the app, not the sidecar, in plain-container mode.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// What the injector did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No `keyrelay.dev/inject: "true"`: the pod is left alone.
    NotRequested,
    /// The sidecar was added.
    Injected,
    /// The sidecar was already injected (second pass, reinvocation);
    /// only app containers that lack the env may have been completed.
    AlreadyInjected,
}

/// The result of [`mutate`]: an empty patch means "allow unchanged".
#[derive(Debug, Clone, PartialEq)]
pub struct Mutation {
    pub decision: Decision,
    pub patch: Patch,
    /// Returned to `kubectl` as admission warnings.
    pub warnings: Vec<String>,
}

/// Why an annotated pod is refused. Refusing is better than admitting a pod whose
/// sidecar cannot start: the message reaches the user in the ReplicaSet's events.
/// Messages name annotations, fields and the sidecar's settings, never a value taken
/// from the pod (API server logs and events are widely readable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("keyrelay: the pod asks for injection ({INJECT_ANNOTATION}: \"true\") but has no {0} annotation naming the {1} to use")]
    MissingName(&'static str, &'static str),
    #[error(
        "keyrelay: annotation {0} is not a valid object name (lowercase letters, digits, '-' and '.', at most 253)"
    )]
    InvalidName(&'static str),
    #[error("keyrelay: annotation {0} must be \"true\" or \"false\"")]
    NotABool(&'static str),
    #[error("keyrelay: the pod already has a volume named {0}, which the keyrelay sidecar needs; rename that volume")]
    VolumeTaken(&'static str),
    #[error("keyrelay: the pod already has a container named {CONTAINER_NAME} that the injector did not add; rename it (or, for a hand-written keyrelay sidecar, remove {INJECT_ANNOTATION})")]
    ContainerNameTaken,
    #[error("keyrelay: spec.{list}[{index}] already uses port {port}, the sidecar's {role}; change that port or the injector's sidecar ports")]
    PortTaken { list: &'static str, index: usize, port: u16, role: &'static str },
    #[error("keyrelay: the pod uses hostNetwork, which would put the sidecar's keyless proxy (port {port}) and admin port ({admin_port}) on the node's network; set {ALLOW_HOST_NETWORK_ANNOTATION}: \"true\" to inject it anyway")]
    HostNetwork { port: u16, admin_port: u16 },
    #[error("keyrelay: in API-watch mode only the sidecar gets the service-account token (the account can read the key Secret), but the pod sets automountServiceAccountToken: true; remove that field or set {API_WATCH_ANNOTATION}: \"false\"")]
    AutomountRequested,
    #[error("keyrelay: annotation {0} is refused: {1}")]
    InvalidAnnotation(&'static str, &'static str),
    #[error("keyrelay: the pod has no spec")]
    NoSpec,
}

/// True when the pod asks for the sidecar.
pub fn wants_injection(pod: &Pod) -> bool {
    flag(pod, INJECT_ANNOTATION) == Some(Some(true))
}

/// How the webhook reads `keyrelay.dev/inject` before decoding the Pod: the same rule
/// as [`wants_injection`], on the raw annotation value.
pub fn asks_for_injection(value: Option<&str>) -> bool {
    value.and_then(parse_bool) == Some(true)
}

/// Computes the patch that injects keyrelay into `pod`. Applying the patch and calling
/// `mutate` again yields an empty patch.
pub fn mutate(pod: &Pod, settings: &InjectSettings) -> Result<Mutation, InjectError> {
    if !wants_injection(pod) {
        return Ok(Mutation { decision: Decision::NotRequested, patch: Patch::default(), warnings: Vec::new() });
    }
    let spec = pod.spec.as_ref().ok_or(InjectError::NoSpec)?;
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let existing_native = init.iter().position(|c| c.name == CONTAINER_NAME);
    let existing_plain = spec.containers.iter().any(|c| c.name == CONTAINER_NAME);
    let already = existing_native.is_some() || existing_plain;
    if already && annotation(pod, STATUS_ANNOTATION) != Some("injected") {
        return Err(InjectError::ContainerNameTaken);
    }

    // Everything is checked before anything is emitted, so a refusal leaves no half patch.
    let (names, watches_api) = if already {
        (None, api_watch::injected_with(spec))
    } else {
        let names = object_names(pod, settings)?;
        // Checked here so a bad annotation refuses the pod before any patch.
        settings.telemetry.for_pod(pod)?;
        let watches_api = api_watch::wanted(pod, settings)?;
        let ours = [CONFIG_VOLUME, SECRETS_VOLUME, API_TOKEN_VOLUME];
        if let Some(taken) = ours.into_iter().find(|name| spec.volumes.iter().flatten().any(|v| v.name == *name)) {
            return Err(InjectError::VolumeTaken(taken));
        }
        let allow_host_network = match flag(pod, ALLOW_HOST_NETWORK_ANNOTATION) {
            Some(Some(allow)) => allow,
            Some(None) => return Err(InjectError::NotABool(ALLOW_HOST_NETWORK_ANNOTATION)),
            None => false,
        };
        conflicts::check(spec, settings, allow_host_network)?;
        if watches_api {
            api_watch::check(spec)?;
        }
        (Some(names), watches_api)
    };

    let mut ops = Vec::new();
    let mut warnings = Vec::new();
    let wanted = settings.app_env();
    // Env first, while the original container indices still hold.
    for (i, container) in spec.containers.iter().enumerate().filter(|(_, c)| c.name != CONTAINER_NAME) {
        env_ops(&mut ops, &mut warnings, "containers", i, container, &wanted);
    }
    // Regular init containers can reach a native sidecar that starts before them.
    let native_start = match (existing_native, already, settings.mode) {
        (Some(position), _, _) => Some(position + 1),
        (None, false, SidecarMode::Native) => Some(0),
        _ => None,
    };
    if let Some(start) = native_start {
        for (i, container) in init.iter().enumerate().skip(start) {
            env_ops(&mut ops, &mut warnings, "initContainers", i, container, &wanted);
        }
    }
    if watches_api {
        api_watch::withhold_token_ops(&mut ops, spec);
    }

    if let Some((config_map, secret)) = names {
        inject_ops(&mut ops, &mut warnings, pod, spec, settings, &config_map, &secret, watches_api);
        if spec.host_network == Some(true) {
            warnings.push(format!(
                "keyrelay: hostNetwork: ports {} and {} are on the node's network; they must be free on the node, and the node can reach the keyless proxy",
                settings.port, settings.admin_port
            ));
        }
    }
    let decision = if already { Decision::AlreadyInjected } else { Decision::Injected };
    Ok(Mutation { decision, patch: Patch(ops), warnings })
}

/// The sidecar, its volumes and the status annotation.
#[allow(clippy::too_many_arguments)]
fn inject_ops(
    ops: &mut Vec<PatchOperation>,
    warnings: &mut Vec<String>,
    pod: &Pod,
    spec: &PodSpec,
    settings: &InjectSettings,
    config_map: &str,
    secret: &str,
    api_watch: bool,
) {
    let mut volumes = sidecar::volumes(config_map, secret).to_vec();
    if api_watch {
        volumes.push(sidecar::api_token_volume());
    }
    match spec.volumes {
        Some(_) => volumes.iter().for_each(|v| add(ops, &["spec", "volumes", "-"], v)),
        None => add(ops, &["spec", "volumes"], &volumes),
    }
    // `mutate` checked the annotations already; a refusal here cannot happen.
    let telemetry = settings.telemetry.for_pod(pod).unwrap_or_else(|_| settings.telemetry.clone());
    let container = InjectSettings { telemetry, ..settings.clone() }.container(api_watch);
    match (settings.mode, spec.init_containers.is_some()) {
        // First, so the app's own init containers can already call the proxy.
        (SidecarMode::Native, true) => add(ops, &["spec", "initContainers", "0"], &container),
        (SidecarMode::Native, false) => add(ops, &["spec", "initContainers"], &[&container]),
        (SidecarMode::Container, _) => add(ops, &["spec", "containers", "-"], &container),
    }

    let annotations = pod.metadata.annotations.as_ref();
    let mut new = vec![(STATUS_ANNOTATION, "injected".to_owned())];
    if settings.mode == SidecarMode::Container
        && !annotations.is_some_and(|a| a.contains_key(DEFAULT_CONTAINER_ANNOTATION))
    {
        if let Some(app) = spec.containers.first() {
            new.push((DEFAULT_CONTAINER_ANNOTATION, app.name.clone()));
        }
    }
    if settings.scrape_annotations {
        if annotations.is_some_and(|a| a.contains_key(SCRAPE_ANNOTATION)) {
            warnings.push(format!(
                "keyrelay: the pod has its own {SCRAPE_ANNOTATION} annotations, so the sidecar's metrics (port {}) are not scraped by annotation; use the chart's PodMonitor",
                settings.admin_port
            ));
        } else {
            new.push((SCRAPE_ANNOTATION, "true".to_owned()));
            new.push(("prometheus.io/port", settings.admin_port.to_string()));
            new.push(("prometheus.io/path", "/metrics".to_owned()));
        }
    }
    add_entries(ops, "annotations", annotations.is_some(), new);
    add_entries(ops, "labels", pod.metadata.labels.is_some(), vec![(INJECTED_LABEL, "true".to_owned())]);
}

/// Adds `entries` to the pod's `metadata.<map>`, creating the map when absent.
fn add_entries(ops: &mut Vec<PatchOperation>, map: &str, exists: bool, entries: Vec<(&str, String)>) {
    if exists {
        for (key, value) in entries {
            add(ops, &["metadata", map, key], &value);
        }
    } else {
        let map_value: std::collections::BTreeMap<_, _> = entries.into_iter().collect();
        add(ops, &["metadata", map], &map_value);
    }
}

/// Adds the base-URL variables a container does not set itself. An explicit `env`
/// entry wins over `envFrom`, so when `envFrom` is present the user is warned.
fn env_ops(
    ops: &mut Vec<PatchOperation>,
    warnings: &mut Vec<String>,
    list: &str,
    index: usize,
    container: &Container,
    wanted: &[EnvVar],
) {
    let present = container.env.as_deref().unwrap_or_default();
    let missing: Vec<&EnvVar> = wanted.iter().filter(|w| !present.iter().any(|p| p.name == w.name)).collect();
    if missing.is_empty() {
        return;
    }
    if container.env_from.as_ref().is_some_and(|f| !f.is_empty()) {
        warnings.push(format!(
            "keyrelay: spec.{list}[{index}] uses envFrom; keyrelay sets {} explicitly, which takes precedence",
            missing.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let index = index.to_string();
    match container.env {
        Some(_) => missing.iter().for_each(|e| add(ops, &["spec", list, &index, "env", "-"], e)),
        None => add(ops, &["spec", list, &index, "env"], &missing),
    }
}

/// The ConfigMap and Secret names, from the annotations or the injector's defaults.
fn object_names(pod: &Pod, settings: &InjectSettings) -> Result<(String, String), InjectError> {
    let pick = |annotation_key: &'static str, default: &Option<String>, what: &'static str| {
        let value = annotation(pod, annotation_key)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .or_else(|| default.clone())
            .ok_or(InjectError::MissingName(annotation_key, what))?;
        if is_dns_subdomain(&value) {
            Ok(value)
        } else {
            Err(InjectError::InvalidName(annotation_key))
        }
    };
    Ok((
        pick(CONFIG_ANNOTATION, &settings.default_config, "ConfigMap")?,
        pick(SECRET_ANNOTATION, &settings.default_secret, "Secret")?,
    ))
}

/// RFC 1123 subdomain, the rule for ConfigMap and Secret names.
fn is_dns_subdomain(name: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            matches!((bytes.first(), bytes.last()), (Some(&f), Some(&l)) if alnum(f) && alnum(l))
                && bytes.iter().all(|&b| alnum(b) || b == b'-')
        })
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// A `"true"`/`"false"` annotation: `None` when absent, `Some(None)` when it is neither.
pub(super) fn flag(pod: &Pod, key: &str) -> Option<Option<bool>> {
    annotation(pod, key).map(parse_bool)
}

fn parse_bool(value: &str) -> Option<bool> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

pub(super) fn remove(ops: &mut Vec<PatchOperation>, path: &[&str]) {
    ops.push(PatchOperation::Remove(RemoveOperation { path: PointerBuf::from_tokens(path.iter().copied()) }));
}

pub(super) fn add(ops: &mut Vec<PatchOperation>, path: &[&str], value: &impl Serialize) {
    // Serialising k8s-openapi types and strings into a Value cannot fail (no maps
    // with non-string keys); Null would only ever show up in a test.
    let value = serde_json::to_value(value).unwrap_or(Value::Null);
    ops.push(PatchOperation::Add(AddOperation { path: PointerBuf::from_tokens(path.iter().copied()), value }));
}

#[cfg(test)]
#[path = "inject_tests.rs"]
pub(super) mod tests;
