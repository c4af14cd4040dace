//! The closed-loop load generator and its summary, shared by the benches that compare
//! keyrelay with a baseline (`overhead`, `tracing_overhead`).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// An ordinary chat request for the alias `bench`.
pub const BODY: &str = r#"{"model":"bench","messages":[{"role":"user","content":"Hello there, this is a benchmark request of ordinary size."}],"temperature":0.2}"#;

/// A numeric knob from the environment.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What one round of load saw.
#[derive(Default)]
pub struct Round {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub errors: u64,
}

/// `concurrency` clients send [`BODY`] to `url` back to back for `duration`, with
/// `authorization: auth` if given.
pub async fn load(url: &str, concurrency: usize, duration: Duration, auth: Option<&'static str>) -> Round {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let end = started + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.to_owned();
        workers.spawn(async move {
            let mut round = Round::default();
            while Instant::now() < end {
                let mut request = http::Request::post(&url).header("content-type", "application/json");
                if let Some(auth) = auth {
                    request = request.header("authorization", auth);
                }
                let request = request.body(Full::new(Bytes::from_static(BODY.as_bytes()))).expect("request");
                let t = Instant::now();
                match client.request(request).await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.into_body().collect().await;
                        round.latencies.push(t.elapsed());
                    }
                    _ => round.errors += 1,
                }
            }
            round
        });
    }
    let mut total = Round::default();
    while let Some(Ok(r)) = workers.join_next().await {
        total.latencies.extend(r.latencies);
        total.errors += r.errors;
    }
    total.elapsed = started.elapsed();
    total
}

/// Throughput and latency over several rounds.
pub struct Summary {
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub requests: usize,
    pub errors: u64,
}

pub fn summarize(rounds: &[Round]) -> Summary {
    let mut all: Vec<Duration> = rounds.iter().flat_map(|r| r.latencies.iter().copied()).collect();
    all.sort_unstable();
    let secs: f64 = rounds.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    Summary {
        rps: all.len() as f64 / secs,
        p50: pct(0.50),
        p99: pct(0.99),
        requests: all.len(),
        errors: rounds.iter().map(|r| r.errors).sum(),
    }
}
