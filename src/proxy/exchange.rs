//! One client request, from its arrival to the end of its response body: its server
//! span, its tally of attempts and waits, and, when it is dropped, its access log line
//! and its `keyrelay_requests_total` count.
//!
//! The request path tells it what happens in its own words (routed, an attempt
//! started or ended, queued, answered); what that means for the span, the metrics and
//! the log line is decided here, so the path itself reads as the steps it takes.
//!
//! Dropping is the end on every path: at once for keyrelay's own answers, at the end of
//! the relayed body (it rides in the body's `Completion`) for upstream answers, and
//! when hyper drops the request future because the client left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use tracing::Span;

use super::inbound::Inbound;
use super::trace::{self, AttemptSpan, Unsampled};
use super::usage::Usage;
use crate::pool::{Endpoint, Exclusion};
use crate::telemetry::access::AccessLine;
use crate::telemetry::metrics::{empty_label, status_class, ModelLabels, ProxyMetrics, RequestLabels, RetryLabels};

pub(super) struct Exchange {
    started: Instant,
    span: Span,
    /// Set instead of a recording span when the sampler drops the request anyway.
    unsampled: Option<Unsampled>,
    metrics: Arc<ProxyMetrics>,
    /// The model the client asked for, clipped, for the log (`None` until the body is read).
    alias: Option<String>,
    /// The same as a metric label: `""` unless it is a configured alias, so a client
    /// cannot grow the label set.
    model_label: Arc<str>,
    tally: Tally,
    /// Whether the server span keeps attributes (enabled and sampled), once asked.
    recorded: Option<bool>,
    head: Option<Head>,
    body: Option<BodyEnd>,
}

/// What the attempts of one request added up to so far.
#[derive(Debug, Default)]
struct Tally {
    attempts: u32,
    /// Time spent on upstream attempts (to their response heads, or their failure).
    upstream: Duration,
    /// Time spent waiting in the queue for capacity.
    queue_wait: Duration,
    /// Why the last failed attempt failed, while the request is still being retried.
    last_failure: Option<&'static str>,
}

struct Head {
    status: u16,
    /// The endpoint whose answer the client got; `None` when keyrelay answered.
    endpoint: Option<Arc<Endpoint>>,
    at: Duration,
}

struct BodyEnd {
    usage: Option<Usage>,
    /// What the usage cost in USD, when the model's price is known.
    cost_usd: Option<f64>,
    /// Whether the body reached its end (not cut by the client leaving or an error).
    complete: bool,
}

impl Exchange {
    pub(super) fn start(metrics: &Arc<ProxyMetrics>, parts: &Parts) -> Self {
        let (span, unsampled) = trace::server_span(parts);
        Exchange {
            started: Instant::now(),
            span,
            unsampled,
            metrics: Arc::clone(metrics),
            alias: None,
            model_label: empty_label(),
            tally: Tally::default(),
            recorded: None,
            head: None,
            body: None,
        }
    }

    /// The request's model is known; `configured` says whether it names an alias.
    /// `route` is the alias that serves the request: the requested name, or the
    /// wildcard alias it matched (the metrics label, so that clients cannot grow the
    /// label set by naming models).
    pub(super) fn routed(&mut self, inbound: &Inbound, route: Option<&Arc<str>>) {
        trace::routed(&self.span, inbound, route.is_some());
        self.alias = Some(trace::clip(&inbound.alias).into_owned());
        if let Some(alias) = route {
            self.model_label = Arc::clone(alias);
        }
    }

    /// One pass of selection: the endpoints it will try, in order, and those it left
    /// out with why (on the server span).
    pub(super) fn considered(
        &self,
        candidates: &[Arc<Endpoint>],
        excluded: &[(Arc<Endpoint>, Exclusion)],
        now: Instant,
    ) {
        trace::considered(&self.span, candidates, excluded, now);
    }

    /// An attempt goes out to `endpoint`: it is counted (a retry, after a failure) and
    /// gets its client span, which the caller keeps until the attempt's body ends.
    pub(super) fn attempt_started(&mut self, inbound: &Inbound, endpoint: &Endpoint) -> AttemptSpan {
        if let Some(reason) = self.tally.last_failure {
            let labels = RetryLabels { model: self.model_label.clone(), reason };
            self.metrics.retries.get_or_create(&labels).inc();
        }
        let resend = self.tally.attempts;
        self.tally.attempts = self.tally.attempts.saturating_add(1);
        AttemptSpan::start(&self.span, inbound, endpoint, resend, self.tally.last_failure, self.unsampled.as_ref())
    }

    /// The attempt took `took` to its answer's head or its failure; `failed` says why
    /// it failed, if it did (the next attempt is a retry for that reason).
    pub(super) fn attempt_ended(&mut self, took: Duration, failed: Option<&'static str>) {
        self.tally.upstream += took;
        if failed.is_some() {
            self.tally.last_failure = failed;
        }
    }

    /// The request waited `waited` in the alias's queue for capacity.
    pub(super) fn queued(&mut self, waited: Duration) {
        self.tally.queue_wait += waited;
    }

    /// Upstream attempts so far.
    pub(super) fn attempts(&self) -> u32 {
        self.tally.attempts
    }

    pub(super) fn metrics(&self) -> &ProxyMetrics {
        &self.metrics
    }

    /// Whether attributes on the server span are kept; asked once, after routing (the
    /// sampler has decided by then), so an unsampled request computes none.
    fn traced(&mut self) -> bool {
        let span = &self.span;
        *self.recorded.get_or_insert_with(|| trace::recording(span))
    }

    /// The response head goes to the client. `error` is the `error.type` to record:
    /// keyrelay's error code, or the status of an upstream failure passed through.
    pub(super) fn answered(&mut self, status: u16, endpoint: Option<&Arc<Endpoint>>, error: Option<String>) {
        let at = self.started.elapsed();
        if self.traced() {
            let error = error.or_else(|| (status >= 500).then(|| status.to_string()));
            trace::head(&self.span, status, error, status >= 500);
            if let Some(endpoint) = endpoint {
                trace::answered_by(&self.span, endpoint, self.tally.attempts);
            }
        }
        if !self.model_label.is_empty() {
            let m = &self.metrics;
            ProxyMetrics::observe_model(&m.request_latency, &self.model_label, at);
            if self.tally.queue_wait > Duration::ZERO {
                ProxyMetrics::observe_model(&m.queue_wait, &self.model_label, self.tally.queue_wait);
            }
            let own = at.saturating_sub(self.tally.upstream).saturating_sub(self.tally.queue_wait);
            ProxyMetrics::observe_model(&m.added_latency, &self.model_label, own);
        }
        self.head = Some(Head { status, endpoint: endpoint.cloned(), at });
    }

    /// The relayed body ended (or was dropped): what it told about tokens, the model
    /// that answered, and for streams when the answering attempt started and when its
    /// first chunk came.
    pub(super) fn body_done(
        &mut self,
        usage: Option<Usage>,
        cost_usd: Option<f64>,
        model: Option<String>,
        first_chunk: Option<(Instant, Instant)>,
        complete: bool,
    ) {
        if self.traced() {
            let endpoint = self.head.as_ref().and_then(|h| h.endpoint.as_ref());
            let model = model.or_else(|| endpoint.map(|e| e.deployment.upstream_model.clone()));
            // The server span counts from the client's request, the histogram from the attempt.
            let since_arrival = first_chunk.map(|(_, at)| at - self.started);
            trace::body_done(&self.span, usage, cost_usd, model.as_deref(), since_arrival);
        }
        let endpoint = self.head.as_ref().and_then(|h| h.endpoint.as_ref());
        if let (Some((sent, at)), Some(endpoint)) = (first_chunk, endpoint) {
            let m = &self.metrics.time_to_first_chunk;
            ProxyMetrics::observe(m, &endpoint.id.alias, &endpoint.id.deployment, at - sent);
        }
        self.body = Some(BodyEnd { usage, cost_usd, complete });
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        if self.head.is_none() && self.traced() {
            trace::head(&self.span, 499, Some("client_closed".to_owned()), false);
        }
        let endpoint = self.head.as_ref().and_then(|h| h.endpoint.as_deref());
        let (key, deployment) = endpoint.map_or_else(
            || (empty_label(), empty_label()),
            |e| (Arc::clone(&e.id.key_name), Arc::clone(&e.id.deployment)),
        );
        let (status, class) = match &self.head {
            Some(head) => (head.status, status_class(head.status)),
            None => (499, "cancelled"),
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels { model: self.model_label.clone(), deployment, key, status_class: class })
            .inc();
        if status == 429 {
            self.metrics.client_rate_limited.get_or_create(&ModelLabels { model: self.model_label.clone() }).inc();
        }
        let usage = self.body.as_ref().and_then(|b| b.usage);
        AccessLine {
            model: self.alias.as_deref(),
            key: endpoint.map(Endpoint::key_name),
            deployment: endpoint.map(|e| e.deployment.name.as_str()),
            status,
            attempts: self.tally.attempts,
            latency_ms: self.head.as_ref().map(|h| ms(h.at)),
            duration_ms: ms(duration),
            input_tokens: usage.map(|u| u.input),
            output_tokens: usage.map(|u| u.output),
            cost_usd: self.body.as_ref().and_then(|b| b.cost_usd),
            complete: self.body.as_ref().is_none_or(|b| b.complete) && self.head.is_some(),
        }
        .log();
    }
}

/// Milliseconds, to a tenth.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}
