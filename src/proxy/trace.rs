//! The trace of one request, per the OpenTelemetry GenAI semantic conventions: a
//! SERVER span for the client's request and a CLIENT span per upstream attempt, both
//! named `{gen_ai.operation.name} {gen_ai.request.model}` (`chat gpt-4o`).
//!
//! The client's W3C `traceparent` is continued, and each attempt's own context is sent
//! upstream in its place. Spans stay open until the relayed body ends, so token usage
//! and time to first chunk land on them. With no exporter installed the spans are
//! disabled (`Span::none()`) and no attribute value is built; a request the sampler
//! drops whatever its trace id gets no spans at all ([`Unsampled`]), and once the
//! sampler has dropped any other request, no attribute is built either. Keys appear by
//! name only (`keyrelay.key`), never by value. What the client chose (its model, path, method) goes in cut to a
//! bounded length ([`clip`]): a span must not grow with a request body.

use std::borrow::Cow;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanId, Status, TraceContextExt, TraceId, TraceState};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::inbound::{Api, Inbound};
use super::usage::Usage;
use crate::pool::Endpoint;
use crate::provider::ProviderKind;
use crate::telemetry::SPAN_TARGET;

/// The most bytes of a client-controlled value put on a span or a log line.
pub(super) const CLIENT_VALUE_MAX: usize = 256;

/// A client-controlled value cut to at most [`CLIENT_VALUE_MAX`] bytes on a char
/// boundary, with `…` appended when cut.
pub(super) fn clip(value: &str) -> Cow<'_, str> {
    if value.len() <= CLIENT_VALUE_MAX {
        return Cow::Borrowed(value);
    }
    let cut = (0..=CLIENT_VALUE_MAX).rev().find(|&i| value.is_char_boundary(i)).unwrap_or(0);
    Cow::Owned(format!("{}…", &value[..cut]))
}

/// A request the sampler drops whatever its trace id (see [`crate::telemetry::sampling`]):
/// it gets no spans, and each attempt passes the trace on unsampled, as a dropped span
/// would have (the client's trace id and `tracestate`, or a new trace id).
#[derive(Debug, Clone)]
pub(super) struct Unsampled {
    trace_id: TraceId,
    trace_state: TraceState,
}

impl Unsampled {
    /// What `TraceContextPropagator` writes for an unsampled span `span_id` of this
    /// trace (`tracestate` too, empty when there is none), without building the
    /// context it reads that from: this runs for every request the sampler drops.
    fn inject(&self, span_id: SpanId, headers: &mut HeaderMap) {
        if self.trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
            return; // the propagator passes on no invalid context
        }
        // `00-{trace id}-{span id}-00`, the ids in lowercase hex as their `Display`
        // writes them, without the fmt machinery that cost a thousand instructions.
        let mut traceparent = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&mut traceparent[3..35], &self.trace_id.to_bytes());
        hex_into(&mut traceparent[36..52], &span_id.to_bytes());
        if let Ok(value) = HeaderValue::from_bytes(&traceparent) {
            headers.insert(TRACEPARENT, value);
        }
        let state = self.trace_state.header();
        let state = if state.is_empty() { Ok(HeaderValue::from_static("")) } else { HeaderValue::try_from(state) };
        if let Ok(value) = state {
            headers.insert(TRACESTATE, value);
        }
    }
}

/// Writes `bytes` in lowercase hex into `out`, which holds exactly two digits per byte.
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The SERVER span of a client request, continuing the client's trace if it sent one;
/// `Span::none()` and the trace to pass on when the sampler is known to drop it.
pub(super) fn server_span(parts: &Parts) -> (Span, Option<Unsampled>) {
    let parent = crate::telemetry::sampling().map(|sampling| {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(&parts.headers));
        let context = parent.span().span_context().clone();
        let parent_sampled = context.is_valid().then(|| context.is_sampled());
        (parent, context, sampling.drops(parent_sampled))
    });
    if let Some((_, context, true)) = &parent {
        let trace_id =
            if context.is_valid() { context.trace_id() } else { RandomIdGenerator::default().new_trace_id() };
        return (Span::none(), Some(Unsampled { trace_id, trace_state: context.trace_state().clone() }));
    }
    let span = tracing::info_span!(target: SPAN_TARGET, "keyrelay.request", otel.kind = "server", otel.name = Empty);
    if span.is_disabled() {
        return (span, None);
    }
    let parent = match parent {
        Some((parent, ..)) => parent,
        None => TraceContextPropagator::new().extract(&HeaderExtractor(&parts.headers)),
    };
    let _ = span.set_parent(parent);
    // Named `{operation} {model}` once the body is read; the method until then.
    let method = clip(parts.method.as_str());
    span.record("otel.name", &*method);
    span.set_attribute("http.request.method", method.into_owned());
    span.set_attribute("url.path", clip(parts.uri.path()).into_owned());
    (span, None)
}

/// Whether attributes set on `span` are kept: it is enabled and was sampled. Starts
/// the span if it was not yet (the sampler decides then), so ask after naming it.
pub(super) fn recording(span: &Span) -> bool {
    !span.is_disabled() && span.context().span().is_recording()
}

/// Names the server span once the request's model is known. A model that is not
/// configured stays out of the name (the client chose it: names must stay few).
pub(super) fn routed(span: &Span, inbound: &Inbound, configured: bool) {
    if span.is_disabled() {
        return;
    }
    let operation = operation(&inbound.api, inbound.parts.uri.path());
    if configured {
        span.record("otel.name", format!("{operation} {}", inbound.alias));
    } else {
        span.record("otel.name", operation);
    }
    span.set_attribute("gen_ai.operation.name", operation);
    span.set_attribute("gen_ai.request.model", clip(&inbound.alias).into_owned());
}

/// Records the response head on a span: status, `error.type` when `error` says what
/// went wrong, and the span's error status when `failed` (a server span fails on 5xx
/// only, a client span on 4xx too).
pub(super) fn head(span: &Span, status: u16, error: Option<String>, failed: bool) {
    if span.is_disabled() {
        return;
    }
    span.set_attribute("http.response.status_code", i64::from(status));
    if let Some(error) = error {
        span.set_attribute("error.type", error);
    }
    if failed {
        span.set_status(Status::error(""));
    }
}

/// Most exclusions one span names: a route of many keys must not make it huge.
const EXCLUSIONS_NAMED: usize = 16;

/// Records on the server span the candidates one pass considered, in order, and
/// each endpoint left out with why (`KEY_2: bucket empty for 40ms`). Key names only.
pub(super) fn considered(
    span: &Span,
    candidates: &[std::sync::Arc<Endpoint>],
    excluded: &[(std::sync::Arc<Endpoint>, crate::pool::Exclusion)],
    now: std::time::Instant,
) {
    if span.is_disabled() {
        return;
    }
    let names: Vec<&str> = candidates.iter().take(EXCLUSIONS_NAMED).map(|e| e.key_name()).collect();
    span.set_attribute("keyrelay.candidates", names.join(","));
    let why: Vec<String> = excluded
        .iter()
        .take(EXCLUSIONS_NAMED)
        .map(|(e, why)| format!("{}: {}", e.key_name(), why.describe(now)))
        .collect();
    span.set_attribute("keyrelay.excluded", why.join("; "));
}

/// Records which endpoint answered on the server span.
pub(super) fn answered_by(span: &Span, endpoint: &Endpoint, attempts: u32) {
    if span.is_disabled() {
        return;
    }
    set_endpoint(span, endpoint);
    span.set_attribute("keyrelay.attempts", i64::from(attempts));
}

/// What the relayed body told once it ended.
pub(super) fn body_done(
    span: &Span,
    usage: Option<Usage>,
    cost_usd: Option<f64>,
    model: Option<&str>,
    first_chunk: Option<Duration>,
) {
    if span.is_disabled() {
        return;
    }
    if let Some(usage) = usage {
        span.set_attribute("gen_ai.usage.input_tokens", usage.input as i64);
        span.set_attribute("gen_ai.usage.output_tokens", usage.output as i64);
    }
    if let Some(cost) = cost_usd {
        span.set_attribute("keyrelay.cost_usd", cost);
    }
    if let Some(model) = model {
        span.set_attribute("gen_ai.response.model", model.to_owned());
    }
    if let Some(ttfc) = first_chunk {
        span.set_attribute("keyrelay.time_to_first_chunk_ms", ttfc.as_secs_f64() * 1000.0);
    }
}

/// The CLIENT span of one upstream attempt.
pub(super) struct AttemptSpan {
    span: Span,
    /// Enabled and (once known, at `inject`) sampled: later attributes are kept.
    recording: bool,
    /// `gen_ai.response.model` when the body names none (empty while disabled).
    upstream_model: String,
    /// The trace to pass upstream when the request has no spans because it is dropped.
    unsampled: Option<Unsampled>,
}

impl AttemptSpan {
    /// `resend` is the attempt's index within the request (0 for the first), and
    /// `retry_reason` why the previous attempt failed.
    pub(super) fn start(
        server: &Span,
        inbound: &Inbound,
        endpoint: &Endpoint,
        resend: u32,
        retry_reason: Option<&'static str>,
        unsampled: Option<&Unsampled>,
    ) -> Self {
        if server.is_disabled() {
            // No server span (no exporter, or dropped in advance): an attempt span made
            // here would be a root of its own.
            return AttemptSpan {
                span: Span::none(),
                recording: false,
                upstream_model: String::new(),
                unsampled: unsampled.cloned(),
            };
        }
        let deployment = &endpoint.deployment;
        let base = &deployment.base_url;
        let operation = operation(&inbound.api, inbound.parts.uri.path());
        let default_port = if base.scheme_str() == Some("http") { 80 } else { 443 };
        // Everything known now goes in as fields: one pass at creation, and the values
        // are only computed when the span is enabled. `None` fields are left out.
        let span = tracing::info_span!(
            target: SPAN_TARGET,
            parent: server,
            "keyrelay.attempt",
            otel.kind = "client",
            otel.name = %format_args!("{operation} {}", deployment.upstream_model),
            gen_ai.operation.name = operation,
            gen_ai.request.model = deployment.upstream_model.as_str(),
            gen_ai.provider.name = provider_name(deployment.provider),
            keyrelay.key = endpoint.key_name(),
            keyrelay.deployment = deployment.name.as_str(),
            server.address = base.host(),
            server.port = i64::from(base.port_u16().unwrap_or(default_port)),
            http.request.resend_count = (resend > 0).then_some(i64::from(resend)),
            keyrelay.retry_reason = retry_reason,
        );
        let recording = !span.is_disabled();
        let upstream_model = if recording { deployment.upstream_model.clone() } else { String::new() };
        AttemptSpan { span, recording, upstream_model, unsampled: None }
    }

    /// The response head arrived and is passed to the client.
    pub(super) fn answered(&self, status: u16) {
        if !self.recording {
            return;
        }
        head(&self.span, status, (status >= 400).then(|| status.to_string()), status >= 400);
    }

    /// What the relayed body told once it ended.
    pub(super) fn body_done(
        &self,
        usage: Option<Usage>,
        cost_usd: Option<f64>,
        model: Option<&str>,
        first_chunk: Option<Duration>,
    ) {
        if !self.recording {
            return;
        }
        body_done(&self.span, usage, cost_usd, model.or(Some(&self.upstream_model)), first_chunk);
    }

    /// Puts this attempt's context into the upstream request (`traceparent`, and
    /// `tracestate` when there is one), replacing what the client sent.
    /// Also learns whether the span was sampled (it starts here).
    pub(super) fn inject(&mut self, headers: &mut HeaderMap) {
        if !self.span.is_disabled() {
            let cx = self.span.context();
            self.recording = cx.span().is_recording();
            TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
        } else if let Some(trace) = &self.unsampled {
            trace.inject(RandomIdGenerator::default().new_span_id(), headers);
        }
    }

    /// The attempt failed before a usable answer: `error_type` is the status code or
    /// `connect_error` / `timeout`.
    pub(super) fn failed(&self, status: Option<u16>, error_type: &str) {
        if !self.recording {
            return;
        }
        if let Some(status) = status {
            self.span.set_attribute("http.response.status_code", i64::from(status));
        }
        self.span.set_attribute("error.type", error_type.to_owned());
        self.span.set_status(Status::error(""));
    }
}

fn set_endpoint(span: &Span, endpoint: &Endpoint) {
    span.set_attribute("gen_ai.provider.name", provider_name(endpoint.deployment.provider));
    span.set_attribute("keyrelay.key", endpoint.key_name().to_owned());
    span.set_attribute("keyrelay.deployment", endpoint.deployment.name.clone());
}

/// `gen_ai.operation.name` from the API and path: the well-known values where they
/// apply, and otherwise a fixed word, so span names stay low-cardinality.
pub(super) fn operation(api: &Api, path: &str) -> &'static str {
    match api {
        Api::AnthropicMessages => "chat",
        Api::GeminiNative { method } if method.to_ascii_lowercase().contains("embed") => "embeddings",
        Api::GeminiNative { .. } => "generate_content",
        Api::OpenAi => {
            let rest = path.strip_prefix("/v1/").unwrap_or(path);
            match rest.split('/').next().unwrap_or_default() {
                "chat" | "responses" => "chat",
                "completions" => "text_completion",
                "embeddings" => "embeddings",
                "images" => "image_generation",
                "audio" => "audio",
                "moderations" => "moderation",
                "rerank" => "rerank",
                _ => "other",
            }
        }
    }
}

/// `gen_ai.provider.name`: the semantic conventions' well-known values where one
/// exists, else keyrelay's provider name.
fn provider_name(provider: ProviderKind) -> &'static str {
    match provider {
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Mistral => "mistral_ai",
        ProviderKind::Xai => "x_ai",
        ProviderKind::Azure => "azure.ai.openai",
        other => other.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_state() -> impl proptest::strategy::Strategy<Value = TraceState> {
        use proptest::prelude::*;
        proptest::collection::vec(("[a-z][a-z0-9_*/-]{0,8}", "[!-+--<>-~]{1,8}"), 0..4)
            .prop_map(|pairs| TraceState::from_key_value(pairs).unwrap_or_default())
    }

    proptest::proptest! {
        #[test]
        fn unsampled_inject_writes_what_the_propagator_writes(
            trace_id in proptest::prelude::any::<u128>(),
            span_id in proptest::prelude::any::<u64>(),
            trace_state in trace_state(),
            client_sent in proptest::prelude::any::<bool>(),
        ) {
            use opentelemetry::trace::{SpanContext, TraceFlags};
            let (trace_id, span_id) = (TraceId::from(trace_id), SpanId::from(span_id));
            let mut theirs = HeaderMap::new();
            let mut ours = HeaderMap::new();
            if client_sent {
                // What the client sent is replaced, as `inject_context` replaces it.
                for h in [&mut theirs, &mut ours] {
                    h.insert(TRACEPARENT, HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
                    h.insert(TRACESTATE, HeaderValue::from_static("client=1"));
                }
            }
            let context = SpanContext::new(trace_id, span_id, TraceFlags::default(), false, trace_state.clone());
            let cx = opentelemetry::Context::new().with_remote_span_context(context);
            TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut theirs));
            Unsampled { trace_id, trace_state }.inject(span_id, &mut ours);
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn operation_names() {
        assert_eq!(operation(&Api::OpenAi, "/v1/chat/completions"), "chat");
        assert_eq!(operation(&Api::OpenAi, "/v1/completions"), "text_completion");
        assert_eq!(operation(&Api::OpenAi, "/v1/embeddings"), "embeddings");
        assert_eq!(operation(&Api::OpenAi, "/v1/whatever/123"), "other");
        assert_eq!(operation(&Api::AnthropicMessages, "/v1/messages"), "chat");
        let gemini = |m: &str| Api::GeminiNative { method: m.to_owned() };
        assert_eq!(operation(&gemini("streamGenerateContent"), ""), "generate_content");
        assert_eq!(operation(&gemini("batchEmbedContents"), ""), "embeddings");
    }

    #[test]
    fn client_values_are_clipped_on_a_char_boundary() {
        assert_eq!(clip("gpt-4o"), "gpt-4o");
        let long = "é".repeat(1000);
        let clipped = clip(&long);
        assert!(clipped.len() <= CLIENT_VALUE_MAX + '…'.len_utf8());
        assert!(clipped.ends_with("é…"));
    }

    #[test]
    fn disabled_spans_cost_nothing_and_inject_nothing() {
        // No subscriber in unit tests: spans are disabled.
        let (parts, ()) = http::Request::post("/v1/chat/completions").body(()).unwrap().into_parts();
        let (span, unsampled) = server_span(&parts);
        assert!(span.is_disabled() && unsampled.is_none());
        head(&span, 200, None, false);
    }
}
