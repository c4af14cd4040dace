//! The client side of the streams scenario in `scripts/bench-vs-nginx`: opens many
//! long SSE streams at once and reports when each one's first chunk arrived. Written in
//! Rust because a Python asyncio client saturates one core first at 3,000 streams, and
//! then its own scheduling, not the proxy, decides the first-chunk timing.
//!
//! Usage: `stream_clients URL COUNT PARALLEL [first-only]`. Sends COUNT streaming chat
//! requests, at most PARALLEL open at a time (each on its own connection), and reads
//! every stream to its end, or with `first-only` drops it after the first chunk (the
//! light-load first-chunk probe). Prints one JSON line: counts, first-chunk p50/p99
//! and mean in ms, and the wall time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

const BODY: &str = r#"{"model":"bench","stream":true,"messages":[{"role":"user","content":"Hello there, this is a benchmark request of ordinary size."}]}"#;

/// What one stream saw: the first chunk's delay from sending the request, or an error.
async fn one_stream(
    client: Client<HttpConnector, Full<Bytes>>,
    url: Arc<str>,
    first_only: bool,
) -> Result<Duration, String> {
    let request = http::Request::post(&*url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer bench-key-1")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .map_err(|e| e.to_string())?;
    let sent = Instant::now();
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut first = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if frame.data_ref().is_some_and(|d| !d.is_empty()) && first.is_none() {
            first = Some(sent.elapsed());
            if first_only {
                break;
            }
        }
    }
    first.ok_or_else(|| "empty stream".to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: stream_clients URL COUNT PARALLEL [first-only]";
    let url: Arc<str> = args.get(1).ok_or(usage)?.as_str().into();
    let count: usize = args.get(2).ok_or(usage)?.parse()?;
    let parallel: usize = args.get(3).ok_or(usage)?.parse()?;
    let first_only = args.get(4).is_some_and(|a| a == "first-only");
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // One connection per stream: idle ones are not reused across the probe's rounds
    // either, so every probe pays the same connect.
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(connector);
    let permits = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let (client, url) = (client.clone(), Arc::clone(&url));
        tasks.spawn(async move {
            let outcome = one_stream(client, url, first_only).await;
            drop(permit);
            outcome
        });
    }
    let (mut firsts, mut errors) = (Vec::new(), Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(first)) => firsts.push(first.as_secs_f64() * 1e3),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let wall = started.elapsed().as_secs_f64();
    firsts.sort_by(f64::total_cmp);
    let at = |q: f64| firsts.get(((firsts.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(f64::NAN);
    let mean = firsts.iter().sum::<f64>() / firsts.len().max(1) as f64;
    let first_error = errors.first().map(String::as_str).unwrap_or("");
    println!(
        "{{\"ok\":{},\"failed\":{},\"first_chunk_ms_p50\":{:.3},\"first_chunk_ms_p99\":{:.3},\"first_chunk_ms_mean\":{:.3},\"wall_s\":{:.3},\"first_error\":{:?}}}",
        firsts.len(),
        errors.len(),
        at(0.5),
        at(0.99),
        mean,
        wall,
        first_error
    );
    Ok(())
}
