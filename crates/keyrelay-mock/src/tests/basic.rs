//! Auth, routing, response shapes, recording.

use super::*;
use crate::{KeyLimit, MockConfig, MockProvider};

#[tokio::test]
async fn unknown_and_missing_keys_get_openai_shaped_401() {
    let mock = MockProvider::start(MockConfig::new().key("sk-good", KeyLimit::unlimited())).await.unwrap();
    let client = client();

    let r = chat(&client, &mock, "sk-wrong").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let v = r.json();
    assert_eq!(v["error"]["code"], "invalid_api_key");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].is_string());
    assert!(!r.text.contains("sk-wrong"), "the key must not be echoed");

    let r = read(send(&client, request(&mock, "POST", "/v1/chat/completions", None, "{}")).await).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    assert_eq!(mock.requests().len(), 2, "every request is recorded");
    assert_eq!(mock.requests_for_key("sk-wrong"), 1);
    assert_eq!(mock.stats().key("sk-wrong").unauthorized, 1);
    assert_eq!(mock.stats().key("").unauthorized, 1);
}

#[tokio::test]
async fn success_names_the_key_by_index_and_echoes_the_model() {
    let config = MockConfig::new().key("sk-one", KeyLimit::rpm(100)).key("sk-two", KeyLimit::unlimited());
    let mock = MockProvider::start(config).await.unwrap();
    let client = client();

    let r = chat(&client, &mock, "sk-two").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-test");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("key #2"), "{content}");
    assert!(!r.text.contains("sk-two"));
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert!(r.header("x-request-id").is_some());

    let r = chat(&client, &mock, "sk-one").await;
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("100"), "OpenAI sends limits on success");
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("99"));

    let recorded = mock.requests();
    assert_eq!(recorded[0].key.as_deref(), Some("sk-two"));
    assert_eq!(recorded[0].model.as_deref(), Some("gpt-test"));
    assert_eq!(recorded[0].path, "/v1/chat/completions");
    assert!(!recorded[0].stream);
    assert_eq!(mock.stats().key("sk-one").ok, 1);
}

#[tokio::test]
async fn every_key_location_is_understood() {
    let mock = MockProvider::start(MockConfig::new().key("k", KeyLimit::unlimited())).await.unwrap();
    let client = client();
    let body = r#"{"model":"m","max_tokens":5,"messages":[]}"#;
    for header in ["x-api-key", "api-key", "x-goog-api-key"] {
        let req = Request::post(format!("http://{}/v1/messages", mock.addr()))
            .header(header, "k")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let r = read(send(&client, req).await).await;
        assert_eq!(r.status, StatusCode::OK, "{header}");
        assert_eq!(r.json()["type"], "message", "Anthropic shape on /messages");
    }
    let req = Request::post(format!("http://{}/v1beta/models/gemini-x:generateContent?key=k", mock.addr()))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let r = read(send(&client, req).await).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["modelVersion"], "gemini-x");
    assert_eq!(mock.requests_for_key("k"), 4);
    assert_eq!(mock.requests()[3].query.as_deref(), Some("key=k"));
}

#[tokio::test]
async fn bad_paths_and_bodies_get_json_errors() {
    let mock = MockProvider::start(MockConfig::new().key("k", KeyLimit::unlimited())).await.unwrap();
    let client = client();

    let r = read(send(&client, request(&mock, "POST", "/v1/nothing", Some("k"), "{}")).await).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["error"]["message"].is_string());

    let r = read(send(&client, request(&mock, "POST", "/v1/chat/completions", Some("k"), "not json{")).await).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json()["error"]["message"].is_string());

    let r = read(send(&client, request(&mock, "POST", "/v1/messages", Some("k"), "[]")).await).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");

    let r = read(send(&client, request(&mock, "GET", "/v1/models", Some("k"), "")).await).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["data"][0]["id"], "mock-model");

    let r = read(send(&client, request(&mock, "POST", "/v1/embeddings", Some("k"), r#"{"input":"x"}"#)).await).await;
    assert_eq!(r.json()["data"][0]["object"], "embedding");
    assert_eq!(mock.stats().key("k").errors, 3);
}

#[tokio::test]
async fn keys_can_be_added_and_removed_at_run_time() {
    let config = MockConfig::new().key("old", KeyLimit::unlimited());
    let mock = MockProvider::start(config).await.unwrap();
    let client = client();
    assert_eq!(chat(&client, &mock, "new").await.status, StatusCode::UNAUTHORIZED);
    mock.add_key("new", KeyLimit::unlimited());
    mock.remove_key("old");
    let r = chat(&client, &mock, "new").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("key #2"));
    assert_eq!(chat(&client, &mock, "old").await.status, StatusCode::UNAUTHORIZED);
    mock.add_key("old", KeyLimit::unlimited());
    assert!(chat(&client, &mock, "old").await.text.contains("key #1"), "indices are stable");
}

#[tokio::test]
async fn accept_any_key_serves_unlisted_keys_but_not_missing_ones() {
    let mock = MockProvider::start(MockConfig::new().accept_any_key(true)).await.unwrap();
    let client = client();
    let r = chat(&client, &mock, "whatever").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("unlisted key"));
    assert!(r.header("x-ratelimit-limit-requests").is_none());
    let r = read(send(&client, request(&mock, "POST", "/v1/chat/completions", None, "{}")).await).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn serves_h2c_with_prior_knowledge() {
    let mock = MockProvider::start(MockConfig::new().key("k", KeyLimit::unlimited())).await.unwrap();
    let client: TestClient = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    let r = chat(&client, &mock, "k").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn dropping_the_mock_stops_it() {
    let mock = MockProvider::start(MockConfig::new().accept_any_key(true)).await.unwrap();
    let addr = mock.addr();
    assert_eq!(mock.base_url(), format!("http://{addr}/v1"));
    drop(mock);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting after drop");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn key_checks_answer_like_providers_and_are_counted_apart_from_traffic() {
    let mock = MockProvider::start(MockConfig::new().key("k", KeyLimit::rpm(1))).await.unwrap();
    let client = client();
    for path in ["/v1/models", "/v1beta/models", "/api/v1/key"] {
        let r = read(send(&client, request(&mock, "GET", path, Some("k"), "")).await).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let r = read(send(&client, request(&mock, "GET", path, Some("typo"), "")).await).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: an unknown key is refused");
    }
    assert_eq!(chat(&client, &mock, "k").await.status, StatusCode::OK, "probes spend none of rpm 1");
    let stats = mock.stats();
    assert_eq!((stats.key("k").probes, stats.key("typo").probes), (3, 3));
    assert_eq!((stats.key("k").ok, stats.key("typo").unauthorized), (1, 0), "probes are not traffic");
    assert_eq!(mock.probe_times("k").len(), 3);

    mock.set_standing_fault(Some("k"), Some(crate::Fault::ResetConnection));
    let dropped = client.request(request(&mock, "GET", "/v1/models", Some("k"), "")).await;
    assert!(dropped.is_err(), "unreachable on demand");
}
