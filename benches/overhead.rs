//! Overhead of keyrelay over a direct call, measured in one run on one machine.
//!
//! Starts the mock provider, keyrelay in front of it (3 keys), and a plain
//! pass-through proxy (hyper server + pooled client, no parsing) on loopback, then
//! alternates rounds of the same closed-loop load against the mock directly, through
//! the plain proxy, and through keyrelay, and prints requests/s and p50/p99 latency
//! for each plus ratios. The plain proxy separates the cost of any extra hop from
//! keyrelay's own work; alternating rounds spreads a shared machine's noise.
//!
//! Run: `cargo bench --bench overhead` (env: BENCH_SECONDS per round, default 3;
//! BENCH_ROUNDS, default 3; BENCH_CONCURRENCY, default 16).

#[path = "support/load.rs"]
mod load;

use std::time::Duration;

use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use keyrelay::runtime::{Options, Running};
use keyrelay_mock::{MockConfig, MockProvider};
use load::{env, load, summarize};

/// A minimal reverse proxy: forwards every request to `upstream` unchanged, body
/// streamed both ways. The baseline for "one more hop, no keyrelay logic".
async fn plain_proxy(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    use hyper::body::Incoming;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                    let client = client.clone();
                    async move {
                        let path = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
                        *req.uri_mut() = format!("http://{upstream}{path}").parse().expect("uri");
                        client.request(req).await
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    addr
}

#[tokio::main]
async fn main() {
    let seconds = Duration::from_secs(env("BENCH_SECONDS", 3));
    let rounds = env("BENCH_ROUNDS", 3);
    let concurrency = env("BENCH_CONCURRENCY", 16) as usize;

    let mock = MockProvider::start(MockConfig::new().accept_any_key(true)).await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    for (name, value) in [("K1", "bench-key-1"), ("K2", "bench-key-2"), ("K3", "bench-key-3")] {
        std::fs::write(secrets.join(name), value).expect("secret");
    }
    let config = dir.path().join("config.yaml");
    let yaml = format!(
        "models:\n  bench:\n    deployments:\n      - provider: openai-compatible\n        model: mock-model\n        api_base: {}\n        keys: [K1, K2, K3]\n",
        mock.base_url()
    );
    std::fs::write(&config, yaml).expect("config");
    let options = Options {
        config,
        secrets_dir: Some(secrets),
        listen: Some(([127, 0, 0, 1], 0).into()),
        admin: Some(([127, 0, 0, 1], 0).into()),
        upstream_ca: None,
    };
    let running = Running::start(options).await.expect("keyrelay starts");
    let direct_url = format!("{}/chat/completions", mock.base_url());
    let proxy_url = format!("http://{}/v1/chat/completions", running.proxy_addr);

    // Warm both paths (connection pools, allocator).
    load(&direct_url, concurrency, Duration::from_millis(300), Some("Bearer bench-key-1")).await;
    load(&proxy_url, concurrency, Duration::from_millis(300), Some("Bearer app")).await;

    let plain_addr = plain_proxy(mock.addr()).await;
    let plain_url = format!("http://{plain_addr}/v1/chat/completions");
    load(&plain_url, concurrency, Duration::from_millis(300), Some("Bearer bench-key-1")).await;

    let (mut direct, mut plain, mut proxied) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(load(&direct_url, concurrency, seconds, Some("Bearer bench-key-1")).await);
        plain.push(load(&plain_url, concurrency, seconds, Some("Bearer bench-key-1")).await);
        proxied.push(load(&proxy_url, concurrency, seconds, Some("Bearer app")).await);
    }
    let (d, pl, p) = (summarize(&direct), summarize(&plain), summarize(&proxied));
    println!("overhead: {rounds} alternating rounds of {seconds:?}, {concurrency} concurrent clients, loopback, non-streaming");
    println!("{:<12} {:>10} {:>10} {:>10} {:>7}", "path", "req/s", "p50", "p99", "errors");
    for (name, s) in [("direct", &d), ("plain proxy", &pl), ("keyrelay", &p)] {
        println!("{:<12} {:>10.0} {:>10.2?} {:>10.2?} {:>7}", name, s.rps, s.p50, s.p99, s.errors);
    }
    for (name, base) in [("direct", &d), ("plain proxy", &pl)] {
        println!(
            "keyrelay / {name}: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
            p.rps / base.rps,
            p.p50.as_secs_f64() / base.p50.as_secs_f64(),
            p.p99.as_secs_f64() / base.p99.as_secs_f64()
        );
    }
    running.shutdown().await;
    drop(mock);
}
