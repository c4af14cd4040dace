//! The `kubernetes:` API-watch mode against a fake API server on loopback: the
//! Secret's and ConfigMap's data apply through the same reload path as the files,
//! the files take over when the object is deleted or the API cannot be reached.

mod support;

use std::time::Duration;

use keyrelay::reload::ReloadSettings;
use support::atomic_writer::{fast_settings, Mounted};
use support::fake_kube::FakeKube;
use support::*;

const LONG: Duration = Duration::from_secs(60);
const SECTION: &str = "kubernetes:\n  namespace: team-a\n  secret: llm-keys\n  config_map: keyrelay\n";

fn config(base: &str, aliases: &[&str]) -> String {
    let mut out = format!("{SECTION}models:\n");
    for alias in aliases {
        out.push_str(&format!(
            "  {alias}:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [KA]\n"
        ));
    }
    out
}

/// Sends requests until one reaches the mock with `key`.
async fn until_key_used(m: &Mounted, mock: &MockProvider, key: &str) {
    eventually(LONG, &format!("requests use {key}"), || async {
        let r = m.proxy.chat("m").await;
        r.status == 200 && mock.requests().last().and_then(|r| r.key.clone()).as_deref() == Some(key)
    })
    .await;
}

#[tokio::test]
async fn secret_and_config_map_are_followed_through_the_api() {
    let mock = MockProvider::start(MockConfig::new().accept_any_key(true)).await.unwrap();
    let base = mock.base_url();
    let kube = FakeKube::start().await;
    kube.put_secret("team-a", "llm-keys", &[("KA", "sk-api-1")]);
    kube.put_secret("team-a", "other-secret", &[("KA", "sk-never")]);
    kube.put_config_map("team-a", "keyrelay", &[("config.yaml", &config(&base, &["m"]))]);

    let settings = ReloadSettings { kube_client: Some(kube.client()), ..fast_settings() };
    let m = Mounted::start_with(&config(&base, &["m"]), &[("KA", "sk-file")], settings).await;
    // The API's value wins over the (older) mounted file.
    until_key_used(&m, &mock, "sk-api-1").await;

    // A rotation through the API lands without any file change.
    kube.put_secret("team-a", "llm-keys", &[("KA", "sk-api-2")]);
    until_key_used(&m, &mock, "sk-api-2").await;

    // A ConfigMap edit adds a model; the file still has only `m`.
    kube.put_config_map("team-a", "keyrelay", &[("config.yaml", &config(&base, &["m", "n"]))]);
    eventually(LONG, "model n served", || async { m.proxy.chat("n").await.status == 200 }).await;

    // A bad ConfigMap is reported under its name and changes nothing.
    let failures = m.proxy.running.health.reload_failures();
    kube.put_config_map("team-a", "keyrelay", &[("config.yaml", "models: {")]);
    eventually(LONG, "bad ConfigMap rejected", || async { m.proxy.running.health.reload_failures() > failures }).await;
    let body = m.readyz().await;
    assert!(body.contains("configmap/team-a/keyrelay:config.yaml"), "{body}");
    assert_eq!(m.proxy.chat("n").await.status, 200);

    // Objects deleted: the mounted files are the fallback again.
    kube.delete("configmaps", "team-a", "keyrelay");
    kube.delete("secrets", "team-a", "llm-keys");
    until_key_used(&m, &mock, "sk-file").await;
    assert_eq!(m.proxy.chat("n").await.status, 404, "the file config has no model n");
    assert!(!m.readyz().await.contains("last reload failed"));

    assert!(mock.requests_for_key("sk-never") == 0, "an object of another name was used");
    let requests = kube.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("/api/v1/namespaces/team-a/secrets?")
            && r.contains("fieldSelector=metadata.name%3Dllm-keys")
            && r.contains("watch=true")),
        "{requests:#?}"
    );
    assert!(requests.iter().all(|r| r.contains("fieldSelector=metadata.name%3D")), "an unfiltered read: {requests:#?}");
}

#[tokio::test]
async fn an_unreachable_api_leaves_the_files_in_charge() {
    let mock = MockProvider::start(MockConfig::new().accept_any_key(true)).await.unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let client = kube::Client::try_from(kube::Config::new(format!("http://{dead}").parse().unwrap())).unwrap();
    let settings = ReloadSettings { kube_client: Some(client), ..fast_settings() };
    let m = Mounted::start_with(&config(&mock.base_url(), &["m"]), &[("KA", "sk-file-1")], settings).await;
    until_key_used(&m, &mock, "sk-file-1").await;
    let g = m.generation();
    m.secrets.write(&[("KA", "sk-file-2")]);
    m.wait_generation_past(g).await;
    until_key_used(&m, &mock, "sk-file-2").await;
    assert!(!m.readyz().await.contains("last reload failed"));
}

#[tokio::test]
async fn api_data_is_dropped_once_the_api_stays_unreachable() {
    let mock = MockProvider::start(MockConfig::new().accept_any_key(true)).await.unwrap();
    let kube = FakeKube::start().await;
    kube.put_secret("team-a", "llm-keys", &[("KA", "sk-api")]);
    let settings = ReloadSettings {
        kube_client: Some(kube.client()),
        api_stale_after: Duration::from_millis(200),
        ..fast_settings()
    };
    let m = Mounted::start_with(&config(&mock.base_url(), &["m"]), &[("KA", "sk-file")], settings).await;
    until_key_used(&m, &mock, "sk-api").await;

    // kubelet keeps syncing the files while the API is down; after `api_stale_after`
    // the files alone count again, so the API's last (possibly old) value is dropped.
    kube.stop();
    until_key_used(&m, &mock, "sk-file").await;
    assert!(!m.readyz().await.contains("last reload failed"));
}
