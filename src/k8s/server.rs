//! The webhook's HTTPS server: TLS (rustls), `POST /mutate`, `GET /healthz`. A thin
//! shell around [`review`]; everything it can get wrong is a [`WebhookError`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::review::{review, Reply, WebhookError};
use super::sidecar::InjectSettings;
use super::tls::{ReloadingCert, TlsError};

/// The API server sends at most a few MiB (its own request limit is 3 MiB).
const MAX_BODY: usize = 4 << 20;
/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open requests may take to finish after SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// What `keyrelay webhook` serves.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
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
                let acceptor = acceptor.clone();
                let settings = Arc::clone(&settings);
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    };
                    let service = service_fn(move |req| handle(Arc::clone(&settings), req));
                    let connection = builder.serve_connection(TokioIo::new(tls), service).into_owned();
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(error = %e, "webhook connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    reload.abort();
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("webhook drained"),
        () = tokio::time::sleep(DRAIN_GRACE) => tracing::warn!("webhook stopped with requests still open"),
    }
    Ok(())
}

async fn handle(
    settings: Arc<InjectSettings>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
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

fn respond(reply: Reply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = reply.status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
