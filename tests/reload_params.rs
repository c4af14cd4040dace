//! `api_base: os.environ/NAME` (LiteLLM): the URL lives in a Secret, and a kubelet-style
//! update of that Secret moves traffic to the new URL with no failed request, as a key
//! rotation does; a value that is not a URL keeps the running snapshot.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::atomic_writer::Mounted;
use support::harness::http_client;
use support::*;

const LONG: Duration = Duration::from_secs(60);

const CONFIG: &str = "model_list:
  - model_name: m
    litellm_params:
      model: openai/up
      api_key: os.environ/KEY
      api_base: os.environ/UPSTREAM_BASE
      organization: os.environ/ORG
";

async fn mock() -> MockProvider {
    MockProvider::start(MockConfig::new().key("sk-k", KeyLimit::unlimited())).await.expect("mock starts")
}

/// Sends chat requests until told to stop, recording every one that is not a 200.
async fn client(url: String, stop: Arc<AtomicBool>, ok: Arc<AtomicU64>, failed: Arc<Mutex<Vec<String>>>) {
    let client = http_client();
    let body = Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    while !stop.load(Ordering::SeqCst) {
        let request = http::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .expect("request");
        let outcome = match client.request(request).await {
            Ok(response) => {
                let status = response.status();
                match response.into_body().collect().await {
                    Ok(_) if status == 200 => Ok(()),
                    Ok(body) => Err(format!("{status}: {}", String::from_utf8_lossy(&body.to_bytes()))),
                    Err(e) => Err(format!("body: {e}")),
                }
            }
            Err(e) => Err(format!("request: {e}")),
        };
        match outcome {
            Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
            Err(e) => {
                failed.lock().unwrap().push(e);
                0
            }
        };
    }
}

fn organization(mock: &MockProvider) -> String {
    let last = mock.requests().pop().expect("a request");
    last.headers.get("openai-organization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_base_from_a_secret_follows_its_rotation_without_a_failed_request() {
    let (one, two) = (mock().await, mock().await);
    let m = Mounted::start(CONFIG, &[("KEY", "sk-k"), ("UPSTREAM_BASE", &one.base_url()), ("ORG", "org-one")]).await;
    let r = m.proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((one.requests_for_key("sk-k"), two.requests_for_key("sk-k")), (1, 0));
    assert_eq!(organization(&one), "org-one");

    // Clients keep sending while the Secret is updated the kubelet way.
    let (stop, ok, failed) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::default());
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let url = m.proxy.url("/v1/chat/completions");
            tokio::spawn(client(url, Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed)))
        })
        .collect();
    eventually(LONG, "traffic before the rotation", || async { ok.load(Ordering::SeqCst) > 5 }).await;
    let g = m.generation();
    m.secrets.write(&[("KEY", "sk-k"), ("UPSTREAM_BASE", &two.base_url()), ("ORG", "org-two")]);
    m.wait_generation_past(g).await;
    let after = ok.load(Ordering::SeqCst);
    eventually(LONG, "traffic after the rotation", || async { ok.load(Ordering::SeqCst) > after + 5 }).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    let failed = failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "client requests failed during the rotation: {failed:?}");
    assert!(two.requests_for_key("sk-k") > 0, "nothing reached the new URL");
    assert_eq!(organization(&two), "org-two");

    // Everything now goes to the new URL.
    let seen_by_one = one.requests_for_key("sk-k");
    for _ in 0..5 {
        assert_eq!(m.proxy.chat("m").await.status, 200);
    }
    assert_eq!(one.requests_for_key("sk-k"), seen_by_one, "the old URL still got requests");
    assert_eq!(m.proxy.running.health.reload_failures(), 0);

    // A value that is not a URL: rejected, named on /readyz, the new URL keeps serving.
    let (health, g) = (&m.proxy.running.health, m.generation());
    m.secrets.write(&[("KEY", "sk-k"), ("UPSTREAM_BASE", "upstream-two.example.com/v1"), ("ORG", "org-two")]);
    eventually(LONG, "the bad URL is rejected", || async { health.reload_failures() == 1 }).await;
    assert_eq!(m.generation(), g, "a bad URL replaced the snapshot");
    let body = m.readyz().await;
    assert!(body.contains("UPSTREAM_BASE") && body.contains("upstream-two.example.com/v1"), "{body}");
    let before = two.requests_for_key("sk-k");
    assert_eq!(m.proxy.chat("m").await.status, 200);
    assert_eq!(two.requests_for_key("sk-k"), before + 1);
}

#[tokio::test]
async fn a_missing_url_secret_keeps_the_running_snapshot_and_names_the_field() {
    let one = mock().await;
    let m = Mounted::start(CONFIG, &[("KEY", "sk-k"), ("UPSTREAM_BASE", &one.base_url()), ("ORG", "o")]).await;
    let (health, g) = (&m.proxy.running.health, m.generation());
    m.secrets.write(&[("KEY", "sk-k"), ("ORG", "o")]);
    eventually(LONG, "the missing secret is rejected", || async { health.reload_failures() == 1 }).await;
    assert_eq!(m.generation(), g);
    let body = m.readyz().await;
    assert!(body.contains("model_list[0].litellm_params.api_base") && body.contains("UPSTREAM_BASE"), "{body}");
    assert_eq!(m.proxy.chat("m").await.status, 200);
}

#[tokio::test]
async fn a_new_url_does_not_inherit_the_old_urls_cooldown() {
    let (one, two) = (mock().await, mock().await);
    let m = Mounted::start(CONFIG, &[("KEY", "sk-k"), ("UPSTREAM_BASE", &one.base_url()), ("ORG", "o")]).await;
    one.push_fault(Some("sk-k"), Fault::RateLimited { retry_after: Some("300".into()) });
    assert_eq!(m.proxy.chat("m").await.status, 429, "the only endpoint rests for 300 s");

    let g = m.generation();
    m.secrets.write(&[("KEY", "sk-k"), ("UPSTREAM_BASE", &two.base_url()), ("ORG", "o")]);
    m.wait_generation_past(g).await;
    let r = m.proxy.chat("m").await;
    assert_eq!(r.status, 200, "the new URL is still resting: {}", r.text());
    assert_eq!(two.requests_for_key("sk-k"), 1);
}

/// The model a request reached the mock with.
fn last_model(mock: &MockProvider) -> String {
    let last = mock.requests().pop().expect("a request");
    let body: serde_json::Value = serde_json::from_slice(&last.body).expect("JSON body");
    body["model"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_model_from_a_secret_is_read_with_the_config_and_follows_its_secret() {
    let one = mock().await;
    let config = "model_list:
  - model_name: m
    litellm_params:
      model: os.environ/UPSTREAM_MODEL
      api_key: os.environ/KEY
      api_base: os.environ/UPSTREAM_BASE
";
    let base = one.base_url();
    let m =
        Mounted::start(config, &[("KEY", "sk-k"), ("UPSTREAM_BASE", &base), ("UPSTREAM_MODEL", "openai/first")]).await;
    assert_eq!(m.proxy.chat("m").await.status, 200);
    assert_eq!(last_model(&one), "first");

    // The Secret changes the model: the config is read again with it.
    let g = m.generation();
    m.secrets.write(&[("KEY", "sk-k"), ("UPSTREAM_BASE", &base), ("UPSTREAM_MODEL", "openai/second")]);
    m.wait_generation_past(g).await;
    assert_eq!(m.proxy.chat("m").await.status, 200);
    assert_eq!(last_model(&one), "second");

    // Gone: a reload error naming the secret; the running model keeps serving.
    let (health, g) = (&m.proxy.running.health, m.generation());
    m.secrets.write(&[("KEY", "sk-k"), ("UPSTREAM_BASE", &base)]);
    eventually(LONG, "the missing model secret is rejected", || async { health.reload_failures() == 1 }).await;
    assert_eq!(m.generation(), g);
    assert!(m.readyz().await.contains("UPSTREAM_MODEL"));
    assert_eq!(m.proxy.chat("m").await.status, 200);
    assert_eq!(last_model(&one), "second");
}
