//! What exporting traces costs: throughput and latency of the real `keyrelay` binary
//! with OTLP export on (every request sampled, spans sent to a receiver on loopback)
//! against the same binary with no OTLP endpoint, in one run on one machine.
//!
//! Starts the mock provider and an OTLP/HTTP receiver (it only keeps what arrives and
//! decodes it after the measurement, so it costs little next to what is measured) in
//! this process, and three `keyrelay run` processes with the same config: one with no
//! OTLP endpoint ("tracing off"), one exporting every request ("exported"), and one
//! with the endpoint but `OTEL_TRACES_SAMPLER=always_off` ("not sampled": the spans'
//! instrumentation without the export). Rounds of the same closed-loop load alternate
//! between them, so a shared machine's noise spreads over all. All log at the default
//! `info` (the access line), read and dropped.
//!
//! Two loads per round and mode: closed loop (BENCH_CONCURRENCY clients as fast as they
//! can: throughput), and a fixed rate below saturation (BENCH_RATE requests/s: the
//! keyrelay process's CPU time per request and latency, compared at equal load; at
//! saturation CPU per request also moves with the load level itself).
//!
//! Run: `cargo bench --bench tracing_overhead` (env: BENCH_SECONDS per round, default
//! 3; BENCH_ROUNDS, default 3; BENCH_CONCURRENCY, default 16; BENCH_RATE, default 2000).

#[path = "../tests/support/daemon.rs"]
mod daemon;
#[path = "support/load.rs"]
mod load;
#[path = "../tests/support/otlp.rs"]
mod otlp;

use std::time::{Duration, Instant};

use bytes::Bytes;
use daemon::Daemon;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use keyrelay_mock::{MockConfig, MockProvider};
use load::{env, load, summarize, Round, Summary, BODY};

/// Open loop: one request every `1/rate` s whatever the answers, for `duration`.
async fn paced(url: &str, rate: u64, duration: Duration) -> Round {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    while started.elapsed() < duration {
        ticks.tick().await;
        let request = http::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .expect("request");
        let client = client.clone();
        requests.spawn(async move {
            let t = Instant::now();
            match client.request(request).await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.into_body().collect().await;
                    Some(t.elapsed())
                }
                _ => None,
            }
        });
    }
    let mut round = Round::default();
    while let Some(done) = requests.join_next().await {
        match done {
            Ok(Some(latency)) => round.latencies.push(latency),
            _ => round.errors += 1,
        }
    }
    round.elapsed = started.elapsed();
    round
}

/// CPU time `pid` has used so far, summed over its threads (Linux: the first field of
/// each `/proc/PID/task/*/schedstat`, in ns); `None` elsewhere.
fn cpu_time(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// A round of load against `daemon`, with the CPU time the process used during it.
async fn measured(daemon: &Daemon, round: impl std::future::Future<Output = Round>) -> (Round, Option<Duration>) {
    let before = cpu_time(daemon.child.id());
    let round = round.await;
    let used = cpu_time(daemon.child.id()).zip(before).map(|(after, before)| after.saturating_sub(before));
    (round, used)
}

/// The rounds of one load shape against one mode, and the CPU they cost it.
#[derive(Default)]
struct Series {
    rounds: Vec<Round>,
    cpu: Option<Duration>,
}

impl Series {
    fn add(&mut self, (round, cpu): (Round, Option<Duration>)) {
        let first = self.rounds.is_empty();
        self.rounds.push(round);
        self.cpu = if first { cpu } else { self.cpu.zip(cpu).map(|(a, b)| a + b) };
    }
}

/// One way of running keyrelay, with the rounds measured against it.
struct Mode {
    name: &'static str,
    daemon: Daemon,
    url: String,
    closed: Series,
    fixed: Series,
}

#[tokio::main]
async fn main() {
    let seconds = Duration::from_secs(env("BENCH_SECONDS", 3));
    let rounds = env("BENCH_ROUNDS", 3);
    let concurrency = env("BENCH_CONCURRENCY", 16) as usize;
    let rate = env("BENCH_RATE", 2000);

    let receiver = otlp::Receiver::start_counting();
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

    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", receiver.addr));
    let variants: [(&'static str, Vec<(&str, String)>); 3] = [
        ("tracing off", vec![]),
        ("exported", vec![endpoint.clone(), ("OTEL_TRACES_SAMPLER", "always_on".to_owned())]),
        // Spans are created, the sampler drops them: the instrumentation's own share of
        // the cost, without the SDK's span data and the export.
        ("not sampled", vec![endpoint, ("OTEL_TRACES_SAMPLER", "always_off".to_owned())]),
    ];
    let mut modes: Vec<Mode> = variants
        .into_iter()
        .map(|(name, envs)| {
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let daemon = Daemon::spawn_quiet(&config, &secrets, &envs);
            let url = format!("http://{}/v1/chat/completions", daemon.proxy);
            Mode { name, daemon, url, closed: Series::default(), fixed: Series::default() }
        })
        .collect();

    // Warm every mode (connection pools, allocator, the exporter's connection).
    let mut sent_exported = 0;
    for mode in &modes {
        let warm = load(&mode.url, concurrency, Duration::from_millis(500), None).await;
        if mode.name == "exported" {
            sent_exported += warm.latencies.len();
        }
    }
    for _ in 0..rounds {
        for mode in &mut modes {
            mode.closed.add(measured(&mode.daemon, load(&mode.url, concurrency, seconds, None)).await);
            mode.fixed.add(measured(&mode.daemon, paced(&mode.url, rate, seconds)).await);
        }
    }
    // Let the last batches arrive before reading the receiver.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (exports, bytes) = receiver.counted();
    for mode in modes.iter().filter(|m| m.name == "exported") {
        sent_exported += mode.closed.rounds.iter().chain(&mode.fixed.rounds).map(|r| r.latencies.len()).sum::<usize>();
    }

    println!("tracing overhead: {rounds} alternating rounds of {seconds:?} per mode and load, loopback, non-streaming");
    // The exporter keeps working a moment after a round: its CPU is slightly undercounted.
    let cpu_us =
        |series: &Series, s: &Summary| series.cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / s.requests.max(1) as f64);
    for (title, pick) in [
        (format!("closed loop, {concurrency} clients"), (|m: &Mode| &m.closed) as fn(&Mode) -> &Series),
        (format!("fixed rate, {rate} req/s"), |m: &Mode| &m.fixed),
    ] {
        println!("\n{title}");
        println!(
            "{:<12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>13}",
            "keyrelay", "req/s", "p50", "p99", "requests", "errors", "CPU/request"
        );
        let summaries: Vec<(&Mode, Summary)> = modes.iter().map(|m| (m, summarize(&pick(m).rounds))).collect();
        for (mode, s) in &summaries {
            let cpu = cpu_us(pick(mode), s).map_or("-".to_owned(), |us| format!("{us:.1} us"));
            println!(
                "{:<12} {:>9.0} {:>9.2?} {:>9.2?} {:>9} {:>7} {:>13}",
                mode.name, s.rps, s.p50, s.p99, s.requests, s.errors, cpu
            );
        }
        let (off_mode, off) = &summaries[0];
        for (mode, s) in &summaries[1..] {
            let cpu = cpu_us(pick(mode), s)
                .zip(cpu_us(pick(off_mode), off))
                .map_or(String::new(), |(a, b)| format!(", CPU/request +{:.1} us ({:.2}x)", a - b, a / b));
            println!(
                "{} / off: throughput {:.3}x, p50 {:.2}x, p99 {:.2}x{cpu}",
                mode.name,
                s.rps / off.rps,
                s.p50.as_secs_f64() / off.p50.as_secs_f64(),
                s.p99.as_secs_f64() / off.p99.as_secs_f64()
            );
        }
    }
    println!(
        "\nreceiver: {exports} OTLP export requests, {:.1} MB, {} spans for {sent_exported} exported requests (2 each: none dropped if equal)",
        bytes as f64 / 1e6,
        receiver.count_stored_spans()
    );
    drop(mock);
}
