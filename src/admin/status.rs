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
use super::{AdminState, Health};
use crate::pool::breaker::BreakerState;
use crate::pool::refused::Refused;
use crate::pool::{Availability, Endpoint, Rotation, Route, StateView};
use crate::provider::refusal::KeyRefusal;

pub(super) fn status(state: &AdminState) -> Value {
    let snapshot = state.store.load();
    let health = &state.health;
    let now = Instant::now();
    let models: Vec<Value> = snapshot.routes().map(|route| model(route, now)).collect();
    let cost_usd: f64 = models.iter().filter_map(|m| m["cost_usd"].as_f64()).sum();
    json!({
        "generation": snapshot.generation,
        "ready": health.is_ready(),
        "reload": {
            "failures": health.reload_failures(),
            "last_error": health.last_error(),
            "restart_required": health.restart_note(),
            "recent": recent_reloads(health, now),
        },
        "cost_usd": usd(cost_usd),
        "builtin_prices_as_of": crate::cost::BUILTIN_PRICES_AS_OF,
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
    let cost_usd: f64 = endpoints.iter().filter_map(|e| e["cost_usd"].as_f64()).sum();
    json!({
        "cost_usd": usd(cost_usd),
        "model": settings.alias,
        "strategy": settings.strategy.as_str(),
        "num_retries": settings.num_retries,
        "fallbacks": settings.fallbacks,
        "available_endpoints": available,
        "required_regions": settings.required_regions,
        "health_check_interval_seconds": settings.health_check_interval.map(secs),
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
        "region": e.deployment.region,
        // The Secret holds a new value that does not serve (yet): see `rotation`.
        "rotation_rejected": matches!(e.rotation, Some(Rotation::Rejected { .. })),
        "rotation": e.rotation.map(|r| rotation(r, now)),
        "in_flight": view.in_flight,
        "requests_last_minute": view.requests_last_minute,
        "tokens_last_minute": view.tokens_last_minute,
        "limits": { "rpm": limits.rpm, "tpm": limits.tpm, "max_inflight": limits.max_inflight },
        "remaining_requests": view.remaining_requests,
        "remaining_tokens": view.remaining_tokens,
        "quota_reset_seconds": view.quota_reset_at.filter(|&t| t > now).map(|t| secs(t - now)),
        "tokens": { "input": load(&counters.input_tokens), "output": load(&counters.output_tokens) },
        "cost_usd": usd(e.state.history.cost_usd_total()),
        "price": price(e),
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

/// The price its answers are costed at, per million tokens, and where it came from.
fn price(e: &Endpoint) -> Value {
    let Some((price, source)) = crate::cost::price_for(&e.deployment, &e.deployment.upstream_model) else {
        return Value::Null;
    };
    json!({
        "input_per_million": usd(price.input_per_token * 1e6),
        "output_per_million": usd(price.output_per_token * 1e6),
        "source": source.as_str(),
    })
}

/// Dollars to 10^-9, as the history counts them.
fn usd(v: f64) -> f64 {
    (v * 1e9).round() / 1e9
}

/// A changed key value that does not serve: being probed, or refused by the provider
/// (the previous value serves meanwhile).
fn rotation(r: Rotation, now: Instant) -> Value {
    match r {
        Rotation::Pending { since } => json!({
            "state": r.as_str(),
            "since_seconds": secs(now.saturating_duration_since(since)),
        }),
        Rotation::Rejected { reason, at } => json!({
            "state": r.as_str(),
            "reason": reason.as_str(),
            "since_seconds": secs(now.saturating_duration_since(at)),
        }),
    }
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

/// The recent reloads, newest first, with times relative to now.
fn recent_reloads(health: &Health, now: Instant) -> Value {
    let events = health.recent_reloads().into_iter().map(|e| {
        json!({
            "ago_seconds": (now.saturating_duration_since(e.at).as_secs_f64() * 1000.0).round() / 1000.0,
            "ok": e.ok,
            "generation": e.generation,
            "message": e.message,
        })
    });
    Value::Array(events.collect())
}
