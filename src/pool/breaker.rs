//! A circuit breaker per endpoint: N failures (5xx, connect errors, timeouts) within a
//! sliding window open it; after the open period exactly one probe request is let
//! through (half-open); its success closes the breaker, its failure opens it again.
//!
//! Pure state: every method takes `now`, so tests drive time by hand.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::backoff::later;

/// Failures older than this no longer count towards opening the breaker (LiteLLM's
/// `allowed_fails` is per minute).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug, Clone)]
pub struct Breaker {
    state: BreakerState,
    failures: VecDeque<Instant>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { state: BreakerState::Closed, failures: VecDeque::new() }
    }
}

impl Breaker {
    /// The state as seen at `now` (an expired open period reads as half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            BreakerState::Open { until } if until <= now => BreakerState::HalfOpen { probing: false },
            other => other,
        }
    }

    /// Whether a request may be sent now.
    pub fn allows(&self, now: Instant) -> bool {
        !matches!(self.state(now), BreakerState::Open { .. } | BreakerState::HalfOpen { probing: true })
    }

    /// When the breaker will let a request through again, if it is open.
    pub fn open_until(&self, now: Instant) -> Option<Instant> {
        match self.state(now) {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }

    /// A request starts. Returns true if it is the half-open probe.
    pub fn on_start(&mut self, now: Instant) -> bool {
        if let BreakerState::HalfOpen { probing: false } = self.state(now) {
            self.state = BreakerState::HalfOpen { probing: true };
            return true;
        }
        false
    }

    /// The endpoint answered (any status that is not its own failure).
    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed;
        self.failures.clear();
    }

    /// The endpoint failed. Returns true if this opened the breaker.
    pub fn on_failure(&mut self, now: Instant, allowed_fails: u32, open_for: Duration) -> bool {
        if let BreakerState::HalfOpen { .. } = self.state(now) {
            self.state = BreakerState::Open { until: later(now, open_for) };
            return true;
        }
        if let BreakerState::Open { .. } = self.state {
            return false;
        }
        self.failures.push_back(now);
        while self.failures.front().is_some_and(|&t| now.saturating_duration_since(t) > FAILURE_WINDOW) {
            self.failures.pop_front();
        }
        if self.failures.len() >= allowed_fails.max(1) as usize {
            self.failures.clear();
            self.state = BreakerState::Open { until: later(now, open_for) };
            return true;
        }
        false
    }

    /// The probe ended without an outcome (client went away): let another probe try.
    pub fn on_abandoned_probe(&mut self) {
        if let BreakerState::HalfOpen { probing: true } = self.state {
            self.state = BreakerState::HalfOpen { probing: false };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_n_failures_in_the_window_only() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        assert!(!b.on_failure(t0, 3, OPEN));
        assert!(!b.on_failure(t0 + Duration::from_secs(61), 3, OPEN), "old failure expired");
        assert!(!b.on_failure(t0 + Duration::from_secs(62), 3, OPEN));
        assert!(b.allows(t0 + Duration::from_secs(62)));
        assert!(b.on_failure(t0 + Duration::from_secs(63), 3, OPEN));
        assert!(!b.allows(t0 + Duration::from_secs(64)));
    }

    #[test]
    fn half_open_lets_one_probe_through_then_closes_or_reopens() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.on_failure(t0, 1, OPEN);
        let later = t0 + OPEN;
        assert_eq!(b.state(later), BreakerState::HalfOpen { probing: false });
        assert!(b.allows(later));
        assert!(b.on_start(later));
        assert!(!b.allows(later), "only one probe at a time");
        assert!(!b.on_start(later));
        b.on_failure(later, 1, OPEN);
        assert_eq!(b.state(later), BreakerState::Open { until: later + OPEN });

        let again = later + OPEN;
        assert!(b.on_start(again));
        b.on_success();
        assert_eq!(b.state(again), BreakerState::Closed);
        assert!(b.allows(again));
    }

    #[test]
    fn abandoned_probe_frees_the_slot() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.on_failure(t0, 1, OPEN);
        assert!(b.on_start(t0 + OPEN));
        b.on_abandoned_probe();
        assert!(b.allows(t0 + OPEN));
    }
}
