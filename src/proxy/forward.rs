//! Failover: try endpoints in the order the route gives, over the alias and then its
//! fallbacks, until one answers with something worth passing to the client; when no
//! endpoint has capacity, wait in the alias's queue for the earliest reset.
//!
//! A retry is only possible while no byte of the response has reached the client, so
//! the decision is made on the status line, and for statuses that may refuse the key
//! itself (401, 402, 403, ...) on the first bytes of the error body; the body of a
//! successful or non-retryable response is then relayed as it streams.
//!
//! The request's [`Exchange`] goes along: each attempt is a client span under its
//! server span, and it tallies attempts, retries and the time spent upstream and in
//! the queue (keyrelay's own added latency is what remains).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use tokio::time::Instant;

use super::body::{full, Completion, ProxyBody, Relay};
use super::error::ProxyError;
use super::exchange::Exchange;
use super::fallback_kind::FallbackKind;
use super::head::UpstreamBody;
use super::inbound::Inbound;
use super::per_deployment::PerDeployment;
use super::server::ProxyState;
use super::serves::{no_deployment, usable};
use super::trace::AttemptSpan;
use super::upstream;
use super::usage::UsageTap;
use crate::pool::{Demand, Endpoint, InFlightGuard, Pick, Route, Snapshot};
use crate::provider::ratelimit::{self, RateLimitReport};
use crate::provider::refusal::{self, KeyRefusal};
use crate::telemetry::metrics::{ProxyMetrics, RetryLabels};

/// Error bodies of retryable responses are read to find retry hints, and those that
/// may refuse the key to tell, up to this size.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// How one attempt ended, when it did not produce a response to relay.
enum Failure {
    /// A retryable status; kept whole so it can be returned if it is the last.
    Status(Box<FailedResponse>),
    /// The provider refuses the key itself: it is out, another key may serve.
    Refused {
        status: StatusCode,
        reason: KeyRefusal,
    },
    Connect,
    Timeout,
    /// A client error that the alias's `context_window_fallbacks` or
    /// `content_policy_fallbacks` answer; kept whole in case none can.
    Special(FallbackKind, Box<FailedResponse>),
}

/// A retryable upstream answer, read whole (it is small: an error body).
struct FailedResponse {
    parts: http::response::Parts,
    body: Bytes,
    report: RateLimitReport,
    endpoint: Arc<Endpoint>,
    /// When the attempt went out: a 429 is read against the sends before it.
    sent: std::time::Instant,
}

/// An upstream answer to relay as it streams.
struct Answer {
    endpoint: Arc<Endpoint>,
    parts: http::response::Parts,
    body: UpstreamBody,
    completion: Completion,
}

/// How one pass over the alias and its fallbacks ended.
enum Pass {
    Answered(Box<Answer>),
    Failed(Failure),
    /// No endpoint had capacity; nothing was sent.
    NoCapacity,
}

/// What routing produced for the client, short of keyrelay's own errors.
enum Routed {
    Relay(Box<Answer>),
    /// The last attempt's retryable failure (a 5xx), passed on as the provider said it.
    Failed(Box<FailedResponse>),
}

/// What stays the same for every attempt of one request.
struct RouteContext<'a> {
    state: &'a ProxyState,
    snapshot: &'a Snapshot,
    inbound: &'a Inbound,
    session: Option<&'a str>,
    deadline: Instant,
    /// Its size and priority, for admission.
    demand: Demand,
}

/// Routes one request and returns the response for the client. `exchange` ends with
/// the response: now, or with the relayed body.
pub(super) async fn forward(
    state: &ProxyState,
    snapshot: &Snapshot,
    inbound: Inbound,
    mut exchange: Exchange,
) -> Response<ProxyBody> {
    exchange.routed(&inbound, snapshot.route(&inbound.alias).map(|r| r.settings.alias.as_str()));
    match route(state, snapshot, &inbound, &mut exchange).await {
        Ok(Routed::Relay(answer)) => {
            let Answer { endpoint, parts, body, mut completion } = *answer;
            exchange.answered(parts.status.as_u16(), Some(&endpoint), None);
            let attempts = exchange.tally.attempts;
            completion.attach(exchange);
            let idle = snapshot.server.request_timeout;
            let mut response = Response::from_parts(parts, ProxyBody::new(Relay::new(body, idle, completion)));
            set_headers(&mut response, endpoint.key_name(), &endpoint.deployment.name, attempts);
            response
        }
        Ok(Routed::Failed(failed)) => {
            let FailedResponse { mut parts, body, endpoint, .. } = *failed;
            exchange.answered(parts.status.as_u16(), Some(&endpoint), None);
            // The body may have been cut at ERROR_BODY_LIMIT: let hyper recount it.
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let mut response = Response::from_parts(parts, full(body));
            set_headers(&mut response, endpoint.key_name(), &endpoint.deployment.name, exchange.tally.attempts);
            response
        }
        Err(e) => {
            exchange.answered(e.status().as_u16(), None, Some(e.code().to_owned()));
            let attempts = exchange.tally.attempts;
            let mut response = e.into_response();
            if attempts > 0 {
                response.headers_mut().insert("x-keyrelay-attempts", HeaderValue::from(attempts));
            }
            response
        }
    }
}

async fn route(
    state: &ProxyState,
    snapshot: &Snapshot,
    inbound: &Inbound,
    exchange: &mut Exchange,
) -> Result<Routed, ProxyError> {
    let primary = snapshot.route(&inbound.alias).ok_or_else(|| ProxyError::UnknownModel(inbound.alias.clone()))?;
    let chain: Vec<&Route> =
        std::iter::once(primary).chain(primary.settings.fallbacks.iter().filter_map(|a| snapshot.route(a))).collect();
    let usable = |e: &Endpoint| usable(inbound, e);
    if !chain.iter().any(|r| r.endpoints.iter().any(|e| usable(e))) {
        if primary.endpoints.is_empty() && !primary.settings.unservable.is_empty() {
            let reasons = primary.settings.unservable.clone();
            return Err(ProxyError::NotServable { alias: inbound.alias.clone(), reasons });
        }
        return Err(no_deployment(inbound, &chain));
    }
    let server = &snapshot.server;
    let request = RouteContext {
        state,
        snapshot,
        inbound,
        session: inbound.parts.headers.get(&server.session_header).and_then(|v| v.to_str().ok()),
        deadline: Instant::now() + server.request_timeout,
        demand: inbound.demand(),
    };
    let mut ran = chain;
    let mut outcome = run(&request, &ran, exchange).await;
    // A context-window or content-policy error: the alias's fallbacks of that kind,
    // once (their own such errors are the client's).
    if let Err(Some(Failure::Special(kind, failed))) = &outcome {
        let settings = snapshot.route(&failed.endpoint.id.alias).map(|r| &r.settings);
        let special: Vec<&Route> =
            settings.map_or(&[][..], |s| kind.fallbacks(s)).iter().filter_map(|a| snapshot.route(a)).collect();
        if inbound.replayable() && special.iter().any(|r| r.endpoints.iter().any(|e| usable(e))) {
            tracing::debug!(alias = %super::trace::clip(&inbound.alias), reason = kind.reason(), "taking the alias's fallbacks for this error");
            ran = special;
            outcome = run(&request, &ran, exchange).await;
        }
    }
    match outcome {
        Ok(answer) => Ok(Routed::Relay(answer)),
        Err(last) => conclude(inbound, &request.demand, &ran, last),
    }
}

/// Passes over `chain` until one answers, nothing more can be tried, or the wait for
/// capacity ends; `Err` holds the last failure, if any attempt was made.
async fn run(
    request: &RouteContext<'_>,
    chain: &[&Route],
    exchange: &mut Exchange,
) -> Result<Box<Answer>, Option<Failure>> {
    let inbound = request.inbound;
    let usable = |e: &Endpoint| usable(inbound, e);
    // The request's attempt budget: `1 + num_retries` for the alias and for each of
    // its fallbacks, spent over all passes. Waiting for a reset spends none of it.
    let mut budget: Vec<usize> = chain.iter().map(|r| (r.settings.num_retries as usize).saturating_add(1)).collect();
    let mut per_deployment = PerDeployment::default();
    let mut place = None;
    let mut last = None;
    let priority = request.demand.priority;
    loop {
        // Higher priorities waiting go first: this one waits behind them.
        let behind = chain[0].queue.waiting_above(priority);
        let pass = if behind {
            Pass::NoCapacity
        } else {
            one_pass(request, chain, &mut budget, &mut per_deployment, exchange).await
        };
        match pass {
            Pass::Answered(answer) => return Ok(answer),
            Pass::Failed(failure) => {
                // A rate-limited or refused key is out for now; another may serve.
                let look_again = failure.is_rate_limit() || matches!(failure, Failure::Refused { .. });
                last = Some(failure);
                if !look_again || !inbound.replayable() || budget.iter().all(|&left| left == 0) {
                    break;
                }
            }
            Pass::NoCapacity => {}
        }
        if refused_everywhere(chain, usable).is_some() {
            break;
        }
        // Every endpoint is cooling down or out of quota: wait for the earliest reset.
        let demand = &request.demand;
        let next = || chain.iter().filter_map(|r| r.next_capacity(usable, demand, std::time::Instant::now())).min();
        let waiting = Instant::now();
        if place.is_none() {
            place = chain[0].queue.join_as(request.deadline, priority);
        }
        let go_on = match &place {
            Some(p) => p.wait_for(next).await,
            None => false,
        };
        exchange.tally.queue_wait += waiting.elapsed();
        if !go_on {
            break;
        }
    }
    Err(last)
}

/// What the client gets when no attempt produced an answer to relay.
fn conclude(inbound: &Inbound, demand: &Demand, chain: &[&Route], last: Option<Failure>) -> Result<Routed, ProxyError> {
    let usable = |e: &Endpoint| usable(inbound, e);
    match last {
        // A streamed body that was sent cannot go elsewhere: even a 429 is the answer.
        Some(Failure::Status(failed))
            if failed.parts.status != StatusCode::TOO_MANY_REQUESTS || !inbound.replayable() =>
        {
            Ok(Routed::Failed(failed))
        }
        Some(Failure::Special(_, failed)) => Ok(Routed::Failed(failed)),
        Some(Failure::Connect) => Err(ProxyError::UpstreamConnect),
        Some(Failure::Timeout) => Err(ProxyError::UpstreamTimeout),
        _ => {
            if let Some(refused) = refused_everywhere(chain, usable) {
                return Err(ProxyError::KeysRefused { alias: inbound.alias.clone(), refused });
            }
            let now = std::time::Instant::now();
            let next = chain.iter().filter_map(|r| r.next_capacity(usable, demand, now)).min();
            let retry_after = next.map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now));
            Err(ProxyError::AllCoolingDown { alias: inbound.alias.clone(), retry_after })
        }
    }
}

/// Tries endpoints of each alias in the chain, in order, as far as the alias's share
/// of the request's attempt `budget` (`1 + num_retries`, less what earlier passes
/// spent) goes.
async fn one_pass(
    request: &RouteContext<'_>,
    chain: &[&Route],
    budget: &mut [usize],
    per_deployment: &mut PerDeployment,
    exchange: &mut Exchange,
) -> Pass {
    let inbound = request.inbound;
    let server = &request.snapshot.server;
    let usable = |e: &Endpoint| usable(inbound, e);
    let mut last = None;
    for (route, left) in chain.iter().zip(budget.iter_mut()) {
        if *left == 0 {
            continue;
        }
        let pick = Pick {
            now: std::time::Instant::now(),
            region: server.region.as_deref(),
            session: request.session,
            demand: request.demand,
        };
        let mut excluded = Vec::new();
        let candidates = route.candidates_explained(usable, &pick, &mut rand::rng(), &mut excluded);
        super::trace::considered(&exchange.span, &candidates, &excluded, pick.now);
        let reserve = route.settings.queue.reserve();
        for endpoint in candidates {
            if *left == 0 {
                break;
            }
            if !per_deployment.allows(&endpoint.deployment) {
                continue;
            }
            let now = Instant::now();
            if now >= request.deadline {
                return Pass::Failed(last.unwrap_or(Failure::Timeout));
            }
            // The rest of a streamed form went with an earlier attempt.
            if !inbound.replayable() {
                return last.map_or(Pass::NoCapacity, Pass::Failed);
            }
            // Admitted and reserved in one step: another request may have taken the
            // room this one saw a moment ago. Not an attempt: nothing was sent.
            let need = endpoint.need(&request.demand, reserve);
            let Ok(guard) = endpoint.state.reserve(&endpoint.limits(), &need, now.into_std()) else { continue };
            if let Some(reason) = exchange.tally.last_failure {
                let labels = RetryLabels { model: exchange.model_label().to_owned(), reason };
                exchange.metrics().retries.get_or_create(&labels).inc();
            }
            exchange.tally.attempts += 1;
            *left -= 1;
            per_deployment.record(&endpoint.deployment);
            let options = &endpoint.deployment.options;
            let own = if inbound.wants_stream() { options.stream_timeout.or(options.timeout) } else { options.timeout };
            let budget =
                own.or(server.attempt_timeout).map_or(request.deadline - now, |t| t.min(request.deadline - now));
            match attempt(request, &endpoint, budget, guard, exchange).await {
                Ok(answer) => return Pass::Answered(Box::new(answer)),
                Err(failure) => {
                    note_failure(&failure, &endpoint, route);
                    tracing::debug!(alias = %super::trace::clip(&inbound.alias), key = %endpoint.key_name(), deployment = %endpoint.deployment.name, reason = failure.reason(), "attempt failed, trying the next endpoint");
                    exchange.tally.last_failure = Some(failure.reason());
                    // The same prompt fails the same way on every endpoint of the alias.
                    if matches!(failure, Failure::Special(..)) {
                        return Pass::Failed(failure);
                    }
                    last = Some(failure);
                }
            }
        }
    }
    last.map_or(Pass::NoCapacity, Pass::Failed)
}

/// One upstream attempt, under its own client span. `Ok` is a response to relay;
/// `Err` means try the next one.
async fn attempt(
    request: &RouteContext<'_>,
    endpoint: &Arc<Endpoint>,
    budget: Duration,
    guard: InFlightGuard,
    exchange: &mut Exchange,
) -> Result<Answer, Failure> {
    let tally = &exchange.tally;
    let mut span = AttemptSpan::start(
        &exchange.span,
        request.inbound,
        endpoint,
        tally.attempts.saturating_sub(1),
        tally.last_failure,
    );
    let started = Instant::now();
    let result = call(request, endpoint, budget, guard, &mut span, started, exchange.metrics()).await;
    exchange.tally.upstream += started.elapsed();
    match result {
        Ok((parts, body, completion)) => {
            span.answered(parts.status.as_u16());
            let stream = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("text/event-stream"));
            let completion = completion.with_attempt(span, stream);
            Ok(Answer { endpoint: Arc::clone(endpoint), parts, body, completion })
        }
        Err(failure) => {
            span.failed(failure.status(), &failure.error_type());
            Err(failure)
        }
    }
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
) -> Result<(http::response::Parts, UpstreamBody, Completion), Failure> {
    endpoint.state.history.on_attempt(started.into_std());
    let route = request.snapshot.route(&endpoint.id.alias);
    let upstream_model = match route {
        Some(route) => route.upstream_model(&endpoint.deployment, &request.inbound.alias),
        None => std::borrow::Cow::Borrowed(endpoint.deployment.upstream_model.as_str()),
    };
    let mut upstream_request = upstream::request_for(request.inbound, endpoint, &upstream_model).map_err(|e| {
        tracing::error!(deployment = %endpoint.deployment.name, error = %e, "could not build the upstream request");
        Failure::Connect
    })?;
    span.inject(upstream_request.headers_mut());
    let client = request.snapshot.tls_client(&endpoint.deployment.options.tls).unwrap_or(&request.state.client);
    let response = match tokio::time::timeout(budget, client.request(upstream_request)).await {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(e)) => {
            tracing::debug!(deployment = %endpoint.deployment.name, error = %e, connect = e.is_connect(), "upstream transport error");
            return Err(Failure::Connect);
        }
        Ok(Ok(response)) => response,
    };
    let latency = started.elapsed();
    ProxyMetrics::observe(&metrics.upstream_latency, &endpoint.id.alias, &endpoint.deployment.name, latency);
    let bounds = route.map(|r| r.settings.cooldown_bounds).unwrap_or_default();
    let report = ratelimit::parse(response.headers(), SystemTime::now(), bounds.ceiling);
    endpoint.state.on_response(&report, latency, std::time::Instant::now());
    endpoint.state.history.on_answer(std::time::Instant::now(), latency, (&report).into());
    let status = response.status();
    if status != StatusCode::TOO_MANY_REQUESTS {
        endpoint.state.learn_from_report(&report, std::time::Instant::now());
    }
    let sent = started.into_std();
    let (mut parts, body) = response.into_parts();
    let body = if is_retryable(status) || refusal::may_refuse_key(status) {
        let left = budget.saturating_sub(started.elapsed());
        let (head, body) = UpstreamBody::read_head(body, ERROR_BODY_LIMIT, left).await;
        if let Some(reason) = refusal::classify(status, &head) {
            tracing::warn!(key = %endpoint.key_name(), deployment = %endpoint.deployment.name, status = status.as_u16(), reason = reason.as_str(), "provider refused the key; trying another, and this one again later");
            endpoint.state.record_refused(reason, std::time::Instant::now());
            endpoint.state.history.on_refused(std::time::Instant::now());
            return Err(Failure::Refused { status, reason });
        }
        if is_retryable(status) {
            let endpoint = Arc::clone(endpoint);
            return Err(Failure::Status(Box::new(FailedResponse { parts, body: head, report, endpoint, sent })));
        }
        let route = request.snapshot.route(&endpoint.id.alias);
        if let Some(kind) = FallbackKind::classify(status, &head) {
            if route.is_some_and(|r| !kind.fallbacks(&r.settings).is_empty()) {
                let endpoint = Arc::clone(endpoint);
                let failed = FailedResponse { parts, body: head, report, endpoint, sent };
                return Err(Failure::Special(kind, Box::new(failed)));
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
    let completion =
        Completion::new(Arc::clone(&endpoint.state), UsageTap::for_response(&parts.headers), started, guard)
            .with_price(price);
    Ok((parts, body, completion))
}

/// Statuses that mean "this endpoint, not this request, is the problem".
fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Updates endpoint health after a failed attempt.
fn note_failure(failure: &Failure, endpoint: &Endpoint, route: &Route) {
    let now = std::time::Instant::now();
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
        _ => {
            endpoint.state.record_failure(settings.allowed_fails, settings.cooldown, bounds, now);
            endpoint.state.history.on_failure(now);
        }
    }
}

impl Failure {
    fn is_rate_limit(&self) -> bool {
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
        match self {
            Failure::Status(f) | Failure::Special(_, f) => f.parts.status.as_u16().to_string(),
            Failure::Refused { status, .. } => status.as_u16().to_string(),
            Failure::Connect => "connect_error".to_owned(),
            Failure::Timeout => "timeout".to_owned(),
        }
    }

    fn reason(&self) -> &'static str {
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

/// When every endpoint of the chain that could serve this request is refused by its
/// provider: each refused key's name (once) and why.
fn refused_everywhere(chain: &[&Route], usable: impl Fn(&Endpoint) -> bool) -> Option<Vec<(String, KeyRefusal)>> {
    let mut refused = std::collections::BTreeMap::new();
    for endpoint in chain.iter().flat_map(|r| &r.endpoints).filter(|e| usable(e)) {
        refused.entry(endpoint.key_name()).or_insert(endpoint.state.refusal()?);
    }
    (!refused.is_empty()).then(|| refused.into_iter().map(|(name, reason)| (name.to_owned(), reason)).collect())
}

/// `x-keyrelay-key`, `x-keyrelay-deployment`, `x-keyrelay-attempts`: which key and
/// deployment answered, and after how many tries. Names only, never values.
fn set_headers<B>(response: &mut Response<B>, key: &str, deployment: &str, attempts: u32) {
    let headers = response.headers_mut();
    upstream::strip_hop_by_hop(headers);
    if let Ok(v) = HeaderValue::from_str(key) {
        headers.insert("x-keyrelay-key", v);
    }
    if let Ok(v) = HeaderValue::from_str(deployment) {
        headers.insert("x-keyrelay-deployment", v);
    }
    headers.insert("x-keyrelay-attempts", HeaderValue::from(attempts));
}
