//! No OTLP endpoint, as most sidecars run: the request path's spans must cost nothing.
//! The subscriber is built as `keyrelay run` builds it; an `Option` layer left `None` in
//! it once made every callsite the log's filter turns off count as wanted, so each
//! request built its spans and attributes for nobody (8% of its instructions).
//!
//! Its own test binary: the subscriber is process-wide.

use keyrelay::telemetry::{self, SPAN_TARGET};

#[test]
fn without_an_exporter_the_request_spans_and_filtered_lines_are_never_built() {
    // The level is this test's: a `RUST_LOG` around it would move it. Nothing else runs
    // in this process yet.
    std::env::remove_var("RUST_LOG");
    assert!(telemetry::init_with("info", None), "this test installed the process's subscriber");

    // The log's own spans (an `info` span is the context of its lines) are built:
    // the subscriber is there and answers per callsite.
    assert!(!tracing::info_span!("log context").is_disabled());
    // The request path's trace spans (their target is off in the log's filter), and
    // whatever is below the log's level, are not.
    assert!(tracing::info_span!(target: SPAN_TARGET, "keyrelay.request", otel.kind = "server").is_disabled());
    assert!(tracing::debug_span!("below the level").is_disabled());
    telemetry::flush_logs();
}
