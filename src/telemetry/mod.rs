//! Logs, traces and the request-path metrics.
//!
//! Logs: `tracing` with `RUST_LOG`-style filtering, human-readable by default and JSON
//! with `KEYRELAY_LOG_FORMAT=json`, to stderr through a batching writer thread
//! (`log_writer`). Traces: the request path's spans (target
//! [`SPAN_TARGET`]) go to an OTLP exporter when the `OTEL_*` variables configure one,
//! and nowhere otherwise. They never go to the log: with no exporter they are disabled
//! at their call sites, so the request path pays one cached check for each.

pub mod access;
mod export_client;
mod log_writer;
pub mod metrics;
mod otlp;
pub mod sampling;

use std::sync::{Arc, Mutex, OnceLock};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use log_writer::{Limits, LogBuffer, LogWriter, WriterThread};
pub use otlp::{OtlpSettings, Transport};

/// Target of the spans that make up a request's trace (server and attempt spans).
pub const SPAN_TARGET: &str = "keyrelay::otel";
/// Target of the one access line per request, so it can be filtered on its own
/// (`RUST_LOG=info,keyrelay::access=off`).
pub const ACCESS_TARGET: &str = "keyrelay::access";

/// The tracer provider once an exporter is installed: flushed on shutdown.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The exporting provider's sampler, for the request path to skip spans it would drop.
static SAMPLING: OnceLock<sampling::Sampling> = OnceLock::new();

/// The log's buffer (for its count of dropped lines) and its writer thread (stopped
/// by [`flush_logs`], which writes out what waits): see `log_writer`.
static LOG_WRITER: OnceLock<(Arc<LogBuffer>, Mutex<Option<WriterThread>>)> = OnceLock::new();

/// Installs logging only (`demo`, `webhook`). Logs go to stderr so stdout stays free
/// for command output.
pub fn init_logging(default_filter: &str) {
    install(default_filter, None);
}

/// Installs logging plus trace export as the standard `OTEL_*` variables configure it
/// (`keyrelay run`). With no OTLP endpoint configured nothing is exported, and nothing
/// is said about it beyond one debug line.
pub fn init(default_filter: &str) {
    install(default_filter, OtlpSettings::from_env());
}

/// Installs logging plus trace export with explicit settings (tests, benchmarks).
/// Returns whether this call installed the process's subscriber: only the first does.
pub fn init_with(default_filter: &str, otlp: Option<OtlpSettings>) -> bool {
    install(default_filter, otlp)
}

fn install(default_filter: &str, otlp: Option<OtlpSettings>) -> bool {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // The trace spans carry attributes for the exporter, not for people reading logs.
    if let Ok(off) = format!("{SPAN_TARGET}=off").parse() {
        filter = filter.add_directive(off);
    }
    let json = std::env::var("KEYRELAY_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let writer = LogBuffer::start(Box::new(std::io::stderr()), Limits::default())
        .map_err(|e| eprintln!("keyrelay: no log writer thread ({e}): logging to stderr directly"))
        .ok();
    // Colours only for a person at a terminal: a pod's log is a file, and escape codes
    // in it are noise to every log pipeline (and work on every line).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_ansi(ansi);
    let fmt = match (&writer, json) {
        (Some((buffer, _)), true) => fmt.json().with_writer(LogWriter(Arc::clone(buffer))).boxed(),
        (Some((buffer, _)), false) => fmt.with_writer(LogWriter(Arc::clone(buffer))).boxed(),
        (None, true) => fmt.json().with_writer(std::io::stderr).boxed(),
        (None, false) => fmt.with_writer(std::io::stderr).boxed(),
    };

    let warnings = otlp.as_ref().map(|s| s.warnings.clone()).unwrap_or_default();
    let sampler = otlp.as_ref().map(|s| s.sampling);
    let built = otlp.map(|settings| otlp::provider(&settings).map(|p| (p, settings.describe())));
    let (provider, failure) = match built {
        Some(Ok((provider, target))) => (Some((provider, target)), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let otel = provider.as_ref().map(|(p, _)| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("keyrelay"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            .with_tracked_inactivity(false)
            .with_filter(Targets::new().with_target(SPAN_TARGET, Level::INFO))
    });
    // The same directives again, for the access line's own check (`EnvFilter` is not `Clone`).
    let access_filter = EnvFilter::try_new(filter.to_string()).ok();
    // No `.with(otel)` of an `Option`: an absent layer counts as one that wants every
    // span and event, so each callsite the log's filter turns off (the request path's
    // spans, `debug!` lines) was still built and dispatched, to nobody.
    let logs = tracing_subscriber::registry().with(fmt.with_filter(filter));
    let installed = match otel {
        Some(otel) => logs.with(otel).try_init(),
        None => logs.try_init(),
    }
    .is_ok();
    if let Some(access_filter) = access_filter.filter(|_| installed && !ansi) {
        let buffer = writer.as_ref().map(|(buffer, _)| Arc::clone(buffer));
        access::render_directly(access::DirectSink { enabled: access::passes(access_filter), json, buffer });
    }
    if let Some((buffer, thread)) = writer.filter(|_| installed) {
        let _ = LOG_WRITER.set((buffer, Mutex::new(Some(thread))));
    }

    for warning in warnings {
        tracing::warn!("{warning}");
    }
    if let Some(e) = failure {
        tracing::warn!("traces are not exported: {e}");
    }
    match provider {
        Some((provider, endpoint)) if installed => {
            tracing::info!(%endpoint, "exporting traces over OTLP");
            let _ = PROVIDER.set(provider);
            if let Some(sampler) = sampler {
                let _ = SAMPLING.set(sampler);
            }
        }
        Some((provider, _)) => {
            // Another subscriber was installed first (tests): this provider has no spans.
            let _ = provider.shutdown();
        }
        None if installed => tracing::debug!("no OTLP endpoint configured: traces are not exported"),
        None => {}
    }
    installed
}

/// The sampler of the installed exporter; `None` when no traces are exported (the
/// request path's spans are disabled then anyway).
pub fn sampling() -> Option<sampling::Sampling> {
    SAMPLING.get().copied()
}

/// Exports the spans ended so far (shutdown, tests). Blocking work runs off the
/// async workers; returns at once when no exporter is installed.
pub async fn flush() {
    if let Some(provider) = PROVIDER.get().cloned() {
        let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    }
}

/// Flushes and stops the exporter, then writes out the queued log lines; call once,
/// outside async code, as the process ends. Later lines go nowhere.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown() {
            tracing::debug!(error = %e, "trace exporter shutdown");
        }
    }
    flush_logs();
}

/// Writes out the waiting log lines and stops the writer thread: the last thing a
/// process does (statics are never dropped, so without this the last lines are lost).
/// Lines logged later are written directly.
pub fn flush_logs() {
    if let Some((_, thread)) = LOG_WRITER.get() {
        if let Some(mut thread) = thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            thread.stop();
        }
    }
}

/// Log lines dropped since start because whatever reads stderr fell behind.
pub fn log_lines_dropped() -> u64 {
    LOG_WRITER.get().map_or(0, |(buffer, _)| buffer.dropped())
}
