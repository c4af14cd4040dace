//! Hostile peers against the real `keyrelay run` binary, for the before/after figures
//! of the connection limits (tests/hostile_peers.rs proves the behaviour; this counts).
//!
//! 1. Opens BENCH_PARTIAL (300) connections to the admin port that send a partial
//!    request head, waits BENCH_WAIT seconds (15: past the default 10 s header
//!    timeout), and counts how many the server still holds open.
//! 2. Attempts BENCH_FLOOD (1,100) silent connections to the admin port and keeps them,
//!    then sends requests to the app port (each on a new connection, as a flood would
//!    starve `accept`) and counts how many are answered within 5 s.
//!
//! The binary runs with `ulimit -n` BENCH_NOFILE (1024, a common container default),
//! with a config that both old and new versions accept (defaults for every limit).
//! KEYRELAY_BIN runs another build, e.g. the code before the fix:
//!
//! ```sh
//! cargo bench --bench hostile_peers
//! KEYRELAY_BIN=/path/to/old/keyrelay cargo bench --bench hostile_peers
//! ```

#[path = "support/load.rs"]
mod load;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use keyrelay_mock::{KeyLimit, MockConfig, MockProvider};
use load::{env, BODY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

struct Daemon {
    child: Child,
    proxy: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `keyrelay run` under `ulimit -n nofile`, on port 0; addresses read from its log.
fn spawn(bin: &str, dir: &std::path::Path, nofile: u64) -> Daemon {
    let script = format!("ulimit -n {nofile} && exec \"$0\" \"$@\"");
    let mut child = Command::new("sh")
        .args(["-c", &script, bin, "run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--config"])
        .arg(dir.join("config.yaml"))
        .arg("--secrets-dir")
        .arg(dir.join("secrets"))
        .env("KEYRELAY_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn,keyrelay::runtime=info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyrelay");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines().map_while(Result::ok);
    let (proxy, admin) = lines
        .find_map(|line| {
            let json: serde_json::Value = serde_json::from_str(&line).ok()?;
            let fields = &json["fields"];
            Some((fields["proxy_addr"].as_str()?.parse().ok()?, fields["admin_addr"].as_str()?.parse().ok()?))
        })
        .expect("keyrelay logged its addresses");
    std::thread::spawn(move || lines.for_each(drop));
    Daemon { child, proxy, admin }
}

/// Connects and sends `bytes`, one connection after the other (a burst of parallel
/// connects mostly measures the kernel's SYN retries); each task then ends when the
/// server closes its connection, or is aborted by the caller while it stays open.
async fn open(addr: SocketAddr, count: usize, bytes: &'static [u8]) -> JoinSet<()> {
    let mut held = JoinSet::new();
    for _ in 0..count {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                held.spawn(hold(stream, bytes));
            }
            Err(e) => println!("connect failed: {e}"),
        }
    }
    held
}

async fn hold(mut stream: TcpStream, bytes: &'static [u8]) {
    if stream.write_all(bytes).await.is_err() {
        return;
    }
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// `requests` chat requests to the app port, each on a new connection; answered (200)
/// within 5 s each.
async fn app_answers(proxy: SocketAddr, requests: usize) -> usize {
    let mut answered = 0;
    for _ in 0..requests {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http::<Full<Bytes>>();
        let request = http::Request::post(format!("http://{proxy}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
            .expect("request");
        let call = async {
            let response = client.request(request).await.ok()?;
            let ok = response.status().is_success();
            response.into_body().collect().await.ok()?;
            Some(ok)
        };
        if let Ok(Some(true)) = tokio::time::timeout(Duration::from_secs(5), call).await {
            answered += 1;
        }
    }
    answered
}

#[tokio::main]
async fn main() {
    let partial = env("BENCH_PARTIAL", 300) as usize;
    let flood = env("BENCH_FLOOD", 1100) as usize;
    let wait = Duration::from_secs(env("BENCH_WAIT", 15));
    let nofile = env("BENCH_NOFILE", 1024);
    let bin = std::env::var("KEYRELAY_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keyrelay").to_owned());

    let mock = MockProvider::start(MockConfig::new().key("sk-bench", KeyLimit::unlimited())).await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    std::fs::write(dir.path().join("secrets/KB"), "sk-bench").expect("secret");
    let config = format!(
        "models:\n  bench:\n    deployments:\n      - {{ provider: openai-compatible, model: up, api_base: \"{}\", keys: [KB] }}\n",
        mock.base_url()
    );
    std::fs::write(dir.path().join("config.yaml"), config).expect("config");
    println!("binary: {bin} (ulimit -n {nofile})");

    let daemon = spawn(&bin, dir.path(), nofile);
    let started = Instant::now();
    let mut held = open(daemon.admin, partial, b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ").await;
    let (mut at_once, mut later) = (0, 0);
    while let Ok(Some(_)) = tokio::time::timeout(wait.saturating_sub(started.elapsed()), held.join_next()).await {
        if started.elapsed() < Duration::from_secs(1) {
            at_once += 1;
        } else {
            later += 1;
        }
    }
    println!(
        "admin port, {partial} partial-header connections: {} still open after {}s \
         ({at_once} closed within 1 s, {later} later)",
        held.len(),
        wait.as_secs()
    );
    held.abort_all();
    drop(daemon);

    let daemon = spawn(&bin, dir.path(), nofile);
    let baseline = app_answers(daemon.proxy, 5).await;
    let mut flooding = open(daemon.admin, flood, b"").await;
    // Let the server accept what it will (less than the header timeout).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut refused = 0;
    while let Some(Ok(())) = flooding.try_join_next() {
        refused += 1;
    }
    let answered = app_answers(daemon.proxy, 20).await;
    println!(
        "admin port flooded with {flood} connections ({refused} closed at once by the server, {} held): \
         app port answered {answered}/20 requests (before the flood: {baseline}/5)",
        flooding.len()
    );
    flooding.abort_all();
}
