//! What a probe (a token-free authenticated call made by [`crate::lifecycle`], not by
//! a request) tells an endpoint's health. It uses the same refused and breaker state
//! requests do, so the rest of the pool needs no second notion of "out", but it never
//! touches the request counters, windows or quota: probes are not traffic.

use std::time::{Duration, Instant};

use super::{EndpointState, Refused};
use crate::provider::refusal::KeyRefusal;

impl EndpointState {
    /// The provider accepted the key: back in rotation at once, whatever took it out.
    pub fn probe_accepted(&self) {
        let mut s = self.lock();
        s.breaker.on_success();
        s.rate_limited_streak = 0;
        if s.refused.take().is_some() {
            s.shared.on_refusal_cleared();
        }
    }

    /// The provider refused the key: out, as when a request is refused.
    pub fn probe_refused(&self, reason: KeyRefusal, now: Instant) {
        let mut s = self.lock();
        match &mut s.refused {
            // A standing refusal stays as it is: the health check, not a request,
            // decides when the key is back, and its schedule must not grow.
            Some(refused) if refused.reason == reason => {}
            Some(refused) => refused.again(reason, now),
            None => s.refused = Some(Refused::new(reason, now)),
        }
        s.shared.on_refused(reason);
    }

    /// The provider could not be reached: the breaker opens for `open_for`, so no
    /// request waits on a dead connection; a later accepted probe closes it.
    pub fn probe_unreachable(&self, open_for: Duration, now: Instant) {
        let mut s = self.lock();
        if s.breaker.on_failure(now, 1, open_for) {
            self.counters.breaker_opens.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Availability, Limits};
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn probes_take_a_key_out_and_bring_it_back_without_counting_as_requests() {
        let s = EndpointState::default();
        let now = Instant::now();
        let limits = Limits { rpm: Some(1), ..Limits::default() };
        s.probe_refused(KeyRefusal::Invalid, now);
        assert_eq!(s.availability(&limits, now), Availability::Blocked { until: None });
        s.probe_accepted();
        assert!(matches!(s.availability(&limits, now), Availability::Ready { .. }), "rpm 1 is not spent by probes");
        s.probe_unreachable(Duration::from_secs(30), now);
        assert!(matches!(s.availability(&limits, now), Availability::Blocked { until: Some(_) }));
        s.probe_accepted();
        assert!(matches!(s.availability(&limits, now), Availability::Ready { .. }));
        let c = &s.counters;
        let total = c.attempts.load(Ordering::Relaxed) + c.successes.load(Ordering::Relaxed);
        assert_eq!(total + c.unauthorized.load(Ordering::Relaxed) + c.failures.load(Ordering::Relaxed), 0);
    }
}
