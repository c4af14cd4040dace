//! Peers that connect and then misbehave: send nothing, never finish their headers,
//! stop after the HTTP/2 preface, sit idle, or flood a port. Every listener (app,
//! admin, webhook) closes them after its timeouts, and a flooded admin port closes
//! new connections at once while the app port keeps serving.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::webhook::Webhook;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any timeout configured here: only a connection left open forever
/// runs into it.
const LONG: Duration = Duration::from_secs(30);
const WEBHOOK_DNS: &str = "keyrelay-webhook.keyrelay.svc";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn config(base: &str, server: &str) -> String {
    format!(
        "server:\n{server}models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [KA]\n"
    )
}

async fn start(server: &str) -> (MockProvider, Proxy) {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let proxy = Proxy::start(&config(&mock.base_url(), server), &[("KA", "sk-a")]).await;
    (mock, proxy)
}

/// Connects and writes `bytes` (maybe none).
async fn connect_and_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Reads (and drops) whatever the server sends until it closes the connection;
/// `false` if it is still open after [`LONG`].
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let until_closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(LONG, until_closed).await.is_ok()
}

/// One complete HTTP/1.1 exchange on `stream`; returns the status line.
async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(LONG, stream.read_to_end(&mut out)).await.expect("answered").expect("read");
    String::from_utf8_lossy(&out).lines().next().unwrap_or_default().to_owned()
}

/// `GET /v1/models` on the app port at `addr` (answered by keyrelay itself).
fn list_models(addr: SocketAddr) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("http://{addr}/v1/models")).body(Empty::<Bytes>::new()).unwrap()
}

#[tokio::test]
async fn silent_partial_and_preface_only_connections_are_closed_on_both_ports() {
    let (_mock, proxy) = start("  timeouts: { header_read: 300ms }\n").await;
    let peers: [(&str, &[u8]); 5] = [
        ("sends nothing", b""),
        // Too little to tell HTTP/1 from HTTP/2: left to hyper-util's detection, which waits.
        ("sends one byte", b"P"),
        ("partial headers", b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: "),
        ("only the HTTP/2 preface", H2_PREFACE),
        ("preface and SETTINGS, never a request", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0"),
    ];
    for (port, addr) in [("admin", proxy.running.admin_addr), ("app", proxy.running.proxy_addr)] {
        let mut open = Vec::new();
        for (what, bytes) in peers {
            open.push((what, connect_and_send(addr, bytes).await));
        }
        for (what, mut stream) in open {
            assert!(closed_by_server(&mut stream).await, "{port} port: a connection that {what} stayed open");
        }
    }
    assert_eq!(proxy.admin_get("/healthz").await.status, 200, "a prompt client is still served");
}

#[tokio::test]
async fn an_http1_keep_alive_connection_gets_the_header_timeout_for_its_next_request() {
    let (_mock, proxy) = start("  timeouts: { header_read: 300ms, idle: 60s }\n").await;
    let mut stream = connect_and_send(proxy.running.admin_addr, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(LONG, stream.read(&mut buf)).await.expect("answered").expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    // Idle (60 s) would keep it; a started head must finish within 300 ms.
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost:").await.unwrap();
    assert!(closed_by_server(&mut stream).await, "a second head that never finished kept the connection");
}

#[tokio::test]
async fn idle_http2_and_http1_connections_are_closed_after_the_idle_timeout() {
    let (_mock, proxy) = start("  timeouts: { idle: 300ms }\n").await;
    let request = || list_models(proxy.running.proxy_addr);

    let tcp = TcpStream::connect(proxy.running.proxy_addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)).await.unwrap();
    let h2 = tokio::spawn(connection);
    let response = sender.send_request(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let ended = tokio::time::timeout(LONG, h2).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection stayed open");

    let tcp = TcpStream::connect(proxy.running.proxy_addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    let h1 = tokio::spawn(connection);
    let response = sender.send_request(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    let ended = tokio::time::timeout(LONG, h1).await;
    assert!(ended.is_ok(), "an idle HTTP/1.1 keep-alive connection stayed open");
}

/// A slow client's socket: it sends at most `step` bytes per write, and waits a
/// moment after its first write, so the server sees the request head (or the
/// HTTP/2 preface) begin before the rest of it is there.
struct Trickle {
    tcp: TcpStream,
    step: usize,
    /// Armed by the first write; the next write waits for it.
    pause: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    written: bool,
}

impl Trickle {
    fn new(tcp: TcpStream, step: usize) -> Self {
        Trickle { tcp, step, pause: None, written: false }
    }
}

impl tokio::io::AsyncRead for Trickle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Trickle {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Some(pause) = self.pause.as_mut() {
            std::task::ready!(std::future::Future::poll(pause.as_mut(), cx));
            self.pause = None;
        }
        let n = buf.len().min(self.step);
        let written = std::task::ready!(std::pin::Pin::new(&mut self.tcp).poll_write(cx, &buf[..n]))?;
        if !self.written {
            self.written = true;
            self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
        }
        std::task::Poll::Ready(Ok(written))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn requests_whose_first_bytes_arrive_in_pieces_are_served_over_http1_and_http2() {
    let (_mock, proxy) = start("").await;
    let request = || list_models(proxy.running.proxy_addr);
    // One byte (`P`, also the preface's first), a part of the preface, or more than it:
    // the server decides from the first bytes when it can, else reads until it can.
    for step in [1, 7, 30] {
        let tcp = TcpStream::connect(proxy.running.proxy_addr).await.unwrap();
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(Trickle::new(tcp, step));
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        let chat = http::Request::post(format!("http://{}/v1/chat/completions", proxy.running.proxy_addr))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(Bytes::from_static(br#"{"model":"m","messages":[]}"#)))
            .unwrap();
        let response = sender.send_request(chat).await.expect("HTTP/1.1 answered");
        assert_eq!(response.status(), 200, "HTTP/1.1, {step} bytes per write");
        response.into_body().collect().await.unwrap();

        let tcp = TcpStream::connect(proxy.running.proxy_addr).await.unwrap();
        let _ = tcp.set_nodelay(true);
        let io = TokioIo::new(Trickle::new(tcp, step));
        let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(connection);
        let response = sender.send_request(request()).await.expect("HTTP/2 answered");
        assert_eq!(response.status(), 200, "HTTP/2, {step} bytes per write");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(b"{"), "{}", String::from_utf8_lossy(&body));
    }
}

#[tokio::test]
async fn past_the_admin_cap_new_connections_are_closed_while_the_app_port_serves() {
    let (mock, proxy) = start("  admin_max_connections: 4\n  timeouts: { header_read: 60s }\n").await;
    let admin = proxy.running.admin_addr;
    // Accepted in order: these four take every slot and hold them (60 s to send a head).
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_and_send(admin, b"").await);
    }
    for i in 0..20 {
        let mut extra = connect_and_send(admin, b"").await;
        assert!(closed_by_server(&mut extra).await, "connection {} past the cap of 4 was kept open", i + 5);
    }
    let reply = proxy.chat("m").await;
    assert_eq!(reply.status, 200, "the app port stopped serving: {}", reply.text());
    assert_eq!(mock.requests().len(), 1);

    // The held connections were accepted, not dropped: each is still served.
    let status = get_on(&mut held[0], "/healthz").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // Its slot is free again: a new client gets in.
    eventually(LONG, "the admin port serves a new connection", || async {
        let mut stream = connect_and_send(admin, b"").await;
        get_on(&mut stream, "/healthz").await.starts_with("HTTP/1.1 200")
    })
    .await;

    // And /metrics says so: at least the 20 closed at once, by listener.
    let metrics = get(&format!("http://{admin}/metrics")).await.text();
    let value = |series: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(series)).unwrap_or_else(|| panic!("no {series}:\n{metrics}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
    };
    assert!(value("keyrelay_connections_refused_total{listener=\"admin\"}") >= 20, "{metrics}");
    assert_eq!(value("keyrelay_connections_refused_total{listener=\"app\"}"), 0, "{metrics}");
    assert!(value("keyrelay_connections_accepted_total{listener=\"app\"}") >= 1, "{metrics}");
    assert!(value("keyrelay_connections_open{listener=\"admin\"}") >= 4, "the held connections: {metrics}");
}

/// `keyrelay webhook` with a self-signed certificate; killed on drop.
fn start_webhook(extra_args: &[&str]) -> Webhook {
    let cert = rcgen::generate_simple_self_signed(vec![WEBHOOK_DNS.to_owned()]).unwrap();
    let (pem, key) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    Webhook::start(pem.as_bytes(), key.as_bytes(), cert.cert.der().clone(), extra_args)
}

#[tokio::test]
async fn the_webhook_closes_connections_that_never_finish_a_handshake_or_a_request() {
    let webhook = start_webhook(&["--header-read-timeout", "300ms"]);
    let mut silent = connect_and_send(webhook.addr, b"").await;
    // A TLS record header promising a ClientHello that never comes.
    let mut partial_hello = connect_and_send(webhook.addr, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
    let tcp = TcpStream::connect(webhook.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(WEBHOOK_DNS).unwrap();
    let mut after_handshake = webhook.connector().connect(name, tcp).await.expect("TLS handshake with the webhook");
    assert!(closed_by_server(&mut silent).await, "a silent connection to the webhook stayed open");
    assert!(closed_by_server(&mut partial_hello).await, "a half-sent TLS handshake stayed open");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(LONG, async {
        while let Ok(n) = after_handshake.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    assert!(closed.await.is_ok(), "a connection silent after its TLS handshake stayed open");
}
