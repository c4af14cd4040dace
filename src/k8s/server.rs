//! The webhook's HTTPS server: TLS (rustls), `POST /mutate`, `GET /healthz`. A thin
//! shell around [`review`]; everything it can get wrong is a [`WebhookError`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::http::BoxBody;

use super::review::{review, Reply, WebhookError};
use super::sidecar::InjectSettings;
use super::tls::{ReloadingCert, TlsError};

/// The API server sends at most a few MiB (its own request limit is 3 MiB).
const MAX_BODY: usize = 4 << 20;
/// How long open requests may take to finish after SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// What `keyrelay webhook` serves.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    /// Open connections at once (see [`crate::http::Settings`]).
    pub max_connections: usize,
    /// For the TLS handshake and each request head.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    pub tls_cert: std::path::PathBuf,
    pub tls_key: std::path::PathBuf,
    pub settings: InjectSettings,
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Serves until `shutdown` resolves, then drains open requests. Logs the bound
/// address as `webhook_addr` (tests listen on port 0 and read it).
pub async fn serve(config: WebhookConfig, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let cert = ReloadingCert::load(&config.tls_cert, &config.tls_key)?;
    let acceptor = TlsAcceptor::from(Arc::new(cert.server_config()?));
    let bind_err = |source| StartError::Bind { addr: config.listen, source };
    let listener = TcpListener::bind(config.listen).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    tracing::info!(webhook_addr = %addr, image = %config.settings.image, mode = ?config.settings.mode,
        "keyrelay webhook listening");
    let reload = tokio::spawn(Arc::clone(&cert).watch());

    let settings = Arc::new(config.settings);
    let service = service_fn(move |req| handle(Arc::clone(&settings), req));
    let listener_settings = crate::http::Settings {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: Some(config.idle_timeout),
        drain_grace: DRAIN_GRACE,
        tls: Some(acceptor),
        ..crate::http::Settings::new("webhook")
    };
    crate::http::serve(listener, listener_settings, service, shutdown).await;
    reload.abort();
    Ok(())
}

async fn handle(settings: Arc<InjectSettings>, request: Request<Incoming>) -> Result<Response<BoxBody>, Infallible> {
    let reply = match route(&settings, request).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::debug!(error = %e, "webhook request rejected");
            e.into_reply()
        }
    };
    Ok(respond(reply))
}

async fn route(settings: &InjectSettings, request: Request<Incoming>) -> Result<Reply, WebhookError> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => Ok(Reply { status: StatusCode::OK, body: b"{\"status\":\"ok\"}".to_vec() }),
        (&Method::POST, "/mutate") => {
            let body = Limited::new(request.into_body(), MAX_BODY).collect().await.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    WebhookError::TooLarge(MAX_BODY)
                } else {
                    WebhookError::BodyRead
                }
            })?;
            review(&body.to_bytes(), settings)
        }
        (_, "/mutate" | "/healthz") => Err(WebhookError::MethodNotAllowed),
        _ => Err(WebhookError::NotFound),
    }
}

fn respond(reply: Reply) -> Response<BoxBody> {
    crate::http::typed(reply.status, "application/json", reply.body)
}
