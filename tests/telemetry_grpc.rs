//! Traces over OTLP/gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) to a real h2c receiver on
//! loopback. Its own test binary: the tracer provider is process-wide.

#[path = "support/otlp.rs"]
mod otlp;
mod support;

use std::time::Duration;

use keyrelay::telemetry::{self, OtlpSettings, Transport};
use otlp::{Receiver, CLIENT, SERVER};
use support::*;

#[tokio::test]
async fn spans_are_exported_over_grpc() {
    let receiver = Receiver::start();
    let mut settings = OtlpSettings::new(receiver.grpc_endpoint(), Transport::Grpc);
    settings.batch_delay = Some(Duration::from_millis(50));
    assert!(telemetry::init_with("warn", Some(settings)));

    let mock = MockProvider::start(MockConfig::new().key("sk-grpc-a", KeyLimit::unlimited())).await.unwrap();
    let config = format!(
        "models:\n  g:\n    deployments:\n      - provider: openai-compatible\n        model: up-g\n        api_base: {}\n        keys: [KG]\n",
        mock.base_url()
    );
    let proxy = Proxy::start(&config, &[("KG", "sk-grpc-a")]).await;
    assert_eq!(proxy.chat("g").await.status, 200);

    let (server, client) = receiver
        .wait_for(Duration::from_secs(20), "server and client span over gRPC", telemetry::flush, |spans| {
            let server = spans.iter().find(|s| s.kind == SERVER)?;
            let client = spans.iter().find(|s| s.kind == CLIENT && s.parent_span_id == server.span_id)?;
            Some((server.clone(), client.clone()))
        })
        .await;
    assert_eq!(server.name, "chat g");
    assert_eq!(client.name, "chat up-g");
    assert_eq!(client.str("keyrelay.key"), Some("KG"));
    let requests = receiver.requests();
    assert!(
        requests.iter().all(|(path, ct)| path == "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            && ct.starts_with("application/grpc")),
        "{requests:?}"
    );
}
