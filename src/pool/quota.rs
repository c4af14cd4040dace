//! What a provider last said about a key's quota (its rate-limit headers), and what
//! that means now: requests and tokens left, and until when a spent quota stays spent.

use std::time::{Duration, Instant};

use super::backoff::later;
use crate::provider::ratelimit::RateLimitReport;

/// Two reports whose resets are this close describe the same quota window.
const SAME_WINDOW: Duration = Duration::from_millis(250);

/// A report without a reset time is trusted for this long.
const UNDATED_REPORT_TTL: Duration = Duration::from_secs(60);

/// One quota dimension (requests or tokens) as last reported.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reported {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    pub reset_at: Option<Instant>,
}

/// The provider's view of one key.
#[derive(Debug, Clone, Default)]
pub struct ReportedQuota {
    pub requests: Reported,
    pub tokens: Reported,
    pub reported_at: Option<Instant>,
    /// Requests sent since the last report: not yet counted in its `remaining`.
    sent_since_report: u64,
    /// Tokens reserved by requests sent since the last report.
    tokens_since_report: u64,
}

impl ReportedQuota {
    /// Takes in a response's headers; dimensions it does not mention are kept.
    ///
    /// Responses to concurrent requests arrive out of order, so a report about the
    /// same window as the current one (same reset, give or take) can only lower what
    /// is left: an older, higher count must not undo a newer one.
    pub fn update(&mut self, report: &RateLimitReport, now: Instant) {
        let mut any = false;
        let requests_left = self.requests_left(now);
        let tokens_left = self.tokens_left(now);
        let mut merge = |dim: &mut Reported,
                         known_left: Option<u64>,
                         limit: Option<u64>,
                         remaining: Option<u64>,
                         reset: Option<Duration>| {
            let Some(mut remaining) = remaining else { return };
            let reset_at = reset.map(|d| later(now, d));
            if let (Some(old), Some(new), Some(left)) = (dim.reset_at, reset_at, known_left) {
                let same_window = old > now && old.max(new) - old.min(new) < SAME_WINDOW;
                if same_window {
                    remaining = remaining.min(left);
                }
            }
            *dim = Reported { limit: limit.or(dim.limit), remaining: Some(remaining), reset_at };
            any = true;
        };
        merge(
            &mut self.requests,
            requests_left,
            report.limit_requests,
            report.remaining_requests,
            report.reset_requests,
        );
        merge(&mut self.tokens, tokens_left, report.limit_tokens, report.remaining_tokens, report.reset_tokens);
        if any {
            self.reported_at = Some(now);
            self.sent_since_report = 0;
            self.tokens_since_report = 0;
        }
    }

    pub fn on_send(&mut self) {
        self.sent_since_report += 1;
    }

    /// A request reserving `tokens` went out: they are not in the last report.
    pub fn on_send_tokens(&mut self, tokens: u64) {
        self.tokens_since_report = self.tokens_since_report.saturating_add(tokens);
    }

    /// Requests left now, if the provider said and its word still holds.
    pub fn requests_left(&self, now: Instant) -> Option<u64> {
        self.current(&self.requests, now).map(|r| r.saturating_sub(self.sent_since_report))
    }

    /// Tokens left now, if known.
    pub fn tokens_left(&self, now: Instant) -> Option<u64> {
        self.current(&self.tokens, now).map(|t| t.saturating_sub(self.tokens_since_report))
    }

    fn current(&self, dim: &Reported, now: Instant) -> Option<u64> {
        let fresh = match dim.reset_at {
            Some(reset) => now < reset,
            None => self.reported_at.is_some_and(|at| now.saturating_duration_since(at) < UNDATED_REPORT_TTL),
        };
        dim.remaining.filter(|_| fresh)
    }

    /// If a quota is known to be spent: when it resets.
    pub fn spent_until(&self, now: Instant) -> Option<Instant> {
        let until = |dim: &Reported, left: Option<u64>| {
            (left == Some(0))
                .then(|| dim.reset_at.unwrap_or_else(|| later(self.reported_at.unwrap_or(now), UNDATED_REPORT_TTL)))
        };
        until(&self.requests, self.requests_left(now))
            .into_iter()
            .chain(until(&self.tokens, self.tokens_left(now)))
            .max()
    }

    /// Fraction of quota left (0..=1) over the dimensions the provider reported.
    pub fn headroom(&self, now: Instant) -> Option<f64> {
        let fraction = |left: Option<u64>, dim: &Reported| {
            let left = left? as f64;
            let limit = dim.limit.map(|l| l as f64).unwrap_or(left.max(1.0)).max(1.0);
            Some((left / limit).clamp(0.0, 1.0))
        };
        let r = fraction(self.requests_left(now), &self.requests);
        let t = fraction(self.tokens_left(now), &self.tokens);
        match (r, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(remaining: u64, limit: u64, reset: Duration) -> RateLimitReport {
        RateLimitReport {
            remaining_requests: Some(remaining),
            limit_requests: Some(limit),
            reset_requests: Some(reset),
            ..Default::default()
        }
    }

    #[test]
    fn spent_quota_blocks_until_reset_then_clears() {
        let t0 = Instant::now();
        let mut q = ReportedQuota::default();
        q.update(&report(0, 10, Duration::from_secs(2)), t0);
        assert_eq!(q.spent_until(t0), Some(t0 + Duration::from_secs(2)));
        assert_eq!(q.headroom(t0), Some(0.0));
        let after = t0 + Duration::from_secs(2);
        assert_eq!(q.spent_until(after), None);
        assert_eq!(q.headroom(after), None, "stale report says nothing");
    }

    #[test]
    fn requests_sent_since_the_report_count_against_it() {
        let t0 = Instant::now();
        let mut q = ReportedQuota::default();
        q.update(&report(2, 10, Duration::from_secs(5)), t0);
        q.on_send();
        assert_eq!(q.requests_left(t0), Some(1));
        q.on_send();
        assert_eq!(q.spent_until(t0), Some(t0 + Duration::from_secs(5)));
        // The provider's next report (a later window) replaces the estimate.
        q.update(&report(7, 10, Duration::from_secs(9)), t0);
        assert_eq!(q.requests_left(t0), Some(7));
        assert!((q.headroom(t0).unwrap() - 0.7).abs() < 1e-9);
    }

    #[test]
    fn a_late_report_of_the_same_window_cannot_raise_what_is_left() {
        let t0 = Instant::now();
        let mut q = ReportedQuota::default();
        q.update(&report(3, 10, Duration::from_secs(5)), t0);
        // An answer generated earlier but arriving later says 6 were left.
        q.update(&report(6, 10, Duration::from_millis(4950)), t0 + Duration::from_millis(50));
        assert_eq!(q.requests_left(t0 + Duration::from_millis(60)), Some(3));
        // The next window's report is taken as it is.
        let later = t0 + Duration::from_secs(5);
        q.update(&report(9, 10, Duration::from_secs(5)), later);
        assert_eq!(q.requests_left(later), Some(9));
    }

    #[test]
    fn tightest_dimension_wins() {
        let t0 = Instant::now();
        let mut q = ReportedQuota::default();
        let mut r = report(9, 10, Duration::from_secs(5));
        r.remaining_tokens = Some(100);
        r.limit_tokens = Some(1000);
        r.reset_tokens = Some(Duration::from_secs(5));
        q.update(&r, t0);
        assert!((q.headroom(t0).unwrap() - 0.1).abs() < 1e-9);
    }
}
