//! The mock's shared state: key table with limiters, fault queues, request log, stats.
//! One mutex, never held across an await, so handlers never contend for long.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::faults::FaultQueues;
use super::limits::{Limiter, Quota};
use super::{Fault, HeaderStyle, KeyLimit, KeyStats, MockConfig, MockStats, RecordedRequest};

/// Which counter a response bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    RateLimited,
    Unauthorized,
    Error,
}

/// Result of checking a request's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// A configured key, with its 1-based index.
    Known(usize),
    /// Not configured, but `accept_any_key` is on.
    Any,
    Missing,
    Unknown,
}

#[derive(Debug)]
struct Inner {
    keys: HashMap<String, Limiter>,
    /// Index per key name ever added; stable across remove/add.
    indices: HashMap<String, usize>,
    faults: FaultQueues,
    requests: Vec<RecordedRequest>,
    stats: BTreeMap<String, KeyStats>,
    streams_aborted: usize,
    latency: Duration,
}

impl Inner {
    fn add_key(&mut self, key: &str, limit: KeyLimit) {
        let next = self.indices.len() + 1;
        self.indices.entry(key.to_string()).or_insert(next);
        self.keys.insert(key.to_string(), Limiter::new(limit));
    }

    fn stats_mut(&mut self, key: Option<&str>) -> &mut KeyStats {
        self.stats.entry(key.unwrap_or_default().to_string()).or_default()
    }
}

/// Shared between the [`super::MockProvider`] handle and every connection task.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) style: HeaderStyle,
    pub(crate) stream_chunks: usize,
    pub(crate) stream_interval: Duration,
    pub(crate) accept_any_key: bool,
    pub(crate) accept_no_key: bool,
    pub(crate) models: Vec<String>,
    /// TCP connections accepted (and open) on the mock's listener.
    pub(crate) connections: std::sync::Arc<keyrelay::http::ConnectionStats>,
    /// Key checks received, per key.
    pub(crate) probes: super::probes::ProbeLog,
    inner: Mutex<Inner>,
}

impl Shared {
    pub(crate) fn new(config: MockConfig) -> Self {
        let mut inner = Inner {
            keys: HashMap::new(),
            indices: HashMap::new(),
            faults: FaultQueues::default(),
            requests: Vec::new(),
            stats: BTreeMap::new(),
            streams_aborted: 0,
            latency: config.latency,
        };
        for (key, limit) in &config.keys {
            inner.add_key(key, *limit);
        }
        Shared {
            style: config.style,
            stream_chunks: config.stream_chunks,
            stream_interval: config.stream_interval,
            accept_any_key: config.accept_any_key,
            accept_no_key: config.accept_no_key,
            models: config.models,
            connections: Default::default(),
            probes: Default::default(),
            inner: Mutex::new(inner),
        }
    }

    /// A panic elsewhere must not wedge the mock: take the data as it is.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs a request; returns its 1-based sequence number (used in response ids).
    pub(crate) fn record(&self, req: RecordedRequest) -> u64 {
        let mut inner = self.lock();
        inner.requests.push(req);
        u64::try_from(inner.requests.len()).unwrap_or(u64::MAX)
    }

    /// Consumes the fault for a request carrying `key`, counting it.
    pub(crate) fn take_fault(&self, key: Option<&str>) -> Option<Fault> {
        let mut inner = self.lock();
        let fault = inner.faults.take(key)?;
        inner.stats_mut(key).faults += 1;
        Some(fault)
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    pub(crate) fn authorize(&self, key: Option<&str>) -> Auth {
        let Some(key) = key else {
            return if self.accept_no_key { Auth::Any } else { Auth::Missing };
        };
        let inner = self.lock();
        match (inner.keys.contains_key(key), inner.indices.get(key)) {
            (true, Some(index)) => Auth::Known(*index),
            _ if self.accept_any_key => Auth::Any,
            _ => Auth::Unknown,
        }
    }

    /// Counts a request of `tokens` against `key`'s limit, or refuses it. Keys without
    /// a limiter (accepted by `accept_any_key`) are always admitted, with no quota.
    pub(crate) fn admit(&self, key: Option<&str>, tokens: u64) -> Result<Quota, Quota> {
        let mut inner = self.lock();
        match key.and_then(|k| inner.keys.get_mut(k)) {
            Some(limiter) => limiter.admit(Instant::now(), tokens),
            None => Ok(Quota::default()),
        }
    }

    /// The key's quota without counting (for injected 429s).
    pub(crate) fn peek_quota(&self, key: Option<&str>) -> Option<Quota> {
        let inner = self.lock();
        key.and_then(|k| inner.keys.get(k)).map(|l| l.peek(Instant::now()))
    }

    pub(crate) fn count(&self, key: Option<&str>, outcome: Outcome) {
        let mut inner = self.lock();
        let stats = inner.stats_mut(key);
        match outcome {
            Outcome::Ok => stats.ok += 1,
            Outcome::RateLimited => stats.rate_limited += 1,
            Outcome::Unauthorized => stats.unauthorized += 1,
            Outcome::Error => stats.errors += 1,
        }
    }

    pub(crate) fn stream_aborted(&self, key: Option<&str>) {
        let mut inner = self.lock();
        inner.streams_aborted += 1;
        inner.stats_mut(key).aborted_streams += 1;
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    pub(crate) fn requests_for_key(&self, key: &str) -> usize {
        let probe =
            |r: &RecordedRequest| r.method == "GET" && (r.path.ends_with("/models") || r.path.ends_with("/key"));
        self.lock().requests.iter().filter(|r| r.key.as_deref() == Some(key) && !probe(r)).count()
    }

    pub(crate) fn push_fault(&self, key: Option<&str>, fault: Fault) {
        self.lock().faults.push(key, fault);
    }

    pub(crate) fn set_standing_fault(&self, key: Option<&str>, fault: Option<Fault>) {
        self.lock().faults.set_standing(key, fault);
    }

    pub(crate) fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    pub(crate) fn set_key_limit(&self, key: &str, limit: KeyLimit) {
        let mut inner = self.lock();
        match inner.keys.get_mut(key) {
            Some(limiter) => limiter.set_limit(limit),
            None => inner.add_key(key, limit),
        }
    }

    pub(crate) fn add_key(&self, key: &str, limit: KeyLimit) {
        self.lock().add_key(key, limit);
    }

    pub(crate) fn remove_key(&self, key: &str) {
        self.lock().keys.remove(key);
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    pub(crate) fn stats(&self) -> MockStats {
        let mut per_key = self.lock().stats.clone();
        for (key, probes) in self.probes.counts() {
            per_key.entry(key).or_default().probes = probes;
        }
        MockStats { per_key }
    }

    pub(crate) fn streams_aborted(&self) -> usize {
        self.lock().streams_aborted
    }
}
