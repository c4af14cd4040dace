//! `keyrelay run` with a config that does not load: the real binary starts anyway,
//! answers every app request with 503 naming the errors (no key is used), keeps
//! `/readyz` at 503 with the errors in its body, and serves as soon as a good version
//! lands. Exiting instead put pods in CrashLoopBackOff, whose back-off delayed the fix
//! by up to five minutes (issue 15, item 18).

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use support::atomic_writer::AtomicWriter;
use support::daemon::Daemon;
use support::*;

/// Generous: a loaded CI machine is slow, and polling keeps a passing test fast.
const LONG: Duration = Duration::from_secs(60);

fn good_config(base: &str) -> String {
    format!(
        "models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [KA]\n"
    )
}

async fn chat(daemon: &Daemon) -> Reply {
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/v1/chat/completions", daemon.proxy))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"model":"m","messages":[]}"#)))
        .unwrap();
    read(support::harness::http_client().request(request).await.expect("request to keyrelay")).await
}

async fn admin(daemon: &Daemon, path: &str) -> Reply {
    get(&format!("http://{}{path}", daemon.admin)).await
}

/// While unconfigured: probes, the app's answers, and nothing sent upstream.
async fn assert_unconfigured(daemon: &Daemon, mock: &MockProvider, expect: &str) {
    assert_eq!(admin(daemon, "/healthz").await.status, 200, "liveness must hold: a restart fixes nothing");
    let ready = admin(daemon, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("no valid configuration") && ready.text().contains(expect), "{}", ready.text());

    let r = chat(daemon).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let error = &r.json()["error"];
    assert_eq!(error["code"], "config_invalid");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(expect) && message.len() < 400, "{message}");
    assert!(!r.text().contains("sk-a"), "a key value in an error: {}", r.text());
    let listed = get(&format!("http://{}/v1/models", daemon.proxy)).await;
    assert_eq!(listed.status, 503, "every app request, /v1/models too");
    assert!(mock.requests().is_empty(), "a request reached the provider while unconfigured");
}

async fn wait_until_serving(daemon: &Daemon) {
    eventually(LONG, "the good version is picked up", || async { admin(daemon, "/readyz").await.status == 200 }).await;
    let r = chat(daemon).await;
    assert_eq!((r.status.as_u16(), r.header("x-keyrelay-key")), (200, "KA"), "{}", r.text());
}

#[tokio::test]
async fn a_bad_config_at_start_serves_503_until_the_configmap_is_mended() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = good_config(&mock.base_url());
    let typo = good.replace("openai-compatible", "opnai-compatible");
    let config = AtomicWriter::create(&dir.path().join("config"), &[("config.yaml", &typo)]);
    let secrets = AtomicWriter::create(&dir.path().join("secrets"), &[("KA", "sk-a")]);
    let daemon = Daemon::spawn(&config.dir.join("config.yaml"), &secrets.dir, &[]);

    assert_unconfigured(&daemon, &mock, "opnai-compatible").await;

    // Another bad version: the answers follow it.
    let missing_key = good.replace("keys: [KA]", "keys: [KA, KB]");
    config.write(&[("config.yaml", &missing_key)]);
    eventually(LONG, "the second bad version is reported", || async {
        admin(&daemon, "/readyz").await.text().contains("\"KB\" not found")
    })
    .await;
    assert_unconfigured(&daemon, &mock, "\"KB\" not found").await;

    // kubelet swaps in the mended ConfigMap.
    config.write(&[("config.yaml", &good)]);
    wait_until_serving(&daemon).await;
    assert!(!admin(&daemon, "/readyz").await.text().contains("failed"));
}

#[tokio::test]
async fn a_config_file_that_is_not_there_yet_is_waited_for() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = AtomicWriter::create(&dir.path().join("secrets"), &[("KA", "sk-a")]);
    let config = dir.path().join("config.yaml");
    let daemon = Daemon::spawn(&config, &secrets.dir, &[]);

    assert_unconfigured(&daemon, &mock, "cannot read config file").await;

    std::fs::write(&config, good_config(&mock.base_url())).unwrap();
    wait_until_serving(&daemon).await;
}

#[tokio::test]
async fn a_port_that_cannot_be_bound_still_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyrelay"))
        .args(["run", "--listen", &addr, "--admin", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("absent.yaml"))
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .output()
        .expect("run keyrelay");
    assert_eq!(out.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on {addr}")));
}

#[tokio::test]
async fn the_errors_shown_never_quote_a_key_value() {
    // Values in the wrong places of a LiteLLM file, where a key may well end up.
    let leak = "sk-leak-0123456789abcdef";
    let config = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: [{leak}]\n      rpm: {leak}\n"
    );
    let proxy = Proxy::start(&config, &[]).await;
    let ready = proxy.admin_get("/readyz").await;
    let r = proxy.chat("m").await;
    assert_eq!((ready.status.as_u16(), r.status.as_u16()), (503, 503), "{}", ready.text());
    assert!(ready.text().contains("api_key") && ready.text().contains("rpm"), "{}", ready.text());
    let status = proxy.admin_get("/status").await.text();
    for shown in [ready.text(), r.text(), status] {
        assert!(!shown.contains(&leak[..12]), "a key value was shown: {shown}");
    }
}
