//! Requests a client (or whatever got hold of the app port) can send to hurt the
//! process or its upstreams, through keyrelay to the mock provider over loopback:
//! bodies past the memory budget, paths that climb out of `api_base`, headers and
//! query parameters that must not reach a provider, and values too large to trace.

#[path = "support/otlp.rs"]
mod otlp;
mod support;

use std::time::Duration;

use support::daemon::Daemon;
use support::*;

const LONG: Duration = Duration::from_secs(20);
const KIB: usize = 1024;

fn config(base: &str, server: &str) -> String {
    format!(
        "server:\n{server}models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: upstream-m\n        api_base: {base}\n        keys: [KA]\n"
    )
}

#[tokio::test]
async fn a_huge_model_name_is_cut_in_spans_and_in_the_access_log() {
    let receiver = otlp::Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("KA"), "sk-a").unwrap();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config("http://127.0.0.1:9/v1", "  region: test\n")).unwrap();
    let endpoint = format!("http://{}", receiver.addr);
    let daemon = Daemon::spawn(
        &config_path,
        &secrets,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "50")],
    );

    let model = format!("huge-{}", "é".repeat(512 * KIB));
    let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
    let request = http::Request::post(format!("http://{}/v1/chat/completions", daemon.proxy))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let r = read(harness::http_client().request(request).await.unwrap()).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.body.len() < 1024, "the error message is cut too: {} bytes", r.body.len());

    let span = receiver
        .wait_for(
            LONG,
            "the server span of the huge request",
            || async {},
            |spans| {
                spans.iter().find(|s| s.str("gen_ai.request.model").is_some_and(|m| m.starts_with("huge-"))).cloned()
            },
        )
        .await;
    let traced = span.str("gen_ai.request.model").unwrap();
    assert!(traced.len() <= 260 && traced.ends_with('…'), "{} bytes on the span", traced.len());
    for (key, value) in &span.attributes {
        if let otlp::Attr::Str(s) = value {
            assert!(s.len() <= 260, "{key} is {} bytes", s.len());
        }
    }

    daemon.terminate();
    let (_, log) = daemon.wait();
    let access: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["fields"]["status"] == 404)
        .collect();
    assert_eq!(access.len(), 1, "one access line: {log:?}");
    let logged = access[0]["fields"]["model"].as_str().unwrap();
    assert!(logged.starts_with("huge-") && logged.len() <= 260, "{} bytes in the log", logged.len());
    assert!(log.iter().all(|l| l.len() < 8 * KIB), "no log line carries the model whole");
}
