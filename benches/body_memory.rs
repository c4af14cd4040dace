//! Peak memory of the real `keyrelay` binary under concurrent large request bodies
//! (issue 15, item 2): BENCH_CONCURRENCY clients (default 6) each send one
//! BENCH_BODY_MIB MiB chat request (default 30) at the same time, and the process's
//! peak resident set (`VmHWM` in `/proc/PID/status`, Linux) is read once all answered.
//!
//! The upstream is a sink in this process that reads each body without keeping it and
//! answers after BENCH_HOLD_MS (default 1000), so every body is in keyrelay at once.
//! The alias maps to an upstream model of another name, so the `model` rewrite is on
//! the measured path. BENCH_SERVER adds lines to the config's `server:` section, e.g.
//! `BENCH_SERVER='  max_buffered_bodies: 256MiB'` to let all six in.
//!
//! Run: `cargo bench --bench body_memory`. Prints the statuses the clients got and the
//! peak RSS before and after the load.

#[path = "../tests/support/daemon.rs"]
mod daemon;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use daemon::Daemon;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `VmHWM` and `VmRSS` of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Reads a request body to its end, keeping nothing but its length.
async fn drain(mut body: Incoming) -> usize {
    let mut len = 0;
    while let Some(Ok(frame)) = body.frame().await {
        len += frame.data_ref().map_or(0, Bytes::len);
    }
    len
}

/// The upstream: drains each body, waits `hold`, answers a small chat completion.
async fn sink(hold: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let addr = listener.local_addr().expect("sink addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| async move {
                    let len = drain(req.into_body()).await;
                    tokio::time::sleep(hold).await;
                    let body = format!(
                        r#"{{"id":"x","object":"chat.completion","model":"upstream-model","choices":[],"usage":{{"prompt_tokens":{},"completion_tokens":1,"total_tokens":1}}}}"#,
                        len / 4
                    );
                    let mut response = http::Response::new(Full::new(Bytes::from(body)));
                    response.headers_mut().insert("content-type", http::HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(response)
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

#[tokio::main]
async fn main() {
    let concurrency = env("BENCH_CONCURRENCY", 6) as usize;
    let body_mib = env("BENCH_BODY_MIB", 30) as usize;
    let hold = Duration::from_millis(env("BENCH_HOLD_MS", 1000));
    let server_extra = std::env::var("BENCH_SERVER").unwrap_or_default();

    let upstream = sink(hold).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir");
    std::fs::write(secrets.join("K1"), "bench-key-1").expect("secret");
    let config = dir.path().join("config.yaml");
    let server = if server_extra.trim().is_empty() { String::new() } else { format!("server:\n{server_extra}\n") };
    let yaml = format!(
        "{server}models:\n  big:\n    deployments:\n      - provider: openai-compatible\n        model: upstream-model\n        api_base: http://{upstream}/v1\n        keys: [K1]\n"
    );
    std::fs::write(&config, yaml).expect("config");
    let daemon = Daemon::spawn_quiet(&config, &secrets, &[]);
    let pid = daemon.child.id();
    let url = format!("http://{}/v1/chat/completions", daemon.proxy);

    let filler = body_mib * 1024 * 1024 - 64;
    let body =
        Bytes::from(format!(r#"{{"model":"big","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(filler)));
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let (idle_hwm, _) = memory(pid);

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let request = http::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .expect("request");
        let client = client.clone();
        requests.spawn(async move {
            match client.request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.into_body().collect().await;
                    status
                }
                Err(_) => 0,
            }
        });
    }
    let mut statuses = Vec::new();
    while let Some(done) = requests.join_next().await {
        statuses.push(done.unwrap_or(0));
    }
    statuses.sort_unstable();
    let (peak_hwm, rss) = memory(pid);

    println!("{concurrency} concurrent {body_mib} MiB requests (server extra: {server_extra:?})");
    println!("statuses: {statuses:?}");
    println!(
        "keyrelay VmHWM: {:.1} MiB before the load, {:.1} MiB after it (VmRSS now {:.1} MiB)",
        idle_hwm as f64 / 1024.0,
        peak_hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
}
