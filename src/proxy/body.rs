//! Response bodies: either keyrelay's own small JSON, or an upstream body relayed
//! frame by frame (SSE chunks reach the client as they arrive, never buffered).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::time::{Instant, Sleep};

use super::usage::UsageTap;
use crate::pool::{EndpointState, InFlightGuard};

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

/// What happens when a relayed body ends (or is dropped because the client left):
/// tokens and time to first chunk go to the endpoint's state, and the in-flight
/// count drops.
pub struct Completion {
    state: Arc<EndpointState>,
    tap: Option<UsageTap>,
    started: Instant,
    first_chunk_seen: bool,
    _guard: InFlightGuard,
}

impl Completion {
    pub fn new(state: Arc<EndpointState>, tap: Option<UsageTap>, started: Instant, guard: InFlightGuard) -> Self {
        Completion { state, tap, started, first_chunk_seen: false, _guard: guard }
    }

    fn on_data(&mut self, data: &[u8]) {
        if !self.first_chunk_seen {
            self.first_chunk_seen = true;
            self.state.record_ttfb(self.started.elapsed());
        }
        if let Some(tap) = &mut self.tap {
            tap.feed(data);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(usage) = self.tap.take().and_then(UsageTap::finish) {
            self.state.record_tokens(usage.input, usage.output, std::time::Instant::now());
        }
    }
}

pin_project_lite::pin_project! {
    /// Relays an upstream body. Dropping it (the client went away) drops, and so
    /// cancels, the upstream request; the body fails when the upstream sends nothing
    /// for `idle`.
    pub struct Relay<B> {
        #[pin]
        inner: B,
        #[pin]
        idle_timer: Sleep,
        idle: Duration,
        completion: Completion,
    }
}

impl<B> Relay<B> {
    pub fn new(inner: B, idle: Duration, completion: Completion) -> Self {
        Relay { inner, idle_timer: tokio::time::sleep(idle), idle, completion }
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
                if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()).and_then(Frame::data_ref) {
                    this.completion.on_data(data);
                }
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
