//! Goodput under per-key rate limits, for every strategy.
//!
//! The mock provider gives three keys different hidden limits (12, 20 and 28
//! requests per 1 s window: 60/s in all, 20/s for an average key) and reports them the
//! way OpenAI does (`x-ratelimit-remaining-requests`, `-reset-requests`, and 429 with
//! `retry-after`). keyrelay is NOT told the limits. A fixed-rate (open-loop) client
//! offers 1x, 2x and 2.75x one key's capacity, each for BENCH_SECONDS (default 30),
//! and the table shows what the app saw and how many 429s the provider sent per key.
//!
//! Run: `cargo bench --bench goodput` (env: BENCH_SECONDS, BENCH_STRATEGIES
//! comma-separated, BENCH_RATES comma-separated requests/s).
//!
//! `BENCH_MODE=replicas cargo bench --bench goodput`: several instances sharing keys
//! with and without Redis (see `goodput_replicas.rs`).
//!
//! `BENCH_MODE=predictive cargo bench --bench goodput`: burst-free, tokens-per-minute
//! and priority scenarios (see `goodput_predictive.rs`).

#[path = "goodput_replicas.rs"]
mod replicas;

#[path = "goodput_predictive.rs"]
mod predictive;

use std::sync::atomic::Ordering;
use std::time::Duration;

use keyrelay::runtime::{Options, Running};
use keyrelay_mock::{KeyLimit, MockConfig, MockProvider};

const KEYS: [(&str, &str, u32); 3] = [("K1", "sk-k1", 12), ("K2", "sk-k2", 20), ("K3", "sk-k3", 28)];

async fn run(strategy: &str, rate: u32, seconds: u64) -> String {
    let window = Duration::from_secs(1);
    let config = KEYS.iter().fold(MockConfig::new().latency(Duration::from_millis(20)), |c, (_, v, n)| {
        c.key(*v, KeyLimit::rpm(*n).with_window(window))
    });
    let mock = MockProvider::start(config).await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    for (name, value, _) in KEYS {
        std::fs::write(secrets.join(name), value).expect("secret");
    }
    let yaml = format!(
        "models:\n  m:\n    strategy: {strategy}\n    num_retries: 2\n    cooldown: 1s\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {}\n        keys: [K1, K2, K3]\n",
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

    let url = format!("http://{}/v1/chat/completions", running.proxy_addr);
    let tally = replicas::offer(&[url], u64::from(rate), seconds).await;

    let stats = mock.stats();
    let attempts: usize = KEYS.iter().map(|(_, v, _)| stats.key(v).ok + stats.key(v).rate_limited).sum();
    let upstream_429: usize = KEYS.iter().map(|(_, v, _)| stats.key(v).rate_limited).sum();
    let per_key: Vec<String> = KEYS.iter().map(|(_, v, _)| stats.key(v).rate_limited.to_string()).collect();
    let line = format!(
        "{:<12} {:>5} {:>8} {:>8} {:>8} {:>9} {:>14} {:>10.2}% {:>9.0?} {:>9.0?}",
        strategy,
        rate,
        tally.ok.load(Ordering::Relaxed),
        tally.limited.load(Ordering::Relaxed),
        tally.other.load(Ordering::Relaxed),
        attempts,
        per_key.join("/"),
        100.0 * upstream_429 as f64 / attempts.max(1) as f64,
        replicas::percentile(&tally, 0.5),
        replicas::percentile(&tally, 0.99),
    );
    running.shutdown().await;
    line
}

#[tokio::main]
async fn main() {
    if std::env::var("BENCH_MODE").is_ok_and(|m| m == "replicas") {
        return replicas::main().await;
    }
    if std::env::var("BENCH_MODE").is_ok_and(|m| m == "predictive") {
        return predictive::main().await;
    }
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let strategies = std::env::var("BENCH_STRATEGIES")
        .unwrap_or_else(|_| "usage,round-robin,weighted,least-busy,latency".to_owned());
    let rates = std::env::var("BENCH_RATES").unwrap_or_else(|_| "20,40,55".to_owned());
    println!("goodput: hidden limits 12/20/28 req/s (60/s in all), {seconds} s per run, open-loop client");
    println!(
        "{:<12} {:>5} {:>8} {:>8} {:>8} {:>9} {:>14} {:>11} {:>9} {:>9}",
        "strategy", "req/s", "app ok", "app 429", "app err", "attempts", "429s K1/K2/K3", "upstream 429", "p50", "p99"
    );
    for strategy in strategies.split(',') {
        for rate in rates.split(',').filter_map(|r| r.trim().parse().ok()) {
            println!("{}", run(strategy.trim(), rate, seconds).await);
        }
    }
}
