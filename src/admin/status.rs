//! `/status`: the serving snapshot as JSON, for operators and the `/ui` page: per
//! alias and endpoint, whether it takes traffic and if not why, cooldown, breaker, the
//! provider's refusal of the key, in flight, recent rpm/tpm, the provider's last
//! reported quota, tokens and latency.
//!
//! Times are relative (seconds from now), so the output needs no clock of its own.
//! Keys appear by name only.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::metrics::breaker_word;
use super::AdminState;
use crate::pool::breaker::BreakerState;
use crate::pool::refused::Refused;
use crate::pool::{Availability, Endpoint, Route, StateView};
use crate::provider::refusal::KeyRefusal;

pub(super) fn status(state: &AdminState) -> Value {
    let snapshot = state.store.load();
    let health = &state.health;
    let now = Instant::now();
    let models: Vec<Value> = snapshot.routes().map(|route| model(route, now)).collect();
    json!({
        "generation": snapshot.generation,
        "ready": health.is_ready(),
        "reload": {
            "failures": health.reload_failures(),
            "last_error": health.last_error(),
            "restart_required": health.restart_note(),
        },
        "shared": shared(&health.shared),
        "models": models,
    })
}

/// `null` unless a Redis is configured.
fn shared(status: &crate::shared::Status) -> Value {
    let text = status.text();
    let Some(redis) = text.redis else { return Value::Null };
    json!({
        "redis": redis,
        "up": status.is_up(),
        "error": text.error,
        "rounds": status.rounds.load(std::sync::atomic::Ordering::Relaxed),
        "failed_rounds": status.failed_rounds.load(std::sync::atomic::Ordering::Relaxed),
        "lease_timeouts": status.lease_timeouts(),
    })
}

fn model(route: &Route, now: Instant) -> Value {
    let settings = &route.settings;
    let endpoints: Vec<Value> = route.endpoints.iter().map(|e| endpoint(e, now)).collect();
    let available = endpoints.iter().filter(|e| e["available"] == Value::Bool(true)).count();
    json!({
        "model": settings.alias,
        "strategy": settings.strategy.as_str(),
        "num_retries": settings.num_retries,
        "fallbacks": settings.fallbacks,
        "available_endpoints": available,
        "endpoints": endpoints,
        // Requests in the waiting room now, and the share of each key kept from low priority.
        "waiting": route.queue.waiting(),
        "reserve": settings.queue.reserve(),
    })
}

fn endpoint(e: &Endpoint, now: Instant) -> Value {
    let view = e.state.view(now);
    let availability = e.availability(now);
    let counters = &e.state.counters;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let limits = e.limits();
    let forecast = e.state.forecast(now);
    let breaker_open_seconds = match view.breaker {
        BreakerState::Open { until } => Some(secs(until.saturating_duration_since(now))),
        _ => None,
    };
    json!({
        "deployment": e.deployment.name,
        "provider": e.deployment.provider.as_str(),
        "upstream_model": e.deployment.upstream_model,
        "key": e.key_name(),
        "health": health_word(&view, &availability),
        "available": matches!(availability, Availability::Ready { .. }),
        "headroom": match availability {
            Availability::Ready { headroom } => Some((headroom * 1000.0).round() / 1000.0),
            Availability::Blocked { .. } => None,
        },
        "cooldown_seconds": view.cooldown_until.map(|u| secs(u.saturating_duration_since(now))),
        // The provider asked for a longer rest than `max_cooldown` allows.
        "cooldown_clamped": view.cooldown_clamped,
        "breaker": breaker_word(&view.breaker),
        "breaker_open_seconds": breaker_open_seconds,
        "refusal": view.refused.map(|r| refusal(&r, now)),
        "in_flight": view.in_flight,
        "requests_last_minute": view.requests_last_minute,
        "tokens_last_minute": view.tokens_last_minute,
        "limits": { "rpm": limits.rpm, "tpm": limits.tpm, "max_inflight": limits.max_inflight },
        "remaining_requests": view.remaining_requests,
        "remaining_tokens": view.remaining_tokens,
        "quota_reset_seconds": view.quota_reset_at.filter(|&t| t > now).map(|t| secs(t - now)),
        "tokens": { "input": load(&counters.input_tokens), "output": load(&counters.output_tokens) },
        "latency_ms": view.latency.map(ms),
        "time_to_first_chunk_ms": view.ttfb.map(ms),
        // The model of the key's limits, and where its use is heading.
        "forecast": {
            "exhausted_in_seconds": forecast.exhausted_in.map(secs),
            "room_in_seconds": forecast.room_in.map(secs),
            "reserved_tokens": forecast.reserved_tokens,
            "learned_burst": forecast.learned_burst,
            "learned_requests_per_second": forecast.learned_rate.map(|r| (r * 1000.0).round() / 1000.0),
        },
        "counters": {
            "attempts": load(&counters.attempts),
            "successes": load(&counters.successes),
            "rate_limited": load(&counters.rate_limited),
            "failures": load(&counters.failures),
            "unauthorized": load(&counters.unauthorized),
            "out_of_credits": load(&counters.out_of_credits),
            "cooldowns": load(&counters.cooldowns),
            "breaker_opens": load(&counters.breaker_opens),
        },
    })
}

/// Why and since when the provider refuses the key, and when it is tried again.
fn refusal(r: &Refused, now: Instant) -> Value {
    json!({
        "reason": r.reason.as_str(),
        "since_seconds": secs(now.saturating_duration_since(r.since)),
        "next_probe_seconds": secs(r.probe_at.saturating_duration_since(now)),
        "probing": r.probing,
        "refusals": r.refusals,
    })
}

/// One word for whether an endpoint takes traffic, and if not, the first reason.
fn health_word(view: &StateView, availability: &Availability) -> &'static str {
    if let Some(refused) = &view.refused {
        match refused.reason {
            KeyRefusal::Invalid => "refused",
            KeyRefusal::OutOfCredits => "out_of_credits",
        }
    } else if view.cooldown_until.is_some() {
        "cooling_down"
    } else if matches!(view.breaker, BreakerState::Open { .. }) {
        "breaker_open"
    } else if matches!(availability, Availability::Ready { .. }) {
        if matches!(view.breaker, BreakerState::HalfOpen { .. }) {
            "probing"
        } else {
            "ready"
        }
    } else {
        // Spent quota, rpm/tpm or max_inflight reached, or a half-open probe under way.
        "at_capacity"
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}
