//! Injected faults over the wire.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::{Fault, HeaderStyle, KeyLimit, MockConfig, MockProvider};

async fn mock(style: HeaderStyle) -> MockProvider {
    let config = MockConfig::new().style(style).key("a", KeyLimit::rpm(100)).key("b", KeyLimit::unlimited());
    MockProvider::start(config).await.unwrap()
}

#[tokio::test]
async fn faults_are_consumed_in_order_key_queue_first() {
    let mock = mock(HeaderStyle::OpenAi).await;
    let client = client();
    mock.push_fault(None, Fault::Status(500));
    mock.push_fault(None, Fault::Status(503));
    mock.push_fault(Some("b"), Fault::RateLimited { retry_after: Some("7".into()) });
    assert_eq!(mock.pending_faults(), 3);

    let r = chat(&client, &mock, "b").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "b's own fault first");
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("retry-after-ms"), Some("7000"));

    let r = chat(&client, &mock, "a").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json()["error"]["type"], "server_error");
    assert_eq!(r.header("x-ratelimit-limit-requests"), None);

    assert_eq!(chat(&client, &mock, "b").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(chat(&client, &mock, "a").await.status, StatusCode::OK);
    assert_eq!(mock.pending_faults(), 0);

    let stats = mock.stats();
    assert_eq!((stats.key("a").faults, stats.key("b").faults), (1, 2));
    assert_eq!(stats.key("b").rate_limited, 1);
    assert_eq!(stats.total().errors, 2);
}

#[tokio::test]
async fn injected_429_hints_follow_the_style() {
    let mock = mock(HeaderStyle::Gemini).await;
    let client = client();
    mock.push_fault(Some("a"), Fault::RateLimited { retry_after: Some("2".into()) });
    mock.push_fault(Some("a"), Fault::RateLimited { retry_after: None });

    let r = chat(&client, &mock, "a").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("2"), "an explicit value is sent verbatim");
    assert!(r.text.contains(r#""retryDelay":"2s""#), "{}", r.text);

    let r = chat(&client, &mock, "a").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), None);
    assert!(!r.text.contains("retryDelay"), "no hint at all: {}", r.text);

    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
    let mock = self::mock(HeaderStyle::OpenAi).await;
    mock.push_fault(None, Fault::RateLimited { retry_after: Some(date.clone()) });
    let r = chat(&client, &mock, "a").await;
    assert_eq!(r.header("retry-after"), Some(date.as_str()));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    let reset = r.header("x-ratelimit-reset-requests").unwrap();
    assert!(reset.starts_with("1m"), "{reset}");
}

#[tokio::test]
async fn reset_connection_is_a_transport_error_and_the_next_request_works() {
    let mock = mock(HeaderStyle::OpenAi).await;
    let client = client();
    mock.push_fault(None, Fault::ResetConnection);
    let body = r#"{"model":"m"}"#;
    let err = client.request(request(&mock, "POST", "/v1/chat/completions", Some("a"), body)).await;
    assert!(err.is_err(), "expected a client error, got {err:?}");
    assert_eq!(mock.requests().len(), 1, "recorded before the reset");
    assert_eq!(chat(&client, &mock, "a").await.status, StatusCode::OK);
}

#[tokio::test]
async fn hang_holds_until_the_client_gives_up_and_slow_first_byte_delays() {
    let mock = mock(HeaderStyle::OpenAi).await;
    let client = client();
    mock.push_fault(None, Fault::Hang);
    let req = request(&mock, "POST", "/v1/chat/completions", Some("a"), "{}");
    let hung = tokio::time::timeout(Duration::from_millis(200), client.request(req)).await;
    assert!(hung.is_err(), "a hung request must not be answered");

    mock.push_fault(Some("b"), Fault::SlowFirstByte(Duration::from_millis(150)));
    let started = Instant::now();
    let r = chat(&client, &mock, "b").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn latency_delays_every_response() {
    let mock = mock(HeaderStyle::OpenAi).await;
    let client = client();
    mock.set_latency(Duration::from_millis(100));
    let started = Instant::now();
    assert_eq!(chat(&client, &mock, "nobody").await.status, StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() >= Duration::from_millis(100));
    mock.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn stream_gate_on_a_plain_request_delays_the_answer() {
    let mock = mock(HeaderStyle::OpenAi).await;
    let client = client();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    mock.push_fault(None, Fault::StreamGate(gate.clone()));
    let pending = tokio::spawn({
        let client = client.clone();
        let req = request(&mock, "POST", "/v1/chat/completions", Some("a"), "{}");
        async move { read(send(&client, req).await).await.status }
    });
    // The request is received (and recorded) but not answered until the gate opens.
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.requests().is_empty() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!pending.is_finished());
    gate.notify_one();
    assert_eq!(pending.await.unwrap(), StatusCode::OK);
}
