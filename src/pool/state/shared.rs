//! One endpoint's side of shared state (`crate::shared` moves it to and from Redis).
//!
//! Requests never wait for Redis: the sync task hands each endpoint a lease of
//! request slots taken atomically from the key's shared minute window, and
//! requests spend it locally. An endpoint whose lease is spent asks for more and is
//! blocked until the answer comes, but never longer than the bound: then it counts
//! on local state, as it does whenever Redis has not answered for a while.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{EndpointState, Inner, Limits};
use crate::pool::backoff::later;
use crate::pool::refused::Refused;
use crate::provider::ratelimit::RateLimitReport;
use crate::provider::refusal::KeyRefusal;

/// What every linked endpoint of one process shares with its sync task.
#[derive(Debug, Default)]
pub struct SyncSignal {
    /// Wakes the sync task at once: a lease is spent, or a cooldown is news.
    pub wake: Notify,
    /// Lease requests Redis did not answer within the bound, after which the endpoint's
    /// requests went out on local state: counted once per unanswered request for a lease
    /// (not once per request sent meanwhile, which would count the outage's traffic).
    pub lease_timeouts: AtomicU64,
}

/// How often a blocked endpoint re-checks for its new lease within the bound.
const LEASE_RECHECK: Duration = Duration::from_millis(2);

#[derive(Debug, Default)]
pub(super) struct SharedLocal {
    link: Option<Link>,
    out: Outbox,
    /// The refusal was learned from another replica: it ends when Redis drops it.
    refusal_learned: bool,
    /// When the quota report taken from Redis last was made (Redis' clock, ms).
    quota_seen: i64,
}

#[derive(Debug)]
struct Link {
    signal: Arc<SyncSignal>,
    synced_at: Instant,
    /// Without an answer for this long, the endpoint counts on local state.
    stale_after: Duration,
    bound: Duration,
    lease: u64,
    lease_second: u64,
    /// All replicas' requests and tokens in the window at the last exchange.
    requests_used: u64,
    tokens_used: u64,
    /// Redis had no slot left at the last exchange; it frees then.
    exhausted_until: Option<Instant>,
    tokens_spent_until: Option<Instant>,
    demanded_at: Option<Instant>,
    /// The wait for the lease asked for at `demanded_at` hit the bound (and was counted).
    demand_timed_out: bool,
}

/// What happened locally since the last exchange.
#[derive(Debug, Default, Clone)]
struct Outbox {
    sent: u64,
    overdraft: u64,
    tokens: u64,
    cooldown_until: Option<Instant>,
    refused: Option<KeyRefusal>,
    refusal_cleared: bool,
    quota: Option<RateLimitReport>,
}

/// One endpoint's half of an exchange, as the sync task sends it.
#[derive(Debug, Clone, Default)]
pub struct ExchangeOut {
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    /// Slots wanted for the next interval.
    pub want: u64,
    /// Unused slots handed back, granted at Redis' second `release_second`.
    pub release: u64,
    pub release_second: u64,
    /// Requests sent without a slot (a race, or the bound passed).
    pub overdraft: u64,
    pub tokens: u64,
    /// This replica's cooldown, from now.
    pub cooldown: Option<Duration>,
    pub refused: Option<KeyRefusal>,
    pub refusal_cleared: bool,
    pub quota: Option<RateLimitReport>,
}

/// Redis' answer for one endpoint.
#[derive(Debug, Clone, Default)]
pub struct ExchangeIn {
    pub granted: u64,
    pub grant_second: u64,
    pub requests_used: u64,
    pub requests_free_in: Option<Duration>,
    pub tokens_used: u64,
    pub tokens_free_in: Option<Duration>,
    /// The longest cooldown any replica set, from now.
    pub cooldown: Option<Duration>,
    pub refused: Option<KeyRefusal>,
    /// The quota another replica was told last, and when (Redis' clock, ms).
    pub quota: Option<RateLimitReport>,
    pub quota_at: i64,
}

/// The link's settings, from the `shared:` section.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub signal: Arc<SyncSignal>,
    pub bound: Duration,
    pub stale_after: Duration,
}

impl SharedLocal {
    fn live(&mut self, now: Instant) -> Option<&mut Link> {
        if self.link.as_ref().is_some_and(|l| now.saturating_duration_since(l.synced_at) > l.stale_after) {
            self.link = None;
        }
        self.link.as_mut()
    }

    /// `Err(until)`: blocked by the shared window; `Ok(headroom)` otherwise.
    pub(super) fn admits(&mut self, limits: &Limits, now: Instant) -> Result<f64, Option<Instant>> {
        let pending_tokens = self.out.tokens;
        let Some(link) = self.live(now) else { return Ok(1.0) };
        let mut headroom = 1.0_f64;
        if let Some(tpm) = limits.tpm {
            let used = link.tokens_used.saturating_add(pending_tokens);
            if used >= tpm {
                return Err(link.tokens_spent_until.or(Some(later(now, LEASE_RECHECK))));
            }
            headroom = headroom.min(1.0 - used as f64 / tpm as f64);
        }
        let Some(rpm) = limits.rpm.map(u64::from) else { return Ok(headroom) };
        headroom = headroom.min(1.0 - (link.requests_used.min(rpm) as f64 / rpm as f64));
        if link.lease > 0 {
            return Ok(headroom.max(f64::MIN_POSITIVE));
        }
        if let Some(until) = link.exhausted_until.filter(|&u| u > now) {
            return Err(Some(until));
        }
        let asked = *link.demanded_at.get_or_insert_with(|| {
            link.signal.wake.notify_one();
            now
        });
        let deadline = later(asked, link.bound);
        if now >= deadline {
            // Redis did not answer in time: this request goes on local state.
            return Ok(headroom.max(f64::MIN_POSITIVE));
        }
        Err(Some(deadline.min(later(now, LEASE_RECHECK))))
    }

    pub(super) fn on_send(&mut self, now: Instant) {
        let Some(link) = self.live(now) else { return };
        let overdraft = link.lease == 0;
        if overdraft {
            if !link.demand_timed_out && link.demanded_at.is_some_and(|at| now >= later(at, link.bound)) {
                link.demand_timed_out = true;
                link.signal.lease_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            link.lease -= 1;
        }
        self.out.overdraft = self.out.overdraft.saturating_add(u64::from(overdraft));
        self.out.sent = self.out.sent.saturating_add(1);
    }

    pub(super) fn on_tokens(&mut self, n: u64) {
        if self.link.is_some() {
            self.out.tokens = self.out.tokens.saturating_add(n);
        }
    }

    pub(super) fn on_cooldown(&mut self, until: Option<Instant>) {
        self.out.cooldown_until = until;
        if let Some(link) = &self.link {
            link.signal.wake.notify_one();
        }
    }

    pub(super) fn on_refused(&mut self, reason: KeyRefusal) {
        self.out.refused = Some(reason);
        self.out.refusal_cleared = false;
        self.refusal_learned = false;
    }

    pub(super) fn on_refusal_cleared(&mut self) {
        self.out.refused = None;
        self.out.refusal_cleared = true;
        self.refusal_learned = false;
    }

    pub(super) fn on_quota(&mut self, report: &RateLimitReport) {
        let any = report.remaining_requests.is_some() || report.remaining_tokens.is_some();
        if any {
            self.out.quota = Some(report.clone());
        }
    }
}

impl EndpointState {
    /// Takes what this endpoint has to tell the other replicas, and what it asks for.
    pub fn shared_outgoing(&self, limits: &Limits, now: Instant) -> ExchangeOut {
        let mut s = self.lock();
        let linked = s.shared.live(now).is_some();
        let out = std::mem::take(&mut s.shared.out);
        let idle = out.sent == 0;
        let (held, release_second, demanded) = match &s.shared.link {
            Some(link) => (link.lease, link.lease_second, link.demanded_at.is_some()),
            None => (0, 0, false),
        };
        let target = limits.rpm.map_or(0, |rpm| {
            // Enough for the next interval at the pace of the last one, twice over.
            let recent = out.sent.saturating_mul(2);
            let target = if recent > 0 || demanded || !linked { recent.max(1) } else { 0 };
            target.min(u64::from(rpm).div_ceil(10).max(1))
        });
        // A lease in use stays usable while the exchange is under way (taking it away
        // would block every request for a round trip); an idle one goes back.
        let release = if idle && !demanded { held } else { 0 };
        if release > 0 {
            if let Some(link) = &mut s.shared.link {
                link.lease = 0;
            }
        }
        let want = target.saturating_sub(held - release);
        let cooldown = out.cooldown_until.map(|u| u.saturating_duration_since(now)).filter(|d| !d.is_zero());
        ExchangeOut {
            rpm: limits.rpm,
            tpm: limits.tpm,
            want,
            release,
            release_second,
            overdraft: out.overdraft,
            tokens: out.tokens,
            cooldown,
            refused: out.refused,
            refusal_cleared: out.refusal_cleared,
            quota: out.quota,
        }
    }

    /// Redis did not answer: what was to be told is told next time.
    pub fn shared_failed(&self, sent: ExchangeOut, now: Instant) {
        let mut s = self.lock();
        let out = &mut s.shared.out;
        out.tokens = out.tokens.saturating_add(sent.tokens);
        out.overdraft = out.overdraft.saturating_add(sent.overdraft);
        if out.cooldown_until.is_none() {
            out.cooldown_until = sent.cooldown.map(|d| later(now, d));
        }
        if out.refused.is_none() && !out.refusal_cleared {
            (out.refused, out.refusal_cleared) = (sent.refused, sent.refusal_cleared);
        }
        out.quota = out.quota.take().or(sent.quota);
    }

    /// Takes in Redis' answer: the lease, everyone's counts, cooldowns, refusals, quota.
    pub fn shared_incoming(&self, reply: ExchangeIn, link: &LinkSettings, now: Instant) {
        let mut s = self.lock();
        let Inner { shared, .. } = &mut *s;
        let spent_until = |free_in: Option<Duration>| free_in.map(|d| later(now, d));
        let (held, held_second) = shared.link.as_ref().map_or((0, 0), |l| (l.lease, l.lease_second));
        shared.link = Some(Link {
            signal: Arc::clone(&link.signal),
            synced_at: now,
            stale_after: link.stale_after,
            bound: link.bound,
            lease: held.saturating_add(reply.granted),
            lease_second: if reply.granted > 0 { reply.grant_second } else { held_second },
            requests_used: reply.requests_used,
            tokens_used: reply.tokens_used,
            exhausted_until: if held == 0 && reply.granted == 0 { spent_until(reply.requests_free_in) } else { None },
            tokens_spent_until: spent_until(reply.tokens_free_in),
            demanded_at: None,
            demand_timed_out: false,
        });
        if let Some(until) = reply.cooldown.map(|d| later(now, d)) {
            if s.cooldown_until.is_none_or(|current| current < until) {
                s.cooldown_until = Some(until);
                s.cooldown_clamped = false;
            }
        }
        match (reply.refused, s.refused.is_some()) {
            (Some(reason), false) => {
                s.refused = Some(Refused::new(reason, now));
                s.shared.refusal_learned = true;
            }
            (None, true) if s.shared.refusal_learned => {
                s.refused = None;
                s.shared.refusal_learned = false;
            }
            _ => {}
        }
        if let Some(report) = reply.quota.filter(|_| reply.quota_at != s.shared.quota_seen) {
            s.quota.update(&report, now);
            s.shared.quota_seen = reply.quota_at;
        }
    }

    /// Redis is gone: count on local state from now on.
    pub fn shared_unlink(&self) {
        self.lock().shared.link = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LinkSettings {
        let signal = Arc::new(SyncSignal::default());
        LinkSettings { signal, bound: Duration::from_millis(50), stale_after: Duration::from_secs(1) }
    }

    #[test]
    fn a_spent_lease_blocks_within_the_bound_then_serves_locally() {
        let state = Arc::new(EndpointState::default());
        let limits = Limits { rpm: Some(100), ..Limits::default() };
        let now = Instant::now();
        let link = settings();
        let reply = ExchangeIn { granted: 1, requests_used: 1, ..ExchangeIn::default() };
        state.shared_incoming(reply, &link, now);
        assert!(matches!(state.availability(&limits, now), crate::pool::Availability::Ready { .. }));
        drop(state.begin(now));
        let blocked = state.availability(&limits, now);
        assert!(matches!(blocked, crate::pool::Availability::Blocked { until: Some(_) }), "{blocked:?}");
        let past = now + Duration::from_millis(50);
        assert!(matches!(state.availability(&limits, past), crate::pool::Availability::Ready { .. }));
        drop(state.begin(past));
        drop(state.begin(past));
        assert_eq!(link.signal.lease_timeouts.load(Ordering::Relaxed), 1, "one unanswered lease request");
        let out = state.shared_outgoing(&limits, past);
        assert_eq!((out.overdraft, out.want), (2, 6), "three sent: twice that wanted");
    }

    #[test]
    fn an_exhausted_window_blocks_until_it_frees_and_a_stale_link_counts_locally() {
        let state = EndpointState::default();
        let limits = Limits { rpm: Some(10), ..Limits::default() };
        let now = Instant::now();
        let reply = ExchangeIn {
            granted: 0,
            requests_used: 10,
            requests_free_in: Some(Duration::from_secs(30)),
            cooldown: Some(Duration::from_secs(5)),
            refused: None,
            ..ExchangeIn::default()
        };
        let link = LinkSettings { stale_after: Duration::from_secs(10), ..settings() };
        state.shared_incoming(reply, &link, now);
        assert_eq!(state.cooldown_until(), Some(now + Duration::from_secs(5)), "another replica's cooldown");
        let later = now + Duration::from_secs(6);
        assert_eq!(
            state.availability(&limits, later),
            crate::pool::Availability::Blocked { until: Some(now + Duration::from_secs(30)) }
        );
        // No answer for longer than `stale_after`: local counts only.
        state.lock().shared.link.as_mut().unwrap().synced_at = now - Duration::from_secs(20);
        assert!(matches!(state.availability(&limits, later), crate::pool::Availability::Ready { .. }));
    }
}
