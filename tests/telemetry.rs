//! Traces over OTLP/HTTP to a real receiver on loopback: the span tree and GenAI
//! attributes of a plain, a retried and a streamed request, and a client's
//! `traceparent` continued and passed upstream.
//!
//! The tracer provider is process-wide, so this file is its own test binary with one
//! exporter (to one receiver) installed by the first test that runs. Tests stay
//! parallel-safe: each finds its own spans by its own alias or trace id.

#[path = "support/otlp.rs"]
mod otlp;
mod support;

use std::sync::OnceLock;
use std::time::Duration;

use http::Method;
use keyrelay::telemetry::{self, OtlpSettings, Transport};
use otlp::{ExportedSpan, Receiver, CLIENT, SERVER, STATUS_ERROR};
use support::*;

const LONG: Duration = Duration::from_secs(20);

fn receiver() -> &'static Receiver {
    static RECEIVER: OnceLock<Receiver> = OnceLock::new();
    RECEIVER.get_or_init(|| {
        let receiver = Receiver::start();
        let mut settings = OtlpSettings::new(receiver.http_endpoint(), Transport::HttpProtobuf);
        settings.batch_delay = Some(Duration::from_millis(50));
        assert!(telemetry::init_with("warn", Some(settings)), "the exporter was installed");
        receiver
    })
}

async fn flush() {
    telemetry::flush().await;
}

fn config(alias: &str, base: &str, keys: &[&str]) -> String {
    format!(
        "server:\n  timeouts: {{ request: 10s, attempt: 5s }}\nmodels:\n  {alias}:\n    strategy: round-robin\n    deployments:\n      - provider: openai-compatible\n        name: dep-{alias}\n        model: up-{alias}\n        api_base: {base}\n        keys: [{}]\n",
        keys.join(", ")
    )
}

/// The spans of the trace whose server span asked for `alias`, once the server span
/// and `clients` client spans have arrived: (server, clients by start time).
async fn trace_of(alias: &str, clients: usize) -> (ExportedSpan, Vec<ExportedSpan>) {
    let found = receiver()
        .wait_for(LONG, &format!("server span for {alias} and {clients} client spans"), flush, |spans| {
            let server = spans.iter().find(|s| s.kind == SERVER && s.str("gen_ai.request.model") == Some(alias))?;
            let mut children: Vec<ExportedSpan> =
                spans.iter().filter(|s| s.trace_id == server.trace_id && s.kind == CLIENT).cloned().collect();
            children.sort_by_key(|s| s.start_unix_nano);
            (children.len() == clients).then(|| (server.clone(), children))
        })
        .await;
    for span in std::iter::once(&found.0).chain(&found.1) {
        assert!(span.duplicate_keys.is_empty(), "attributes set twice: {span:#?}");
    }
    found
}

#[tokio::test]
async fn plain_request_is_one_server_span_with_one_client_span() {
    receiver();
    let mock = MockProvider::start(MockConfig::new().key("sk-plain-a", KeyLimit::unlimited())).await.unwrap();
    let proxy = Proxy::start(&config("plain", &mock.base_url(), &["KP"]), &[("KP", "sk-plain-a")]).await;
    let r = proxy.chat("plain").await;
    assert_eq!(r.status, 200, "{}", r.text());

    let (server, clients) = trace_of("plain", 1).await;
    assert_eq!(server.name, "chat plain");
    assert_eq!(server.parent_span_id, "", "no traceparent: the server span is the root");
    assert_eq!(server.str("gen_ai.operation.name"), Some("chat"));
    assert_eq!(server.str("gen_ai.provider.name"), Some("openai-compatible"));
    assert_eq!(server.str("gen_ai.response.model"), Some("up-plain"));
    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_eq!(server.str("keyrelay.key"), Some("KP"));
    assert_eq!(server.str("keyrelay.deployment"), Some("dep-plain"));
    assert_eq!(server.int("keyrelay.attempts"), Some(1));
    assert!(server.int("gen_ai.usage.input_tokens").is_some_and(|n| n > 0), "{server:#?}");
    assert!(server.int("gen_ai.usage.output_tokens").is_some_and(|n| n > 0));
    assert_eq!(server.str("error.type"), None);
    assert_eq!(server.resource.get("service.name"), Some(&otlp::Attr::Str("keyrelay".into())));

    let client = &clients[0];
    assert_eq!(client.parent_span_id, server.span_id);
    assert_eq!(client.name, "chat up-plain");
    assert_eq!(client.str("gen_ai.request.model"), Some("up-plain"));
    assert_eq!(client.str("gen_ai.response.model"), Some("up-plain"));
    assert_eq!(client.str("server.address"), Some("127.0.0.1"));
    assert_eq!(client.int("server.port"), Some(i64::from(mock.addr().port())));
    assert_eq!(client.int("http.response.status_code"), Some(200));
    assert_eq!(client.str("keyrelay.key"), Some("KP"));
    assert_eq!(client.int("http.request.resend_count"), None);
    assert_eq!(client.str("keyrelay.retry_reason"), None);
    assert_eq!(client.int("gen_ai.usage.input_tokens"), server.int("gen_ai.usage.input_tokens"));
    assert!(client.start_unix_nano >= server.start_unix_nano && client.end_unix_nano <= server.end_unix_nano);
}

#[tokio::test]
async fn retried_request_has_a_client_span_per_attempt() {
    receiver();
    let mock = MockProvider::start(
        MockConfig::new().key("sk-retry-a", KeyLimit::unlimited()).key("sk-retry-b", KeyLimit::unlimited()),
    )
    .await
    .unwrap();
    let proxy = Proxy::start(
        &config("retried", &mock.base_url(), &["RA", "RB"]),
        &[("RA", "sk-retry-a"), ("RB", "sk-retry-b")],
    )
    .await;
    mock.push_fault(Some("sk-retry-a"), Fault::RateLimited { retry_after: Some("30".into()) });
    let r = proxy.chat("retried").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-attempts"), "2");

    let (server, clients) = trace_of("retried", 2).await;
    assert_eq!(server.str("keyrelay.key"), Some("RB"));
    assert_eq!(server.int("keyrelay.attempts"), Some(2));
    assert_eq!(server.int("http.response.status_code"), Some(200));
    assert_ne!(server.status_code, STATUS_ERROR, "the client got a 200");

    let (first, second) = (&clients[0], &clients[1]);
    assert!(clients.iter().all(|c| c.parent_span_id == server.span_id && c.trace_id == server.trace_id));
    assert_eq!(first.str("keyrelay.key"), Some("RA"));
    assert_eq!(first.int("http.response.status_code"), Some(429));
    assert_eq!(first.str("error.type"), Some("429"));
    assert_eq!(first.status_code, STATUS_ERROR);
    assert_eq!(first.int("http.request.resend_count"), None);
    assert_eq!(second.str("keyrelay.key"), Some("RB"));
    assert_eq!(second.int("http.request.resend_count"), Some(1));
    assert_eq!(second.str("keyrelay.retry_reason"), Some("rate_limited"));
    assert_eq!(second.int("http.response.status_code"), Some(200));
    assert_eq!(second.str("error.type"), None);
}

#[tokio::test]
async fn streamed_request_records_tokens_and_time_to_first_chunk() {
    receiver();
    let mock = MockProvider::start(
        MockConfig::new().key("sk-stream-a", KeyLimit::unlimited()).stream(3, Duration::from_millis(5)),
    )
    .await
    .unwrap();
    let proxy = Proxy::start(&config("streamed", &mock.base_url(), &["KS"]), &[("KS", "sk-stream-a")]).await;
    let body = r#"{"model":"streamed","stream":true,"messages":[{"role":"user","content":"hello there"}]}"#;
    let r = proxy.call(Method::POST, "/v1/chat/completions", &[("content-type", "application/json")], body).await;
    assert_eq!(r.status, 200);
    assert!(r.text().contains("[DONE]"));

    let (server, clients) = trace_of("streamed", 1).await;
    let client = &clients[0];
    for span in [&server, client] {
        assert!(span.int("gen_ai.usage.input_tokens").is_some_and(|n| n > 0), "{span:#?}");
        assert!(span.int("gen_ai.usage.output_tokens").is_some_and(|n| n > 0), "{span:#?}");
        let ttfc = span.double("keyrelay.time_to_first_chunk_ms").expect("time to first chunk");
        assert!(ttfc > 0.0 && ttfc < 10_000.0, "{ttfc}");
        assert_eq!(span.str("gen_ai.response.model"), Some("up-streamed"));
    }
    // The spans stay open until the stream ends: the last chunk comes >= 10 ms after the first.
    let ttfc_ns = (client.double("keyrelay.time_to_first_chunk_ms").unwrap() * 1e6) as u64;
    assert!(client.end_unix_nano - client.start_unix_nano >= ttfc_ns + 5_000_000, "{client:#?}");
}

#[tokio::test]
async fn client_traceparent_is_continued_and_the_attempt_context_goes_upstream() {
    receiver();
    let mock = MockProvider::start(MockConfig::new().key("sk-tp-a", KeyLimit::unlimited())).await.unwrap();
    let proxy = Proxy::start(&config("traced", &mock.base_url(), &["KT"]), &[("KT", "sk-tp-a")]).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent_id}-01");
    let body = r#"{"model":"traced","messages":[{"role":"user","content":"hi"}]}"#;
    let headers = [("content-type", "application/json"), ("traceparent", traceparent.as_str())];
    let r = proxy.call(Method::POST, "/v1/chat/completions", &headers, body).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let (server, clients) = trace_of("traced", 1).await;
    assert_eq!(server.trace_id, trace_id);
    assert_eq!(server.parent_span_id, parent_id, "the client's span is the server span's parent");
    assert_eq!(clients[0].trace_id, trace_id);

    let sent = mock.requests();
    let upstream = sent[0].headers.get("traceparent").and_then(|v| v.to_str().ok()).expect("traceparent upstream");
    let parts: Vec<&str> = upstream.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream}");
    assert_eq!(parts[1], trace_id, "same trace upstream");
    assert_eq!(parts[2], clients[0].span_id, "the upstream's parent is the attempt span");
    assert_eq!(parts[3], "01", "sampled");
}

#[tokio::test]
async fn an_unsampled_client_trace_is_not_exported_but_still_propagated() {
    receiver();
    let mock = MockProvider::start(MockConfig::new().key("sk-unsampled-a", KeyLimit::unlimited())).await.unwrap();
    let proxy = Proxy::start(&config("unsampled", &mock.base_url(), &["KU"]), &[("KU", "sk-unsampled-a")]).await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{trace_id}-b7ad6b7169203331-00");
    let body = r#"{"model":"unsampled","messages":[{"role":"user","content":"hi"}]}"#;
    let headers = [("content-type", "application/json"), ("traceparent", traceparent.as_str())];
    assert_eq!(proxy.call(Method::POST, "/v1/chat/completions", &headers, body).await.status, 200);
    // A sampled request after it: once its spans are in, the first one's would be too.
    assert_eq!(proxy.chat("unsampled").await.status, 200);
    let (server, _) = trace_of("unsampled", 1).await;
    assert_ne!(server.trace_id, trace_id);
    assert!(receiver().spans().iter().all(|s| s.trace_id != trace_id), "the client's sampling decision is kept");

    let sent = mock.requests();
    let upstream = sent[0].headers.get("traceparent").and_then(|v| v.to_str().ok()).expect("traceparent upstream");
    assert!(upstream.starts_with(&format!("00-{trace_id}-")) && upstream.ends_with("-00"), "{upstream}");
    assert!(!upstream.contains("b7ad6b7169203331"), "the attempt's own span id, not the client's: {upstream}");
    assert_eq!(sent.len(), 2, "one attempt each");
}
