//! The app-facing HTTP service: `/v1/models`, and every other request read, routed
//! and forwarded. Connections (accept, timeouts, drain) are [`crate::http`]'s.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use super::body::{full, ProxyBody};
use super::body_budget::BodyBudget;
use super::error::ProxyError;
use super::exchange::Exchange;
use super::forward::forward;
use super::inbound::Inbound;
use crate::config::Diagnostic;
use crate::http::client::ProxyClient;
use crate::pool::Snapshot;
use crate::telemetry::metrics::ProxyMetrics;

/// What every request handler shares.
pub struct ProxyState {
    /// The current routing snapshot; each request loads it exactly once.
    pub store: Arc<ArcSwap<Snapshot>>,
    pub client: ProxyClient,
    /// Bytes of request bodies in memory, bounded by `server.max_buffered_bodies`.
    pub body_budget: Arc<BodyBudget>,
    /// Request-path metrics, also registered with the admin port's `/metrics`.
    pub metrics: Arc<ProxyMetrics>,
}

/// Serves the app port until `shutdown` resolves, then stops accepting and drains
/// (see [`crate::http::serve`]; `settings.drain_grace` is `server.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    settings: crate::http::Settings,
    shutdown: impl Future<Output = ()>,
) {
    let service = service_fn(move |req| handle(Arc::clone(&state), req));
    crate::http::serve(listener, settings, service, shutdown).await;
}

async fn handle(state: Arc<ProxyState>, request: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let snapshot = state.store.load_full();
    if let Some(errors) = &snapshot.config_errors {
        let (parts, _) = request.into_parts();
        let mut exchange = Exchange::start(&state.metrics, &parts);
        let error = ProxyError::NotConfigured(summary(errors));
        exchange.answered(error.status().as_u16(), None, Some(error.code().to_owned()));
        return Ok(error.into_response());
    }
    if request.method() == Method::GET && request.uri().path() == "/v1/models" {
        return Ok(list_models(&snapshot));
    }
    let (parts, body) = request.into_parts();
    // From here on the request is traced, counted and logged once when it ends.
    let mut exchange = Exchange::start(&state.metrics, &parts);
    let server = &snapshot.server;
    let response = match Inbound::read(parts, body, server, &state.body_budget).await {
        Ok(inbound) => forward(&state, &snapshot, inbound, exchange).await,
        Err(e) => {
            tracing::debug!(error = %e, "rejected client request");
            exchange.answered(e.status().as_u16(), None, Some(e.code().to_owned()));
            e.into_response()
        }
    };
    Ok(response)
}

/// The config errors for a client: how many, and the first few in file order (the
/// response truncates the message; `/readyz` on the admin port lists them all). They
/// name keys by secret name only, and quote no string value from the config.
fn summary(errors: &[Diagnostic]) -> String {
    let first: Vec<String> = errors.iter().take(3).map(ToString::to_string).collect();
    format!("{} error(s), all listed on the admin port's /readyz: {}", errors.len(), first.join("; "))
}

/// `GET /v1/models`: the aliases, in OpenAI's list shape (wildcard aliases are
/// patterns, not models, and are left out).
fn list_models(snapshot: &Snapshot) -> Response<ProxyBody> {
    let data: Vec<serde_json::Value> = snapshot
        .routes()
        .filter(|r| !r.is_wildcard())
        .map(|r| serde_json::json!({ "id": r.settings.alias, "object": "model", "created": 0, "owned_by": "keyrelay" }))
        .collect();
    let body = serde_json::json!({ "object": "list", "data": data });
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
