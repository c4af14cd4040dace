//! The socket of an upstream connection as hyper's client keeps it: plain TCP inline,
//! a TLS stream boxed.
//!
//! hyper-rustls's `MaybeHttpsStream` keeps room for rustls' connection state inline
//! (1.1 KB against plain TCP's 40 bytes), and hyper's client keeps the socket in the
//! connection's task: every connection to a plain `http://` upstream (a model server
//! in the cluster, one per open stream over HTTP/1.1) carried that room for nothing.
//! Boxed, a TLS connection pays one allocation of the same size at its handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::{MapOk, TryFutureExt};
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use super::resolve::Resolver;
use super::BoxError;

type Tcp = TokioIo<TcpStream>;
type Inner = HttpsConnector<HttpConnector<Resolver>>;

/// An upstream connection's socket.
pub enum UpstreamIo {
    Plain(Tcp),
    Tls(Box<MaybeHttpsStream<Tcp>>),
}

impl From<MaybeHttpsStream<Tcp>> for UpstreamIo {
    fn from(stream: MaybeHttpsStream<Tcp>) -> Self {
        match stream {
            MaybeHttpsStream::Http(tcp) => UpstreamIo::Plain(tcp),
            tls => UpstreamIo::Tls(Box::new(tls)),
        }
    }
}

/// hyper-rustls's connector, handing out [`UpstreamIo`].
#[derive(Clone)]
pub struct Connector(Inner);

impl Connector {
    pub fn new(inner: Inner) -> Self {
        Connector(inner)
    }
}

impl Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = BoxError;
    type Future = MapOk<<Inner as Service<Uri>>::Future, fn(MaybeHttpsStream<Tcp>) -> UpstreamIo>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.0.call(uri).map_ok(UpstreamIo::from)
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        match self {
            UpstreamIo::Plain(tcp) => tcp.connected(),
            UpstreamIo::Tls(tls) => tls.connected(),
        }
    }
}

impl Read for UpstreamIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamIo::Plain(tcp) => tcp.is_write_vectored(),
            UpstreamIo::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            UpstreamIo::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's client keeps the socket in every upstream connection's task.
    #[test]
    fn a_plain_upstream_socket_carries_no_room_for_tls() {
        let tls_inline = std::mem::size_of::<MaybeHttpsStream<Tcp>>();
        let ours = std::mem::size_of::<UpstreamIo>();
        assert!(ours <= 64 && ours * 8 < tls_inline, "UpstreamIo is {ours} bytes, MaybeHttpsStream {tls_inline}");
    }
}
