//! Response bodies: whole JSON documents, and a channel-fed body whose every message is
//! its own frame, so each SSE event reaches the wire when it is sent (not when the
//! stream ends) and a vanished client is noticed by the sender.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

/// Every mock response has this body type.
pub(crate) type MockBody = BoxBody<Bytes, Infallible>;

/// A body fed by a bounded channel; ends when every sender is dropped.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and its sender. Capacity 1: a send completes only once the previous
    /// event was taken by the connection, keeping the producer in step with the wire.
    pub(crate) fn new() -> (mpsc::Sender<Bytes>, ChannelBody) {
        let (tx, rx) = mpsc::channel(1);
        (tx, ChannelBody { rx })
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|next| next.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// A complete JSON response.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<MockBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A streaming `text/event-stream` response over `body`.
pub(crate) fn event_stream(body: ChannelBody) -> Response<MockBody> {
    let mut resp = Response::new(body.boxed());
    let headers = resp.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
