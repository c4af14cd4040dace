//! One upstream attempt: send the request to one endpoint, read the answer's head,
//! and decide whether it is the client's answer or a failure another endpoint may
//! fix. Everything it learns (rate-limit headers, a 429, a refused key, a failure)
//! goes to the endpoint's state here, so the failover loop in [`super::forward`] only
//! chooses what to try next.
//!
//! A retry is only possible while no byte of the response has reached the client, so
//! the decision is made on the status line, and for statuses that may refuse the key
//! itself (401, 402, 403, ...) on the first bytes of the error body; the body of a
//! successful or non-retryable response is then relayed as it streams.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::StatusCode;

use super::body::Completion;
use super::exchange::Exchange;
use super::fallback_kind::FallbackKind;
use super::head::UpstreamBody;
use super::inbound::Inbound;
use super::state::ProxyState;
use super::trace::AttemptSpan;
use super::upstream;
use super::usage::UsageTap;
use crate::pool::{Demand, Endpoint, InFlightGuard, Route, Snapshot};
use crate::provider::ratelimit::{self, RateLimitReport};
use crate::provider::refusal::{self, KeyRefusal};
use crate::telemetry::metrics::ProxyMetrics;

/// Error bodies of retryable responses are read to find retry hints, and those that
/// may refuse the key to tell, up to this size.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// What stays the same for every attempt of one request.
pub(super) struct RouteContext<'a> {
    pub state: &'a ProxyState,
    pub snapshot: &'a Snapshot,
    pub inbound: &'a Inbound,
    pub session: Option<&'a str>,
    /// When the client's `request_timeout` runs out: no attempt or wait goes past it.
    pub deadline: Instant,
    /// Its size and priority, for admission.
    pub demand: Demand,
}

/// An upstream answer for the client.
pub(super) struct Answer {
    pub endpoint: Arc<Endpoint>,
    pub parts: http::response::Parts,
    pub body: AnswerBody,
}

pub(super) enum AnswerBody {
    /// Relayed as it streams; the completion ends the request with the body.
    Relay(UpstreamBody, Box<Completion>),
    /// An error body read whole (cut at [`ERROR_BODY_LIMIT`]), passed on as the
    /// provider said it when no other endpoint did better.
    Read(Bytes),
}

/// Why one attempt produced nothing to relay.
pub(super) enum Failure {
    /// A retryable status; kept in case it is the last.
    Status(Box<Rejected>),
    /// The provider refuses the key itself: it is out, another key may serve.
    Refused {
        status: StatusCode,
        reason: KeyRefusal,
    },
    Connect,
    Timeout,
    /// A client error that the alias's `context_window_fallbacks` or
    /// `content_policy_fallbacks` answer; kept in case none can.
    Special(FallbackKind, Box<Rejected>),
}

/// A failed upstream answer, read whole (it is small: an error body).
pub(super) struct Rejected {
    pub parts: http::response::Parts,
    pub body: Bytes,
    pub endpoint: Arc<Endpoint>,
    report: RateLimitReport,
    /// When the attempt went out: a 429 is read against the sends before it.
    sent: Instant,
}

impl Rejected {
    /// The answer passed on to the client. Its body may have been cut at
    /// [`ERROR_BODY_LIMIT`], so hyper recounts it.
    pub fn into_answer(self) -> Answer {
        let Rejected { mut parts, body, endpoint, .. } = self;
        parts.headers.remove(http::header::CONTENT_LENGTH);
        Answer { endpoint, parts, body: AnswerBody::Read(body) }
    }
}

/// One upstream attempt under its own client span; the endpoint's state learns from
/// it whatever happens. `Ok` is the client's answer; `Err` means try the next one.
pub(super) async fn attempt(
    request: &RouteContext<'_>,
    route: &Route,
    endpoint: &Arc<Endpoint>,
    guard: InFlightGuard,
    exchange: &mut Exchange,
) -> Result<Answer, Failure> {
    let mut span = exchange.attempt_started(request.inbound, endpoint);
    let started = Instant::now();
    let budget = time_budget(request, endpoint, started);
    let result = call(request, endpoint, budget, guard, &mut span, started, exchange.metrics()).await;
    exchange.attempt_ended(started.elapsed(), result.as_ref().err().map(Failure::reason));
    match result {
        Ok(mut answer) => {
            span.answered(answer.parts.status.as_u16());
            let stream = answer
                .parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("text/event-stream"));
            if let AnswerBody::Relay(_, completion) = &mut answer.body {
                completion.keep_attempt(span, stream);
            }
            Ok(answer)
        }
        Err(failure) => {
            span.failed(failure.status(), &failure.error_type());
            note_failure(&failure, endpoint, route);
            tracing::debug!(alias = %super::trace::clip(&request.inbound.alias), key = %endpoint.key_name(), deployment = %endpoint.deployment.name, reason = failure.reason(), "attempt failed, trying the next endpoint");
            Err(failure)
        }
    }
}

/// The attempt's own timeout (`stream_timeout` for streams, else `timeout`, else
/// `server.attempt_timeout`), never past the request's deadline.
fn time_budget(request: &RouteContext<'_>, endpoint: &Endpoint, now: Instant) -> Duration {
    let options = &endpoint.deployment.options;
    let own = if request.inbound.wants_stream() { options.stream_timeout.or(options.timeout) } else { options.timeout };
    let left = request.deadline.saturating_duration_since(now);
    own.or(request.snapshot.server.attempt_timeout).map_or(left, |t| t.min(left))
}

/// Sends the attempt and reads its head (and, for a retryable status or one that may
/// refuse the key, the first bytes of its body).
async fn call(
    request: &RouteContext<'_>,
    endpoint: &Arc<Endpoint>,
    budget: Duration,
    guard: InFlightGuard,
    span: &mut AttemptSpan,
    started: Instant,
    metrics: &ProxyMetrics,
) -> Result<Answer, Failure> {
    endpoint.state.history.on_attempt(started);
    let route = request.snapshot.route(&endpoint.id.alias);
    let upstream_model = match route {
        Some(route) => route.upstream_model(&endpoint.deployment, &request.inbound.alias),
        None => std::borrow::Cow::Borrowed(endpoint.deployment.upstream_model.as_str()),
    };
    // Built in a block, and the response taken apart at once: a value borrowed in an
    // `async fn` keeps its room in the future until its scope ends, and every request
    // in flight carries this future.
    let sent = {
        let mut upstream_request = upstream::request_for(request.inbound, endpoint, &upstream_model).map_err(|e| {
            tracing::error!(deployment = %endpoint.deployment.name, error = %e, "could not build the upstream request");
            Failure::Connect
        })?;
        span.inject(upstream_request.headers_mut());
        let client = request.snapshot.tls_client(&endpoint.deployment.options.tls).unwrap_or(&request.state.client);
        client.request(upstream_request)
    };
    let (mut parts, body) = match tokio::time::timeout(budget, sent).await {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(e)) => {
            tracing::debug!(deployment = %endpoint.deployment.name, error = %e, connect = e.is_connect(), "upstream transport error");
            return Err(Failure::Connect);
        }
        Ok(Ok(response)) => response.into_parts(),
    };
    let now = Instant::now();
    let latency = now - started;
    ProxyMetrics::observe(&metrics.upstream_latency, &endpoint.id.alias, &endpoint.id.deployment, latency);
    let bounds = route.map(|r| r.settings.cooldown_bounds).unwrap_or_default();
    let report = ratelimit::parse(&parts.headers, SystemTime::now(), bounds.ceiling);
    endpoint.state.on_response(&report, latency, now);
    endpoint.state.history.on_answer(now, latency, (&report).into());
    let status = parts.status;
    if status != StatusCode::TOO_MANY_REQUESTS {
        endpoint.state.learn_from_report(&report, now);
    }
    let body = if is_retryable(status) || refusal::may_refuse_key(status) {
        let left = budget.saturating_sub(started.elapsed());
        // Boxed: only error answers are read ahead, and unboxed its state would make
        // every request's future the larger.
        let (head, body) = Box::pin(UpstreamBody::read_head(body, ERROR_BODY_LIMIT, left)).await;
        if let Some(reason) = refusal::classify(status, &head) {
            tracing::warn!(key = %endpoint.key_name(), deployment = %endpoint.deployment.name, status = status.as_u16(), reason = reason.as_str(), "provider refused the key; trying another, and this one again later");
            let now = Instant::now();
            endpoint.state.record_refused(reason, now);
            endpoint.state.history.on_refused(now);
            return Err(Failure::Refused { status, reason });
        }
        let rejected = |parts| {
            let endpoint = Arc::clone(endpoint);
            Box::new(Rejected { parts, body: head.clone(), report, endpoint, sent: started })
        };
        if is_retryable(status) {
            return Err(Failure::Status(rejected(parts)));
        }
        if let Some(kind) = FallbackKind::classify(status, &head) {
            if route.is_some_and(|r| !kind.fallbacks(&r.settings).is_empty()) {
                return Err(Failure::Special(kind, rejected(parts)));
            }
        }
        // About this request only (a missing scope, a bad parameter): the client's.
        body
    } else {
        UpstreamBody::unread(body)
    };
    endpoint.state.record_success(status.is_success());
    upstream::strip_hop_by_hop(&mut parts.headers);
    let price = crate::cost::price_for(&endpoint.deployment, &upstream_model).map(|(price, _)| price);
    let tap = UsageTap::for_response(&parts.headers);
    let completion = Completion::new(Arc::clone(&endpoint.state), tap, started, guard).with_price(price);
    Ok(Answer { endpoint: Arc::clone(endpoint), parts, body: AnswerBody::Relay(body, Box::new(completion)) })
}

/// Statuses that mean "this endpoint, not this request, is the problem".
fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Updates endpoint health after a failed attempt.
fn note_failure(failure: &Failure, endpoint: &Endpoint, route: &Route) {
    let now = Instant::now();
    let settings = &route.settings;
    let bounds = settings.cooldown_bounds;
    match failure {
        Failure::Status(f) if f.parts.status == StatusCode::TOO_MANY_REQUESTS => {
            endpoint.state.learn_from_429(&f.report, f.sent, now);
            let hint = f.report.cooldown().or_else(|| ratelimit::gemini_retry_delay(&f.body, bounds.ceiling));
            endpoint.state.record_rate_limited(hint, settings.cooldown, bounds, now);
            endpoint.state.history.on_rate_limited(now);
        }
        // Recorded when the answer was read: a refusal is neither a rate limit nor a failure.
        Failure::Refused { .. } => {}
        // About the request, not the endpoint: it answered.
        Failure::Special(..) => endpoint.state.record_success(false),
        Failure::Status(_) | Failure::Connect | Failure::Timeout => {
            endpoint.state.record_failure(settings.allowed_fails, settings.cooldown, bounds, now);
            endpoint.state.history.on_failure(now);
        }
    }
}

impl Failure {
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, Failure::Status(f) if f.parts.status == StatusCode::TOO_MANY_REQUESTS)
    }

    /// The status of a failed answer, if there was one.
    fn status(&self) -> Option<u16> {
        match self {
            Failure::Status(f) | Failure::Special(_, f) => Some(f.parts.status.as_u16()),
            Failure::Refused { status, .. } => Some(status.as_u16()),
            Failure::Connect | Failure::Timeout => None,
        }
    }

    /// The trace's `error.type`: the status code, or what went wrong without one.
    fn error_type(&self) -> String {
        match self.status() {
            Some(status) => status.to_string(),
            None => self.reason().to_owned(),
        }
    }

    /// Why it failed, as the retry metric's `reason` and the next span's `retry_reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Status(f) if f.parts.status == StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            Failure::Status(_) => "upstream_5xx",
            Failure::Special(kind, _) => kind.reason(),
            Failure::Refused { reason, .. } => reason.as_str(),
            Failure::Connect => "connect_error",
            Failure::Timeout => "timeout",
        }
    }
}
