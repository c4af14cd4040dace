//! An endpoint is one deployment reached with one key: the unit that is selected,
//! cooled down and counted.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Deployment;
use crate::provider::Auth;

/// Identifies an endpoint across reloads: state carries over when all three match and
/// the key's value is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointId {
    pub alias: String,
    pub deployment: String,
    pub key_name: String,
}

/// One deployment x key. Immutable apart from its shared [`EndpointState`].
#[derive(Debug)]
pub struct Endpoint {
    pub id: EndpointId,
    pub deployment: Arc<Deployment>,
    pub auth: Auth,
    /// Process-local hash of the key value, to tell a rotated key from the old one.
    pub key_fingerprint: u64,
    pub state: Arc<EndpointState>,
}

impl Endpoint {
    pub fn key_name(&self) -> &str {
        &self.id.key_name
    }

    /// Whether this endpoint may be tried now: not cooling down and under its
    /// concurrency cap.
    pub fn is_available(&self, now: Instant) -> bool {
        let under_cap = self.deployment.max_inflight.is_none_or(|max| self.state.in_flight() < max);
        under_cap && self.state.cooldown_until().is_none_or(|until| until <= now)
    }
}

/// Mutable health and counters of an endpoint, shared by every snapshot that contains
/// the same endpoint so a reload loses nothing.
#[derive(Debug, Default)]
pub struct EndpointState {
    in_flight: AtomicU32,
    health: Mutex<Health>,
    pub counters: Counters,
}

#[derive(Debug, Default)]
struct Health {
    cooldown_until: Option<Instant>,
    consecutive_failures: u32,
}

/// Monotonic totals, for status pages and the demo table.
#[derive(Debug, Default)]
pub struct Counters {
    pub attempts: AtomicU64,
    pub successes: AtomicU64,
    pub rate_limited: AtomicU64,
    pub failures: AtomicU64,
    pub cooldowns: AtomicU64,
}

impl EndpointState {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the returned guard is dropped (which, for
    /// a streamed response, is when the stream ends or the client goes away).
    pub fn begin(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(Arc::clone(self))
    }

    pub fn cooldown_until(&self) -> Option<Instant> {
        self.lock().cooldown_until
    }

    /// Rests the endpoint until `until`. A later deadline extends the cooldown; an
    /// earlier one never shortens it.
    pub fn cool_down_until(&self, until: Instant) {
        let mut h = self.lock();
        if h.cooldown_until.is_none_or(|current| current < until) {
            h.cooldown_until = Some(until);
            self.counters.cooldowns.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn record_success(&self) {
        self.counters.successes.fetch_add(1, Ordering::Relaxed);
        self.lock().consecutive_failures = 0;
    }

    pub fn record_rate_limited(&self, cooldown: Duration, now: Instant) {
        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        self.cool_down_until(now + cooldown);
    }

    /// Counts a 5xx or transport failure; after `allowed_fails` in a row the endpoint
    /// rests for `cooldown`.
    pub fn record_failure(&self, allowed_fails: u32, cooldown: Duration, now: Instant) {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        let mut h = self.lock();
        h.consecutive_failures += 1;
        if h.consecutive_failures >= allowed_fails.max(1) {
            h.consecutive_failures = 0;
            let until = now + cooldown;
            if h.cooldown_until.is_none_or(|c| c < until) {
                h.cooldown_until = Some(until);
                self.counters.cooldowns.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Health> {
        // Health holds plain values; a panic elsewhere cannot leave it inconsistent.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Decrements the in-flight count when dropped.
#[derive(Debug)]
pub struct InFlightGuard(Arc<EndpointState>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_extends_never_shortens() {
        let s = EndpointState::default();
        let now = Instant::now();
        s.cool_down_until(now + Duration::from_secs(10));
        s.cool_down_until(now + Duration::from_secs(2));
        assert_eq!(s.cooldown_until(), Some(now + Duration::from_secs(10)));
        s.cool_down_until(now + Duration::from_secs(20));
        assert_eq!(s.cooldown_until(), Some(now + Duration::from_secs(20)));
    }

    #[test]
    fn failures_cool_down_after_allowed_fails() {
        let s = EndpointState::default();
        let now = Instant::now();
        s.record_failure(2, Duration::from_secs(5), now);
        assert_eq!(s.cooldown_until(), None);
        s.record_failure(2, Duration::from_secs(5), now);
        assert_eq!(s.cooldown_until(), Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn in_flight_guard_counts() {
        let s = Arc::new(EndpointState::default());
        let g1 = s.begin();
        let g2 = s.begin();
        assert_eq!(s.in_flight(), 2);
        drop(g1);
        drop(g2);
        assert_eq!(s.in_flight(), 0);
    }
}
