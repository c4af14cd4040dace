//! The access line, written by the real binary: one per request, in the log's format,
//! and off when `RUST_LOG` turns its target off (it is rendered outside the fmt layer,
//! so the filter is checked on its own path).

mod support;

use support::daemon::Daemon;
use support::get;

/// The lines `keyrelay run` logs for one request, under `rust_log`.
async fn access_lines(rust_log: &str) -> (Vec<serde_json::Value>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("K1"), "sk-unused").unwrap();
    let config = dir.path().join("config.yaml");
    let yaml = "models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: http://127.0.0.1:1/v1\n        keys: [K1]\n";
    std::fs::write(&config, yaml).unwrap();
    let daemon = Daemon::spawn(&config, &secrets, &[("RUST_LOG", rust_log)]);
    // A path keyrelay does not route: it answers 404 itself, and the request still gets its line.
    let reply = get(&format!("http://{}/v1/chat/completions", daemon.proxy)).await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    daemon.terminate();
    let (exit, logs) = tokio::task::spawn_blocking(move || daemon.wait()).await.unwrap();
    assert!(exit.success(), "{exit:?}");
    let access = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "keyrelay::access")
        .collect();
    (access, logs)
}

#[tokio::test]
async fn one_line_per_request_and_none_when_its_target_is_off() {
    let (access, logs) = access_lines("info").await;
    assert_eq!(access.len(), 1, "{logs:?}");
    let fields = &access[0]["fields"];
    assert_eq!(fields["message"], "request");
    assert_eq!(fields["status"], 404);
    assert_eq!(fields["attempts"], 0);
    assert!(fields["duration_ms"].as_f64().is_some(), "{fields}");

    let (access, logs) = access_lines("info,keyrelay::access=off").await;
    assert!(access.is_empty(), "{access:?}");
    assert!(logs.iter().any(|l| l.contains("keyrelay serving")), "the rest of the log is still on: {logs:?}");
}
