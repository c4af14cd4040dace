//! The real `openai` Python SDK, pointed at keyrelay with `base_url`, makes a plain
//! and a streaming chat completion. The test command installs the SDK.

mod support;

use std::process::Command;

use support::*;

#[tokio::test]
async fn openai_python_sdk_plain_and_streaming_through_keyrelay() {
    let mock = MockProvider::start(MockConfig::new().key("sk-pool-1", KeyLimit::unlimited())).await.unwrap();
    let config = format!(
        "models:\n  gpt-4o-mini:\n    deployments:\n      - provider: openai\n        model: gpt-4o-mini-2024-07-18\n        api_base: {}\n        keys: [OPENAI_KEY_1]\n",
        mock.base_url()
    );
    let proxy = Proxy::start(&config, &[("OPENAI_KEY_1", "sk-pool-1")]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_chat.py");
    let base_url = proxy.url("/v1");

    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3").arg(script).arg(base_url).arg("gpt-4o-mini").output()
    })
    .await
    .unwrap()
    .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK script failed (the `openai` package is installed by scripts/test):\n{stderr}"
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("script prints JSON");
    assert!(seen["content"].as_str().is_some_and(|c| c.starts_with("Hello from mock")), "{seen}");
    assert_eq!(seen["model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(seen["key_header"], "OPENAI_KEY_1");
    assert!(seen["total_tokens"].as_u64().is_some_and(|t| t > 0), "{seen}");
    assert!(seen["stream_chunks"].as_u64().is_some_and(|n| n >= 2), "{seen}");
    assert!(seen["stream_usage"].as_u64().is_some_and(|t| t > 0), "{seen}");
    assert_eq!(seen["not_found"]["status"], 404);
    assert_eq!(seen["not_found"]["code"], "model_not_found");

    let requests = mock.requests();
    assert_eq!(requests.len(), 2, "the unknown model never reached the provider");
    assert!(requests.iter().all(|r| r.key.as_deref() == Some("sk-pool-1")));
    assert!(requests.iter().all(|r| !format!("{:?}", r.headers).contains("app-placeholder-key")));
    assert!(requests[1].stream);
}
