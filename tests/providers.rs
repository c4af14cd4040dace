//! Provider URL shapes and auth against the mock over loopback: Azure's deployment
//! path and `api-version`, Azure's v1 API, Ollama's `/v1`, and local servers that get
//! no key at all.

mod support;

use http::Method;
use support::*;

const JSON: (&str, &str) = ("content-type", "application/json");

/// A LiteLLM file with one entry `m` whose `litellm_params` are `params`.
fn litellm(params: &str) -> String {
    format!("model_list:\n  - model_name: m\n    litellm_params:\n{params}")
}

fn header<'a>(r: &'a RecordedRequest, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn only_request(mock: &MockProvider) -> RecordedRequest {
    let mut requests = mock.requests();
    assert_eq!(requests.len(), 1, "expected exactly one upstream request: {requests:?}");
    requests.remove(0)
}

#[tokio::test]
async fn azure_deployment_gets_its_path_api_version_and_api_key_header() {
    let mock = MockProvider::start(MockConfig::new().key("sk-az", KeyLimit::unlimited())).await.unwrap();
    let config = litellm(&format!(
        "      model: azure/my-gpt4o\n      api_base: http://{}/\n      api_version: \"2024-10-21\"\n      api_key: os.environ/AZ\n",
        mock.addr()
    ));
    let proxy = Proxy::start(&config, &[("AZ", "sk-az")]).await;

    // The client's own api-version and credentials are replaced by the deployment's.
    let body = r#"{"model":"m","messages":[]}"#;
    let r = proxy
        .call(Method::POST, "/v1/chat/completions?api-version=1999-01-01", &[JSON, ("authorization", "Bearer c")], body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = only_request(&mock);
    assert_eq!(up.path, "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(up.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(header(&up, "api-key"), "sk-az");
    assert!(!up.headers.contains_key("authorization"), "{:?}", up.headers);

    let r = proxy.call(Method::POST, "/v1/embeddings", &[JSON], r#"{"model":"m","input":"x"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = mock.requests().pop().unwrap();
    assert_eq!(up.path, "/openai/deployments/my-gpt4o/embeddings");
    assert_eq!(up.query.as_deref(), Some("api-version=2024-10-21"));
}

#[tokio::test]
async fn azure_without_api_version_gets_litellms_default() {
    let mock = MockProvider::start(MockConfig::new().key("sk-az", KeyLimit::unlimited())).await.unwrap();
    let config = litellm(&format!(
        "      model: azure/d\n      api_base: http://{}\n      api_key: os.environ/AZ\n",
        mock.addr()
    ));
    let proxy = Proxy::start(&config, &[("AZ", "sk-az")]).await;
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = only_request(&mock);
    assert_eq!(up.path, "/openai/deployments/d/chat/completions");
    assert_eq!(up.query.as_deref(), Some("api-version=2025-02-01-preview"));
}

#[tokio::test]
async fn azure_v1_api_puts_the_model_in_the_body() {
    let mock = MockProvider::start(MockConfig::new().key("sk-az", KeyLimit::unlimited())).await.unwrap();
    let entry = |alias: &str, version: &str| {
        format!(
            "  - model_name: {alias}\n    litellm_params:\n      model: azure/gpt-4.1\n      api_base: http://{}\n      \
             api_version: {version}\n      api_key: os.environ/AZ\n",
            mock.addr()
        )
    };
    let config = format!("model_list:\n{}{}", entry("v1", "v1"), entry("preview", "preview"));
    let proxy = Proxy::start(&config, &[("AZ", "sk-az")]).await;

    let r = proxy.chat("v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = only_request(&mock);
    assert_eq!(up.path, "/openai/v1/chat/completions");
    assert_eq!(up.query, None);
    assert_eq!(up.model.as_deref(), Some("gpt-4.1"));
    assert_eq!(header(&up, "api-key"), "sk-az");

    let r = proxy.chat("preview").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = mock.requests().pop().unwrap();
    assert_eq!(up.path, "/openai/v1/chat/completions");
    assert_eq!(up.query.as_deref(), Some("api-version=preview"));
    assert_eq!(up.model.as_deref(), Some("gpt-4.1"));
}

#[tokio::test]
async fn ollama_chat_gets_v1_added_when_missing_and_no_key() {
    let mock = MockProvider::start(MockConfig::new().accept_no_key(true)).await.unwrap();
    let entry = |alias: &str, suffix: &str| {
        format!(
            "  - model_name: {alias}\n    litellm_params:\n      model: ollama_chat/llama3.1\n      api_base: http://{}{suffix}\n",
            mock.addr()
        )
    };
    let config = format!("model_list:\n{}{}", entry("bare", ""), entry("v1", "/v1/"));
    let proxy = Proxy::start(&config, &[]).await;
    for alias in ["bare", "v1"] {
        let r = proxy.chat(alias).await;
        assert_eq!(r.status, 200, "{alias}: {}", r.text());
        let up = mock.requests().pop().unwrap();
        assert_eq!(up.path, "/v1/chat/completions", "{alias}");
        assert_eq!(up.model.as_deref(), Some("llama3.1"));
        assert_eq!(up.key, None, "{alias}: {:?}", up.headers);
    }
}

#[tokio::test]
async fn keyless_local_deployment_sends_no_auth_header_at_all() {
    let mock = MockProvider::start(MockConfig::new().accept_no_key(true)).await.unwrap();
    let config = litellm(&format!("      model: openai/qwen\n      api_base: http://{}/v1\n", mock.addr()));
    let proxy = Proxy::start(&config, &[]).await;

    let body = r#"{"model":"m","messages":[]}"#;
    let client_creds = [JSON, ("authorization", "Bearer client"), ("x-api-key", "client"), ("api-key", "client")];
    let r = proxy.call(Method::POST, "/v1/chat/completions", &client_creds, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-key"), "no-key");
    let up = only_request(&mock);
    for name in ["authorization", "x-api-key", "api-key", "x-goog-api-key"] {
        assert!(!up.headers.contains_key(name), "{name} sent: {:?}", up.headers);
    }
    assert_eq!(up.key, None);
}
