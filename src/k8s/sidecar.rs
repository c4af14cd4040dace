//! What the injector adds to a pod: the keyrelay container, its two volumes and the
//! app containers' environment. Built as typed `k8s-openapi` objects so a misspelt
//! field is a compile error, not a pod the API server rejects at 3 a.m.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, HTTPGetAction, Probe, ResourceRequirements,
    SeccompProfile, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The sidecar's container name; also how an injected pod is recognised.
pub const CONTAINER_NAME: &str = "keyrelay";
/// Volume holding the ConfigMap named by `keyrelay.dev/config`.
pub const CONFIG_VOLUME: &str = "keyrelay-config";
/// Volume holding the Secret named by `keyrelay.dev/secret`.
pub const SECRETS_VOLUME: &str = "keyrelay-secrets";
/// Where the ConfigMap is mounted: a directory, so kubelet's atomic updates are seen.
pub const CONFIG_DIR: &str = "/etc/keyrelay/config";
/// Where the Secret is mounted: one file per key name.
pub const SECRETS_DIR: &str = "/etc/keyrelay/secrets";
/// The fixed non-root uid/gid of the image (distroless `nonroot`).
pub const RUN_AS: i64 = 65532;

/// How the sidecar is added to the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SidecarMode {
    /// An init container with `restartPolicy: Always` (Kubernetes >= 1.29): starts before
    /// the app, is ready before the app starts, and stops after it.
    Native,
    /// A plain extra container, for clusters older than 1.29.
    Container,
}

/// Everything about the sidecar that comes from the chart rather than the pod.
#[derive(Debug, Clone)]
pub struct InjectSettings {
    pub image: String,
    pub image_pull_policy: String,
    pub mode: SidecarMode,
    /// The app port, bound on loopback only.
    pub port: u16,
    /// The admin port (probes, metrics), bound on all interfaces.
    pub admin_port: u16,
    pub resources: ResourceRequirements,
    /// Extra environment for the sidecar (log format, `OTEL_*`).
    pub env: Vec<EnvVar>,
    /// ConfigMap used when a pod has no `keyrelay.dev/config` annotation.
    pub default_config: Option<String>,
    /// Secret used when a pod has no `keyrelay.dev/secret` annotation.
    pub default_secret: Option<String>,
}

impl Default for InjectSettings {
    fn default() -> Self {
        InjectSettings {
            image: default_image(),
            image_pull_policy: "IfNotPresent".to_owned(),
            mode: SidecarMode::Native,
            port: 4000,
            admin_port: 9901,
            resources: default_resources(),
            env: Vec::new(),
            default_config: None,
            default_secret: None,
        }
    }
}

/// The image published for this version.
pub fn default_image() -> String {
    format!("ghcr.io/keyrelay/keyrelay:{}", env!("CARGO_PKG_VERSION"))
}

/// Small requests (the proxy idles at a few MiB) and a memory limit; no CPU limit, so
/// bursts are not throttled on the request path.
pub fn default_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect::<BTreeMap<_, _>>()
    };
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
        limits: Some(quantities(&[("memory", "256Mi")])),
        ..ResourceRequirements::default()
    }
}

impl InjectSettings {
    /// The environment every app container gets, unless it already sets the name.
    pub fn app_env(&self) -> Vec<EnvVar> {
        vec![
            env("OPENAI_BASE_URL", &format!("http://127.0.0.1:{}/v1", self.port)),
            env("ANTHROPIC_BASE_URL", &format!("http://127.0.0.1:{}", self.port)),
        ]
    }

    /// The keyrelay container. `--listen`/`--admin` are always passed, so a LiteLLM
    /// config (which has no listen address) and the probes agree on the ports.
    pub fn container(&self) -> Container {
        let probe = |path: &str, period: i32, failures: i32| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.to_owned()),
                port: IntOrString::Int(i32::from(self.admin_port)),
                scheme: Some("HTTP".to_owned()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(period),
            failure_threshold: Some(failures),
            timeout_seconds: Some(1),
            ..Probe::default()
        };
        let args = [
            "run",
            "--config",
            &format!("{CONFIG_DIR}/config.yaml"),
            "--secrets-dir",
            SECRETS_DIR,
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--admin",
            &format!("0.0.0.0:{}", self.admin_port),
        ]
        .map(str::to_owned);
        Container {
            name: CONTAINER_NAME.to_owned(),
            image: Some(self.image.clone()),
            image_pull_policy: Some(self.image_pull_policy.clone()),
            args: Some(args.to_vec()),
            restart_policy: (self.mode == SidecarMode::Native).then(|| "Always".to_owned()),
            env: (!self.env.is_empty()).then(|| self.env.clone()),
            ports: Some(vec![ContainerPort {
                name: Some("keyrelay-admin".to_owned()),
                container_port: i32::from(self.admin_port),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            // /readyz is 503 until the first good config: a native sidecar holds the
            // app back until then; afterwards it flips only while draining.
            startup_probe: Some(probe("/readyz", 1, 120)),
            readiness_probe: Some(probe("/readyz", 5, 3)),
            liveness_probe: Some(probe("/healthz", 10, 3)),
            resources: Some(self.resources.clone()),
            security_context: Some(restricted_security_context()),
            volume_mounts: Some(vec![
                VolumeMount {
                    name: CONFIG_VOLUME.to_owned(),
                    mount_path: CONFIG_DIR.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
                VolumeMount {
                    name: SECRETS_VOLUME.to_owned(),
                    mount_path: SECRETS_DIR.to_owned(),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            ]),
            termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
            ..Container::default()
        }
    }
}

/// Whole-directory volumes (never subPath: subPath mounts are not updated by kubelet,
/// which would silently break hot reload). Missing objects keep the pod pending with
/// a clear event instead of starting a proxy without keys.
pub fn volumes(config_map: &str, secret: &str) -> [Volume; 2] {
    [
        Volume {
            name: CONFIG_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.to_owned(),
                optional: Some(false),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: SECRETS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                optional: Some(false),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
}

/// Passes the "restricted" Pod Security Standard.
pub fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), ..Capabilities::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".to_owned(), ..SeccompProfile::default() }),
        ..SecurityContext::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.to_owned(), value: Some(value.to_owned()), ..EnvVar::default() }
}
