//! What the injector adds to a pod: the keyrelay container, its two volumes and the
//! app containers' environment. Built as typed `k8s-openapi` objects so a misspelt
//! field is a compile error, not a pod the API server rejects at 3 a.m.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIProjection,
    DownwardAPIVolumeFile, EnvVar, HTTPGetAction, KeyToPath, ObjectFieldSelector, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::telemetry::TelemetrySettings;

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
/// Volume holding the sidecar's own service-account token, in API-watch mode.
pub const API_TOKEN_VOLUME: &str = "keyrelay-api-token";
/// Where kube-rs's in-cluster config reads the token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Lifetime of the projected token; kubelet renews it at 80%, kube-rs re-reads the file.
const API_TOKEN_SECONDS: i64 = 3600;
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
    /// Extra environment for the sidecar (log format, shared state).
    pub env: Vec<EnvVar>,
    /// The OTel variables (the chart's; [`mutate`](super::mutate) applies the pod's
    /// annotations over them).
    pub telemetry: TelemetrySettings,
    /// `prometheus.io/scrape`, `/port`, `/path` on injected pods, for the admin port.
    pub scrape_annotations: bool,
    /// ConfigMap used when a pod has no `keyrelay.dev/config` annotation.
    pub default_config: Option<String>,
    /// Secret used when a pod has no `keyrelay.dev/secret` annotation.
    pub default_secret: Option<String>,
    /// API-watch mode for pods without a `keyrelay.dev/api-watch` annotation: the
    /// service-account token goes to the sidecar only.
    pub api_watch: bool,
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
            telemetry: TelemetrySettings::default(),
            scrape_annotations: true,
            default_config: None,
            default_secret: None,
            api_watch: false,
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
    /// config (which has no listen address) and the probes agree on the ports. In
    /// API-watch mode it alone mounts the service-account token.
    pub fn container(&self, api_watch: bool) -> Container {
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
        let mount = |name: &str, path: &str| VolumeMount {
            name: name.to_owned(),
            mount_path: path.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        };
        let mut mounts = vec![mount(CONFIG_VOLUME, CONFIG_DIR), mount(SECRETS_VOLUME, SECRETS_DIR)];
        if api_watch {
            mounts.push(mount(API_TOKEN_VOLUME, SERVICE_ACCOUNT_DIR));
        }
        Container {
            name: CONTAINER_NAME.to_owned(),
            image: Some(self.image.clone()),
            image_pull_policy: Some(self.image_pull_policy.clone()),
            args: Some(args.to_vec()),
            restart_policy: (self.mode == SidecarMode::Native).then(|| "Always".to_owned()),
            env: Some(self.telemetry.env(&self.env)),
            ports: Some(vec![ContainerPort {
                name: Some("keyrelay-admin".to_owned()),
                container_port: i32::from(self.admin_port),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            // Started means serving: with a bad config keyrelay still runs (503 to
            // every request) and waits for a fixed one, so the startup probe must not
            // restart it; /readyz (503 until a good config, and while draining) keeps
            // the pod out of its Service meanwhile.
            startup_probe: Some(probe("/healthz", 1, 120)),
            readiness_probe: Some(probe("/readyz", 5, 3)),
            liveness_probe: Some(probe("/healthz", 10, 3)),
            resources: Some(self.resources.clone()),
            security_context: Some(restricted_security_context()),
            volume_mounts: Some(mounts),
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

/// The sidecar's service-account token, CA and namespace: what the ServiceAccount
/// admission plugin gives every container, given to the sidecar alone (the pod's
/// account can read the key Secret in API-watch mode).
pub fn api_token_volume() -> Volume {
    let file = |path: &str| KeyToPath { key: path.to_owned(), path: path.to_owned(), ..KeyToPath::default() };
    Volume {
        name: API_TOKEN_VOLUME.to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".to_owned(),
                        expiration_seconds: Some(API_TOKEN_SECONDS),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".to_owned(),
                        items: Some(vec![file("ca.crt")]),
                        ..ConfigMapProjection::default()
                    }),
                    ..VolumeProjection::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".to_owned(),
                            field_ref: Some(ObjectFieldSelector {
                                api_version: Some("v1".to_owned()),
                                field_path: "metadata.namespace".to_owned(),
                            }),
                            ..DownwardAPIVolumeFile::default()
                        }]),
                    }),
                    ..VolumeProjection::default()
                },
            ]),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
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
