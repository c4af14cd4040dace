//! Key checks the mock received (`GET .../models`, OpenRouter's `GET .../key`): when,
//! per key, so tests can assert how often keyrelay probes each key, apart from
//! requests that carry traffic.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Most probe times kept per key: a test never needs more, and a runaway prober
/// cannot grow the mock without bound.
const KEPT_PER_KEY: usize = 10_000;

#[derive(Debug, Default)]
pub(crate) struct ProbeLog {
    times: Mutex<HashMap<String, Vec<Instant>>>,
}

impl ProbeLog {
    pub(crate) fn record(&self, key: Option<&str>) {
        let mut times = self.times.lock().unwrap_or_else(|e| e.into_inner());
        let list = times.entry(key.unwrap_or_default().to_owned()).or_default();
        if list.len() < KEPT_PER_KEY {
            list.push(Instant::now());
        }
    }

    /// When `key` was probed, oldest first.
    pub(crate) fn times(&self, key: &str) -> Vec<Instant> {
        self.times.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned().unwrap_or_default()
    }

    /// Probes per key.
    pub(crate) fn counts(&self) -> HashMap<String, usize> {
        self.times.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.len())).collect()
    }
}
