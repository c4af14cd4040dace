//! Failover: try endpoints in the order the route gives, over the alias and then its
//! fallbacks, until one answers with something worth passing to the client.
//!
//! A retry is only possible while no byte of the response has reached the client, so
//! the decision is made on the status line alone; the body of a successful or
//! non-retryable response is then relayed as it streams.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::time::Instant;

use super::body::{full, ProxyBody, Relay};
use super::error::ProxyError;
use super::inbound::{Api, Inbound};
use super::server::ProxyState;
use super::upstream;
use crate::pool::{Endpoint, Snapshot};
use crate::provider::{ratelimit, ProviderKind};

/// Error bodies of retryable responses are read to find retry hints, up to this size.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// How one attempt ended, when it did not produce a response to relay.
enum Failure {
    /// A retryable status; kept whole so it can be returned if it is the last.
    Status {
        parts: http::response::Parts,
        body: Bytes,
        key: String,
        deployment: String,
    },
    Connect,
    Timeout,
}

/// Routes one request and returns the response for the client.
pub(super) async fn forward(state: &ProxyState, snapshot: &Snapshot, inbound: Inbound) -> Response<ProxyBody> {
    let mut attempts = 0u32;
    match try_endpoints(state, snapshot, &inbound, &mut attempts).await {
        Ok(response) => response,
        Err(e) => {
            let mut response = e.into_response();
            if attempts > 0 {
                response.headers_mut().insert("x-keyrelay-attempts", HeaderValue::from(attempts));
            }
            response
        }
    }
}

async fn try_endpoints(
    state: &ProxyState,
    snapshot: &Snapshot,
    inbound: &Inbound,
    attempts: &mut u32,
) -> Result<Response<ProxyBody>, ProxyError> {
    let primary = snapshot.route(&inbound.alias).ok_or_else(|| ProxyError::UnknownModel(inbound.alias.clone()))?;
    let usable = |e: &Endpoint| serves(&inbound.api, e.deployment.provider);
    let chain = std::iter::once(primary).chain(primary.settings.fallbacks.iter().filter_map(|a| snapshot.route(a)));
    if !chain.clone().any(|r| r.endpoints.iter().any(|e| usable(e))) {
        return Err(ProxyError::NoDeploymentForApi { alias: inbound.alias.clone(), api: inbound.api.describe() });
    }

    let settings = &snapshot.server;
    let deadline = Instant::now() + settings.request_timeout;
    let mut last: Option<Failure> = None;
    let mut earliest_recovery: Option<std::time::Instant> = None;

    for route in chain {
        let candidates =
            route.candidates(usable, settings.region.as_deref(), std::time::Instant::now(), &mut rand::rng());
        if candidates.is_empty() {
            earliest_recovery = earliest_recovery.into_iter().chain(route.earliest_recovery(usable)).min();
            continue;
        }
        let budget = 1 + route.settings.num_retries as usize;
        for endpoint in candidates.into_iter().take(budget) {
            let now = Instant::now();
            if now >= deadline {
                return Err(last_failure_to_error(last));
            }
            *attempts += 1;
            let budget = settings.attempt_timeout.map_or(deadline - now, |t| t.min(deadline - now));
            match attempt(state, inbound, &endpoint, budget, settings.request_timeout).await {
                Ok(response) => return Ok(with_keyrelay_headers(response, &endpoint, *attempts)),
                Err(failure) => {
                    note_failure(&failure, &endpoint, route.settings.allowed_fails, route.settings.cooldown);
                    tracing::debug!(alias = %inbound.alias, key = %endpoint.key_name(), deployment = %endpoint.deployment.name, reason = failure.reason(), "attempt failed, trying next endpoint");
                    last = Some(failure);
                }
            }
        }
    }
    if *attempts == 0 {
        let retry_after = earliest_recovery
            .map(|t| t.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(Duration::from_secs(1));
        return Err(ProxyError::AllCoolingDown { alias: inbound.alias.clone(), retry_after });
    }
    match last {
        Some(Failure::Status { mut parts, body, key, deployment }) => {
            // The body may have been cut at ERROR_BODY_LIMIT: let hyper recount it.
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let mut response = Response::from_parts(parts, full(body));
            set_headers(&mut response, &key, &deployment, *attempts);
            Ok(response)
        }
        other => Err(last_failure_to_error(other)),
    }
}

fn last_failure_to_error(last: Option<Failure>) -> ProxyError {
    match last {
        Some(Failure::Connect) => ProxyError::UpstreamConnect,
        _ => ProxyError::UpstreamTimeout,
    }
}

/// Whether a deployment of `provider` can serve requests of this API family.
fn serves(api: &Api, provider: ProviderKind) -> bool {
    match api {
        Api::OpenAi => true,
        Api::AnthropicMessages => provider == ProviderKind::Anthropic,
        Api::GeminiNative { .. } => provider == ProviderKind::Gemini,
    }
}

/// One upstream attempt. `Ok` is a response to relay; `Err` means try the next one.
async fn attempt(
    state: &ProxyState,
    inbound: &Inbound,
    endpoint: &Arc<Endpoint>,
    budget: Duration,
    idle: Duration,
) -> Result<Response<ProxyBody>, Failure> {
    let guard = endpoint.state.begin();
    let request = upstream::request_for(inbound, endpoint).map_err(|e| {
        tracing::error!(deployment = %endpoint.deployment.name, error = %e, "could not build upstream request");
        Failure::Connect
    })?;
    let started = Instant::now();
    let response = match tokio::time::timeout(budget, state.client.request(request)).await {
        Err(_) => return Err(Failure::Timeout),
        Ok(Err(e)) => {
            tracing::debug!(deployment = %endpoint.deployment.name, error = %e, connect = e.is_connect(), "upstream transport error");
            return Err(Failure::Connect);
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if is_retryable(status) {
        let (parts, body) = response.into_parts();
        let left = budget.saturating_sub(started.elapsed());
        let body = match tokio::time::timeout(left, Limited::new(body, ERROR_BODY_LIMIT).collect()).await {
            Ok(Ok(collected)) => collected.to_bytes(),
            _ => Bytes::new(),
        };
        return Err(Failure::Status {
            parts,
            body,
            key: endpoint.key_name().to_owned(),
            deployment: endpoint.deployment.name.clone(),
        });
    }
    if status.is_success() {
        endpoint.state.record_success();
    }
    let (mut parts, body) = response.into_parts();
    upstream::strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, ProxyBody::new(Relay::new(body, idle, guard))))
}

/// Statuses that mean "this endpoint, not this request, is the problem".
fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// Updates endpoint health after a failed attempt.
fn note_failure(failure: &Failure, endpoint: &Endpoint, allowed_fails: u32, default_cooldown: Duration) {
    let now = std::time::Instant::now();
    match failure {
        Failure::Status { parts, body, .. } if parts.status == StatusCode::TOO_MANY_REQUESTS => {
            let report = ratelimit::parse(&parts.headers, SystemTime::now());
            let cooldown =
                report.cooldown().or_else(|| ratelimit::gemini_retry_delay(body)).unwrap_or(default_cooldown);
            endpoint.state.record_rate_limited(cooldown, now);
        }
        _ => endpoint.state.record_failure(allowed_fails, default_cooldown, now),
    }
}

impl Failure {
    fn reason(&self) -> &'static str {
        match self {
            Failure::Status { parts, .. } if parts.status == StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            Failure::Status { .. } => "upstream_5xx",
            Failure::Connect => "connect_error",
            Failure::Timeout => "timeout",
        }
    }
}

fn with_keyrelay_headers(mut response: Response<ProxyBody>, endpoint: &Endpoint, attempts: u32) -> Response<ProxyBody> {
    set_headers(&mut response, endpoint.key_name(), &endpoint.deployment.name, attempts);
    response
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
