//! Hot reload over real files and loopback HTTP: kubelet-style swaps and plain in-place
//! edits apply without a restart, bad versions keep the running snapshot (and say so on
//! `/readyz`), endpoint state carries over, and settings that need a restart are
//! reported instead of applied.

mod support;

use std::path::Path;
use std::time::Duration;

use keyrelay::reload::ReloadSettings;
use keyrelay::runtime::{Options, Running};
use support::atomic_writer::{wait_generation, AtomicWriter, Mounted};
use support::harness::http_client;
use support::*;

const LONG: Duration = Duration::from_secs(60);

async fn mock(keys: &[&str]) -> MockProvider {
    let config = keys.iter().fold(MockConfig::new(), |c, k| c.key(*k, KeyLimit::unlimited()));
    MockProvider::start(config).await.expect("mock starts")
}

/// Round-robin aliases on one mock, each `(alias, [key names])`.
fn config(base: &str, models: &[(&str, &[&str])]) -> String {
    let mut out = String::from("models:\n");
    for (alias, keys) in models {
        out.push_str(&format!(
            "  {alias}:\n    strategy: round-robin\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{}]\n",
            keys.join(", ")
        ));
    }
    out
}

#[test]
fn atomic_writer_reproduces_kubelet_layout() {
    let dir = tempfile::tempdir().unwrap();
    let w = AtomicWriter::create(&dir.path().join("v"), &[("A", "1"), ("B", "2")]);
    let first = w.current();
    assert!(first.to_string_lossy().starts_with(".."));
    assert_eq!(std::fs::read_link(w.dir.join("A")).unwrap(), Path::new("..data/A"));
    assert_eq!(std::fs::read_to_string(w.dir.join("B")).unwrap(), "2");

    w.write(&[("A", "10"), ("C", "3")]);
    assert_ne!(w.current(), first);
    assert!(!w.dir.join(&first).exists(), "old timestamped dir removed");
    assert!(std::fs::symlink_metadata(w.dir.join("B")).is_err(), "B no longer visible");
    assert_eq!(std::fs::read_to_string(w.dir.join("A")).unwrap(), "10");
    assert_eq!(std::fs::read_to_string(w.dir.join("C")).unwrap(), "3");
    assert!(!w.dir.join("..data_tmp").exists());
    let hidden: Vec<_> = std::fs::read_dir(&w.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".."))
        .collect();
    assert_eq!(hidden.len(), 2, "only ..data and one timestamped dir: {hidden:?}");
}

#[tokio::test]
async fn cooldown_survives_an_unrelated_change_and_a_new_key_value_clears_it() {
    let mock = mock(&["sk-a1", "sk-b"]).await;
    let base = mock.base_url();
    let m = Mounted::start(&config(&base, &[("m", &["KA", "KB"])]), &[("KA", "sk-a1"), ("KB", "sk-b")]).await;
    mock.push_fault(Some("sk-a1"), Fault::RateLimited { retry_after: Some("300".into()) });
    let r = m.proxy.chat("m").await;
    assert_eq!((r.status.as_u16(), r.header("x-keyrelay-key")), (200, "KB"), "{}", r.text());

    // An unrelated change (a new model): KA keeps its 300 s cooldown.
    let g = m.generation();
    m.config.write(&[("config.yaml", &config(&base, &[("m", &["KA", "KB"]), ("other", &["KB"])]))]);
    m.wait_generation_past(g).await;
    assert_eq!(m.proxy.chat("other").await.status, 200);
    for _ in 0..4 {
        assert_eq!(m.proxy.chat("m").await.header("x-keyrelay-key"), "KB");
    }
    assert_eq!(mock.requests_for_key("sk-a1"), 1, "a cooling key was used after an unrelated reload");

    // A new value under the same name is a new key: no cooldown.
    mock.add_key("sk-a2", KeyLimit::unlimited());
    let g = m.generation();
    m.secrets.write(&[("KA", "sk-a2"), ("KB", "sk-b")]);
    // One generation while the new value is probed (the old one serves), one once it passed.
    m.wait_generation_past(g + 1).await;
    let keys: Vec<String> = keys_used(&m, 2).await;
    assert!(keys.contains(&"KA".to_owned()), "KA not used after its value changed: {keys:?}");
    assert_eq!(mock.requests_for_key("sk-a2"), 1);
    assert_eq!(mock.requests_for_key("sk-a1"), 1);
}

#[tokio::test]
async fn a_refused_key_stays_out_until_its_secret_value_changes() {
    let mock = mock(&["sk-b"]).await;
    let base = mock.base_url();
    // KA's value is not one the provider accepts: 401, KA is taken out, KB answers.
    let m = Mounted::start(&config(&base, &[("m", &["KA", "KB"])]), &[("KA", "sk-revoked"), ("KB", "sk-b")]).await;
    let r = m.proxy.chat("m").await;
    assert_eq!((r.status.as_u16(), r.header("x-keyrelay-key"), r.header("x-keyrelay-attempts")), (200, "KB", "2"));
    assert_eq!(keys_used(&m, 4).await, ["KB"; 4], "a refused key was used again");

    // An unrelated reload does not bring it back; a new value does.
    let g = m.generation();
    m.config.write(&[("config.yaml", &config(&base, &[("m", &["KA", "KB"]), ("other", &["KB"])]))]);
    m.wait_generation_past(g).await;
    assert_eq!(keys_used(&m, 2).await, ["KB"; 2]);
    mock.add_key("sk-a-new", KeyLimit::unlimited());
    let g = m.generation();
    m.secrets.write(&[("KA", "sk-a-new"), ("KB", "sk-b")]);
    m.wait_generation_past(g + 1).await;
    assert!(keys_used(&m, 2).await.contains(&"KA".to_owned()), "the rotated key was not used");
    assert_eq!(mock.requests_for_key("sk-revoked"), 1);
}

/// Sends `n` requests to `m` one after the other and returns the key names used.
async fn keys_used(m: &Mounted, n: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for _ in 0..n {
        let r = m.proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        keys.push(r.header("x-keyrelay-key").to_owned());
    }
    keys
}

/// Writes a bad config, checks it is rejected (old snapshot serving, error on
/// `/readyz`, counter up by one), then a good one, checks it applies and clears it.
async fn rejected_then_recovered(
    m: &Mounted,
    bad_config: Option<&str>,
    bad_secrets: Option<&[(&str, &str)]>,
    expect: &str,
) {
    let health = &m.proxy.running.health;
    let (failures, generation) = (health.reload_failures(), m.generation());
    let good_config = std::fs::read_to_string(m.config.dir.join("config.yaml")).unwrap();
    if let Some(secrets) = bad_secrets {
        m.secrets.write(secrets);
    }
    if let Some(config) = bad_config {
        m.config.write(&[("config.yaml", config)]);
    }
    eventually(LONG, "the bad version is rejected", || async { health.reload_failures() > failures }).await;
    assert_eq!(health.reload_failures(), failures + 1, "one bad version, one failure");
    assert_eq!(m.generation(), generation, "a bad version replaced the snapshot");
    let body = m.readyz().await;
    assert!(body.contains("last reload failed") && body.contains(expect), "{body}");
    let r = m.proxy.chat("m").await;
    assert_eq!(r.status, 200, "the previous snapshot stopped serving: {}", r.text());

    // A good version applies and clears the error.
    m.secrets.write(&[("KA", "sk-a")]);
    m.config.write(&[("config.yaml", &good_config.replace("round-robin", "least-busy"))]);
    m.wait_generation_past(generation).await;
    let body = m.readyz().await;
    assert!(!body.contains("last reload failed"), "{body}");
    assert_eq!(m.proxy.chat("m").await.status, 200);
}

#[tokio::test]
async fn bad_reloads_keep_the_running_snapshot_and_show_on_readyz() {
    let mock = mock(&["sk-a"]).await;
    let base = mock.base_url();
    let good = config(&base, &[("m", &["KA"])]);
    let m = Mounted::start(&good, &[("KA", "sk-a")]).await;

    rejected_then_recovered(&m, Some("models:\n  m: [unclosed\n"), None, "invalid YAML").await;
    let unknown = good.replace("        keys:", "        kyes: [KA]\n        keys:");
    rejected_then_recovered(&m, Some(&unknown), None, "kyes").await;
    let missing = config(&base, &[("m", &["KA"]), ("n", &["KN"])]);
    rejected_then_recovered(&m, Some(&missing), None, "\"KN\" not found").await;
    rejected_then_recovered(&m, None, Some(&[("KA", "  \n")]), "\"KA\" is empty").await;
    // The model's only key vanishes from the Secret.
    rejected_then_recovered(&m, None, Some(&[("OTHER", "x")]), "\"KA\" not found").await;
    assert_eq!(m.proxy.running.health.reload_failures(), 5);
}

#[tokio::test]
async fn a_keys_from_pool_emptied_leaves_the_model_serving_on_the_old_keys() {
    let mock = mock(&["p1", "p2"]).await;
    let text = config(&mock.base_url(), &[("m", &[])]).replace("keys: []", "keys_from: POOL");
    let m = Mounted::start(&text, &[("POOL", "p1\np2\n")]).await;
    let health = &m.proxy.running.health;
    m.secrets.write(&[("POOL", "# all keys retired\n")]);
    eventually(LONG, "the empty pool is rejected", || async { health.reload_failures() == 1 }).await;
    assert!(m.readyz().await.contains("\"POOL\" is empty"));
    for _ in 0..4 {
        assert_eq!(m.proxy.chat("m").await.status, 200);
    }
}

#[tokio::test]
async fn models_are_added_and_removed() {
    let mock = mock(&["sk-a", "sk-n"]).await;
    let base = mock.base_url();
    let m = Mounted::start(&config(&base, &[("m", &["KA"])]), &[("KA", "sk-a")]).await;
    assert_eq!(m.proxy.chat("n").await.status, 404);

    // Secret first, then the config that uses it (as `kubectl apply` of both would).
    m.secrets.write(&[("KA", "sk-a"), ("KN", "sk-n")]);
    let g = m.generation();
    m.config.write(&[("config.yaml", &config(&base, &[("m", &["KA"]), ("n", &["KN"])]))]);
    m.wait_generation_past(g).await;
    let r = m.proxy.chat("n").await;
    assert_eq!((r.status.as_u16(), r.header("x-keyrelay-key")), (200, "KN"));
    let listed = m.proxy.call(http::Method::GET, "/v1/models", &[], "").await.json();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");

    let g = m.generation();
    m.config.write(&[("config.yaml", &config(&base, &[("n", &["KN"])]))]);
    m.wait_generation_past(g).await;
    assert_eq!(m.proxy.chat("m").await.status, 404);
    assert_eq!(m.proxy.chat("n").await.status, 200);
    assert_eq!(m.proxy.running.health.reload_failures(), 0);
}

#[tokio::test]
async fn plain_files_edited_in_place_are_reloaded() {
    // Default settings, plain files (no kubelet symlinks): what a user outside
    // Kubernetes has. `std::fs::write` truncates and rewrites the same inode.
    let mock = mock(&["sk-1", "sk-2"]).await;
    let base = mock.base_url();
    let proxy = Proxy::start(&config(&base, &[("m", &["K"])]), &[("K", "sk-1")]).await;
    assert_eq!(proxy.chat("m").await.status, 200);

    std::fs::write(proxy.secrets_dir().join("K"), "sk-2\n").unwrap();
    // Generation 2 serves the old value while the new one is probed; 3 the new one.
    wait_generation(&proxy.running, 3).await;
    assert_eq!(proxy.chat("m").await.status, 200);
    assert_eq!(mock.requests_for_key("sk-2"), 1);

    std::fs::write(proxy.dir.path().join("config.yaml"), config(&base, &[("m", &["K"]), ("x", &["K"])])).unwrap();
    wait_generation(&proxy.running, 4).await;
    assert_eq!(proxy.chat("x").await.status, 200);
}

#[tokio::test]
async fn config_and_secrets_in_one_directory() {
    let mock = mock(&["sk-1", "sk-2"]).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config(&mock.base_url(), &[("m", &["K"])]);
    let volume = AtomicWriter::create(&dir.path().join("all"), &[("config.yaml", &text), ("K", "sk-1")]);
    let options = Options {
        config: volume.dir.join("config.yaml"),
        secrets_dir: Some(volume.dir.clone()),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let running = Running::start_with(options, support::atomic_writer::fast_settings()).await.unwrap();
    let proxy = Proxy { running, dir, client: http_client() };
    volume.write(&[("config.yaml", &text), ("K", "sk-2")]);
    wait_generation(&proxy.running, 3).await;
    assert_eq!(proxy.chat("m").await.status, 200);
    assert_eq!(mock.requests_for_key("sk-2"), 1);
}

#[tokio::test]
async fn the_periodic_rescan_catches_a_change_without_events() {
    let mock = mock(&["sk-1", "sk-2"]).await;
    let settings = ReloadSettings {
        watch_files: false,
        rescan: Duration::from_millis(100),
        debounce: Duration::from_millis(10),
        ..Default::default()
    };
    let m = Mounted::start_with(&config(&mock.base_url(), &[("m", &["K"])]), &[("K", "sk-1")], settings).await;
    let g = m.generation();
    m.secrets.write(&[("K", "sk-2")]);
    m.wait_generation_past(g + 1).await;
    assert_eq!(m.proxy.chat("m").await.status, 200);
    assert_eq!(mock.requests_for_key("sk-2"), 1);
}

#[tokio::test]
async fn a_listen_address_change_is_reported_and_not_applied() {
    let mock = mock(&["sk-a"]).await;
    let base = mock.base_url();
    let with_listen =
        |listen: &str, models: &[(&str, &[&str])]| format!("server:\n  listen: {listen}\n{}", config(&base, models));
    let dir = tempfile::tempdir().unwrap();
    let cfg = AtomicWriter::create(
        &dir.path().join("config"),
        &[("config.yaml", &with_listen("127.0.0.1:0", &[("m", &["KA"])]))],
    );
    let secrets = AtomicWriter::create(&dir.path().join("secrets"), &[("KA", "sk-a")]);
    // No --listen override: the file's address is the one in use.
    let options = Options {
        config: cfg.dir.join("config.yaml"),
        secrets_dir: Some(secrets.dir.clone()),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let running = Running::start_with(options, support::atomic_writer::fast_settings()).await.unwrap();
    let proxy = Proxy { running, dir, client: http_client() };

    cfg.write(&[("config.yaml", &with_listen("127.0.0.1:1", &[("m", &["KA"]), ("n", &["KA"])]))]);
    wait_generation(&proxy.running, 2).await;
    // The rest of the change applied, on the same socket.
    assert_eq!(proxy.chat("n").await.status, 200);
    let snapshot = proxy.running.store.load_full();
    assert_eq!(snapshot.server.listen.to_string(), "127.0.0.1:0", "the snapshot claims an address not in use");
    let body = proxy.admin_get("/readyz").await.text();
    assert!(body.contains("restart required: server.listen is 127.0.0.1:1 in the config"), "{body}");
    assert!(!body.contains("last reload failed"), "{body}");
    assert_eq!(proxy.running.health.reload_failures(), 0);

    // Back to the running value: the note goes away.
    cfg.write(&[("config.yaml", &with_listen("127.0.0.1:0", &[("m", &["KA"])]))]);
    wait_generation(&proxy.running, 3).await;
    assert!(!proxy.admin_get("/readyz").await.text().contains("restart required"));
}
