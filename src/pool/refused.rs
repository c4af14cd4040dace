//! A key its provider refuses (invalid or revoked, or out of credits): out of rotation
//! until a probe shows it works again.
//!
//! When the wait is over, exactly one request is let through as the probe (half-open,
//! like the breaker): a 2xx brings the key back; another refusal takes it out again
//! for twice as long, up to a ceiling, so a dead key costs one failed-over attempt per
//! interval and not one per request. A probe that ends any other way (a 400 for the
//! client's own mistake, a 5xx, the client leaving) proved nothing: the next request
//! probes instead. A new secret value is a new endpoint state, so it is back at once.
//!
//! Pure state: every method takes `now`, so tests drive time by hand.

use std::time::{Duration, Instant};

use crate::provider::refusal::KeyRefusal;

/// The first wait before probing and its ceiling, per reason. An invalid key may come
/// back soon (a revoked key re-enabled, a provider's auth outage); credits come back
/// when someone pays, which takes longer, and every probe of an empty account costs
/// a failed attempt.
pub fn probe_intervals(reason: KeyRefusal) -> (Duration, Duration) {
    match reason {
        KeyRefusal::Invalid => (Duration::from_secs(60), Duration::from_secs(3600)),
        KeyRefusal::OutOfCredits => (Duration::from_secs(5 * 60), Duration::from_secs(6 * 3600)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub reason: KeyRefusal,
    /// The first refusal of this run (refusals since the key last worked).
    pub since: Instant,
    /// When the next request may probe the key.
    pub probe_at: Instant,
    /// The current wait between probes.
    pub interval: Duration,
    /// Refusals in this run, the first included.
    pub refusals: u32,
    /// A probe is under way.
    pub probing: bool,
}

impl Refused {
    pub fn new(reason: KeyRefusal, now: Instant) -> Refused {
        let (first, _) = probe_intervals(reason);
        Refused { reason, since: now, probe_at: later(now, first), interval: first, refusals: 1, probing: false }
    }

    /// The provider refused the key again. The probe's refusal doubles the wait; a
    /// request that was already in flight when the key was taken out changes nothing
    /// (it says what the first refusal said). A different reason starts its own
    /// schedule.
    pub fn again(&mut self, reason: KeyRefusal, now: Instant) {
        self.refusals = self.refusals.saturating_add(1);
        if reason != self.reason {
            *self = Refused { since: self.since, refusals: self.refusals, ..Refused::new(reason, now) };
            return;
        }
        if self.probing || now >= self.probe_at {
            let (_, ceiling) = probe_intervals(reason);
            self.interval = self.interval.saturating_mul(2).min(ceiling);
            self.probe_at = later(now, self.interval);
            self.probing = false;
        }
    }

    /// Whether a request may go out with this key now: the probe, when it is due and
    /// no other probe is under way.
    pub fn allows(&self, now: Instant) -> bool {
        !self.probing && now >= self.probe_at
    }

    /// A request goes out with the key; it is the probe if one is due.
    pub fn on_start(&mut self, now: Instant) {
        if self.allows(now) {
            self.probing = true;
        }
    }

    /// The probe ended without a verdict: the next request may probe.
    pub fn end_probe(&mut self) {
        self.probing = false;
    }
}

/// `now + d`, or `now` in the (theoretical) case the clock cannot go that far.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn waits_then_lets_exactly_one_probe_through() {
        let t0 = Instant::now();
        let mut r = Refused::new(KeyRefusal::Invalid, t0);
        assert!(!r.allows(t0));
        assert!(!r.allows(t0 + MIN - Duration::from_millis(1)));
        let due = t0 + MIN;
        assert!(r.allows(due));
        r.on_start(due);
        assert!(!r.allows(due), "one probe at a time");
        r.end_probe();
        assert!(r.allows(due), "an inconclusive probe lets the next request probe");
    }

    #[test]
    fn each_refused_probe_doubles_the_wait_up_to_the_ceiling() {
        let t0 = Instant::now();
        let mut r = Refused::new(KeyRefusal::Invalid, t0);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let now = r.probe_at;
            r.on_start(now);
            r.again(KeyRefusal::Invalid, now);
            waits.push(r.probe_at - now);
        }
        let minutes: Vec<u64> = waits.iter().map(|w| w.as_secs() / 60).collect();
        assert_eq!(minutes, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(r.since, t0);
        assert_eq!(r.refusals, 9);

        let mut c = Refused::new(KeyRefusal::OutOfCredits, t0);
        assert_eq!(c.probe_at, t0 + 5 * MIN);
        for _ in 0..10 {
            let at = c.probe_at;
            c.on_start(at);
            c.again(KeyRefusal::OutOfCredits, at);
        }
        assert_eq!(c.interval, Duration::from_secs(6 * 3600));
    }

    #[test]
    fn refusals_of_requests_already_in_flight_do_not_push_the_probe() {
        let t0 = Instant::now();
        let mut r = Refused::new(KeyRefusal::OutOfCredits, t0);
        let first = r.probe_at;
        for i in 1..5 {
            r.again(KeyRefusal::OutOfCredits, t0 + Duration::from_millis(i));
        }
        assert_eq!((r.probe_at, r.interval), (first, 5 * MIN));
    }

    #[test]
    fn a_different_reason_starts_its_own_schedule() {
        let t0 = Instant::now();
        let mut r = Refused::new(KeyRefusal::OutOfCredits, t0);
        let at = r.probe_at;
        r.on_start(at);
        r.again(KeyRefusal::Invalid, at);
        assert_eq!(r.reason, KeyRefusal::Invalid);
        assert_eq!((r.probe_at, r.since, r.probing), (at + MIN, t0, false));
    }
}
