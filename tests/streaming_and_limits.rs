//! Streams pass through chunk by chunk, a departed client cancels its upstream
//! request, and request limits (size, slow bodies, total time) hold.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http_body_util::BodyExt;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(60);

fn config(base: &str, server: &str) -> String {
    format!(
        "server:\n{server}models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [KA]\n"
    )
}

const STREAM_BODY: &str = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn sse_chunks_reach_the_client_before_the_next_is_sent() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).stream(3, Duration::from_millis(1)))
            .await
            .unwrap();
    let proxy = Proxy::start(&config(&mock.base_url(), "  region: test\n"), &[("KA", "sk-a")]).await;
    let gate = Arc::new(Notify::new());
    mock.push_fault(None, Fault::StreamGate(Arc::clone(&gate)));

    let response =
        proxy.send(Method::POST, "/v1/chat/completions", &[("content-type", "application/json")], STREAM_BODY).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-keyrelay-key"], "KA");
    let mut body = response.into_body();

    // The mock holds every later chunk until the gate opens: this chunk came through alone.
    let first = tokio::time::timeout(LONG, body.frame())
        .await
        .expect("first chunk in time")
        .expect("a frame")
        .expect("no error");
    let first = String::from_utf8(first.into_data().expect("data frame").to_vec()).unwrap();
    assert!(first.starts_with("data: {"), "{first}");
    assert!(!first.contains("[DONE]"));

    gate.notify_one();
    let rest = tokio::time::timeout(LONG, body.collect()).await.expect("rest in time").expect("rest").to_bytes();
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("\"usage\""), "final chunk carries usage: {rest}");
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
}

#[tokio::test]
async fn client_that_leaves_mid_stream_cancels_the_upstream_request() {
    let mock = MockProvider::start(
        MockConfig::new().key("sk-a", KeyLimit::unlimited()).stream(500, Duration::from_millis(20)),
    )
    .await
    .unwrap();
    let proxy = Proxy::start(&config(&mock.base_url(), "  region: test\n"), &[("KA", "sk-a")]).await;
    let response = proxy.send(Method::POST, "/v1/chat/completions", &[], STREAM_BODY).await;
    let mut body = response.into_body();
    let _ = body.frame().await.expect("first frame");
    let in_flight = || proxy.running.store.load().route("m").expect("route").endpoints[0].state.in_flight();
    assert_eq!(in_flight(), 1);

    drop(body);
    eventually(LONG, "the mock sees its stream aborted", || async { mock.streams_aborted() == 1 }).await;
    eventually(LONG, "in-flight count back to zero", || async { in_flight() == 0 }).await;
}

#[tokio::test]
async fn body_over_the_limit_is_413_and_never_forwarded() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let proxy = Proxy::start(&config(&mock.base_url(), "  body_limit: 1KiB\n"), &[("KA", "sk-a")]).await;
    let big = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(4096));
    let r = proxy.call(Method::POST, "/v1/chat/completions", &[], &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "request_too_large");
    assert!(mock.requests().is_empty());
    assert_eq!(proxy.chat("m").await.status, 200, "small bodies still pass");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_408() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let proxy =
        Proxy::start(&config(&mock.base_url(), "  timeouts: { client_body: 300ms }\n"), &[("KA", "sk-a")]).await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.running.proxy_addr).await.unwrap();
    tcp.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"model\":").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(LONG, tcp.read(&mut buf)).await.expect("answered instead of waiting forever").unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn bad_requests_get_clear_openai_shaped_errors() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let proxy = Proxy::start(&config(&mock.base_url(), "  region: test\n"), &[("KA", "sk-a")]).await;
    let cases = [
        ("not json at all", 400, "invalid_body"),
        ("[1,2,3]", 400, "invalid_body"),
        (r#"{"messages":[]}"#, 400, "invalid_model"),
        (r#"{"model":42}"#, 400, "invalid_model"),
        (r#"{"model":"nope","messages":[]}"#, 404, "model_not_found"),
    ];
    for (body, status, code) in cases {
        let r = proxy.call(Method::POST, "/v1/chat/completions", &[], body).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.text());
        let json = r.json();
        assert_eq!(json["error"]["code"], code, "{body}");
        assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(json["error"]["type"].is_string());
    }
    let r = proxy.call(Method::DELETE, "/admin/secret", &[], "").await;
    assert_eq!(r.status, 404);
    assert!(mock.requests().is_empty(), "nothing bad reached the provider");
}
