//! "Configured but not sampling": with an exporter and a sampler that drops a request
//! whatever its trace id, the request has no spans at all, yet its attempts still pass
//! the trace on upstream, unsampled, as a dropped span would have. A sampled parent
//! under the same parent-based sampler is exported as usual, which shows the exporter
//! works and lets the test see that the dropped request's trace never arrives.
//!
//! Its own test binary: the sampler is process-wide.

#[path = "support/otlp.rs"]
mod otlp;
mod support;

use std::time::Duration;

use http::Method;
use keyrelay::telemetry::{self, sampling::Sampling, OtlpSettings, Transport};
use otlp::{Receiver, SERVER};
use support::*;

const LONG: Duration = Duration::from_secs(20);

fn config(base: &str) -> String {
    format!("models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [K]\n")
}

/// `00-<trace id>-<span id>-<flags>` split, checked for shape.
fn traceparent(request: &RecordedRequest) -> (String, String, String) {
    let value = request.headers.get("traceparent").and_then(|v| v.to_str().ok()).expect("traceparent upstream");
    let parts: Vec<&str> = value.split('-').collect();
    assert!(parts.len() == 4 && parts[0] == "00" && parts[1].len() == 32 && parts[2].len() == 16, "{value}");
    assert!(parts[1].chars().any(|c| c != '0') && parts[2].chars().any(|c| c != '0'), "valid ids: {value}");
    (parts[1].to_owned(), parts[2].to_owned(), parts[3].to_owned())
}

#[tokio::test]
async fn a_request_the_sampler_drops_has_no_spans_and_still_passes_its_trace_on() {
    let receiver = Receiver::start();
    let mut settings = OtlpSettings::new(receiver.http_endpoint(), Transport::HttpProtobuf);
    settings.batch_delay = Some(Duration::from_millis(50));
    settings.sampling = Sampling::parse(Some("parentbased_always_off"), None).0;
    assert!(telemetry::init_with("warn", Some(settings)), "the exporter was installed");

    let mock = MockProvider::start(MockConfig::new().key("sk-unsampled-k", KeyLimit::unlimited())).await.unwrap();
    let proxy = Proxy::start(&config(&mock.base_url()), &[("K", "sk-unsampled-k")]).await;
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let post = |traceparent: Option<String>| {
        let proxy = &proxy;
        async move {
            let mut headers = vec![("content-type", "application/json".to_owned())];
            headers.extend(traceparent.map(|t| ("traceparent", t)));
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(proxy.call(Method::POST, "/v1/chat/completions", &headers, body).await.status, 200);
        }
    };

    // A root: dropped (root sampler off). A new trace, unsampled.
    post(None).await;
    // A client's unsampled trace: dropped, its trace id kept, a span id of its own.
    let client_unsampled = "4bf92f3577b34da6a3ce929d0e0e4736";
    post(Some(format!("00-{client_unsampled}-00f067aa0ba902b7-00"))).await;
    // A client's sampled trace: kept and exported.
    let client_sampled = "0af7651916cd43dd8448eb211c80319c";
    post(Some(format!("00-{client_sampled}-b7ad6b7169203331-01"))).await;

    let sent = mock.requests();
    assert_eq!(sent.len(), 3);
    let (root_trace, _, root_flags) = traceparent(&sent[0]);
    assert_eq!(root_flags, "00", "a dropped root is passed on unsampled");
    let (trace, span, flags) = traceparent(&sent[1]);
    assert_eq!((trace.as_str(), flags.as_str()), (client_unsampled, "00"));
    assert_ne!(span, "00f067aa0ba902b7", "the attempt's own span id");
    let (trace, _, flags) = traceparent(&sent[2]);
    assert_eq!((trace.as_str(), flags.as_str()), (client_sampled, "01"));

    // The sampled request's spans arrive; by then the earlier requests' would have too.
    let flush = || telemetry::flush();
    receiver
        .wait_for(LONG, "the sampled request's server span", flush, |spans| {
            spans.iter().find(|s| s.kind == SERVER && s.trace_id == client_sampled).map(|_| ())
        })
        .await;
    let spans = receiver.spans();
    assert!(spans.iter().all(|s| s.trace_id == client_sampled), "only the sampled trace is exported: {spans:#?}");
    assert!(spans.iter().all(|s| s.trace_id != root_trace));
}
