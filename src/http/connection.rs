//! One accepted connection, from TLS handshake to close: served by hyper (HTTP/1.1 or
//! HTTP/2, as the connection announces it, see [`protocol`](super::protocol)) under the
//! [`Activity`] watchdog, and shut down gracefully when the listener drains.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
    http1: http1::Builder,
    http2: auto::Builder<TokioExecutor>,
}

impl Builders {
    pub fn new(settings: &Settings) -> Self {
        let mut auto = auto::Builder::new(TokioExecutor::new());
        // The connection's own watchdog times request heads: hyper's would also close
        // idle keep-alive connections at the header timeout.
        auto.http1().header_read_timeout(None);
        let mut http2 = auto.http2();
        http2.timer(TokioTimer::new()).keep_alive_interval(settings.keep_alive_interval);
        if let Some(interval) = settings.keep_alive_interval {
            http2.keep_alive_timeout(interval);
        }
        let mut http1 = http1::Builder::new();
        http1.header_read_timeout(None);
        Builders { http1, http2: auto.clone().http2_only(), auto }
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
    let builders = &shared.builders;
    match protocol {
        // hyper's own HTTP/1 connection, inline: 600 bytes, where hyper-util's
        // auto-detecting one is 1.5 KB (it keeps room for HTTP/2's state), for every
        // connection a long stream holds open.
        Some(Protocol::Http1) => {
            drive(std::pin::pin!(builders.http1.serve_connection(io, service)), name, expired, drain).await;
        }
        Some(Protocol::Http2) => {
            drive(Box::pin(builders.http2.serve_connection(io, service)).as_mut(), name, expired, drain).await
        }
        None => drive(Box::pin(builders.auto.serve_connection(io, service)).as_mut(), name, expired, drain).await,
    }
}

/// A served connection that can be asked to finish its open requests and close.
trait Graceful: Future<Output = Result<(), Self::Error>> {
    type Error: std::fmt::Display;
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Error = hyper::Error;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::Connection::graceful_shutdown(self);
    }
}

impl<I, S, B> Graceful for auto::Connection<'_, I, S, TokioExecutor>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Error = Box<dyn StdError + Send + Sync>;
    fn graceful_shutdown(self: Pin<&mut Self>) {
        auto::Connection::graceful_shutdown(self);
    }
}

/// Runs `connection` to its end, shutting it down gracefully when the listener drains
/// or it has been idle too long, and at once when no request head came in time.
async fn drive<C: Graceful>(
    mut connection: Pin<&mut C>,
    name: &'static str,
    mut expired: Pin<&mut impl Future<Output = Expiry>>,
    mut drain: watch::Receiver<bool>,
) {
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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Ready;

    use bytes::Bytes;
    use http_body_util::Empty;

    use super::*;

    #[derive(Clone)]
    struct NoContent;

    impl Service<Request<Incoming>> for NoContent {
        type Response = Response<Empty<Bytes>>;
        type Error = Infallible;
        type Future = Ready<Result<Self::Response, Infallible>>;

        fn call(&self, _: Request<Incoming>) -> Self::Future {
            std::future::ready(Ok(Response::new(Empty::new())))
        }
    }

    /// The size of what `f` returns, without calling it.
    fn returned_size<A, B, C, D, R>(_: fn(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// A plain connection's task lives as long as the connection, a stream's for
    /// minutes. It was 4.1 KB when every connection was hyper-util's auto-detecting one.
    #[test]
    fn a_plain_connections_task_stays_small() {
        let size = returned_size(run::<NoContent, Empty<Bytes>>);
        assert!(size <= 2048, "the connection task grew to {size} bytes");
    }
}
