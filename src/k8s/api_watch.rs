//! API-watch mode (the `kubernetes:` section of the sidecar's config): the pod's
//! service account may `get` the key Secret, so its token must reach the sidecar only.
//!
//! The ServiceAccount admission plugin runs before mutating webhooks: by the time the
//! injector sees the pod, every container already mounts a `kube-api-access-*` token.
//! Setting `automountServiceAccountToken: false` alone would not take it away, so
//! those mounts and the volume are removed, and the sidecar gets its own projected
//! token ([`super::sidecar::api_token_volume`]).

use json_patch::PatchOperation;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Volume};

use super::inject::{add, flag, remove, InjectError};
use super::sidecar::{InjectSettings, API_TOKEN_VOLUME, CONTAINER_NAME};

/// `"true"` or `"false"`: overrides the injector's default (`sidecar.apiWatch`).
pub const API_WATCH_ANNOTATION: &str = "keyrelay.dev/api-watch";
/// The name prefix of the token volume the ServiceAccount admission plugin adds.
const AUTOMATIC_TOKEN_PREFIX: &str = "kube-api-access-";

/// Whether a pod about to be injected gets API-watch mode.
pub(super) fn wanted(pod: &Pod, settings: &InjectSettings) -> Result<bool, InjectError> {
    match flag(pod, API_WATCH_ANNOTATION) {
        Some(Some(on)) => Ok(on),
        Some(None) => Err(InjectError::NotABool(API_WATCH_ANNOTATION)),
        None => Ok(settings.api_watch),
    }
}

/// Whether an already injected pod was injected in API-watch mode.
pub(super) fn injected_with(spec: &PodSpec) -> bool {
    let init = spec.init_containers.iter().flatten();
    init.chain(&spec.containers)
        .filter(|c| c.name == CONTAINER_NAME)
        .any(|c| c.volume_mounts.iter().flatten().any(|m| m.name == API_TOKEN_VOLUME))
}

/// An explicit `automountServiceAccountToken: true` asks for the token the mode
/// withholds: refused rather than silently overridden.
pub(super) fn check(spec: &PodSpec) -> Result<(), InjectError> {
    match spec.automount_service_account_token {
        Some(true) => Err(InjectError::AutomountRequested),
        _ => Ok(()),
    }
}

/// Takes the automatic token away from every container but the sidecar and turns
/// automounting off. Uses the pod's original indices, so it must run before any
/// operation that inserts into a list; touches nothing when already done.
pub(super) fn withhold_token_ops(ops: &mut Vec<PatchOperation>, spec: &PodSpec) {
    let automatic: Vec<(usize, &Volume)> =
        spec.volumes.iter().flatten().enumerate().filter(|(_, v)| is_automatic_token(v)).collect();
    let lists: [(&str, &[Container]); 2] =
        [("containers", &spec.containers), ("initContainers", spec.init_containers.as_deref().unwrap_or_default())];
    for (list, containers) in lists {
        for (index, container) in containers.iter().enumerate().filter(|(_, c)| c.name != CONTAINER_NAME) {
            let mounts = container.volume_mounts.iter().flatten().enumerate();
            let doomed: Vec<usize> =
                mounts.filter(|(_, m)| automatic.iter().any(|(_, v)| v.name == m.name)).map(|(i, _)| i).collect();
            let index = index.to_string();
            // Highest first, so each index still points at the mount it meant.
            for mount in doomed.iter().rev() {
                remove(ops, &["spec", list, &index, "volumeMounts", &mount.to_string()]);
            }
        }
    }
    for (index, _) in automatic.iter().rev() {
        remove(ops, &["spec", "volumes", &index.to_string()]);
    }
    if spec.automount_service_account_token != Some(false) {
        add(ops, &["spec", "automountServiceAccountToken"], &false);
    }
}

fn is_automatic_token(volume: &Volume) -> bool {
    volume.name.starts_with(AUTOMATIC_TOKEN_PREFIX)
        && volume
            .projected
            .as_ref()
            .and_then(|p| p.sources.as_ref())
            .is_some_and(|sources| sources.iter().any(|s| s.service_account_token.is_some()))
}

#[cfg(test)]
#[path = "api_watch_tests.rs"]
mod tests;
