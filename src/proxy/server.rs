//! The app-facing HTTP server: accepts on loopback, serves each connection with
//! HTTP/1.1 or h2c, and drains gracefully on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::body::{full, ProxyBody};
use super::body_budget::BodyBudget;
use super::exchange::Exchange;
use super::forward::forward;
use super::inbound::Inbound;
use super::upstream::ProxyClient;
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

/// Serves the app port until `shutdown` resolves, then stops accepting and waits up
/// to `grace` for open requests (streams included) to finish.
pub async fn serve(listener: TcpListener, state: Arc<ProxyState>, shutdown: impl Future<Output = ()>, grace: Duration) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(30));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Usually out of file descriptors: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let service = service_fn(move |req| handle(Arc::clone(&state), req));
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "client connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all client connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(grace_secs = grace.as_secs(), "grace period over with requests still open"),
    }
}

async fn handle(state: Arc<ProxyState>, request: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let snapshot = state.store.load_full();
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

/// `GET /v1/models`: the aliases, in OpenAI's list shape.
fn list_models(snapshot: &Snapshot) -> Response<ProxyBody> {
    let data: Vec<serde_json::Value> = snapshot
        .routes()
        .map(|r| serde_json::json!({ "id": r.settings.alias, "object": "model", "created": 0, "owned_by": "keyrelay" }))
        .collect();
    let body = serde_json::json!({ "object": "list", "data": data });
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
