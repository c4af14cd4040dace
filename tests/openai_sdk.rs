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

#[tokio::test]
async fn openai_python_sdk_embeddings_responses_and_transcription_through_keyrelay() {
    let mock = MockProvider::start(MockConfig::new().key("sk-pool-1", KeyLimit::unlimited())).await.unwrap();
    let entry = |alias: &str, model: &str, mode: &str| {
        format!(
            "  - model_name: {alias}\n    litellm_params:\n      model: {model}\n      api_base: {}\n      api_key: os.environ/OPENAI_KEY_1\n    model_info:\n      mode: {mode}\n",
            mock.base_url()
        )
    };
    let config = format!(
        "model_list:\n{}{}{}{}",
        entry("embedder", "openai/text-embedding-3-small", "embedding"),
        entry("assistant", "openai/gpt-4o-mini", "chat"),
        entry("assistant", "openai/o1-pro", "responses"),
        entry("transcriber", "openai/gpt-4o-transcribe", "audio_transcription"),
    );
    let proxy = Proxy::start(&config, &[("OPENAI_KEY_1", "sk-pool-1")]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_endpoints.py");
    let base_url = proxy.url("/v1");

    let output = tokio::task::spawn_blocking(move || Command::new("python3").arg(script).arg(base_url).output())
        .await
        .unwrap()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the SDK script failed:\n{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).expect("script prints JSON");
    assert_eq!(seen["embedding_len"], 8, "{seen}");
    assert_eq!(seen["embedding_model"], "text-embedding-3-small");
    assert!(seen["embedding_tokens"].as_u64().is_some_and(|t| t > 0), "{seen}");
    assert_eq!(seen["embedding_deployment"], "openai/text-embedding-3-small");
    assert!(seen["response_text"].as_str().is_some_and(|c| c.starts_with("Hello from mock")), "{seen}");
    assert!(["gpt-4o-mini", "o1-pro"].contains(&seen["response_model"].as_str().unwrap_or_default()), "{seen}");
    assert!(seen["response_tokens"].as_u64().is_some_and(|t| t > 0), "{seen}");
    assert!(seen["transcription_text"].as_str().is_some_and(|c| c.starts_with("Hello from mock")), "{seen}");
    assert_eq!(seen["transcription_key"], "OPENAI_KEY_1");

    let requests = mock.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/v1/embeddings", "/v1/responses", "/v1/audio/transcriptions"]);
    let form = &requests[2];
    assert!(form.form);
    assert_eq!(form.model.as_deref(), Some("gpt-4o-transcribe"));
    assert!(form.body.len() > 256 * 1024, "the whole file arrived: {} bytes", form.body.len());
    assert!(requests.iter().all(|r| r.key.as_deref() == Some("sk-pool-1")));
}
