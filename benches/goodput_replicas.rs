//! `BENCH_MODE=replicas`: N keyrelay instances share three keys with declared `rpm`,
//! against a provider that sends no rate-limit headers (a 429 carries only
//! `retry-after`), with and without a shared Redis; then the latency a Redis adds at
//! 1,000 req/s. Needs `redis-server` on PATH (scripts/test installs it).
//!
//! Env: BENCH_SECONDS (default 20) per run, BENCH_REPLICAS (default 1,4,8),
//! BENCH_RPM (default 30 per key), BENCH_LATENCY_SECONDS (default 10).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use keyrelay::runtime::{Options, Running};
use keyrelay_mock::{HeaderStyle, KeyLimit, MockConfig, MockProvider};

#[allow(dead_code)] // the tests also restart it and set a password
#[path = "../tests/support/redis.rs"]
mod redis;

const KEYS: [(&str, &str); 3] = [("K1", "sk-r1"), ("K2", "sk-r2"), ("K3", "sk-r3")];
const BODY: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn replica(base: &str, redis: Option<&str>, rpm: Option<u64>) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    for (name, value) in KEYS {
        std::fs::write(secrets.join(name), value).expect("secret");
    }
    let shared = redis.map_or(String::new(), |url| format!("shared:\n  url: {url}\n"));
    let rpm = rpm.map_or(String::new(), |n| format!("        rpm: {n}\n"));
    let yaml = format!(
        "{shared}models:\n  m:\n    num_retries: 2\n    queue: {{ max_wait: 50ms }}\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [K1, K2, K3]\n{rpm}"
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).expect("config");
    let options = Options {
        config,
        secrets_dir: Some(secrets),
        listen: Some(([127, 0, 0, 1], 0).into()),
        admin: Some(([127, 0, 0, 1], 0).into()),
        upstream_ca: None,
    };
    (Running::start(options).await.expect("keyrelay"), dir)
}

/// What the client saw: answers by kind, and each request's latency.
#[derive(Default)]
pub struct Tally {
    pub ok: AtomicU64,
    pub limited: AtomicU64,
    pub other: AtomicU64,
    pub latencies: std::sync::Mutex<Vec<Duration>>,
}

/// Open-loop load at `rate` req/s for `seconds`, spread round-robin over `urls`.
pub async fn offer(urls: &[String], rate: u64, seconds: u64) -> Arc<Tally> {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let tally = Arc::new(Tally::default());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0usize;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        let url = &urls[n % urls.len()];
        n += 1;
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(BODY)))
            .expect("request");
        let (client, tally) = (client.clone(), Arc::clone(&tally));
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
    tally
}

pub fn percentile(tally: &Tally, p: f64) -> Duration {
    let mut all = tally.latencies.lock().map(|l| l.clone()).unwrap_or_default();
    all.sort_unstable();
    all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
}

async fn limits_run(replicas: usize, with_redis: bool, rpm: u64, seconds: u64) -> String {
    let redis = if with_redis { Some(redis::Redis::start().await) } else { None };
    let mock = KEYS.iter().fold(MockConfig::new().style(HeaderStyle::Bare), |c, (_, v)| {
        c.key(*v, KeyLimit::rpm(u32::try_from(rpm).unwrap_or(u32::MAX)))
    });
    let mock = MockProvider::start(mock).await.expect("mock");
    let mut running = Vec::new();
    for _ in 0..replicas {
        running.push(replica(&mock.base_url(), redis.as_ref().map(|r| r.url()).as_deref(), Some(rpm)).await);
    }
    if with_redis {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !running.iter().all(|(r, _)| r.health.shared.is_up()) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let urls: Vec<String> =
        running.iter().map(|(r, _)| format!("http://{}/v1/chat/completions", r.proxy_addr)).collect();
    // Twice the shared capacity of the run: the run is shorter than the provider's
    // 60 s window, so that capacity is 3 keys x rpm in all.
    let rate = (2 * 3 * rpm).div_ceil(seconds.max(1)).max(1);
    let tally = offer(&urls, rate, seconds).await;
    let stats = mock.stats();
    let per_key: Vec<String> = KEYS
        .iter()
        .map(|(_, v)| {
            let k = stats.key(v);
            format!("{}/{}", k.ok, k.rate_limited)
        })
        .collect();
    let upstream_429: usize = KEYS.iter().map(|(_, v)| stats.key(v).rate_limited).sum();
    let max_ok = KEYS.iter().map(|(_, v)| stats.key(v).ok).max().unwrap_or(0);
    let line = format!(
        "{:>8} {:>6} {:>6} {:>10} {:>8} {:>8} {:>22} {:>13} {:>12}",
        replicas,
        if with_redis { "yes" } else { "no" },
        rate,
        rpm,
        tally.ok.load(Ordering::Relaxed),
        tally.limited.load(Ordering::Relaxed),
        per_key.join(" "),
        upstream_429,
        format!("{:.0}%", 100.0 * max_ok as f64 / rpm as f64),
    );
    for (r, _) in running {
        r.shutdown().await;
    }
    line
}

/// Latency at 1,000 req/s through one replica with a declared (never reached) rpm,
/// with and without Redis: what the shared path adds.
async fn latency_run(with_redis: bool, seconds: u64) -> (Duration, Duration, u64) {
    let redis = if with_redis { Some(redis::Redis::start().await) } else { None };
    let mock = KEYS.iter().fold(MockConfig::new(), |c, (_, v)| c.key(*v, KeyLimit::unlimited()));
    let mock = MockProvider::start(mock).await.expect("mock");
    let (running, _dir) = replica(&mock.base_url(), redis.as_ref().map(|r| r.url()).as_deref(), Some(1_000_000)).await;
    if with_redis {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !running.health.shared.is_up() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let url = vec![format!("http://{}/v1/chat/completions", running.proxy_addr)];
    let _warm = offer(&url, 1000, 1).await;
    let tally = offer(&url, 1000, seconds).await;
    let bad = tally.limited.load(Ordering::Relaxed) + tally.other.load(Ordering::Relaxed);
    running.shutdown().await;
    (percentile(&tally, 0.5), percentile(&tally, 0.99), bad)
}

pub async fn main() {
    let seconds = env("BENCH_SECONDS", 20);
    let rpm = env("BENCH_RPM", 30);
    let replicas = std::env::var("BENCH_REPLICAS").unwrap_or_else(|_| "1,4,8".to_owned());
    println!("replicas: 3 keys, declared and enforced rpm {rpm} each (60 s fixed window), no rate-limit headers,");
    println!("offered 2x the shared capacity for {seconds} s; per key: upstream ok/429; max key use: ok / rpm");
    println!(
        "{:>8} {:>6} {:>6} {:>10} {:>8} {:>8} {:>22} {:>13} {:>12}",
        "replicas",
        "redis",
        "req/s",
        "rpm/key",
        "app ok",
        "app 429",
        "K1 K2 K3 (ok/429)",
        "upstream 429",
        "max key use"
    );
    for n in replicas.split(',').filter_map(|n| n.trim().parse().ok()) {
        for with_redis in [false, true] {
            println!("{}", limits_run(n, with_redis, rpm, seconds).await);
        }
    }
    let seconds = env("BENCH_LATENCY_SECONDS", 10);
    println!("latency at 1000 req/s through one replica (mock answers at once), {seconds} s:");
    for with_redis in [false, true] {
        let (p50, p99, bad) = latency_run(with_redis, seconds).await;
        println!(
            "  redis {:>3}: p50 {p50:>9.2?}  p99 {p99:>9.2?}  non-200 {bad}",
            if with_redis { "yes" } else { "no" }
        );
    }
}
