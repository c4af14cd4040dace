//! The body of one upstream attempt: the client's bytes with the `model` value
//! rewritten (shared slices of the client's buffer, never a copy), then, for a
//! streamed multipart form, the rest of the client's body as it arrives.
//!
//! The rest can be sent once. An attempt takes it from the request's [`Rest`] only
//! when hyper first asks for it, so an attempt that failed before sending a byte of
//! it (no connection, a refused key answered before the upload) leaves it for the
//! next one; once taken, the request cannot fail over and the upstream's answer is
//! the client's (see `forward`).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use tokio::time::{Instant, Sleep};

use super::body::BoxError;
use super::error::ProxyError;

/// The client's body past the bytes read before routing.
pub struct Rest {
    stream: Mutex<Option<RestStream>>,
    /// Bytes still to come, when the client declared its length.
    remaining: Option<u64>,
}

/// The unread body, with what bounds it: `body_limit` over the whole body, and the
/// time the client may take to send it.
pub(super) struct RestStream {
    pub body: UnsyncBoxBody<Bytes, BoxError>,
    pub received: usize,
    pub limit: usize,
    pub deadline: Pin<Box<Sleep>>,
}

impl std::fmt::Debug for Rest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rest").field("sent", &!self.available()).field("remaining", &self.remaining).finish()
    }
}

impl Rest {
    pub(super) fn new(stream: RestStream, remaining: Option<u64>) -> Arc<Rest> {
        Arc::new(Rest { stream: Mutex::new(Some(stream)), remaining })
    }

    /// Whether no attempt has started sending it yet.
    pub fn available(&self) -> bool {
        self.stream.lock().map(|s| s.is_some()).unwrap_or(false)
    }

    fn take(&self) -> Option<RestStream> {
        self.stream.lock().ok()?.take()
    }
}

/// What an attempt sends: the pieces in memory, then the rest, if any.
pub struct OutboundBody {
    pieces: VecDeque<Bytes>,
    rest: RestState,
}

enum RestState {
    None,
    Waiting(Arc<Rest>),
    Sending(RestStream),
}

/// The rest of the body was already sent by an earlier attempt (never expected:
/// `forward` does not start an attempt then).
#[derive(Debug, thiserror::Error)]
#[error("the request body was already sent upstream")]
struct AlreadySent;

impl OutboundBody {
    pub fn new(pieces: impl IntoIterator<Item = Bytes>, rest: Option<Arc<Rest>>) -> Self {
        let pieces = pieces.into_iter().filter(|b| !b.is_empty()).collect();
        OutboundBody { pieces, rest: rest.map_or(RestState::None, RestState::Waiting) }
    }
}

impl Body for OutboundBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(piece) = this.pieces.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        if let RestState::Waiting(rest) = &this.rest {
            match rest.take() {
                Some(stream) => this.rest = RestState::Sending(stream),
                None => {
                    this.rest = RestState::None;
                    return Poll::Ready(Some(Err(Box::new(AlreadySent))));
                }
            }
        }
        let RestState::Sending(stream) = &mut this.rest else { return Poll::Ready(None) };
        match Pin::new(&mut stream.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    stream.received = stream.received.saturating_add(data.len());
                    if stream.received > stream.limit {
                        let limit = stream.limit;
                        this.rest = RestState::None;
                        return Poll::Ready(Some(Err(Box::new(ProxyError::BodyTooLarge { limit }))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.rest = RestState::None;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.rest = RestState::None;
                Poll::Ready(None)
            }
            Poll::Pending => match stream.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.rest = RestState::None;
                    Poll::Ready(Some(Err(Box::new(ProxyError::BodyTimeout))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty() && matches!(self.rest, RestState::None)
    }

    fn size_hint(&self) -> SizeHint {
        let pieces: u64 = self.pieces.iter().map(|p| p.len() as u64).sum();
        let rest = match &self.rest {
            RestState::None => Some(0),
            RestState::Waiting(rest) => rest.remaining,
            RestState::Sending(stream) => stream.body.size_hint().exact(),
        };
        match rest {
            Some(rest) => SizeHint::with_exact(pieces.saturating_add(rest)),
            None => {
                let mut hint = SizeHint::new();
                hint.set_lower(pieces);
                hint
            }
        }
    }
}

/// A deadline `Sleep` for the rest of a body, boxed so the stream can move.
pub(super) fn deadline(at: Instant) -> Pin<Box<Sleep>> {
    Box::pin(tokio::time::sleep_until(at))
}
