//! Retry storms: how many upstream requests one client request causes when the only
//! key keeps answering 429 with a tiny hint or none at all (tests/hostile_upstreams.rs
//! proves the bound; this counts, for the before/after figures).
//!
//! Three providers that never stop saying 429: `retry-after: 0`, `retry-after-ms: 20`,
//! and no hint under LiteLLM's `cooldown_time: 0`. Each case sends one chat request to
//! the real `keyrelay run` binary (one key, `num_retries` 2, default queue) and counts
//! what the mock received until the answer, or until BENCH_WAIT seconds (15) pass.
//! KEYRELAY_BIN runs another build, e.g. the code before the fix:
//!
//! ```sh
//! cargo bench --bench retry_storm
//! KEYRELAY_BIN=/path/to/old/keyrelay cargo bench --bench retry_storm
//! ```

#[path = "../tests/support/daemon.rs"]
mod daemon;
#[path = "support/load.rs"]
mod load;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use daemon::Daemon;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioExecutor;
use keyrelay_mock::{Fault, KeyLimit, MockConfig, MockProvider};

const BODY_429: &str = r#"{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#;

fn native(base: &str) -> String {
    format!(
        "models:\n  m:\n    num_retries: 2\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [KA]\n"
    )
}

fn litellm(base: &str) -> String {
    format!(
        "litellm_settings:\n  num_retries: 2\nrouter_settings:\n  cooldown_time: 0\nmodel_list:\n  - model_name: m\n    litellm_params:\n      model: openai/up\n      api_base: {base}\n      api_key: os.environ/KA\n"
    )
}

async fn case(bin: &Path, label: &str, config_for: fn(&str) -> String, fault: Fault, wait: Duration) {
    let mock = MockProvider::start(MockConfig::new().key("sk-bench-a", KeyLimit::unlimited())).await.expect("mock");
    mock.set_standing_fault(None, Some(fault));
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, config_for(&mock.base_url())).expect("write config");
    std::fs::create_dir(dir.path().join("secrets")).expect("secrets dir");
    std::fs::write(dir.path().join("secrets/KA"), "sk-bench-a").expect("write secret");
    let daemon = Daemon::spawn_bin(bin, &config, &dir.path().join("secrets"), &[]);

    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("http://{}/v1/chat/completions", daemon.proxy))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)))
        .expect("request");
    let started = Instant::now();
    let status = match tokio::time::timeout(wait, async {
        let response = client.request(request).await?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        Ok::<_, hyper_util::client::legacy::Error>(status)
    })
    .await
    {
        Ok(Ok(status)) => status.as_u16().to_string(),
        Ok(Err(e)) => format!("error ({e})"),
        Err(_) => "no answer yet".to_owned(),
    };
    println!(
        "{label:<40} {:>6} upstream requests for 1 client request; answer {status} after {:.1} s",
        mock.requests().len(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let bin =
        std::env::var_os("KEYRELAY_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_keyrelay")), PathBuf::from);
    let wait = Duration::from_secs(load::env("BENCH_WAIT", 15));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("binary: {}", bin.display());
        let hint = |name: &'static str, value: &'static str| Fault::answer(429, &[(name, value)], BODY_429);
        case(&bin, "retry-after: 0", native, hint("retry-after", "0"), wait).await;
        case(&bin, "retry-after-ms: 20", native, hint("retry-after-ms", "20"), wait).await;
        case(&bin, "LiteLLM cooldown_time: 0, no hint", litellm, Fault::answer(429, &[], BODY_429), wait).await;
    });
}
