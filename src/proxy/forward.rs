//! Failover: try endpoints in the order the route gives, over the alias and then its
//! fallbacks, until one answers with something worth passing to the client; when no
//! endpoint has capacity, wait in the alias's queue for the earliest reset.
//!
//! [`route`] decides what to try and when to wait; each try is one
//! [`attempt`](super::attempt::attempt), which also teaches the endpoint's state what
//! it learned. The request's [`Exchange`] goes along and counts attempts, retries and
//! waits; [`respond`] turns the end of it into the client's response.

use std::future::Future;
use std::time::{Duration, Instant};

use http::{Response, StatusCode};

use super::attempt::{attempt, Answer, Failure, RouteContext};
use super::body::ProxyBody;
use super::error::ProxyError;
use super::exchange::Exchange;
use super::inbound::Inbound;
use super::per_deployment::PerDeployment;
use super::respond::respond;
use super::serves::{no_deployment, usable};
use super::state::ProxyState;
use crate::pool::{Demand, Endpoint, Pick, Route, Snapshot};
use crate::provider::refusal::KeyRefusal;

/// How a run of attempts ended: the answer for the client, or the last failure
/// (`None`: nothing was sent, no endpoint had capacity).
type Outcome = Result<Answer, Option<Failure>>;

/// Routes one request and returns the response for the client. `exchange` ends with
/// the response: now, or with the relayed body.
///
/// Not an `async fn`, which would keep `inbound` and `exchange` twice in the future (as
/// captured and as locals): 770 bytes more for every request in flight.
#[allow(clippy::manual_async_fn, reason = "an `async fn` keeps its arguments twice")]
pub(super) fn forward<'a>(
    state: &'a ProxyState,
    snapshot: &'a Snapshot,
    inbound: Inbound,
    mut exchange: Exchange,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
    async move {
        exchange.routed(&inbound, snapshot.route(&inbound.alias).map(|r| &r.alias));
        let result = route(state, snapshot, &inbound, &mut exchange).await;
        respond(exchange, result, snapshot.server.request_timeout)
    }
}

/// The alias's chain (it, then its fallbacks), and for a context-window or
/// content-policy error the fallbacks of that kind; the answer, or why there is none.
async fn route(
    state: &ProxyState,
    snapshot: &Snapshot,
    inbound: &Inbound,
    exchange: &mut Exchange,
) -> Result<Answer, ProxyError> {
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
    outcome.or_else(|last| conclude(inbound, &request.demand, &ran, last))
}

/// Passes over `chain` until one answers, nothing more can be tried, or the wait for
/// capacity ends.
async fn run(request: &RouteContext<'_>, chain: &[&Route], exchange: &mut Exchange) -> Outcome {
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
        if !chain[0].queue.waiting_above(priority) {
            match one_pass(request, chain, &mut budget, &mut per_deployment, exchange).await {
                Ok(answer) => return Ok(answer),
                Err(Some(failure)) => {
                    // A rate-limited or refused key is out for now; another may serve.
                    let look_again = failure.is_rate_limit() || matches!(failure, Failure::Refused { .. });
                    last = Some(failure);
                    if !look_again || !inbound.replayable() || budget.iter().all(|&left| left == 0) {
                        break;
                    }
                }
                Err(None) => {}
            }
        }
        if refused_everywhere(chain, usable).is_some() {
            break;
        }
        // Every endpoint is cooling down or out of quota: wait for the earliest reset.
        let demand = &request.demand;
        let next = || chain.iter().filter_map(|r| r.next_capacity(usable, demand, Instant::now())).min();
        let waiting = Instant::now();
        if place.is_none() {
            place = chain[0].queue.join_as(request.deadline.into(), priority);
        }
        let go_on = match &place {
            Some(p) => p.wait_for(next).await,
            None => false,
        };
        exchange.queued(waiting.elapsed());
        if !go_on {
            break;
        }
    }
    Err(last)
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
) -> Outcome {
    let inbound = request.inbound;
    let server = &request.snapshot.server;
    let usable = |e: &Endpoint| usable(inbound, e);
    let mut last = None;
    for (route, left) in chain.iter().zip(budget.iter_mut()) {
        if *left == 0 {
            continue;
        }
        let pick = Pick {
            now: Instant::now(),
            region: server.region.as_deref(),
            session: request.session,
            demand: request.demand,
        };
        let mut excluded = Vec::new();
        let candidates = route.candidates_explained(usable, &pick, &mut rand::rng(), &mut excluded);
        exchange.considered(&candidates, &excluded, pick.now);
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
                return Err(Some(last.unwrap_or(Failure::Timeout)));
            }
            // The rest of a streamed form went with an earlier attempt.
            if !inbound.replayable() {
                return Err(last);
            }
            // Admitted and reserved in one step: another request may have taken the
            // room this one saw a moment ago. Not an attempt: nothing was sent.
            let need = endpoint.need(&request.demand, reserve);
            let Ok(guard) = endpoint.state.reserve(&endpoint.limits(), &need, now) else { continue };
            *left -= 1;
            per_deployment.record(&endpoint.deployment);
            match attempt(request, route, &endpoint, guard, exchange).await {
                Ok(answer) => return Ok(answer),
                // The same prompt fails the same way on every endpoint of the alias.
                Err(failure @ Failure::Special(..)) => return Err(Some(failure)),
                Err(failure) => last = Some(failure),
            }
        }
    }
    Err(last)
}

/// What the client gets when no attempt produced an answer to relay.
fn conclude(inbound: &Inbound, demand: &Demand, chain: &[&Route], last: Option<Failure>) -> Result<Answer, ProxyError> {
    let usable = |e: &Endpoint| usable(inbound, e);
    match last {
        // A streamed body that was sent cannot go elsewhere: even a 429 is the answer.
        Some(Failure::Status(failed))
            if failed.parts.status != StatusCode::TOO_MANY_REQUESTS || !inbound.replayable() =>
        {
            Ok(failed.into_answer())
        }
        Some(Failure::Special(_, failed)) => Ok(failed.into_answer()),
        Some(Failure::Connect) => Err(ProxyError::UpstreamConnect),
        Some(Failure::Timeout) => Err(ProxyError::UpstreamTimeout),
        Some(Failure::Status(_) | Failure::Refused { .. }) | None => {
            if let Some(refused) = refused_everywhere(chain, usable) {
                return Err(ProxyError::KeysRefused { alias: inbound.alias.clone(), refused });
            }
            let now = Instant::now();
            let next = chain.iter().filter_map(|r| r.next_capacity(usable, demand, now)).min();
            let retry_after = next.map_or(Duration::from_secs(1), |t| t.saturating_duration_since(now));
            Err(ProxyError::AllCoolingDown { alias: inbound.alias.clone(), retry_after })
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
