//! The injector's decision, as a pure function from a Pod to an RFC 6902 JSON patch.
//!
//! Kept free of I/O so every rule (annotations, idempotence, env precedence, indices)
//! is unit-tested without a TLS server or a cluster. The patch is written by hand
//! rather than diffed: only `add` operations on the fields we own, so fields this
//! crate's Pod type does not know (newer Kubernetes) are never rewritten.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use serde::Serialize;
use serde_json::Value;

use super::sidecar::{self, InjectSettings, SidecarMode, CONFIG_VOLUME, CONTAINER_NAME, SECRETS_VOLUME};

/// `"true"` asks for the sidecar.
pub const INJECT_ANNOTATION: &str = "keyrelay.dev/inject";
/// Name of the ConfigMap holding `config.yaml`.
pub const CONFIG_ANNOTATION: &str = "keyrelay.dev/config";
/// Name of the Secret holding the keys, one entry per key name.
pub const SECRET_ANNOTATION: &str = "keyrelay.dev/secret";
/// Set by the injector on the pods it changed, for humans and `kubectl get -o yaml`.
pub const STATUS_ANNOTATION: &str = "keyrelay.dev/status";
/// Lets `kubectl logs/exec` pick the app, not the sidecar, in plain-container mode.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

/// What the injector did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No `keyrelay.dev/inject: "true"`: the pod is left alone.
    NotRequested,
    /// The sidecar was added.
    Injected,
    /// The sidecar was already there (second pass, reinvocation, or hand-written);
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("keyrelay: the pod asks for injection ({INJECT_ANNOTATION}: \"true\") but has no {0} annotation naming the {1} to use")]
    MissingName(&'static str, &'static str),
    #[error("keyrelay: annotation {annotation}: {value:?} is not a valid object name (lowercase letters, digits, '-' and '.', at most 253)")]
    InvalidName { annotation: &'static str, value: String },
    #[error(
        "keyrelay: the pod already has a volume named {0:?}, which the keyrelay sidecar needs; rename that volume"
    )]
    VolumeTaken(String),
    #[error("keyrelay: the pod has no spec")]
    NoSpec,
}

/// True when the pod asks for the sidecar.
pub fn wants_injection(pod: &Pod) -> bool {
    annotation(pod, INJECT_ANNOTATION).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
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

    // Names are checked before anything is emitted, so a refusal leaves no half patch.
    let names = if already { None } else { Some(object_names(pod, settings)?) };
    if !already {
        if let Some(taken) = spec.volumes.iter().flatten().find(|v| v.name == CONFIG_VOLUME || v.name == SECRETS_VOLUME)
        {
            return Err(InjectError::VolumeTaken(taken.name.clone()));
        }
    }

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

    if let Some((config_map, secret)) = names {
        inject_ops(&mut ops, pod, spec, settings, &config_map, &secret);
        if spec.host_network == Some(true) {
            warnings.push(format!(
                "keyrelay: hostNetwork pods share the node's loopback: port {} must be free on the node",
                settings.port
            ));
        }
    }
    let decision = if already { Decision::AlreadyInjected } else { Decision::Injected };
    Ok(Mutation { decision, patch: Patch(ops), warnings })
}

/// The sidecar, its volumes and the status annotation.
fn inject_ops(
    ops: &mut Vec<PatchOperation>,
    pod: &Pod,
    spec: &PodSpec,
    settings: &InjectSettings,
    config_map: &str,
    secret: &str,
) {
    let volumes = sidecar::volumes(config_map, secret);
    match spec.volumes {
        Some(_) => volumes.iter().for_each(|v| add(ops, &["spec", "volumes", "-"], v)),
        None => add(ops, &["spec", "volumes"], &volumes),
    }
    let container = settings.container();
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
    if annotations.is_some() {
        for (key, value) in new {
            add(ops, &["metadata", "annotations", key], &value);
        }
    } else {
        let map: std::collections::BTreeMap<_, _> = new.into_iter().collect();
        add(ops, &["metadata", "annotations"], &map);
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
            "keyrelay: container {:?} uses envFrom; keyrelay sets {} explicitly, which takes precedence",
            container.name,
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
            Err(InjectError::InvalidName { annotation: annotation_key, value })
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

fn add(ops: &mut Vec<PatchOperation>, path: &[&str], value: &impl Serialize) {
    // Serialising k8s-openapi types and strings into a Value cannot fail (no maps
    // with non-string keys); Null would only ever show up in a test.
    let value = serde_json::to_value(value).unwrap_or(Value::Null);
    ops.push(PatchOperation::Add(AddOperation { path: PointerBuf::from_tokens(path.iter().copied()), value }));
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
