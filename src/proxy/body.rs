//! Response bodies: either keyrelay's own small JSON, or an upstream body relayed
//! frame by frame (SSE chunks reach the client as they arrive, never buffered).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, Sleep};

use crate::pool::InFlightGuard;

/// Boxed errors of relayed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response keyrelay sends.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// The upstream went silent for longer than the idle timeout mid-body.
#[derive(Debug, thiserror::Error)]
#[error("upstream body stalled")]
pub struct IdleTimeout;

pin_project_lite::pin_project! {
    /// Relays an upstream body. Keeps the endpoint's in-flight count up until the
    /// body ends or is dropped (the client went away, which also drops, and so
    /// cancels, the upstream request), and fails the body when the upstream sends
    /// nothing for `idle`.
    pub struct Relay<B> {
        #[pin]
        inner: B,
        #[pin]
        idle_timer: Sleep,
        idle: Duration,
        _guard: InFlightGuard,
    }
}

impl<B> Relay<B> {
    pub fn new(inner: B, idle: Duration, guard: InFlightGuard) -> Self {
        Relay { inner, idle_timer: tokio::time::sleep(idle), idle, _guard: guard }
    }
}

impl<B> Body for Relay<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = Instant::now() + *this.idle;
                this.idle_timer.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.idle_timer.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(IdleTimeout)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
