//! Per-key fixed-window request and token limits, and the quota view they report.
//!
//! Fixed windows (rather than sliding ones) make "reset" a single exact instant for
//! both counters, so the mock can advertise it precisely and a client that waits until
//! then is guaranteed a fresh quota.

use std::time::Duration;

use tokio::time::Instant;

use super::KeyLimit;

/// Which quota refused a request (shapes the 429 message, as OpenAI's `type` does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitKind {
    Requests,
    Tokens,
}

/// What the rate-limit headers of one response report. A family (requests or tokens)
/// whose limit is `None` is not reported at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Quota {
    pub req_limit: Option<u32>,
    pub req_remaining: Option<u32>,
    pub tok_limit: Option<u64>,
    pub tok_remaining: Option<u64>,
    /// Time until the current window ends (`None`: no hint to give).
    pub reset: Option<Duration>,
    /// Set on a refusal.
    pub exhausted: Option<LimitKind>,
    /// A refusal of the burst-free limiter: only the quota headers, no `retry-after`.
    pub spaced: bool,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    requests: u32,
    tokens: u64,
}

/// One key's limit and the counters of its current window.
#[derive(Debug, Clone)]
pub(crate) struct Limiter {
    limit: KeyLimit,
    window: Option<Window>,
    /// The burst-free limiter's next free slot (GCRA's theoretical arrival time).
    next_slot: Option<Instant>,
}

impl Limiter {
    pub(crate) fn new(limit: KeyLimit) -> Self {
        Limiter { limit, window: None, next_slot: None }
    }

    /// Replaces the limit; the current window keeps its counters and start, and ends
    /// `limit.window` after that start.
    pub(crate) fn set_limit(&mut self, limit: KeyLimit) {
        self.limit = limit;
    }

    /// Admits a request of `tokens` total tokens, counting it, or refuses it (not
    /// counted) with the reset of the current window.
    pub(crate) fn admit(&mut self, now: Instant, tokens: u64) -> Result<Quota, Quota> {
        let window = self.current(now);
        if let Some(per_second) = self.limit.per_second_no_burst {
            if let Some(slot) = self.next_slot.filter(|&slot| slot > now) {
                return Err(Quota {
                    req_limit: Some(per_second.saturating_mul(60)),
                    req_remaining: Some(0),
                    reset: Some(slot - now),
                    exhausted: Some(LimitKind::Requests),
                    spaced: true,
                    ..Quota::default()
                });
            }
        }
        let refused = if self.limit.rpm.is_some_and(|rpm| window.requests >= rpm) {
            Some(LimitKind::Requests)
        } else if self.limit.tpm.is_some_and(|tpm| window.tokens.saturating_add(tokens) > tpm) {
            Some(LimitKind::Tokens)
        } else {
            None
        };
        if let Some(kind) = refused {
            let mut quota = self.quota(window, now);
            quota.exhausted = Some(kind);
            if kind == LimitKind::Requests {
                quota.req_remaining = quota.req_remaining.map(|_| 0);
            }
            return Err(quota);
        }
        let window = Window {
            requests: window.requests.saturating_add(1),
            tokens: window.tokens.saturating_add(tokens),
            ..window
        };
        self.window = Some(window);
        if let Some(per_second) = self.limit.per_second_no_burst {
            self.next_slot = Some(now + Duration::from_secs(1) / per_second);
        }
        Ok(self.quota(window, now))
    }

    /// The quota as it stands, without counting anything (for injected 429s).
    pub(crate) fn peek(&self, now: Instant) -> Quota {
        self.quota(self.current(now), now)
    }

    /// The live window, or a fresh empty one starting now if none is live.
    fn current(&self, now: Instant) -> Window {
        match self.window {
            Some(w) if now < w.start + self.limit.window => w,
            _ => Window { start: now, requests: 0, tokens: 0 },
        }
    }

    fn quota(&self, window: Window, now: Instant) -> Quota {
        let end = window.start + self.limit.window;
        Quota {
            req_limit: self.limit.rpm,
            req_remaining: self.limit.rpm.map(|rpm| rpm.saturating_sub(window.requests)),
            tok_limit: self.limit.tpm,
            tok_remaining: self.limit.tpm.map(|tpm| tpm.saturating_sub(window.tokens)),
            reset: Some(end.saturating_duration_since(now)),
            exhausted: None,
            spaced: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rpm_window_refuses_then_resets_exactly() {
        let t0 = Instant::now();
        let mut l = Limiter::new(KeyLimit::rpm(2).with_window(ms(300)));
        assert_eq!(l.admit(t0, 1).unwrap().req_remaining, Some(1));
        assert_eq!(l.admit(t0 + ms(10), 1).unwrap().req_remaining, Some(0));
        let refused = l.admit(t0 + ms(100), 1).unwrap_err();
        assert_eq!(refused.exhausted, Some(LimitKind::Requests));
        assert_eq!(refused.reset, Some(ms(200)));
        assert!(l.admit(t0 + ms(299), 1).is_err());
        let fresh = l.admit(t0 + ms(300), 1).unwrap();
        assert_eq!(fresh.req_remaining, Some(1));
        assert_eq!(fresh.reset, Some(ms(300)));
    }

    #[test]
    fn tpm_refuses_a_request_that_would_overflow() {
        let t0 = Instant::now();
        let mut l = Limiter::new(KeyLimit::tpm(100).with_window(ms(500)));
        for _ in 0..3 {
            l.admit(t0, 30).unwrap();
        }
        let refused = l.admit(t0, 30).unwrap_err();
        assert_eq!(refused.exhausted, Some(LimitKind::Tokens));
        assert_eq!(refused.tok_remaining, Some(10));
        assert_eq!(l.admit(t0, 10).unwrap().tok_remaining, Some(0));
    }

    #[test]
    fn unlimited_counts_nothing_against_anyone() {
        let t0 = Instant::now();
        let mut l = Limiter::new(KeyLimit::unlimited());
        for _ in 0..1000 {
            let q = l.admit(t0, 1_000_000).unwrap();
            assert_eq!((q.req_limit, q.tok_limit), (None, None));
        }
    }

    #[test]
    fn no_burst_spaces_requests_and_refuses_with_the_next_slot() {
        let t0 = Instant::now();
        let mut l = Limiter::new(KeyLimit::spaced(20));
        let ok = l.admit(t0, 1).unwrap();
        assert_eq!((ok.req_limit, ok.tok_limit), (None, None), "a success says nothing");
        let refused = l.admit(t0 + ms(20), 1).unwrap_err();
        assert_eq!((refused.req_limit, refused.req_remaining), (Some(1200), Some(0)));
        assert_eq!(refused.reset, Some(ms(30)));
        assert!(refused.spaced);
        assert!(l.admit(t0 + ms(50), 1).is_ok(), "the refusal did not count");
        assert!(l.admit(t0 + ms(99), 1).is_err());
    }

    #[test]
    fn set_limit_keeps_counters() {
        let t0 = Instant::now();
        let mut l = Limiter::new(KeyLimit::rpm(5).with_window(ms(1000)));
        l.admit(t0, 1).unwrap();
        l.admit(t0, 1).unwrap();
        l.set_limit(KeyLimit::rpm(2).with_window(ms(1000)));
        assert!(l.admit(t0, 1).is_err());
        assert_eq!(l.peek(t0).req_remaining, Some(0));
    }
}
