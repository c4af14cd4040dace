//! SSE streams: framing, pacing, gates, client disconnects.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;
use crate::{Fault, KeyLimit, MockConfig, MockProvider};

const STREAM_BODY: &str = r#"{"model":"gpt-test","stream":true,"messages":[]}"#;

async fn stream_mock(chunks: usize, interval: Duration) -> MockProvider {
    MockProvider::start(MockConfig::new().key("k", KeyLimit::unlimited()).stream(chunks, interval)).await.unwrap()
}

async fn open_stream(client: &TestClient, mock: &MockProvider, path: &str, body: &str) -> Incoming {
    let resp = send(client, request(mock, "POST", path, Some("k"), body)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    resp.into_body()
}

/// Next data frame as text (`None` at the end of the body).
async fn next_frame(body: &mut Incoming) -> Option<String> {
    loop {
        let frame = body.frame().await?.expect("stream error");
        if let Ok(data) = frame.into_data() {
            return Some(String::from_utf8_lossy(&data).into_owned());
        }
    }
}

/// Polls `f` every 10 ms until true; panics after 30 s (generous: a loaded machine is slow).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sse_events_arrive_one_by_one_with_usage_last() {
    let interval = Duration::from_millis(50);
    let mock = stream_mock(4, interval).await;
    let client = client();
    let sent = Instant::now();
    let mut body = open_stream(&client, &mock, "/v1/chat/completions", STREAM_BODY).await;

    let mut arrivals = Vec::new();
    let mut text = String::new();
    while let Some(frame) = next_frame(&mut body).await {
        arrivals.push(Instant::now());
        text.push_str(&frame);
    }
    let events: Vec<&str> = text.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 4 + 2, "{text}");
    assert!(arrivals.len() >= events.len(), "each event is its own frame: {arrivals:?}");
    // The interval passes before each event after the first. Measured from the request
    // (not between arrivals, which a stalled reader bunches up), this holds on any
    // machine; that the first event is not held back is `stream_gate_holds_after_the_first_event`.
    let total = *arrivals.last().unwrap() - sent;
    assert!(total >= interval * 5, "events were not paced: all six within {total:?}");

    assert_eq!(events[5], "data: [DONE]");
    let json = |e: &str| serde_json::from_str::<serde_json::Value>(e.strip_prefix("data: ").unwrap()).unwrap();
    let content: String =
        events[..4].iter().map(|e| json(e)["choices"][0]["delta"]["content"].as_str().unwrap().to_string()).collect();
    assert_eq!(content, "Hello from mock (key #1). Chunk 1. Chunk 2. Chunk 3.");
    assert_eq!(json(events[0])["object"], "chat.completion.chunk");
    assert_eq!(json(events[3])["choices"][0]["finish_reason"], "stop");
    let usage = json(events[4]);
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);

    assert!(mock.requests()[0].stream);
    assert_eq!(mock.streams_aborted(), 0);
}

#[tokio::test]
async fn stream_gate_holds_after_the_first_event() {
    let mock = stream_mock(3, Duration::ZERO).await;
    let client = client();
    let gate = Arc::new(Notify::new());
    mock.push_fault(Some("k"), Fault::StreamGate(Arc::clone(&gate)));

    let mut body = open_stream(&client, &mock, "/v1/chat/completions", STREAM_BODY).await;
    let first = next_frame(&mut body).await.unwrap();
    assert!(first.contains("Hello from mock"), "{first}");
    let held = tokio::time::timeout(Duration::from_millis(150), next_frame(&mut body)).await;
    assert!(held.is_err(), "the stream went on before the gate opened: {held:?}");

    gate.notify_one();
    let mut rest = String::new();
    while let Some(frame) = next_frame(&mut body).await {
        rest.push_str(&frame);
    }
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    assert_eq!(mock.stats().key("k").faults, 1);
}

#[tokio::test]
async fn client_going_away_mid_stream_is_counted() {
    let mock = stream_mock(50, Duration::from_millis(20)).await;
    let client = client();
    let mut body = open_stream(&client, &mock, "/v1/chat/completions", STREAM_BODY).await;
    assert!(next_frame(&mut body).await.is_some());
    drop(body);
    eventually("the aborted stream to be counted", || mock.streams_aborted() == 1).await;
    assert_eq!(mock.stats().key("k").aborted_streams, 1);
    assert_eq!(mock.stats().key("k").ok, 1);
}

#[tokio::test]
async fn anthropic_and_gemini_native_streams() {
    let mock = stream_mock(2, Duration::ZERO).await;
    let client = client();
    let mut body = open_stream(&client, &mock, "/v1/messages", r#"{"model":"claude-x","stream":true}"#).await;
    let mut text = String::new();
    while let Some(frame) = next_frame(&mut body).await {
        text.push_str(&frame);
    }
    let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert!(text.contains(r#""output_tokens""#));

    let path = "/v1beta/models/gemini-x:streamGenerateContent?alt=sse";
    let mut body = open_stream(&client, &mock, path, "{}").await;
    let mut text = String::new();
    while let Some(frame) = next_frame(&mut body).await {
        text.push_str(&frame);
    }
    assert_eq!(text.matches("data: ").count(), 2);
    assert!(text.contains("usageMetadata"));
    assert!(mock.requests()[1].stream);
}
