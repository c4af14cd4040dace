//! Kubernetes integration: the sidecar injector (`keyrelay webhook`).
//!
//! - [`inject`]: the pure decision, Pod -> JSON patch (unit-tested directly).
//! - [`review`]: AdmissionReview bytes in, bytes out; errors mapped to statuses once.
//! - [`server`]: TLS + HTTP shell; [`tls`]: the certificate, reloaded when renewed.
//! - [`sidecar`]: the container, volumes and env the injector adds.
//! - [`telemetry`]: the sidecar's OTel variables, from the chart and pod annotations.
//! - `conflicts`: pods the sidecar cannot join; `api_watch`: the token only the
//!   sidecar gets when it watches the API.
//!
//! The chart passes its values as flags (or `KEYRELAY_WEBHOOK_*`/`KEYRELAY_SIDECAR_*`
//! environment variables), so a `helm upgrade` changes what new pods get.

mod api_watch;
mod conflicts;
pub mod inject;
pub mod review;
pub mod server;
pub mod sidecar;
pub mod telemetry;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};

pub use inject::{mutate, Decision, InjectError, Mutation};
pub use server::{serve, StartError, WebhookConfig};
pub use sidecar::{InjectSettings, SidecarMode};
pub use telemetry::TelemetrySettings;

/// `keyrelay webhook`: the mutating admission webhook that injects the sidecar.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// PEM certificate (chain) served to the API server.
    #[arg(long, env = "KEYRELAY_WEBHOOK_TLS_CERT")]
    pub tls_cert: PathBuf,
    /// PEM private key of that certificate.
    #[arg(long, env = "KEYRELAY_WEBHOOK_TLS_KEY")]
    pub tls_key: PathBuf,
    /// Address to serve HTTPS on (`POST /mutate`, `GET /healthz`).
    #[arg(long, env = "KEYRELAY_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Image of the injected keyrelay container.
    #[arg(long, env = "KEYRELAY_SIDECAR_IMAGE", default_value_t = sidecar::default_image())]
    pub sidecar_image: String,
    /// imagePullPolicy of the injected container.
    #[arg(long, env = "KEYRELAY_SIDECAR_IMAGE_PULL_POLICY", default_value = "IfNotPresent",
        value_parser = ["Always", "IfNotPresent", "Never"])]
    pub sidecar_image_pull_policy: String,
    /// `native`: init container with restartPolicy Always (Kubernetes >= 1.29);
    /// `container`: a plain extra container for older clusters.
    #[arg(long, env = "KEYRELAY_SIDECAR_MODE", value_enum, default_value = "native")]
    pub sidecar_mode: SidecarMode,
    /// The sidecar's app port on 127.0.0.1 (what OPENAI_BASE_URL points at).
    #[arg(long, env = "KEYRELAY_SIDECAR_PORT", default_value_t = 4000)]
    pub sidecar_port: u16,
    /// The sidecar's admin port (probes, metrics).
    #[arg(long, env = "KEYRELAY_SIDECAR_ADMIN_PORT", default_value_t = 9901)]
    pub sidecar_admin_port: u16,
    /// The sidecar's resources, as JSON (a Kubernetes ResourceRequirements).
    #[arg(long, env = "KEYRELAY_SIDECAR_RESOURCES", value_parser = parse_json::<ResourceRequirements>)]
    pub sidecar_resources: Option<ResourceRequirements>,
    /// Extra environment for the sidecar, as a JSON list of EnvVar (e.g. OTEL_*).
    #[arg(long, env = "KEYRELAY_SIDECAR_ENV", value_parser = parse_json::<Vec<EnvVar>>)]
    pub sidecar_env: Option<Vec<EnvVar>>,
    /// The sidecar's OTEL_EXPORTER_OTLP_ENDPOINT (a pod's `keyrelay.dev/otel-endpoint` wins).
    #[arg(long, env = "KEYRELAY_SIDECAR_OTEL_ENDPOINT", value_parser = checked(telemetry::check_endpoint))]
    pub sidecar_otel_endpoint: Option<String>,
    /// OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf or grpc (`keyrelay.dev/otel-protocol`).
    #[arg(long, env = "KEYRELAY_SIDECAR_OTEL_PROTOCOL", value_parser = checked(telemetry::check_protocol))]
    pub sidecar_otel_protocol: Option<String>,
    /// OTEL_TRACES_SAMPLER (`keyrelay.dev/otel-sampler`).
    #[arg(long, env = "KEYRELAY_SIDECAR_OTEL_SAMPLER", value_parser = checked(telemetry::check_sampler))]
    pub sidecar_otel_sampler: Option<String>,
    /// OTEL_TRACES_SAMPLER_ARG, a ratio from 0 to 1 (`keyrelay.dev/otel-sampler-arg`).
    #[arg(long, env = "KEYRELAY_SIDECAR_OTEL_SAMPLER_ARG", value_parser = checked(telemetry::check_sampler_arg))]
    pub sidecar_otel_sampler_arg: Option<String>,
    /// Resource attributes besides the pod's, `key=value,...` (`keyrelay.dev/otel-resource-attributes`).
    #[arg(long, env = "KEYRELAY_SIDECAR_OTEL_RESOURCE_ATTRIBUTES",
        value_parser = checked(telemetry::check_resource_attributes))]
    pub sidecar_otel_resource_attributes: Option<String>,
    /// prometheus.io/scrape, /port, /path annotations on injected pods (unless they have their own).
    #[arg(long, env = "KEYRELAY_SIDECAR_SCRAPE_ANNOTATIONS", default_value_t = true, action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new())]
    pub sidecar_scrape_annotations: bool,
    /// ConfigMap for pods without a `keyrelay.dev/config` annotation (else they are refused).
    #[arg(long, env = "KEYRELAY_SIDECAR_DEFAULT_CONFIG")]
    pub default_config: Option<String>,
    /// Secret for pods without a `keyrelay.dev/secret` annotation (else they are refused).
    #[arg(long, env = "KEYRELAY_SIDECAR_DEFAULT_SECRET")]
    pub default_secret: Option<String>,
    /// API-watch mode for pods without a `keyrelay.dev/api-watch` annotation: the
    /// service-account token is mounted into the sidecar only.
    #[arg(long, env = "KEYRELAY_SIDECAR_API_WATCH", default_value_t = false, action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new())]
    pub sidecar_api_watch: bool,
    /// Open connections at once; past it, new connections are closed at once.
    #[arg(long, env = "KEYRELAY_WEBHOOK_MAX_CONNECTIONS", default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_connections: u32,
    /// A connection's TLS handshake and request head must arrive within this (max 5m).
    #[arg(long, env = "KEYRELAY_WEBHOOK_HEADER_READ_TIMEOUT", default_value = "10s",
        value_parser = |text: &str| parse_timeout(text, Duration::from_secs(300)))]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (max 1h).
    #[arg(long, env = "KEYRELAY_WEBHOOK_IDLE_TIMEOUT", default_value = "90s",
        value_parser = |text: &str| parse_timeout(text, Duration::from_secs(3600)))]
    pub idle_timeout: Duration,
}

impl WebhookArgs {
    pub fn into_config(self) -> WebhookConfig {
        let non_empty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        WebhookConfig {
            listen: self.listen,
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            tls_cert: self.tls_cert,
            tls_key: self.tls_key,
            settings: InjectSettings {
                image: self.sidecar_image,
                image_pull_policy: self.sidecar_image_pull_policy,
                mode: self.sidecar_mode,
                port: self.sidecar_port,
                admin_port: self.sidecar_admin_port,
                resources: self.sidecar_resources.unwrap_or_else(sidecar::default_resources),
                env: self.sidecar_env.unwrap_or_default(),
                telemetry: TelemetrySettings {
                    endpoint: non_empty(self.sidecar_otel_endpoint),
                    protocol: non_empty(self.sidecar_otel_protocol),
                    sampler: non_empty(self.sidecar_otel_sampler),
                    sampler_arg: non_empty(self.sidecar_otel_sampler_arg),
                    resource_attributes: non_empty(self.sidecar_otel_resource_attributes),
                },
                scrape_annotations: self.sidecar_scrape_annotations,
                default_config: non_empty(self.default_config),
                default_secret: non_empty(self.default_secret),
                api_watch: self.sidecar_api_watch,
            },
        }
    }
}

/// Runs `keyrelay webhook` until `shutdown` resolves.
pub async fn run(args: WebhookArgs, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    serve(args.into_config(), shutdown).await
}

/// A positive humantime duration (`10s`, `500ms`) no longer than `max`.
fn parse_timeout(text: &str, max: Duration) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| format!("invalid duration {text:?} ({e})"))?;
    if d.is_zero() || d > max {
        return Err(format!("must be greater than zero and at most {}", humantime::format_duration(max)));
    }
    Ok(d)
}

/// A flag checked like the annotation it is the default of; empty means unset.
fn checked(check: fn(&str) -> Result<(), telemetry::Refusal>) -> impl Fn(&str) -> Result<String, String> + Clone {
    move |text: &str| {
        let text = text.trim();
        if !text.is_empty() {
            check(text)?;
        }
        Ok(text.to_owned())
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
}
