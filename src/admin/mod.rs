//! The admin port: liveness and readiness for kubelet, `/metrics` for Prometheus,
//! `/status` (JSON) and `/ui` (a page rendering it) for operators. Kept off the app
//! port so probes and scrapes never compete with traffic.

mod history;
mod metrics;
mod status;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use crate::http::BoxBody;
use crate::pool::Snapshot;
pub use crate::reload::Health;
use crate::telemetry::metrics::ProxyMetrics;

/// What the admin handlers read.
pub struct AdminState {
    pub health: Arc<Health>,
    pub store: Arc<ArcSwap<Snapshot>>,
    /// The request path's instruments, encoded with the per-key series on `/metrics`.
    pub metrics: Arc<ProxyMetrics>,
    /// Each listener's connection counters, by listener name (`app`, `admin`), so a
    /// flood or a too-small `max_connections` shows on `/metrics`.
    pub listeners: Vec<(&'static str, Arc<crate::http::ConnectionStats>)>,
}

/// The admin state plus the metric registry built from it.
struct Admin {
    state: Arc<AdminState>,
    registry: prometheus_client::registry::Registry,
}

/// Serves the admin port until `shutdown` resolves (connections: [`crate::http`]).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    settings: crate::http::Settings,
    shutdown: impl Future<Output = ()>,
) {
    let registry =
        metrics::registry(Arc::clone(&state.store), Arc::clone(&state.health), &state.metrics, &state.listeners);
    let state = Arc::new(Admin { state, registry });
    let service = service_fn(move |req| handle(Arc::clone(&state), req));
    crate::http::serve(listener, settings, service, shutdown).await;
}

async fn handle(admin: Arc<Admin>, request: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let state = &admin.state;
    let response = match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".to_owned()),
        "/readyz" => readyz(state),
        "/metrics" => match metrics::encode(&admin.registry) {
            Ok(body) if metrics::wants_text_format(request.headers()) => {
                typed(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", metrics::to_text_format(&body))
            }
            Ok(body) => typed(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", body),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be encoded\n".to_owned()),
        },
        "/status" => typed(StatusCode::OK, "application/json", status::status(state).to_string()),
        "/status/history" => typed(StatusCode::OK, "application/json", history::history(state).to_string()),
        "/ui" | "/" => typed(StatusCode::OK, "text/html; charset=utf-8", include_str!("ui.html").to_owned()),
        _ => text(StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    Ok(response)
}

/// 200 while a good snapshot serves (even if the last reload failed: a bad edit must
/// not take every pod out of service); 503 before the first one, with the errors that
/// keep it from loading, and while draining.
fn readyz(state: &AdminState) -> Response<BoxBody> {
    let health = &state.health;
    let snapshot = state.store.load();
    if health.is_draining() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "not ready: draining\n".to_owned());
    }
    if let Some(errors) = &snapshot.config_errors {
        let body = format!(
            "not ready: no valid configuration yet, every request gets 503 until one loads (failed loads since start: {}):\n{}\n",
            health.reload_failures(),
            crate::config::ConfigErrors(errors.clone()).to_string().trim_end()
        );
        return text(StatusCode::SERVICE_UNAVAILABLE, body);
    }
    if !health.is_ready() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "not ready: no configuration loaded yet\n".to_owned());
    }
    let generation = snapshot.generation;
    let mut body = format!("ready: generation {generation}\n");
    if let Some(e) = health.last_error() {
        body.push_str(&format!(
            "last reload failed ({} reload failures since start), still serving the previous configuration:\n{}\n",
            health.reload_failures(),
            e.trim_end()
        ));
    }
    if let Some(note) = health.restart_note() {
        body.push_str(&format!("restart required: {}\n", note.trim_end()));
    }
    // Readiness does not depend on Redis: every replica serves on local state.
    if let Some(shared) = health.shared.describe() {
        body.push_str(&format!("{shared}\n"));
    }
    text(StatusCode::OK, body)
}

fn text(status: StatusCode, body: String) -> Response<BoxBody> {
    typed(status, "text/plain; charset=utf-8", body)
}

/// Status pages change with every request: never cached.
fn typed(status: StatusCode, content_type: &'static str, body: String) -> Response<BoxBody> {
    let mut response = crate::http::typed(status, content_type, body);
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
