//! `/status/history`: each endpoint's last 15 minutes from its ring buffer
//! ([`crate::pool::history`]), as columns of numbers, oldest bucket first, for the
//! `/ui` charts. Also the short log of recent reloads that `/status` shows.
//!
//! Like `/status`, times are relative to now; keys appear by name only.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::AdminState;
use crate::pool::history::{self, History, Point};
use crate::pool::Endpoint;

pub(super) fn history(state: &AdminState) -> Value {
    let snapshot = state.store.load();
    let now = Instant::now();
    let models: Vec<Value> = snapshot
        .routes()
        .map(|route| {
            let endpoints: Vec<Value> = route.endpoints.iter().map(|e| endpoint(e, now)).collect();
            json!({ "model": route.settings.alias, "endpoints": endpoints })
        })
        .collect();
    json!({
        "bucket_seconds": history::BUCKET.as_secs(),
        "buckets": history::BUCKETS,
        "bytes_per_key": History::BYTES,
        "models": models,
    })
}

fn endpoint(e: &Endpoint, now: Instant) -> Value {
    let series = e.state.history.series(now);
    let column = |f: fn(&Point) -> Value| -> Value { series.points.iter().map(f).collect() };
    let ms = |d: Option<Duration>| d.map(|d| (d.as_secs_f64() * 10_000.0).round() / 10.0);
    let limits = e.limits();
    json!({
        "deployment": e.deployment.name,
        "key": e.key_name(),
        "limits": { "rpm": limits.rpm, "tpm": limits.tpm },
        "current_bucket_elapsed_seconds": secs(series.current_elapsed),
        "requests": column(|p| p.requests.into()),
        "rate_limited": column(|p| p.rate_limited.into()),
        "failures": column(|p| p.failures.into()),
        "refused": column(|p| p.refused.into()),
        "input_tokens": column(|p| p.input_tokens.into()),
        "output_tokens": column(|p| p.output_tokens.into()),
        "cost_usd": column(|p| json!(p.cost_usd)),
        "latency_p50_ms": series.points.iter().map(|p| json!(ms(p.latency_p50))).collect::<Value>(),
        "latency_p95_ms": series.points.iter().map(|p| json!(ms(p.latency_p95))).collect::<Value>(),
        "remaining_requests": column(|p| json!(p.remaining_requests)),
        "limit_requests": column(|p| json!(p.limit_requests)),
        "remaining_tokens": column(|p| json!(p.remaining_tokens)),
        "limit_tokens": column(|p| json!(p.limit_tokens)),
    })
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
