//! One accepted connection, from TLS handshake to close: served by hyper (HTTP/1.1 or
//! HTTP/2, as the connection announces it, see [`protocol`](super::protocol)) under the
//! [`Activity`] watchdog, and shut down gracefully when the listener drains.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};

use super::activity::{Activity, Expiry, Tracked, Watched};
use super::protocol::{Announced, Protocol};
use super::Settings;

/// How long an idle connection gets to flush its GOAWAY (HTTP/2) before it is cut.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every connection task of one listener shares.
pub(super) struct Shared<S> {
    pub settings: Settings,
    pub builders: Builders,
    pub service: S,
}

/// hyper's connection builders, all configured alike: one for each protocol a
/// connection announces, and auto-detection for a connection that does not.
pub(super) struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl Builders {
    pub fn new(auto: auto::Builder<TokioExecutor>) -> Self {
        Builders { http1: auto.clone().http1_only(), http2: auto.clone().http2_only(), auto }
    }

    fn speaking(&self, protocol: Option<Protocol>) -> &auto::Builder<TokioExecutor> {
        match protocol {
            Some(Protocol::Http1) => &self.http1,
            Some(Protocol::Http2) => &self.http2,
            None => &self.auto,
        }
    }
}

/// Serves one connection until it closes, its deadline passes, or (after `drain`
/// turns true) its open requests finish. `permit` counts it against the cap.
pub(super) async fn run<S, B>(
    stream: TcpStream,
    shared: Arc<Shared<S>>,
    drain: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let _permit = permit;
    let settings = &shared.settings;
    // Small SSE frames must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new(settings.header_read_timeout, settings.idle_timeout));
    match &settings.tls {
        None => serve_io(stream, &shared, activity, drain).await,
        // Boxed: the handshake and the TLS stream's state are kilobytes that every
        // connection task of a plain listener (the sidecar's app port) would carry.
        Some(acceptor) => {
            Box::pin(async {
                // The handshake is part of the wait for the first request head.
                match tokio::time::timeout(settings.header_read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => serve_io(tls, &shared, activity, drain).await,
                    Ok(Err(e)) => tracing::debug!(listener = settings.name, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(listener = settings.name, "TLS handshake timed out"),
                }
            })
            .await
        }
    }
}

async fn serve_io<I, S, B>(io: I, shared: &Shared<S>, activity: Arc<Activity>, mut drain: watch::Receiver<bool>)
where
    I: Announced + AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let name = shared.settings.name;
    let mut expired = std::pin::pin!(activity.expired());
    // Under the same deadline and drain as the request head that follows.
    let protocol = tokio::select! {
        protocol = io.protocol() => protocol,
        () = stopped(&mut drain) => return,
        _ = expired.as_mut() => {
            tracing::debug!(listener = name, "closed: no complete request head in time");
            return;
        }
    };
    let io = TokioIo::new(Watched::new(io, Arc::clone(&activity)));
    let service = Tracked::new(shared.service.clone(), Arc::clone(&activity));
    let builder = shared.builders.speaking(protocol);
    // Built in place: a value moved into `tokio::pin!` kept two slots in this future.
    let mut connection = std::pin::pin!(builder.serve_connection(io, service));
    let mut draining = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(listener = name, error = %e, "connection ended with an error");
                }
                return;
            }
            // An error means the listener is gone: drain as well.
            () = stopped(&mut drain), if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            expiry = expired.as_mut() => {
                match expiry {
                    // Nothing to answer: close at once.
                    Expiry::NoRequest => {
                        tracing::debug!(listener = name, "closed: no complete request head in time");
                    }
                    Expiry::Idle => {
                        tracing::trace!(listener = name, "closing idle connection");
                        connection.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(IDLE_CLOSE_GRACE, connection.as_mut()).await;
                    }
                }
                return;
            }
        }
    }
}

/// Resolves once the listener drains (or is gone).
async fn stopped(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|stop| *stop).await;
}
