//! Per-deployment options from `litellm_params`, against the mock provider: request
//! defaults merged where the client did not set them, extra headers, wildcard aliases,
//! per-deployment timeouts and retries.

mod support;

use std::time::Duration;

use http::Method;
use support::*;

fn mock_config() -> MockConfig {
    MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited())
}

async fn post(proxy: &Proxy, body: &str) -> Reply {
    let call = proxy.call(Method::POST, "/v1/chat/completions", &[("content-type", "application/json")], body);
    // A guard, not a speed assertion: without the fix these requests wait minutes.
    tokio::time::timeout(Duration::from_secs(60), call).await.expect("no answer within 60 s")
}

fn last_body(mock: &MockProvider) -> serde_json::Value {
    let requests = mock.requests();
    let last = requests.last().expect("the mock received nothing");
    serde_json::from_slice(&last.body).expect("upstream body is JSON")
}

#[tokio::test]
async fn request_defaults_are_merged_where_the_client_did_not_set_them() {
    let mock = MockProvider::start(mock_config()).await.unwrap();
    let base = mock.base_url();
    let config = format!(
        r#"
model_list:
  - model_name: o4-high
    litellm_params:
      model: openai/o4-mini
      api_base: {base}
      api_key: os.environ/KA
      reasoning_effort: high
      temperature: 0.2
      max_tokens: 100
      extra_body: {{ metadata: {{ team: a }}, temperature: 0.3 }}
  - model_name: o4-low
    litellm_params:
      model: openai/o4-mini
      api_base: {base}
      api_key: os.environ/KA
      reasoning_effort: low
"#
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;

    let r = post(&proxy, r#"{"model":"o4-high","temperature":1,"max_tokens":null,"messages":[]}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = last_body(&mock);
    assert_eq!(body["model"], "o4-mini");
    assert_eq!(body["reasoning_effort"], "high");
    assert_eq!(body["temperature"], 1, "the client's value is kept");
    assert!(body["max_tokens"].is_null(), "a client's null is the client's choice");
    assert_eq!(body["metadata"], serde_json::json!({ "team": "a" }));
    let raw = String::from_utf8_lossy(&mock.requests().last().unwrap().body).into_owned();
    assert_eq!(raw.matches("\"temperature\"").count(), 1, "{raw}");

    let r = post(&proxy, r#"{"model":"o4-low","messages":[]}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = last_body(&mock);
    assert_eq!(body["reasoning_effort"], "low");
    assert!(body.get("temperature").is_none());
}

#[tokio::test]
async fn extra_headers_arrive_and_the_key_is_still_keyrelays() {
    let mock = MockProvider::start(mock_config()).await.unwrap();
    let config = format!(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n      api_base: {}\n      api_key: os.environ/KA\n      extra_headers: {{ OpenAI-Beta: assistants=v2, x-team: blue }}\n",
        mock.base_url()
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    let headers = [("content-type", "application/json"), ("x-team", "red"), ("authorization", "Bearer sk-client")];
    let r = proxy.call(Method::POST, "/v1/chat/completions", &headers, r#"{"model":"m","messages":[]}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = mock.requests().pop().unwrap();
    assert_eq!(seen.headers["openai-beta"], "assistants=v2");
    assert_eq!(seen.headers["x-team"], "blue", "the deployment's header replaces the client's");
    assert_eq!(seen.key.as_deref(), Some("sk-a"));
}

#[tokio::test]
async fn wildcard_aliases_pass_the_requested_name_and_exact_aliases_win() {
    let mock = MockProvider::start(mock_config()).await.unwrap();
    let base = mock.base_url();
    let config = format!(
        r#"
model_list:
  - model_name: "*"
    litellm_params: {{ model: openai/*, api_base: {base}, api_key: os.environ/KB }}
  - model_name: openai/*
    litellm_params: {{ model: openai/*, api_base: {base}, api_key: os.environ/KA }}
  - model_name: claude-*
    litellm_params: {{ model: openai/claude-fixed, api_base: {base}, api_key: os.environ/KA }}
  - model_name: gpt-4o
    litellm_params: {{ model: openai/gpt-4o-2024-08-06, api_base: {base}, api_key: os.environ/KA }}
"#
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    for (requested, upstream, key) in [
        ("some-local-model", "some-local-model", "sk-b"),
        ("openai/gpt-4.1-mini", "gpt-4.1-mini", "sk-a"),
        ("claude-haiku", "claude-fixed", "sk-a"),
        ("gpt-4o", "gpt-4o-2024-08-06", "sk-a"),
    ] {
        let r = proxy.chat(requested).await;
        assert_eq!(r.status, 200, "{requested}: {}", r.text());
        let seen = mock.requests().pop().unwrap();
        assert_eq!(seen.model.as_deref(), Some(upstream), "{requested}");
        assert_eq!(seen.key.as_deref(), Some(key), "{requested}");
    }
    let listed = proxy.call(Method::GET, "/v1/models", &[], "").await.json();
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["gpt-4o"], "only exact aliases are models");
}

#[tokio::test]
async fn a_deployment_timeout_fails_a_hung_key_over_before_the_server_timeout() {
    let mock = MockProvider::start(mock_config()).await.unwrap();
    let base = mock.base_url();
    let config = format!(
        r#"
litellm_settings: {{ request_timeout: 600 }}
model_list:
  - model_name: m
    litellm_params: {{ model: openai/x, api_base: {base}, api_key: os.environ/KA, order: 1, timeout: 1, stream_timeout: 1 }}
  - model_name: m
    litellm_params: {{ model: openai/x, api_base: {base}, api_key: os.environ/KB, order: 2 }}
"#
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    mock.set_standing_fault(Some("sk-a"), Some(Fault::Hang));
    for body in [r#"{"model":"m","messages":[]}"#, r#"{"model":"m","stream":true,"messages":[]}"#] {
        let r = post(&proxy, body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-keyrelay-key"), "KB");
        assert_eq!(r.header("x-keyrelay-attempts"), "2");
    }
}

#[tokio::test]
async fn max_retries_caps_attempts_at_one_deployment_whatever_its_keys() {
    let mock = MockProvider::start(mock_config().key("sk-c", KeyLimit::unlimited())).await.unwrap();
    let base = mock.base_url();
    let config = format!(
        r#"
litellm_settings: {{ num_retries: 5 }}
model_list:
  - model_name: m
    litellm_params: {{ model: openai/x, api_base: {base}, api_key: os.environ/KA, order: 1, max_retries: 0 }}
  - model_name: m
    litellm_params: {{ model: openai/x, api_base: {base}, api_key: os.environ/KB, order: 1, max_retries: 0 }}
  - model_name: m
    litellm_params: {{ model: openai/x, api_base: {base}, api_key: os.environ/KC, order: 2 }}
"#
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b"), ("KC", "sk-c")]).await;
    mock.set_standing_fault(Some("sk-a"), Some(Fault::Status(503)));
    mock.set_standing_fault(Some("sk-b"), Some(Fault::Status(503)));
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-key"), "KC");
    // KA and KB are one deployment (entries that differ only by key merge): one try there.
    assert_eq!(r.header("x-keyrelay-attempts"), "2");
    assert_eq!(mock.requests_for_key("sk-a") + mock.requests_for_key("sk-b"), 1);
}
