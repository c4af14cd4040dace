//! The app-facing HTTP service: `/v1/models`, and every other request read, routed
//! and forwarded. Connections (accept, timeouts, drain) are [`crate::http`]'s.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use super::body::{full, ProxyBody};
use super::error::ProxyError;
use super::exchange::Exchange;
use super::forward::forward;
use super::inbound::Inbound;
use super::respond::reject;
use super::state::ProxyState;
use crate::config::Diagnostic;
use crate::pool::Snapshot;

/// Serves the app port until `shutdown` resolves, then stops accepting and drains
/// (see [`crate::http::serve`]; `settings.drain_grace` is `server.shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    settings: crate::http::Settings,
    shutdown: impl Future<Output = ()>,
) {
    // Boxed per request: hyper keeps room for a connection's service future for as long
    // as the connection lives, and a streamed answer holds its connection for minutes.
    // Boxed, the request's routing state is freed once the response head is out.
    let service = service_fn(move |req| Box::pin(handle(Arc::clone(&state), req)));
    crate::http::serve(listener, settings, service, shutdown).await;
}

/// A plain `fn` around an `async move` block, not an `async fn`: an `async fn` keeps
/// its arguments twice in its future (as captured and as locals), and this future is
/// held by every request until its response head is out.
#[allow(clippy::manual_async_fn, reason = "an `async fn` keeps its arguments twice")]
fn handle(
    state: Arc<ProxyState>,
    request: Request<Incoming>,
) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send {
    async move {
        let snapshot = state.store.load_full();
        // In a block of its own, so that the request's parts and the read's result are
        // not kept in the future while the request is forwarded.
        let (inbound, exchange) = {
            if let Some(errors) = &snapshot.config_errors {
                let (parts, _) = request.into_parts();
                let exchange = Exchange::start(&state.metrics, &parts);
                return Ok(reject(exchange, ProxyError::NotConfigured(summary(errors))));
            }
            if request.method() == Method::GET && request.uri().path() == "/v1/models" {
                return Ok(list_models(&snapshot));
            }
            let (parts, body) = request.into_parts();
            // From here on the request is traced, counted and logged once when it ends.
            let exchange = Exchange::start(&state.metrics, &parts);
            match Inbound::read(parts, body, &snapshot.server, &state.body_budget).await {
                Ok(inbound) => (inbound, exchange),
                Err(e) => {
                    tracing::debug!(error = %e, "rejected client request");
                    return Ok(reject(exchange, e));
                }
            }
        };
        Ok(forward(&state, &snapshot, inbound, exchange).await)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns, without calling it.
    fn returned_size<A, B, R>(_: fn(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every request holds this future until its response head is out; a thousand
    /// streams starting at once hold a thousand. It was 5.6 KB while `handle` and
    /// `forward` were `async fn`s and an error answer's read-ahead was inline.
    #[test]
    fn a_requests_future_stays_small() {
        let size = returned_size(handle);
        assert!(size <= 4096, "the request future grew to {size} bytes");
    }
}
