//! The OTLP trace pipeline: which exporter the standard `OTEL_*` variables ask for,
//! and the tracer provider around it.
//!
//! Exports run on a small runtime of their own (one worker thread, created only when
//! an exporter is configured): the SDK's batch processor exports from a plain thread,
//! and both transports need a Tokio reactor that outlives whatever runtime happened to
//! call `init` (each test has its own).

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tokio::runtime::Runtime;

use super::export_client::ExportClient;
use super::sampling::Sampling;

/// How spans travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `http/protobuf` (the default): POST to `.../v1/traces`, usually port 4318.
    HttpProtobuf,
    /// `grpc`: the collector's gRPC port, usually 4317.
    Grpc,
}

/// What to export to. Built from the environment by [`OtlpSettings::from_env`], or
/// by hand in tests.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// The traces endpoint, used as is (for HTTP, the full `.../v1/traces` URL).
    /// `None`: the exporter reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (plus `/v1/traces` for HTTP), itself.
    pub endpoint: Option<String>,
    pub transport: Transport,
    /// How long ended spans wait to be batched; `None`: `OTEL_BSP_SCHEDULE_DELAY` or
    /// the SDK's 5 s.
    pub batch_delay: Option<Duration>,
    /// Timeout of one export request.
    pub timeout: Duration,
    /// HTTP transport: a PEM bundle trusted besides the built-in roots (a private
    /// collector's CA), from `OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE`.
    pub ca: Option<PathBuf>,
    /// `OTEL_TRACES_SAMPLER(_ARG)`: given to the SDK, and asked by the request path
    /// before it creates spans the sampler would drop anyway.
    pub sampling: Sampling,
    /// Settings that were not understood, logged once the logger is up.
    pub warnings: Vec<String>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl OtlpSettings {
    /// Explicit settings: export to `endpoint` over `transport`.
    pub fn new(endpoint: impl Into<String>, transport: Transport) -> Self {
        let (sampling, warning) = Sampling::from_env();
        OtlpSettings {
            endpoint: Some(endpoint.into()),
            transport,
            batch_delay: None,
            timeout: DEFAULT_TIMEOUT,
            ca: None,
            sampling,
            warnings: warning.into_iter().collect(),
        }
    }

    /// The exporter the standard variables configure, if any.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    }

    /// [`OtlpSettings::from_env`] over any variable lookup (unit tests).
    ///
    /// Exporting is on when an OTLP endpoint is set (or `OTEL_TRACES_EXPORTER=otlp`
    /// asks for the default one), unless `OTEL_SDK_DISABLED=true` or
    /// `OTEL_TRACES_EXPORTER` names no OTLP exporter (`none`).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return None;
        }
        let exporters = var("OTEL_TRACES_EXPORTER").map(|v| v.to_ascii_lowercase());
        if exporters.as_deref().is_some_and(|v| !v.split(',').any(|e| e.trim() == "otlp")) {
            return None;
        }
        let endpoint_set =
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() || var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        if !endpoint_set && exporters.is_none() {
            return None;
        }
        let mut warnings = Vec::new();
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let transport = match protocol.as_deref().map(str::trim) {
            None | Some("http/protobuf") => Transport::HttpProtobuf,
            Some("grpc") => Transport::Grpc,
            Some(other) => {
                // OTLP/HTTP receivers take protobuf on the same URL as JSON.
                warnings.push(format!("OTLP protocol {other:?} is not supported; sending http/protobuf instead"));
                Transport::HttpProtobuf
            }
        };
        let timeout = var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .and_then(|ms| ms.trim().parse::<u64>().ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        let ca = var("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE").or_else(|| var("OTEL_EXPORTER_OTLP_CERTIFICATE"));
        if ca.is_some() && transport == Transport::Grpc {
            warnings.push(
                "OTEL_EXPORTER_OTLP_CERTIFICATE applies to http/protobuf only; gRPC uses the built-in roots".into(),
            );
        }
        let (sampling, warning) =
            Sampling::parse(var("OTEL_TRACES_SAMPLER").as_deref(), var("OTEL_TRACES_SAMPLER_ARG").as_deref());
        warnings.extend(warning);
        Some(OtlpSettings {
            endpoint: None,
            transport,
            batch_delay: None,
            timeout,
            ca: ca.map(PathBuf::from),
            sampling,
            warnings,
        })
    }

    /// Where spans go, for the startup log line.
    pub fn describe(&self) -> String {
        let protocol = match self.transport {
            Transport::HttpProtobuf => "http/protobuf",
            Transport::Grpc => "grpc",
        };
        match &self.endpoint {
            Some(endpoint) => format!("{endpoint} ({protocol})"),
            None => format!("the OTEL_EXPORTER_OTLP_* endpoint ({protocol})"),
        }
    }
}

/// Builds the tracer provider: exporter, batch processor, resource.
pub(super) fn provider(settings: &OtlpSettings) -> Result<SdkTracerProvider, String> {
    let runtime = export_runtime().ok_or("cannot start the export thread")?;
    let exporter = match settings.transport {
        Transport::HttpProtobuf => {
            let client = ExportClient::new(runtime.handle().clone(), settings.timeout, settings.ca.as_deref())
                .map_err(|e| e.to_string())?;
            let mut builder = SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_timeout(settings.timeout)
                .with_http_client(client);
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build()
        }
        Transport::Grpc => {
            // tonic's channel spawns its connection task on the current runtime.
            let _context = runtime.enter();
            let mut builder = SpanExporter::builder().with_tonic().with_timeout(settings.timeout);
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build()
        }
    }
    .map_err(|e| e.to_string())?;
    let processor = match settings.batch_delay {
        Some(delay) => BatchSpanProcessor::builder(exporter)
            .with_batch_config(BatchConfigBuilder::default().with_scheduled_delay(delay).build())
            .build(),
        None => BatchSpanProcessor::builder(exporter).build(),
    };
    Ok(SdkTracerProvider::builder()
        .with_sampler(settings.sampling.sdk_sampler())
        .with_span_processor(processor)
        .with_resource(resource())
        .build())
}

/// `service.name` from `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`, else
/// `keyrelay`; the other resource attributes from `OTEL_RESOURCE_ATTRIBUTES`.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|v| v.split(',').any(|kv| kv.trim_start().starts_with("service.name=")));
    let mut builder = Resource::builder().with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if !named {
        builder = builder.with_service_name("keyrelay");
    }
    builder.build()
}

/// The exporters' runtime, started on first use and kept for the life of the process
/// (never dropped, so never dropped inside async code).
fn export_runtime() -> Option<&'static Runtime> {
    static RUNTIME: OnceLock<Option<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("keyrelay-otlp")
                .enable_all()
                .build()
                .ok()
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Option<OtlpSettings> {
        OtlpSettings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn no_endpoint_no_exporter() {
        assert!(from(&[]).is_none());
        assert!(from(&[("OTEL_SERVICE_NAME", "x")]).is_none());
    }

    #[test]
    fn endpoint_and_protocol() {
        let s =
            from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem")])
                .unwrap();
        assert_eq!(s.transport, Transport::HttpProtobuf);
        assert_eq!(s.endpoint, None, "the exporter resolves the variables itself");
        assert_eq!(s.ca, Some(PathBuf::from("/ca.pem")));
        assert!(s.warnings.is_empty());
        let s =
            from(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])
                .unwrap();
        assert_eq!(s.transport, Transport::Grpc);
        let s = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .unwrap();
        assert_eq!(s.transport, Transport::HttpProtobuf);
        assert_eq!(s.warnings.len(), 1);
        assert_eq!(s.timeout, Duration::from_millis(2500));
    }

    #[test]
    fn disabled_or_other_exporter() {
        assert!(from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_SDK_DISABLED", "true")]).is_none());
        assert!(from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c"), ("OTEL_TRACES_EXPORTER", "none")]).is_none());
        // An explicit `otlp` with no endpoint means the default local collector.
        assert!(from(&[("OTEL_TRACES_EXPORTER", "otlp")]).is_some());
    }
}
