//! Metrics recorded on the request path: per-request outcomes, retries, and latency
//! histograms. Everything per key (attempts, 429s, tokens, cooldown, breaker, in flight)
//! is not counted here a second time: the admin port reads it from the endpoints'
//! own state at scrape time.
//!
//! Label values are bounded by the config: a model alias that is not configured is
//! recorded as `""`, never as the client's string, and no label holds a path or an id.
//! They are the snapshot's shared strings (`Arc<str>`), so labelling a request's
//! series allocates nothing.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// `keyrelay_requests_total` labels: which alias, and which deployment and key
/// answered (`""` when keyrelay answered itself).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub model: Arc<str>,
    pub deployment: Arc<str>,
    pub key: Arc<str>,
    /// `2xx`, `4xx`, `5xx`..., or `cancelled` when the client left first.
    pub status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub model: Arc<str>,
    /// `rate_limited`, `upstream_5xx`, `connect_error` or `timeout`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    pub model: Arc<str>,
    pub deployment: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: Arc<str>,
}

/// `keyrelay_probes_total` labels: token-free key checks, never client requests.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    /// `rotation` (a changed key value's pre-flight) or `health` (active health check).
    pub kind: &'static str,
    /// `accepted`, `refused`, `out_of_credits`, `unreachable` or `inconclusive`.
    pub outcome: &'static str,
}

/// `keyrelay_key_rotations_total` labels.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RotationLabels {
    /// `accepted` (probe passed), `rejected` (refused: the old value serves on),
    /// `unreachable` (switched after the bound) or `unverified` (the probe's answer
    /// said nothing about the key: switched).
    pub outcome: &'static str,
}

pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The request path's instruments. Cheap to clone handles live inside; one instance
/// per running proxy, registered with its admin port's registry.
#[derive(Debug, Clone)]
pub struct ProxyMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub retries: Family<RetryLabels, Counter>,
    /// 429s the client got, keyrelay's own (every key busy) or passed through: the
    /// rate limiting keyrelay did not absorb, which the app sees.
    pub client_rate_limited: Family<ModelLabels, Counter>,
    /// Time from sending an attempt to its response head.
    pub upstream_latency: Histograms<DeploymentLabels>,
    /// Time to the response head that keyrelay itself spent: the total minus upstream
    /// attempts and queue waits.
    pub added_latency: Histograms<ModelLabels>,
    /// Time to the response head, all included.
    pub request_latency: Histograms<ModelLabels>,
    pub queue_wait: Histograms<ModelLabels>,
    /// Streams: from sending the attempt to the first body chunk.
    pub time_to_first_chunk: Histograms<DeploymentLabels>,
    /// Key probes (rotation pre-flight, health checks): apart from `requests`.
    pub probes: Family<ProbeLabels, Counter>,
    /// Key value changes decided by the rotation pre-flight.
    pub key_rotations: Family<RotationLabels, Counter>,
}

fn upstream_buckets() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0])
}

fn added_buckets() -> Histogram {
    Histogram::new([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0])
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        ProxyMetrics {
            requests: Family::default(),
            retries: Family::default(),
            client_rate_limited: Family::default(),
            upstream_latency: Family::new_with_constructor(upstream_buckets),
            added_latency: Family::new_with_constructor(added_buckets),
            request_latency: Family::new_with_constructor(upstream_buckets),
            queue_wait: Family::new_with_constructor(upstream_buckets),
            time_to_first_chunk: Family::new_with_constructor(upstream_buckets),
            probes: Family::default(),
            key_rotations: Family::default(),
        }
    }
}

impl ProxyMetrics {
    /// Adds these instruments to `registry` (prefixed `keyrelay_` by it).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "Client requests by model, the deployment and key that answered, and status class",
            self.requests.clone(),
        );
        registry.register(
            "probes",
            "Token-free key probes (rotation pre-flight, health checks) by kind and outcome; not requests",
            self.probes.clone(),
        );
        registry.register(
            "key_rotations",
            "Changed key values by what the pre-flight probe decided",
            self.key_rotations.clone(),
        );
        registry.register("retries", "Attempts sent after a failed one, by the failure's reason", self.retries.clone());
        registry.register(
            "client_rate_limited",
            "429 answers that reached the client (keyrelay's own when every key is busy, or a provider's)",
            self.client_rate_limited.clone(),
        );
        let s = Unit::Seconds;
        registry.register_with_unit(
            "upstream_latency",
            "Time from sending an attempt upstream to its response head",
            s.clone(),
            self.upstream_latency.clone(),
        );
        registry.register_with_unit(
            "added_latency",
            "Time keyrelay itself added before the response head (excludes upstream attempts and queue waits)",
            s.clone(),
            self.added_latency.clone(),
        );
        registry.register_with_unit(
            "request_latency",
            "Time from a client request's arrival to its response head",
            s.clone(),
            self.request_latency.clone(),
        );
        registry.register_with_unit(
            "queue_wait",
            "Time requests waited for a key with capacity",
            s.clone(),
            self.queue_wait.clone(),
        );
        registry.register_with_unit(
            "time_to_first_chunk",
            "Streams: time from sending the attempt to the first body chunk",
            s,
            self.time_to_first_chunk.clone(),
        );
    }

    pub fn observe(histograms: &Histograms<DeploymentLabels>, model: &Arc<str>, deployment: &Arc<str>, d: Duration) {
        let labels = DeploymentLabels { model: Arc::clone(model), deployment: Arc::clone(deployment) };
        histograms.get_or_create(&labels).observe(d.as_secs_f64());
    }

    pub fn observe_model(histograms: &Histograms<ModelLabels>, model: &Arc<str>, d: Duration) {
        histograms.get_or_create(&ModelLabels { model: Arc::clone(model) }).observe(d.as_secs_f64());
    }
}

/// The `""` label value (keyrelay answered itself; a model that is not configured).
pub fn empty_label() -> Arc<str> {
    static EMPTY: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(""));
    Arc::clone(&EMPTY)
}

/// `2xx` ... `5xx` for a status code.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
