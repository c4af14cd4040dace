//! Pods the sidecar cannot safely join. Checked before any patch is built, so a
//! refusal names the conflict instead of admitting a pod whose sidecar crash-loops on a
//! taken port or whose keyless proxy faces the node. Messages name fields by path and
//! the sidecar's own settings, never a value copied from the pod.

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::inject::InjectError;
use super::sidecar::{InjectSettings, SidecarMode};

/// Refuses a hostNetwork pod that did not opt in, and a container that declares one of
/// the sidecar's ports while running next to it.
pub(super) fn check(spec: &PodSpec, settings: &InjectSettings, allow_host_network: bool) -> Result<(), InjectError> {
    if spec.host_network == Some(true) && !allow_host_network {
        return Err(InjectError::HostNetwork { port: settings.port, admin_port: settings.admin_port });
    }
    let init = spec.init_containers.as_deref().unwrap_or_default();
    // Regular init containers finish before a plain sidecar starts; a native sidecar
    // (and any other restartable init container) runs alongside them.
    let alongside =
        |c: &Container| settings.mode == SidecarMode::Native || c.restart_policy.as_deref() == Some("Always");
    let running = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| ("containers", i, c))
        .chain(init.iter().enumerate().filter(|(_, c)| alongside(c)).map(|(i, c)| ("initContainers", i, c)));
    for (list, index, container) in running {
        for declared in container.ports.iter().flatten() {
            // UDP and SCTP ports do not collide with the sidecar's TCP listeners. A
            // hostPort maps a node port to the pod and takes nothing in the pod's own
            // network (with hostNetwork it must equal containerPort, checked here).
            if declared.protocol.as_deref().is_some_and(|p| p != "TCP") {
                continue;
            }
            for (port, role) in [(settings.port, "app port"), (settings.admin_port, "admin port")] {
                if declared.container_port == i32::from(port) {
                    return Err(InjectError::PortTaken { list, index, port, role });
                }
            }
        }
    }
    Ok(())
}
