//! `BENCH_MODE=predictive`: the scenarios of predictive admission (issue 11), each
//! reporting client successes, client 429s, upstream 429s as a share of attempts and
//! p50/p99 (per priority where there are two):
//!
//! - `burst-free`: 3 keys, each 20 req/s with no burst (a 429 says
//!   `x-ratelimit-limit-requests: 1200`, `remaining: 0`, `reset: <to the next slot>`;
//!   a success says nothing), 40 req/s offered. Target: 98% served, upstream 429s
//!   at most 1% of attempts, p99 under 100 ms.
//! - `tpm`: 3 keys, each 60,000 tokens per 1 s window (OpenAI headers), prompts of
//!   100 to 20,000 tokens at 90% of the token capacity. Target: upstream 429s at most 1%.
//! - `priority`: the burst-free keys at 1.5x their capacity, half `high`, half `low`.
//!   Target: `high` at least 99% served with p99 under 1 s; `low` takes the 429s.
//!
//! Env: BENCH_SECONDS (default 15), BENCH_SCENARIOS (comma-separated).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use keyrelay::runtime::{Options, Running};
use keyrelay_mock::{KeyLimit, MockConfig, MockProvider};
use rand::Rng;

const KEYS: [(&str, &str); 3] = [("P1", "sk-p1"), ("P2", "sk-p2"), ("P3", "sk-p3")];
const TOKENS_PER_WINDOW: u64 = 60_000;

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    limited: AtomicU64,
    other: AtomicU64,
    latencies: std::sync::Mutex<Vec<Duration>>,
}

impl Tally {
    fn percentile(&self, p: f64) -> Duration {
        let mut all = self.latencies.lock().map(|l| l.clone()).unwrap_or_default();
        all.sort_unstable();
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
    }
}

/// What one request of a scenario carries.
type Shape = fn(usize, &mut rand::rngs::ThreadRng) -> (Bytes, Option<&'static str>);

async fn start(limit: KeyLimit) -> (MockProvider, Running, tempfile::TempDir) {
    let mock = KEYS.iter().fold(MockConfig::new().latency(Duration::from_millis(20)), |c, (_, v)| c.key(*v, limit));
    let mock = MockProvider::start(mock).await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    for (name, value) in KEYS {
        std::fs::write(secrets.join(name), value).expect("secret");
    }
    let yaml = format!(
        "models:\n  m:\n    num_retries: 2\n    queue: {{ max_wait: 2s, max_waiting: 200 }}\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {}\n        keys: [P1, P2, P3]\n",
        mock.base_url()
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).expect("config");
    let running = Running::start(Options {
        config,
        secrets_dir: Some(secrets),
        listen: Some(([127, 0, 0, 1], 0).into()),
        admin: Some(([127, 0, 0, 1], 0).into()),
        upstream_ca: None,
    })
    .await
    .expect("keyrelay");
    (mock, running, dir)
}

/// Open-loop load at `rate` req/s for `seconds`; request `n` is shaped by `shape`, and
/// tallied under its priority (index 0: none or high, 1: low).
async fn offer(url: &str, rate: f64, seconds: u64, shape: Shape) -> [Arc<Tally>; 2] {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let tallies = [Arc::new(Tally::default()), Arc::new(Tally::default())];
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0usize;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        let (body, priority) = shape(n, &mut rand::rng());
        n += 1;
        let mut request = http::Request::post(url).header("content-type", "application/json");
        if let Some(p) = priority {
            request = request.header("x-keyrelay-priority", p);
        }
        let request = request.body(Full::new(body)).expect("request");
        let tally = Arc::clone(&tallies[usize::from(priority == Some("low"))]);
        let client = client.clone();
        tasks.spawn(async move {
            let started = std::time::Instant::now();
            let slot = match client.request(request).await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let _ = r.into_body().collect().await;
                    match status {
                        200 => &tally.ok,
                        429 => &tally.limited,
                        _ => &tally.other,
                    }
                }
                Err(_) => &tally.other,
            };
            slot.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut l) = tally.latencies.lock() {
                l.push(started.elapsed());
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    tallies
}

fn small(_: usize, _: &mut rand::rngs::ThreadRng) -> (Bytes, Option<&'static str>) {
    (Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#), None)
}

fn mixed(n: usize, rng: &mut rand::rngs::ThreadRng) -> (Bytes, Option<&'static str>) {
    (small(n, rng).0, Some(if n % 2 == 0 { "high" } else { "low" }))
}

/// A prompt of 100 to 20,000 tokens (the mock counts four bytes a token).
fn sized(_: usize, rng: &mut rand::rngs::ThreadRng) -> (Bytes, Option<&'static str>) {
    let tokens: usize = rng.random_range(100..=20_000);
    let content = "x".repeat(tokens * 4);
    (Bytes::from(format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{content}"}}]}}"#)), None)
}

fn line(name: &str, class: &str, offered: f64, tally: &Tally, upstream: (usize, usize)) -> String {
    let (attempts, limited) = upstream;
    let sent =
        tally.ok.load(Ordering::Relaxed) + tally.limited.load(Ordering::Relaxed) + tally.other.load(Ordering::Relaxed);
    format!(
        "{:<11} {:<6} {:>7.1} {:>7} {:>7.1}% {:>7} {:>7} {:>9} {:>9.2}% {:>8.0?} {:>8.0?}",
        name,
        class,
        offered,
        sent,
        100.0 * tally.ok.load(Ordering::Relaxed) as f64 / sent.max(1) as f64,
        tally.limited.load(Ordering::Relaxed),
        tally.other.load(Ordering::Relaxed),
        attempts,
        100.0 * limited as f64 / attempts.max(1) as f64,
        tally.percentile(0.5),
        tally.percentile(0.99),
    )
}

async fn scenario(name: &str, seconds: u64) -> Vec<String> {
    let (limit, rate, shape): (KeyLimit, f64, Shape) = match name {
        "burst-free" => (KeyLimit::spaced(20), 40.0, small),
        // Mean prompt ~10,050 tokens plus ~12 of completion.
        "tpm" => (
            KeyLimit::tpm(TOKENS_PER_WINDOW).with_window(Duration::from_secs(1)),
            0.9 * 3.0 * TOKENS_PER_WINDOW as f64 / 10_062.0,
            sized,
        ),
        "priority" => (KeyLimit::spaced(20), 90.0, mixed),
        _ => return vec![format!("{name}: unknown scenario")],
    };
    let (mock, running, _dir) = start(limit).await;
    let url = format!("http://{}/v1/chat/completions", running.proxy_addr);
    let tallies = offer(&url, rate, seconds, shape).await;
    let stats = mock.stats();
    let attempts: usize = KEYS.iter().map(|(_, v)| stats.key(v).ok + stats.key(v).rate_limited).sum();
    let limited: usize = KEYS.iter().map(|(_, v)| stats.key(v).rate_limited).sum();
    running.shutdown().await;
    if name == "priority" {
        vec![
            line(name, "high", rate / 2.0, &tallies[0], (attempts, limited)),
            line(name, "low", rate / 2.0, &tallies[1], (attempts, limited)),
        ]
    } else {
        vec![line(name, "-", rate, &tallies[0], (attempts, limited))]
    }
}

pub async fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15);
    let scenarios = std::env::var("BENCH_SCENARIOS").unwrap_or_else(|_| "burst-free,tpm,priority".to_owned());
    println!("goodput (predictive): {seconds} s per scenario, open-loop client, mock latency 20 ms");
    println!(
        "{:<11} {:<6} {:>7} {:>7} {:>8} {:>7} {:>7} {:>9} {:>10} {:>8} {:>8}",
        "scenario", "class", "req/s", "sent", "served", "app 429", "app err", "attempts", "upstr 429", "p50", "p99"
    );
    for name in scenarios.split(',') {
        for l in scenario(name.trim(), seconds).await {
            println!("{l}");
        }
    }
}
