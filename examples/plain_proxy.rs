//! A minimal reverse proxy as its own process, for `scripts/bench-vs-nginx`: a hyper
//! server and a pooled hyper client, every request forwarded unchanged, bodies
//! streamed both ways. It is the floor for "one more hop in Rust with the same
//! libraries, no keyrelay logic", next to nginx's.
//!
//! Usage: `plain_proxy UPSTREAM_ADDR` (e.g. `127.0.0.1:8080`). Binds `127.0.0.1:0`,
//! prints `listening 127.0.0.1:PORT`, serves until killed.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Sends `req` to `upstream` with its path and query unchanged.
async fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: SocketAddr,
    mut req: http::Request<Incoming>,
) -> Result<http::Response<Incoming>, BoxError> {
    let uri = format!("http://{upstream}{}", req.uri().path_and_query().map_or("/", |p| p.as_str()));
    *req.uri_mut() = uri.parse()?;
    Ok(client.request(req).await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let upstream: SocketAddr = std::env::args().nth(1).ok_or("usage: plain_proxy UPSTREAM_ADDR")?.parse()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    // TCP_NODELAY on both sides, as keyrelay and nginx (keep-alive) do.
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| forward(client.clone(), upstream, req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
