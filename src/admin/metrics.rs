//! `/metrics`: Prometheus text (OpenMetrics), all names prefixed `keyrelay_`.
//!
//! Per-key series are read at scrape time from the serving snapshot's endpoint state,
//! which the request path keeps anyway (attempts, 429s, refusals, tokens, cooldown,
//! breaker, in flight), so nothing is counted twice on the hot path. A counter restarts from 0 when
//! its endpoint gets fresh state (its key's value changed): Prometheus' `rate()` treats
//! that as a reset. Labels are the alias (`model`), `deployment` and the key's *name*.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Health;
use crate::http::ConnectionStats;
use crate::pool::breaker::BreakerState;
use crate::pool::{Availability, Counters, Endpoint, Snapshot, StateView};
use crate::provider::refusal::KeyRefusal;
use crate::telemetry::metrics::ProxyMetrics;

/// The registry `/metrics` encodes: the request path's instruments plus the
/// snapshot collector.
pub(super) fn registry(
    store: Arc<ArcSwap<Snapshot>>,
    health: Arc<Health>,
    metrics: &ProxyMetrics,
    listeners: &[(&'static str, Arc<ConnectionStats>)],
) -> Registry {
    let mut registry = Registry::with_prefix("keyrelay");
    metrics.register(&mut registry);
    registry.register_collector(Box::new(SnapshotCollector { store, health }));
    registry.register_collector(Box::new(ListenerCollector { listeners: listeners.to_vec() }));
    registry
}

/// Connections per listener, read from the server loop's counters at scrape time.
#[derive(Debug)]
struct ListenerCollector {
    listeners: Vec<(&'static str, Arc<ConnectionStats>)>,
}

impl Collector for ListenerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        type Read = fn(&ConnectionStats) -> u64;
        let counters: [(&str, &str, Read); 2] = [
            ("connections_accepted", "Connections accepted and served by this listener", |s| s.accepted()),
            ("connections_refused", "Connections closed at once because the listener's cap was reached", |s| {
                s.refused()
            }),
        ];
        for (name, help, read) in counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (listener, stats) in &self.listeners {
                ConstCounter::new(read(stats)).encode(metric.encode_family(&[("listener", *listener)])?)?;
            }
        }
        let help = "Connections open on this listener now";
        let mut metric = encoder.encode_descriptor("connections_open", help, None, MetricType::Gauge)?;
        for (listener, stats) in &self.listeners {
            let open = i64::try_from(stats.open()).unwrap_or(i64::MAX);
            ConstGauge::new(open).encode(metric.encode_family(&[("listener", *listener)])?)?;
        }
        Ok(())
    }
}

/// The text body for a scrape.
pub(super) fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// Whether a scraper asked for the Prometheus text format (0.0.4) and not for
/// OpenMetrics: older scrapers and `promtool check metrics` read only that one.
/// Prometheus itself asks for OpenMetrics first; no `Accept` gets OpenMetrics too.
pub(super) fn wants_text_format(headers: &http::HeaderMap) -> bool {
    let accept =
        headers.get_all(http::header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
}

/// The OpenMetrics body in the Prometheus text format: a counter's `HELP` and `TYPE`
/// name its samples' `_total` name, and there is no `UNIT` or `# EOF` line. The
/// samples themselves read the same in both.
pub(super) fn to_text_format(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for line in openmetrics.lines() {
        if let Some((name, "counter")) = line.strip_prefix("# TYPE ").and_then(|rest| rest.split_once(' ')) {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find(|p| line.starts_with(p));
        match meta.and_then(|p| Some((p, line[p.len()..].split_once(' ')?))) {
            Some((prefix, (name, rest))) if counters.contains(name) => {
                out.push_str(&format!("{prefix}{name}_total {rest}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

struct SnapshotCollector {
    store: Arc<ArcSwap<Snapshot>>,
    health: Arc<Health>,
}

impl fmt::Debug for SnapshotCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotCollector").finish_non_exhaustive()
    }
}

/// One endpoint, read once per scrape.
struct Row<'a> {
    endpoint: &'a Endpoint,
    view: StateView,
    available: bool,
    cooldown_left: f64,
    now: Instant,
    forecast: crate::pool::Forecast,
}

impl Row<'_> {
    fn labels(&self) -> [(&str, &str); 3] {
        let e = self.endpoint;
        [("model", &*e.id.alias), ("deployment", e.deployment.name.as_str()), ("key", e.key_name())]
    }

    fn counters(&self) -> &Counters {
        &self.endpoint.state.counters
    }
}

type CounterOf = fn(&Counters) -> &std::sync::atomic::AtomicU64;

/// Per-key counters: name, help, which field.
const COUNTERS: [(&str, &str, CounterOf); 11] = [
    ("upstream_attempts", "Attempts sent upstream with this key", |c| &c.attempts),
    ("upstream_successes", "2xx answers with this key", |c| &c.successes),
    ("upstream_rate_limited", "429 answers with this key", |c| &c.rate_limited),
    ("upstream_failures", "5xx answers, connect errors and timeouts with this key", |c| &c.failures),
    (
        "upstream_unauthorized",
        "Answers saying this key is invalid or revoked (it is then out until a probe works)",
        |c| &c.unauthorized,
    ),
    ("upstream_out_of_credits", "Answers saying this key's account is out of credits or over its spend limit", |c| {
        &c.out_of_credits
    }),
    ("cooldowns", "Cooldowns started or extended for this key", |c| &c.cooldowns),
    ("breaker_opens", "Times this key's circuit breaker opened", |c| &c.breaker_opens),
    ("input_tokens", "Input (prompt) tokens reported by responses to this key", |c| &c.input_tokens),
    ("output_tokens", "Output (completion) tokens reported by responses to this key", |c| &c.output_tokens),
    ("ratelimit_headers_malformed", "Rate-limit headers from the provider that could not be parsed", |c| {
        &c.malformed_headers
    }),
];

type GaugeOf = fn(&Row<'_>) -> Option<f64>;

/// Per-key gauges: name, help, value (`None`: no sample for this key).
const GAUGES: [(&str, &str, GaugeOf); 14] = [
    ("in_flight", "Requests in flight with this key", |r| Some(f64::from(r.view.in_flight))),
    ("available", "1 if this key can take a request now", |r| Some(f64::from(u8::from(r.available)))),
    ("cooling_down", "1 while this key cools down after a 429", |r| Some(f64::from(u8::from(r.cooldown_left > 0.0)))),
    ("cooldown_remaining_seconds", "Seconds left of this key's cooldown", |r| Some(r.cooldown_left)),
    ("key_disabled", "1 while the provider refuses this key (why: key_refusal)", |r| {
        Some(f64::from(u8::from(r.view.refused.is_some())))
    }),
    ("key_next_probe_seconds", "Seconds until a refused key is tried again", |r| {
        r.view.refused.map(|x| x.probe_at.saturating_duration_since(r.now).as_secs_f64())
    }),
    ("requests_last_minute", "Requests sent with this key in the last minute", |r| {
        Some(r.view.requests_last_minute as f64)
    }),
    ("tokens_last_minute", "Tokens used with this key in the last minute", |r| Some(r.view.tokens_last_minute as f64)),
    ("quota_remaining_requests", "Requests left as the provider last reported", |r| {
        r.view.remaining_requests.map(|v| v as f64)
    }),
    ("quota_remaining_tokens", "Tokens left as the provider last reported", |r| {
        r.view.remaining_tokens.map(|v| v as f64)
    }),
    ("latency_ewma_seconds", "Moving average of time to response head with this key", |r| {
        r.view.latency.map(|d| d.as_secs_f64())
    }),
    (
        "key_exhaustion_seconds",
        "Predicted seconds until this key's tightest limit runs dry at the last minute's rate",
        |r| r.forecast.exhausted_in.map(|d| d.as_secs_f64()),
    ),
    ("key_room_seconds", "Predicted seconds until this key has room for a request again (0: now)", |r| {
        r.forecast.room_in.map(|d| d.as_secs_f64())
    }),
    ("key_reserved_tokens", "Tokens reserved by requests in flight with this key, not yet settled", |r| {
        Some(r.forecast.reserved_tokens as f64)
    }),
];

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snapshot = self.store.load();
        let now = Instant::now();
        let rows: Vec<Row<'_>> = snapshot
            .routes()
            .flat_map(|route| &route.endpoints)
            .map(|endpoint| {
                let view = endpoint.state.view(now);
                let cooldown_left = view.cooldown_until.map_or(0.0, |u| u.saturating_duration_since(now).as_secs_f64());
                let available = matches!(endpoint.availability(now), Availability::Ready { .. });
                let forecast = endpoint.state.forecast(now);
                Row { endpoint, view, available, cooldown_left, now, forecast }
            })
            .collect();

        let generation = snapshot.generation;
        let help = "Generation of the serving configuration (1 at start, +1 per applied reload)";
        ConstGauge::new(generation as i64).encode(encoder.encode_descriptor(
            "snapshot_generation",
            help,
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(generation.saturating_sub(1)).encode(encoder.encode_descriptor(
            "config_reloads",
            "Configuration reloads applied since start",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(self.health.reload_failures()).encode(encoder.encode_descriptor(
            "config_reload_failures",
            "Configuration reloads rejected since start (the previous configuration kept serving)",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(crate::telemetry::log_lines_dropped()).encode(encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because the log writer's queue was full (whatever reads stderr fell behind)",
            None,
            MetricType::Counter,
        )?)?;

        let shared = &self.health.shared;
        let help =
            "1 while the shared state (Redis) answers; 0 while keyrelay serves on local state or none is configured";
        ConstGauge::new(i64::from(shared.is_up())).encode(encoder.encode_descriptor(
            "shared_state_up",
            help,
            None,
            MetricType::Gauge,
        )?)?;
        let help = "Lease requests Redis did not answer within shared.timeout (the key's requests then went out on local state)";
        ConstCounter::new(shared.lease_timeouts()).encode(encoder.encode_descriptor(
            "shared_state_lease_timeouts",
            help,
            None,
            MetricType::Counter,
        )?)?;

        for (name, help, field) in COUNTERS {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for row in &rows {
                let value = field(row.counters()).load(std::sync::atomic::Ordering::Relaxed);
                ConstCounter::new(value).encode(metric.encode_family(&row.labels())?)?;
            }
        }
        let help = "What this key's answers cost in USD: their reported tokens times the model's price (config, else built-in)";
        let mut metric = encoder.encode_descriptor("cost_usd", help, None, MetricType::Counter)?;
        for row in &rows {
            ConstCounter::new(row.endpoint.state.history.cost_usd_total())
                .encode(metric.encode_family(&row.labels())?)?;
        }
        for (name, help, value) in GAUGES {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for row in &rows {
                if let Some(v) = value(row) {
                    ConstGauge::new(v).encode(metric.encode_family(&row.labels())?)?;
                }
            }
        }
        let help = "1 for why the provider refuses this key (key_invalid, out_of_credits), 0 for the other";
        let mut metric = encoder.encode_descriptor("key_refusal", help, None, MetricType::Gauge)?;
        for row in &rows {
            let current = row.view.refused.map(|r| r.reason);
            for reason in KeyRefusal::ALL {
                let [m, d, k] = row.labels();
                let labels = [m, d, k, ("reason", reason.as_str())];
                ConstGauge::new(i64::from(current == Some(reason))).encode(metric.encode_family(&labels)?)?;
            }
        }
        let help = "1 while the provider refuses this key's new value in the Secret and the previous value serves on";
        let mut metric = encoder.encode_descriptor("key_rotation_rejected", help, None, MetricType::Gauge)?;
        for row in &rows {
            let rejected = matches!(row.endpoint.rotation, Some(crate::pool::Rotation::Rejected { .. }));
            ConstGauge::new(i64::from(rejected)).encode(metric.encode_family(&row.labels())?)?;
        }
        let help = "1 while this key's new value in the Secret is being probed and the previous value serves";
        let mut metric = encoder.encode_descriptor("key_rotation_pending", help, None, MetricType::Gauge)?;
        for row in &rows {
            let pending = matches!(row.endpoint.rotation, Some(crate::pool::Rotation::Pending { .. }));
            ConstGauge::new(i64::from(pending)).encode(metric.encode_family(&row.labels())?)?;
        }
        let help = "1 for this key's circuit breaker state (closed, open, half_open), 0 for the others";
        let mut metric = encoder.encode_descriptor("breaker_state", help, None, MetricType::Gauge)?;
        for row in &rows {
            let current = breaker_word(&row.view.breaker);
            for state in ["closed", "open", "half_open"] {
                let [m, d, k] = row.labels();
                let labels = [m, d, k, ("state", state)];
                ConstGauge::new(i64::from(state == current)).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// How `/metrics` and `/status` name a breaker state.
pub(super) fn breaker_word(state: &BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open { .. } => "open",
        BreakerState::HalfOpen { .. } => "half_open",
    }
}
