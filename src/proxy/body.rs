//! Response bodies: either keyrelay's own small JSON, or an upstream body relayed
//! frame by frame (SSE chunks reach the client as they arrive, never buffered).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::time::Instant;

use tokio::time::Sleep;

use super::exchange::Exchange;
use super::trace::AttemptSpan;
use super::usage::UsageTap;
use crate::pool::{EndpointState, InFlightGuard};

pub use crate::http::body::{full, BoxError};

/// The body type of every response keyrelay sends (the shared [`crate::http::BoxBody`]).
pub type ProxyBody = crate::http::BoxBody;

/// The upstream went silent for longer than the idle timeout mid-body.
#[derive(Debug, thiserror::Error)]
#[error("upstream body stalled")]
pub struct IdleTimeout;

/// What happens when a relayed body ends (or is dropped because the client left):
/// tokens and time to first chunk go to the endpoint's state and the trace, the
/// in-flight count drops, and the request's [`Exchange`] ends (its access line).
pub struct Completion {
    state: Arc<EndpointState>,
    tap: Option<UsageTap>,
    /// The price of the model sent upstream, if known ([`crate::cost`]).
    price: Option<crate::config::Price>,
    started: Instant,
    /// `text/event-stream`: time to first chunk is traced for streams only.
    stream: bool,
    first_chunk: Option<Instant>,
    complete: bool,
    _guard: InFlightGuard,
    // Dropped in this order after `drop`: the attempt span ends before the request's.
    attempt: Option<AttemptSpan>,
    exchange: Option<Exchange>,
}

impl Completion {
    pub fn new(state: Arc<EndpointState>, tap: Option<UsageTap>, started: Instant, guard: InFlightGuard) -> Self {
        Completion {
            state,
            tap,
            price: None,
            started,
            stream: false,
            first_chunk: None,
            complete: false,
            _guard: guard,
            attempt: None,
            exchange: None,
        }
    }

    /// Prices the usage the body reports.
    pub(super) fn with_price(mut self, price: Option<crate::config::Price>) -> Self {
        self.price = price;
        self
    }

    /// Keeps the attempt's span open until the body ends.
    pub(super) fn keep_attempt(&mut self, attempt: AttemptSpan, stream: bool) {
        self.attempt = Some(attempt);
        self.stream = stream;
    }

    /// Hands the request over: it ends with this body.
    pub(super) fn attach(&mut self, exchange: Exchange) {
        self.exchange = Some(exchange);
    }

    fn on_data(&mut self, data: &[u8]) {
        if self.first_chunk.is_none() {
            let now = Instant::now();
            self.first_chunk = Some(now);
            self.state.record_ttfb(now - self.started);
        }
        if let Some(tap) = &mut self.tap {
            tap.feed(data);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let (usage, model) = self.tap.take().map(UsageTap::finish_with_model).unwrap_or_default();
        let cost = usage.and_then(|u| Some(self.price?.cost(u.input, u.output)));
        // Settles the key's token reservation; without a usage, the guard gives it back.
        if let Some(usage) = usage {
            let now = Instant::now();
            self._guard.settle(usage.input, usage.output, now);
            self.state.history.on_usage(now, usage.input, usage.output, cost);
        }
        let first_chunk = self.first_chunk.filter(|_| self.stream);
        if let Some(attempt) = &self.attempt {
            attempt.body_done(usage, cost, model.as_deref(), first_chunk.map(|at| at - self.started));
        }
        if let Some(exchange) = &mut self.exchange {
            exchange.body_done(usage, cost, model, first_chunk.map(|at| (self.started, at)), self.complete);
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
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + *this.idle;
                this.idle_timer.as_mut().reset(deadline);
                if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()).and_then(Frame::data_ref) {
                    this.completion.on_data(data);
                }
                // A body of known length ends without a final `None` poll.
                if frame.is_none() || this.inner.is_end_stream() {
                    this.completion.complete = true;
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
