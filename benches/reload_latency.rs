//! How long a key rotation takes to serve: from kubelet's `..data` rename (the instant
//! the new Secret content becomes visible in the mount) to the new snapshot serving.
//!
//! keyrelay runs in-process with its production reload settings (50 ms debounce,
//! inotify on the mounted directories) on kubelet-style mounts written by the same
//! AtomicWriter simulator the tests use, in front of the mock provider. Two passes of
//! rotations of one key:
//!
//! - **swap**: rename -> the reloader's store of the new snapshot (its generation
//!   watch fires right after the swap);
//! - **served**: rename -> the first response whose upstream request carried the new
//!   key value, with a client sending requests back to back from the rename on.
//!
//! Run: `cargo bench --bench reload_latency` (env: BENCH_ROTATIONS per pass, default
//! 150; BENCH_DEBOUNCE_MS, default 50 = the production default).

// The tests' harness: the same kubelet AtomicWriter simulator the reload tests use.
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use keyrelay::reload::ReloadSettings;
use keyrelay_mock::{KeyLimit, MockConfig, MockProvider};
use support::atomic_writer::Mounted;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<8} n={:<4} p50 {:7.2} ms   p90 {:7.2} ms   p99 {:7.2} ms   min {:7.2} ms   max {:7.2} ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.90)),
        ms(percentile(&samples, 0.99)),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    );
}

fn config(base: &str) -> String {
    format!(
        "models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [KA]\n"
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let rotations = env("BENCH_ROTATIONS", 150) as usize;
    let debounce = Duration::from_millis(env("BENCH_DEBOUNCE_MS", 50));
    let mock = MockProvider::start(MockConfig::new().key("sk-0", KeyLimit::unlimited())).await.expect("mock");
    let settings = ReloadSettings { debounce, ..ReloadSettings::default() };
    let m = Mounted::start_with(&config(&mock.base_url()), &[("KA", "sk-0")], settings).await;
    let mut generations = m.proxy.running.generations();
    println!("reload latency: {rotations} rotations per pass, debounce {debounce:?}, re-scan 10 s (backstop only)");

    let mut n = 0;
    let mut swap = Vec::with_capacity(rotations);
    for _ in 0..rotations {
        n += 1;
        let new = format!("sk-{n}");
        mock.add_key(&new, KeyLimit::unlimited());
        let before = *generations.borrow_and_update();
        let renamed = m.secrets.write(&[("KA", &new)]);
        tokio::time::timeout(Duration::from_secs(30), generations.wait_for(|g| *g > before))
            .await
            .expect("reload within 30 s")
            .expect("reloader alive");
        swap.push(renamed.elapsed());
        let r = m.proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(mock.stats().key(&new).ok > 0, "the swapped snapshot did not serve the new key");
    }

    let mut served = Vec::with_capacity(rotations);
    for _ in 0..rotations {
        n += 1;
        let new = format!("sk-{n}");
        mock.add_key(&new, KeyLimit::unlimited());
        let renamed = m.secrets.write(&[("KA", &new)]);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = m.proxy.chat("m").await;
            assert_eq!(r.status, 200, "{}", r.text());
            if mock.stats().key(&new).ok > 0 {
                served.push(renamed.elapsed());
                break;
            }
            assert!(Instant::now() < deadline, "rotation {n} not served within 30 s");
        }
    }
    report("swap", swap);
    report("served", served);
    assert_eq!(m.proxy.running.health.reload_failures(), 0);
}
