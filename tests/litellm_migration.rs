//! Issue 9 against the mock provider: a migrated LiteLLM file whose entries keyrelay
//! cannot all serve still serves the rest, and keys written into the file reach the
//! provider exactly as written.

mod support;

use support::*;

async fn mock(keys: &[&str]) -> MockProvider {
    let config = keys.iter().fold(MockConfig::new(), |c, k| c.key(*k, KeyLimit::unlimited()));
    MockProvider::start(config).await.expect("mock starts")
}

#[tokio::test]
async fn an_unservable_alias_answers_501_while_the_rest_of_the_file_serves() {
    let mock = mock(&["sk-from-secret"]).await;
    let base = mock.base_url();
    let config = format!(
        "\
litellm_settings:
  custom_provider_map: [{{provider: my-llm, custom_handler: custom.handler}}]
model_list:
  - model_name: claude-bedrock
    litellm_params: {{model: bedrock/anthropic.claude-3-5-sonnet, aws_region_name: us-east-1}}
  - model_name: mine
    litellm_params: {{model: my-llm/thing}}
  - model_name: served
    litellm_params: {{model: openai/up, api_base: '{base}/v1', api_key: os.environ/OPENAI_KEY}}
    fallbacks: [claude-bedrock]
"
    );
    let proxy = Proxy::start(&config, &[("OPENAI_KEY", "sk-from-secret")]).await;

    let ok = proxy.chat("served").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(mock.requests_for_key("sk-from-secret"), 1);

    let refused = proxy.chat("claude-bedrock").await;
    assert_eq!(refused.status, 501, "{}", refused.text());
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "unsupported_provider");
    assert_eq!(error["type"], "invalid_request_error");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("claude-bedrock") && message.contains("SigV4"), "{message}");

    let custom = proxy.chat("mine").await;
    assert_eq!(custom.status, 501);
    assert!(custom.text().contains("custom_provider_map"), "{}", custom.text());
    // Nothing of the unservable aliases went anywhere.
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn keys_written_into_the_file_are_sent_upstream_as_written() {
    let mock = mock(&["sk-written-in-the-file", "none", "${OPENAI_API_KEY}"]).await;
    let base = mock.base_url();
    let entry = |alias: &str, key: &str| {
        format!(
            "  - model_name: {alias}\n    litellm_params:\n      model: openai/up\n      api_base: {base}/v1\n      api_key: \"{key}\"\n"
        )
    };
    let config = format!(
        "model_list:\n{}{}{}",
        entry("literal", "sk-written-in-the-file"),
        entry("local", "none"),
        entry("template", "${OPENAI_API_KEY}")
    );
    let proxy = Proxy::start(&config, &[]).await;
    for (alias, key) in [("literal", "sk-written-in-the-file"), ("local", "none"), ("template", "${OPENAI_API_KEY}")] {
        let reply = proxy.chat(alias).await;
        assert_eq!(reply.status, 200, "{alias}: {}", reply.text());
        assert_eq!(reply.header("x-keyrelay-key"), format!("inline-key:{alias}#1"));
        assert_eq!(mock.requests_for_key(key), 1, "{alias}");
    }
    let status = proxy.admin_get("/status").await.text();
    assert!(status.contains("inline-key:literal#1") && !status.contains("sk-written-in-the-file"), "{status}");
}
