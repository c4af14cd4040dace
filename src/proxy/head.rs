//! Reading the first bytes of an upstream body before deciding what to do with the
//! answer (is this 403 about the key or about the request?), and relaying the body
//! whole afterwards, as if nothing had been read.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::http::lanes::LaneBody;

/// An upstream body: what was read of it already, then the rest as it arrives.
#[derive(Debug)]
pub struct UpstreamBody {
    head: Option<Bytes>,
    trailers: Option<HeaderMap>,
    rest: Option<LaneBody>,
}

impl UpstreamBody {
    /// A body nothing was read of.
    pub fn unread(body: LaneBody) -> Self {
        UpstreamBody { head: None, trailers: None, rest: Some(body) }
    }

    /// What was read (at most `limit` bytes and one frame, within `budget`); the body
    /// keeps the rest, if it did not end by then.
    pub async fn read_head(mut body: LaneBody, limit: usize, budget: Duration) -> (Bytes, UpstreamBody) {
        let deadline = tokio::time::Instant::now().checked_add(budget);
        let mut head = BytesMut::new();
        let mut trailers = None;
        let mut ended = false;
        while head.len() < limit {
            let next = match deadline {
                Some(at) => tokio::time::timeout_at(at, body.frame()).await.ok(),
                None => Some(body.frame().await),
            };
            match next {
                Some(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => head.extend_from_slice(&data),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                // The end, or a broken body: what was read is all there is.
                Some(None | Some(Err(_))) => {
                    ended = true;
                    break;
                }
                // Out of time: the rest is relayed as it comes (or times out there).
                None => break,
            }
        }
        let rest = (!ended).then_some(body);
        let head = head.freeze();
        let relay = UpstreamBody { head: (!head.is_empty()).then(|| head.clone()), trailers, rest };
        (head, relay)
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(head) = self.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if let Some(rest) = self.rest.as_mut() {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.trailers.is_none() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let rest = self.rest.as_ref().map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
        // Upper first: `set_lower` checks against the upper bound.
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(head));
        }
        hint.set_lower(rest.lower().saturating_add(head));
        hint
    }
}
