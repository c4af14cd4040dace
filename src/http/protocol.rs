//! Which HTTP version a connection speaks, learned before hyper reads a byte of it.
//!
//! hyper-util's auto-detection reads the first bytes itself (up to the 24 of the
//! HTTP/2 preface) and hands them back through a rewinding reader, which returns them
//! alone. hyper's HTTP/1 parser then sees a partial head, and reserving room for its
//! next read grows its 8 KiB read buffer to 16 KiB, for the life of the connection: a
//! sidecar holding a thousand open streams held 8 MB more for it. A plain connection is
//! peeked instead (the bytes stay in the socket), a TLS connection says it in ALPN; only
//! when neither tells does hyper-util read and decide.

use std::future::Future;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// What a client sends first on an HTTP/2 connection without TLS (RFC 9113, 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// A connection that can tell its protocol without giving up any of its bytes.
pub(super) trait Announced {
    /// `None`: not known without reading (hyper-util's auto-detection decides).
    fn protocol(&self) -> impl Future<Output = Option<Protocol>> + Send;
}

impl Announced for TcpStream {
    /// Waits for the first bytes, as hyper-util's detection would.
    async fn protocol(&self) -> Option<Protocol> {
        let mut first = [0u8; H2_PREFACE.len()];
        let n = self.peek(&mut first).await.ok()?;
        decide(first.get(..n)?)
    }
}

impl Announced for TlsStream<TcpStream> {
    async fn protocol(&self) -> Option<Protocol> {
        match self.get_ref().1.alpn_protocol()? {
            b"h2" => Some(Protocol::Http2),
            b"http/1.1" => Some(Protocol::Http1),
            _ => None,
        }
    }
}

/// HTTP/2 once the whole preface has arrived, HTTP/1 as soon as a byte differs from
/// it (`POST` does at its second); `None` for nothing yet or part of the preface.
fn decide(first: &[u8]) -> Option<Protocol> {
    if first.is_empty() || (H2_PREFACE.starts_with(first) && first.len() < H2_PREFACE.len()) {
        None
    } else if first == H2_PREFACE {
        Some(Protocol::Http2)
    } else {
        Some(Protocol::Http1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_decide_only_when_they_can() {
        assert_eq!(decide(b"POST /v1/chat/completion"), Some(Protocol::Http1));
        assert_eq!(decide(b"PO"), Some(Protocol::Http1));
        assert_eq!(decide(b"GET"), Some(Protocol::Http1));
        // An HTTP/1 request line that starts like the preface, then leaves it.
        assert_eq!(decide(b"PRI * HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(decide(H2_PREFACE), Some(Protocol::Http2));
        for n in 0..H2_PREFACE.len() {
            assert_eq!(decide(&H2_PREFACE[..n]), None, "{n} bytes of the preface");
        }
    }

    /// The real peek: it decides once enough has arrived, and consumes nothing.
    #[tokio::test]
    async fn a_peek_decides_without_taking_the_bytes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        for (first, rest, wanted) in [
            (&b"PRI * HTTP/2.0\r\n"[..], &b"\r\nSM\r\n\r\n"[..], Protocol::Http2),
            (b"P", b"OST /v1/chat/completions HTTP/1.1\r\n", Protocol::Http1),
        ] {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (mut server, _) = listener.accept().await.unwrap();
            client.write_all(first).await.unwrap();
            // Only a part of the preface has been sent: nothing to decide yet.
            assert_eq!(server.protocol().await, None, "{first:?}");
            client.write_all(rest).await.unwrap();
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            // The rest may arrive after a peek that still sees only the first part.
            let decided = loop {
                if let Some(protocol) = server.protocol().await {
                    break protocol;
                }
                assert!(tokio::time::Instant::now() < deadline, "undecided: {first:?}");
                tokio::task::yield_now().await;
            };
            assert_eq!(decided, wanted);
            let mut read = vec![0u8; first.len() + rest.len()];
            server.read_exact(&mut read).await.unwrap();
            assert_eq!(read, [first, rest].concat(), "the bytes are still there for hyper");
        }
    }

    proptest::proptest! {
        /// Where both decide, they agree with hyper-util's rule: HTTP/2 exactly when the
        /// bytes are the whole preface.
        #[test]
        fn a_decision_is_http2_exactly_for_the_preface(first in proptest::collection::vec(proptest::num::u8::ANY, 0..=24)) {
            if let Some(protocol) = decide(&first) {
                proptest::prop_assert_eq!(protocol == Protocol::Http2, first == H2_PREFACE);
            }
        }
    }
}
