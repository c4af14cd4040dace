//! Mutable state of one endpoint: in flight, health (cooldown, breaker, refusal),
//! the provider's reported quota, minute windows of requests and tokens, latency.
//!
//! Shared (`Arc`) by every snapshot that contains the same endpoint, so a reload loses
//! none of it. Everything but the hot counters sits behind one short-held mutex.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::backoff::{self, later};
use super::breaker::{Breaker, BreakerState};
use super::bucket::KeyModel;
use super::quota::ReportedQuota;
use super::refused::Refused;
use super::window::MinuteWindow;
use crate::config::CooldownBounds;
use crate::provider::ratelimit::{RateLimitReport, Wait};
use crate::provider::refusal::KeyRefusal;

mod admit;
mod probe;
mod shared;
pub use admit::{Exclusion, Forecast, Need, Priority};
pub use shared::{ExchangeIn, ExchangeOut, LinkSettings, SyncSignal};

/// Configured limits of an endpoint (per key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub max_inflight: Option<u32>,
}

/// Whether an endpoint can take a request now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Availability {
    /// Yes; `headroom` (0..=1) is the fraction of its tightest known quota left.
    Ready { headroom: f64 },
    /// No; `until` says when that changes, if known.
    Blocked { until: Option<Instant> },
}

#[derive(Debug, Default)]
pub struct EndpointState {
    in_flight: AtomicU32,
    inner: Mutex<Inner>,
    pub counters: Counters,
    /// The last 15 minutes, for `/status/history` (fixed size).
    pub history: super::history::History,
}

#[derive(Debug, Default)]
struct Inner {
    cooldown_until: Option<Instant>,
    /// The provider asked for a longer rest than `cooldown_until` (it was clamped).
    cooldown_clamped: bool,
    /// 429s in a row from this key: each one doubles the floor of its rest.
    rate_limited_streak: u32,
    breaker: Breaker,
    /// Set when the provider refuses the key itself (invalid, out of credits): out
    /// until a probe succeeds or its value changes (a changed value is a new state).
    refused: Option<Refused>,
    quota: ReportedQuota,
    requests: MinuteWindow,
    tokens: MinuteWindow,
    latency: Ewma,
    ttfb: Ewma,
    /// What other replicas sharing this key know and were told (`crate::shared`).
    shared: shared::SharedLocal,
    /// The model of the key's limits: room now, or when.
    model: KeyModel,
    calibration: admit::Calibration,
    /// Tokens reserved by requests in flight, not yet settled.
    reserved_tokens: u64,
}

/// Monotonic totals, for metrics, status and the demo table.
#[derive(Debug, Default)]
pub struct Counters {
    pub attempts: AtomicU64,
    pub successes: AtomicU64,
    pub rate_limited: AtomicU64,
    pub failures: AtomicU64,
    pub cooldowns: AtomicU64,
    pub breaker_opens: AtomicU64,
    /// Answers saying the key is invalid or revoked.
    pub unauthorized: AtomicU64,
    /// Answers saying the key's account is out of credits or over its spend limit.
    pub out_of_credits: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    pub malformed_headers: AtomicU64,
}

/// A point-in-time copy for status pages.
#[derive(Debug, Clone, PartialEq)]
pub struct StateView {
    pub in_flight: u32,
    pub cooldown_until: Option<Instant>,
    /// The cooldown is cut short of what the provider asked for (`max_cooldown`).
    pub cooldown_clamped: bool,
    pub breaker: BreakerState,
    pub refused: Option<Refused>,
    pub requests_last_minute: u64,
    pub tokens_last_minute: u64,
    pub latency: Option<Duration>,
    pub ttfb: Option<Duration>,
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub quota_reset_at: Option<Instant>,
}

impl EndpointState {
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether a request may go out now, and with how much headroom (see
    /// [`EndpointState::check`] for one of a known size and priority).
    pub fn availability(&self, limits: &Limits, now: Instant) -> Availability {
        match self.check(limits, &Need::default(), now) {
            Ok(headroom) => Availability::Ready { headroom },
            Err(why) => Availability::Blocked { until: why.until() },
        }
    }

    /// A request goes out: counted in flight until the guard drops (for a stream,
    /// when it ends or the client leaves).
    pub fn begin(self: &Arc<Self>, now: Instant) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        s.requests.add(now, 1);
        s.shared.on_send(now);
        s.quota.on_send();
        s.breaker.on_start(now);
        if let Some(refused) = &mut s.refused {
            refused.on_start(now);
        }
        drop(s);
        InFlightGuard { state: Arc::clone(self), tokens: 0, prompt_bytes: 0, settled: false }
    }

    /// Response headers arrived: take in the provider's quota report and the latency.
    pub fn on_response(&self, report: &RateLimitReport, latency: Duration, now: Instant) {
        self.counters.malformed_headers.fetch_add(u64::from(report.malformed), Ordering::Relaxed);
        let mut s = self.lock();
        s.quota.update(report, now);
        s.shared.on_quota(report);
        s.latency.observe(latency);
    }

    /// The endpoint answered with something that is not its own failure. A 2xx
    /// brings a refused key back; anything else tells nothing about it.
    pub fn record_success(&self, ok: bool) {
        if ok {
            self.counters.successes.fetch_add(1, Ordering::Relaxed);
        }
        let mut s = self.lock();
        s.breaker.on_success();
        s.rate_limited_streak = 0;
        if ok {
            if s.refused.take().is_some() {
                s.shared.on_refusal_cleared();
            }
        } else if let Some(refused) = &mut s.refused {
            refused.end_probe();
        }
    }

    /// Rests the endpoint until `until`. A later deadline extends the cooldown; an
    /// earlier one never shortens it.
    pub fn cool_down_until(&self, until: Instant) {
        self.rest_until(&mut self.lock(), until, false);
    }

    fn rest_until(&self, s: &mut Inner, until: Instant, clamped: bool) {
        if s.cooldown_until.is_none_or(|current| current < until) {
            s.cooldown_until = Some(until);
            s.cooldown_clamped = clamped;
            self.counters.cooldowns.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A 429: rests the key for the provider's `hint`, or `hintless` without one,
    /// within `bounds`, backing off while the key keeps refusing (see
    /// [`backoff::after_429`]). Returns the rest.
    pub fn record_rate_limited(
        &self,
        hint: Option<Wait>,
        hintless: Duration,
        bounds: CooldownBounds,
        now: Instant,
    ) -> Duration {
        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        s.breaker.on_success();
        // 429s to requests sent before the key began resting are the same refusal:
        // a burst of concurrent ones must not multiply the back-off.
        let resting = s.cooldown_until.is_some_and(|until| until > now);
        if !resting || s.rate_limited_streak == 0 {
            s.rate_limited_streak = s.rate_limited_streak.saturating_add(1);
        }
        // The first 429 in a row to a key its model now holds back until its bucket
        // has room is already paced by the model: resting it beyond the provider's
        // hint only idles a key that will have room sooner. From the second 429 in a
        // row the model has been wrong and the doubling floor applies.
        let paced = s.rate_limited_streak == 1 && s.model.requests_held_until(now).is_some();
        let rest = match hint {
            Some(wait) if paced => backoff::as_hinted(wait, bounds),
            _ => backoff::after_429(hint, hintless, bounds, s.rate_limited_streak, rand::random()),
        };
        self.rest_until(&mut s, later(now, rest.duration), rest.clamped);
        let until = s.cooldown_until;
        s.shared.on_cooldown(until);
        rest.duration
    }

    /// A 5xx, connect error or timeout: counts towards opening the breaker for
    /// `open_for` (the configured cooldown, within `bounds`).
    pub fn record_failure(&self, allowed_fails: u32, open_for: Duration, bounds: CooldownBounds, now: Instant) {
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        let open_for = backoff::breaker_open_for(open_for, bounds);
        if self.lock().breaker.on_failure(now, allowed_fails, open_for) {
            self.counters.breaker_opens.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Cuts a rest that outlasts `ceiling` from `now` (after a reload lowered
    /// `max_cooldown`), marking it clamped.
    pub fn limit_rest(&self, ceiling: Duration, now: Instant) {
        let mut s = self.lock();
        let limit = later(now, ceiling);
        if s.cooldown_until.is_some_and(|until| until > limit) {
            s.cooldown_until = Some(limit);
            s.cooldown_clamped = true;
        }
    }

    /// The provider refuses this key itself: out of rotation until a probe, after a
    /// wait that grows with every refusal (see [`Refused`]).
    pub fn record_refused(&self, reason: KeyRefusal, now: Instant) {
        let counter = match reason {
            KeyRefusal::Invalid => &self.counters.unauthorized,
            KeyRefusal::OutOfCredits => &self.counters.out_of_credits,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut s = self.lock();
        // It answered: not a failure of the endpoint.
        s.breaker.on_success();
        match &mut s.refused {
            Some(refused) => refused.again(reason, now),
            None => s.refused = Some(Refused::new(reason, now)),
        }
        s.shared.on_refused(reason);
    }

    /// Why the provider refuses this key, if it does.
    pub fn refusal(&self) -> Option<KeyRefusal> {
        self.lock().refused.map(|r| r.reason)
    }

    /// Tokens a response used (from its `usage`), for tpm accounting.
    pub fn record_tokens(&self, input: u64, output: u64, now: Instant) {
        self.counters.input_tokens.fetch_add(input, Ordering::Relaxed);
        self.counters.output_tokens.fetch_add(output, Ordering::Relaxed);
        let mut s = self.lock();
        s.tokens.add(now, input.saturating_add(output));
        s.shared.on_tokens(input.saturating_add(output));
    }

    /// Time to the first body chunk of a streamed response.
    pub fn record_ttfb(&self, ttfb: Duration) {
        self.lock().ttfb.observe(ttfb);
    }

    pub fn latency(&self) -> Option<Duration> {
        self.lock().latency.get()
    }

    pub fn cooldown_until(&self) -> Option<Instant> {
        self.lock().cooldown_until
    }

    pub fn view(&self, now: Instant) -> StateView {
        let mut s = self.lock();
        StateView {
            in_flight: self.in_flight(),
            cooldown_until: s.cooldown_until.filter(|&u| u > now),
            cooldown_clamped: s.cooldown_clamped && s.cooldown_until.is_some_and(|u| u > now),
            breaker: s.breaker.state(now),
            refused: s.refused,
            requests_last_minute: s.requests.sum(now),
            tokens_last_minute: s.tokens.sum(now),
            latency: s.latency.get(),
            ttfb: s.ttfb.get(),
            remaining_requests: s.quota.requests_left(now),
            remaining_tokens: s.quota.tokens_left(now),
            quota_reset_at: s.quota.requests.reset_at.max(s.quota.tokens.reset_at),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Inner holds plain values; a panic elsewhere cannot leave it inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Decrements the in-flight count when dropped, frees the half-open probe slot if the
/// request ended without an outcome, and gives back tokens it reserved and did not
/// settle: whatever way an attempt ends, nothing stays reserved.
#[derive(Debug)]
pub struct InFlightGuard {
    state: Arc<EndpointState>,
    /// Tokens reserved for this request, until settled.
    tokens: u64,
    prompt_bytes: u64,
    settled: bool,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let state = Arc::clone(&self.state);
        state.in_flight.fetch_sub(1, Ordering::Relaxed);
        let mut s = state.lock();
        self.release(&mut s, Instant::now());
        s.breaker.on_abandoned_probe();
        if let Some(refused) = &mut s.refused {
            refused.end_probe();
        }
    }
}

/// Exponentially weighted moving average of a latency.
#[derive(Debug, Default, Clone, Copy)]
struct Ewma(Option<f64>);

impl Ewma {
    const ALPHA: f64 = 0.3;

    fn observe(&mut self, sample: Duration) {
        let x = sample.as_secs_f64();
        self.0 = Some(self.0.map_or(x, |v| Self::ALPHA * x + (1.0 - Self::ALPHA) * v));
    }

    fn get(&self) -> Option<Duration> {
        self.0.and_then(|v| Duration::try_from_secs_f64(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: CooldownBounds = CooldownBounds { floor: Duration::from_secs(1), ceiling: Duration::from_secs(3600) };
    const NO_FLOOR: CooldownBounds = CooldownBounds { floor: Duration::ZERO, ceiling: Duration::from_secs(3600) };

    fn ready(a: Availability) -> bool {
        matches!(a, Availability::Ready { .. })
    }

    #[test]
    fn consecutive_429s_back_off_until_an_answer_resets_them() {
        let s = EndpointState::default();
        let now = Instant::now();
        let zero = Some(Wait { duration: Duration::ZERO, clamped: false });
        let mut at = now;
        for n in 0..4 {
            let rest = s.record_rate_limited(zero, Duration::ZERO, BOUNDS, at);
            let floor = Duration::from_millis(100 << n);
            assert!(rest >= floor && rest <= floor.mul_f64(1.5), "rest {n}: {rest:?}");
            // 429s to requests that were already on their way are the same refusal.
            let during = s.record_rate_limited(zero, Duration::ZERO, BOUNDS, at);
            assert!(during <= floor.mul_f64(1.5), "a concurrent 429 grew the rest: {during:?}");
            at += rest.mul_f64(1.5);
        }
        s.record_success(true);
        let again = s.record_rate_limited(None, Duration::ZERO, BOUNDS, at);
        assert!(again >= Duration::from_secs(1) && again <= Duration::from_millis(1500), "{again:?}");
    }

    #[test]
    fn a_first_429_the_model_paces_rests_only_for_the_hint_and_a_second_backs_off() {
        let s = EndpointState::default();
        let now = Instant::now();
        let report = RateLimitReport {
            limit_requests: Some(1200),
            remaining_requests: Some(0),
            reset_requests: Some(Duration::from_millis(50)),
            ..RateLimitReport::default()
        };
        let hint = Some(Wait { duration: Duration::from_millis(50), clamped: false });
        s.learn_from_429(&report, now, now);
        let first = s.record_rate_limited(hint, Duration::ZERO, BOUNDS, now);
        assert_eq!(first, Duration::from_millis(50), "the model spaces the key: no floor");
        // Refused again right after its rest: the model was wrong, the floor doubles.
        let at = now + first;
        s.learn_from_429(&report, at, at);
        let second = s.record_rate_limited(hint, Duration::ZERO, BOUNDS, at);
        assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(300), "{second:?}");
        // Without a model nothing paces the key: even a first 429 rests the floor.
        let bare = EndpointState::default();
        let rest = bare.record_rate_limited(hint, Duration::ZERO, BOUNDS, now);
        assert!(rest >= Duration::from_millis(100), "{rest:?}");
    }

    #[test]
    fn a_clamped_rest_shows_until_a_longer_unclamped_one_replaces_it() {
        let s = EndpointState::default();
        let now = Instant::now();
        let ceiling = Duration::from_secs(60);
        let bounds = CooldownBounds { ceiling, ..BOUNDS };
        let clamped = Some(Wait { duration: ceiling, clamped: true });
        assert_eq!(s.record_rate_limited(clamped, Duration::ZERO, bounds, now), ceiling);
        assert!(s.view(now).cooldown_clamped);
        assert!(!s.view(now + ceiling).cooldown_clamped, "over: nothing to show");
        s.cool_down_until(now + Duration::from_secs(90));
        assert!(!s.view(now).cooldown_clamped);
    }

    #[test]
    fn a_lowered_ceiling_cuts_a_carried_rest() {
        let s = EndpointState::default();
        let now = Instant::now();
        s.cool_down_until(now + Duration::from_secs(3600));
        s.limit_rest(Duration::from_secs(60), now);
        assert_eq!(s.cooldown_until(), Some(now + Duration::from_secs(60)));
        assert!(s.view(now).cooldown_clamped);
        s.limit_rest(Duration::from_secs(600), now);
        assert_eq!(s.cooldown_until(), Some(now + Duration::from_secs(60)), "never lengthened");
    }

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
    fn configured_rpm_and_max_inflight_block() {
        let s = Arc::new(EndpointState::default());
        let now = Instant::now();
        let limits = Limits { rpm: Some(2), tpm: None, max_inflight: Some(5) };
        let g1 = s.begin(now);
        assert_eq!(s.availability(&limits, now), Availability::Ready { headroom: 0.5 });
        let g2 = s.begin(now);
        assert!(matches!(s.availability(&limits, now), Availability::Blocked { until: Some(_) }));
        drop((g1, g2));
        let limits = Limits { rpm: None, tpm: None, max_inflight: Some(1) };
        let g = s.begin(now);
        assert_eq!(s.availability(&limits, now), Availability::Blocked { until: None });
        drop(g);
        assert!(ready(s.availability(&limits, now)));
    }

    #[test]
    fn unauthorized_disables_and_breaker_opens() {
        let s = Arc::new(EndpointState::default());
        let now = Instant::now();
        s.record_failure(2, Duration::from_secs(5), BOUNDS, now);
        assert!(ready(s.availability(&Limits::default(), now)));
        s.record_failure(2, Duration::from_secs(5), BOUNDS, now);
        assert_eq!(
            s.availability(&Limits::default(), now),
            Availability::Blocked { until: Some(now + Duration::from_secs(5)) }
        );
        let t = EndpointState::default();
        t.record_refused(KeyRefusal::Invalid, now);
        assert_eq!(t.availability(&Limits::default(), now), Availability::Blocked { until: None });
    }

    #[test]
    fn a_refused_key_is_probed_by_one_request_and_back_on_success() {
        let s = Arc::new(EndpointState::default());
        let t0 = Instant::now();
        s.record_refused(KeyRefusal::OutOfCredits, t0);
        let limits = Limits::default();
        assert!(!ready(s.availability(&limits, t0 + Duration::from_secs(299))));
        let due = t0 + Duration::from_secs(300);
        assert!(ready(s.availability(&limits, due)), "the probe is due");
        let probe = s.begin(due);
        assert!(!ready(s.availability(&limits, due)), "one probe at a time");
        s.record_refused(KeyRefusal::OutOfCredits, due);
        drop(probe);
        assert!(!ready(s.availability(&limits, due + Duration::from_secs(599))), "the wait doubled");
        let due = due + Duration::from_secs(600);
        let probe = s.begin(due);
        s.record_success(false);
        assert!(ready(s.availability(&limits, due)), "a 4xx proves nothing: the next request probes");
        assert_eq!(s.refusal(), Some(KeyRefusal::OutOfCredits));
        s.record_success(true);
        drop(probe);
        assert_eq!(s.refusal(), None);
        assert!(ready(s.availability(&limits, due)));
        assert_eq!(s.counters.out_of_credits.load(Ordering::Relaxed), 2);

        let abandoned = EndpointState::default();
        let abandoned = Arc::new(abandoned);
        abandoned.record_refused(KeyRefusal::Invalid, t0);
        let due = t0 + Duration::from_secs(60);
        drop(abandoned.begin(due));
        assert!(ready(abandoned.availability(&limits, due)), "a probe whose client left frees the slot");
    }

    #[test]
    fn in_flight_guard_counts_and_frees_abandoned_probe() {
        let s = Arc::new(EndpointState::default());
        let now = Instant::now();
        s.record_failure(1, Duration::ZERO, NO_FLOOR, now);
        let probe = s.begin(now);
        assert_eq!(s.in_flight(), 1);
        assert!(!ready(s.availability(&Limits::default(), now)), "one probe at a time");
        drop(probe);
        assert_eq!(s.in_flight(), 0);
        assert!(ready(s.availability(&Limits::default(), now)));
    }
}
