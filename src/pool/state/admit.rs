//! Admission of one request to one key, against everything known about the key:
//! health, configured caps, the provider's reported quota and the model of its
//! limits ([`crate::pool::bucket`]). A request that is admitted reserves what it will
//! use (one request, its estimated tokens) at once, under the same lock, so two
//! requests cannot both take the key's last slot; the reservation is settled by the
//! real usage, or given back when the attempt ends without one.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{EndpointState, InFlightGuard, Inner, Limits};
use crate::provider::ratelimit::RateLimitReport;

/// How much a request matters, from `x-keyrelay-priority` or the body's `priority`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// `high`, `normal`, `low`; LiteLLM's integers (lower is more urgent): 0 is
    /// high, 1 normal, anything above low.
    pub fn parse(value: &str) -> Option<Priority> {
        let value = value.trim().trim_matches('"');
        match value.to_ascii_lowercase().as_str() {
            "high" => return Some(Priority::High),
            "normal" | "medium" | "default" => return Some(Priority::Normal),
            "low" | "background" => return Some(Priority::Low),
            _ => {}
        }
        match value.parse::<i64>().ok()? {
            ..=0 => Some(Priority::High),
            1 => Some(Priority::Normal),
            _ => Some(Priority::Low),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// What one request asks of a key.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Need {
    /// Estimated tokens (prompt and completion), reserved against token limits.
    pub tokens: u64,
    /// The prompt's size, to calibrate bytes per token when the usage comes.
    pub prompt_bytes: u64,
    pub priority: Priority,
    /// The share (0..1) of each budget a low-priority request must leave.
    pub reserve: f64,
}

/// Why a key cannot take a request now: what the request's span explains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Exclusion {
    /// The provider refuses the key itself.
    Refused,
    Cooling(Instant),
    Breaker(Option<Instant>),
    /// `max_inflight` reached.
    InFlightCap,
    /// The provider said a quota is spent, until then.
    QuotaSpent(Option<Instant>),
    /// The model of its limits has no room for this request until then.
    BucketEmpty(Instant),
    /// Left for higher priorities (`reserve`).
    Reserved,
    /// Replicas sharing the key through Redis have used its capacity.
    Shared(Option<Instant>),
    /// Configured rpm/tpm used up in the last minute.
    Configured(Option<Instant>),
}

impl Exclusion {
    /// When the key may have room again, if known.
    pub fn until(&self) -> Option<Instant> {
        match *self {
            Exclusion::Refused | Exclusion::InFlightCap | Exclusion::Reserved => None,
            Exclusion::Cooling(at) | Exclusion::BucketEmpty(at) => Some(at),
            Exclusion::Breaker(at) | Exclusion::QuotaSpent(at) | Exclusion::Shared(at) | Exclusion::Configured(at) => {
                at
            }
        }
    }

    /// For the span: `bucket empty for 42ms`, `reserved for higher priority`.
    pub fn describe(&self, now: Instant) -> String {
        let what = match self {
            Exclusion::Refused => "refused",
            Exclusion::Cooling(_) => "cooling",
            Exclusion::Breaker(_) => "breaker open",
            Exclusion::InFlightCap => "max_inflight reached",
            Exclusion::QuotaSpent(_) => "quota spent",
            Exclusion::BucketEmpty(_) => "bucket empty",
            Exclusion::Reserved => "reserved for higher priority",
            Exclusion::Shared(_) => "shared capacity used",
            Exclusion::Configured(_) => "rpm/tpm used",
        };
        match self.until() {
            Some(at) => format!("{what} for {}ms", at.saturating_duration_since(now).as_millis()),
            None => what.to_owned(),
        }
    }
}

/// Bytes per token and completion size, learned from the key's real usage.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Calibration {
    bytes_per_token: Option<f64>,
    completion_tokens: Option<f64>,
}

/// Until usage calibrates it: roughly four bytes of JSON per token.
const DEFAULT_BYTES_PER_TOKEN: f64 = 4.0;
/// Until usage shows the completions' size, for requests that set no `max_tokens`.
const DEFAULT_COMPLETION_TOKENS: f64 = 256.0;
const CALIBRATION_ALPHA: f64 = 0.2;

impl Calibration {
    fn estimate(&self, prompt_bytes: u64, max_tokens: Option<u64>) -> u64 {
        let per_token = self.bytes_per_token.unwrap_or(DEFAULT_BYTES_PER_TOKEN).max(0.5);
        let prompt = (prompt_bytes as f64 / per_token).ceil();
        let completion = self.completion_tokens.unwrap_or(DEFAULT_COMPLETION_TOKENS);
        // A client's max_tokens is a ceiling; what the alias's answers use is likelier.
        let completion = max_tokens.map_or(completion, |m| (m as f64).min(completion.max(1.0) * 4.0));
        let total = prompt + completion;
        if total.is_finite() && total < u64::MAX as f64 {
            total as u64
        } else {
            u64::MAX
        }
    }

    fn learn(&mut self, prompt_bytes: u64, input: u64, output: u64) {
        let ewma =
            |old: Option<f64>, x: f64| Some(old.map_or(x, |v| CALIBRATION_ALPHA * x + (1.0 - CALIBRATION_ALPHA) * v));
        if input > 0 && prompt_bytes > 0 {
            self.bytes_per_token = ewma(self.bytes_per_token, (prompt_bytes as f64 / input as f64).clamp(0.5, 64.0));
        }
        self.completion_tokens = ewma(self.completion_tokens, output as f64);
    }
}

/// Per key, where its use is heading: for `/status` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Forecast {
    /// At the last minute's rate of use, when the tightest modelled limit runs dry.
    pub exhausted_in: Option<Duration>,
    /// When a request of normal size has room again (zero: now).
    pub room_in: Option<Duration>,
    /// Tokens reserved by requests in flight, not yet settled.
    pub reserved_tokens: u64,
    /// The learned burst (requests) and refill (requests per second) of the key.
    pub learned_burst: Option<f64>,
    pub learned_rate: Option<f64>,
}

impl EndpointState {
    /// The estimated tokens of a request of `prompt_bytes` bytes asking for at most
    /// `max_tokens` completion tokens.
    pub fn estimate_tokens(&self, prompt_bytes: u64, max_tokens: Option<u64>) -> u64 {
        self.lock().calibration.estimate(prompt_bytes, max_tokens)
    }

    /// Whether the key can take `need` now, with how much headroom, or why not.
    pub fn check(&self, limits: &Limits, need: &Need, now: Instant) -> Result<f64, Exclusion> {
        self.check_locked(&mut self.lock(), limits, need, now)
    }

    pub(super) fn check_locked(
        &self,
        s: &mut Inner,
        limits: &Limits,
        need: &Need,
        now: Instant,
    ) -> Result<f64, Exclusion> {
        if s.refused.is_some_and(|r| !r.allows(now)) {
            return Err(Exclusion::Refused);
        }
        if let Some(until) = s.cooldown_until.filter(|&u| u > now) {
            return Err(Exclusion::Cooling(until));
        }
        if !s.breaker.allows(now) {
            return Err(Exclusion::Breaker(s.breaker.open_until(now)));
        }
        if limits.max_inflight.is_some_and(|max| self.in_flight() >= max) {
            return Err(Exclusion::InFlightCap);
        }
        if let Some(until) = s.quota.spent_until(now) {
            return Err(Exclusion::QuotaSpent(Some(until)));
        }
        if let Some(left) = s.quota.tokens_left(now) {
            let need_tokens = need.tokens.min(s.quota.tokens.limit.unwrap_or(u64::MAX));
            if need_tokens > left {
                return Err(Exclusion::QuotaSpent(s.quota.tokens.reset_at));
            }
        }
        s.model.declare(limits.rpm, limits.tpm, now);
        let room = s.model.room_at(need.tokens, now);
        if room > now {
            return Err(Exclusion::BucketEmpty(room));
        }
        let mut headroom = s.quota.headroom(now).unwrap_or(1.0);
        if let Some(model) = s.model.headroom(now) {
            headroom = headroom.min(model);
        }
        match s.shared.admits(limits, now) {
            Ok(shared) => headroom = headroom.min(shared),
            Err(until) => return Err(Exclusion::Shared(until)),
        }
        if let Some(rpm) = limits.rpm.map(u64::from) {
            let used = s.requests.sum(now);
            if used >= rpm {
                return Err(Exclusion::Configured(s.requests.frees_below(now, rpm)));
            }
            headroom = headroom.min(1.0 - used as f64 / rpm as f64);
        }
        if let Some(tpm) = limits.tpm {
            let used = s.tokens.sum(now);
            if used >= tpm {
                return Err(Exclusion::Configured(s.tokens.frees_below(now, tpm)));
            }
            headroom = headroom.min(1.0 - used as f64 / tpm as f64);
        }
        if need.priority == Priority::Low && headroom < need.reserve {
            return Err(Exclusion::Reserved);
        }
        Ok(headroom)
    }

    /// Admits `need` and reserves it (one request, its tokens) in one step, or says
    /// why not. The guard settles the reservation (see [`InFlightGuard::settle`]).
    pub fn reserve(self: &Arc<Self>, limits: &Limits, need: &Need, now: Instant) -> Result<InFlightGuard, Exclusion> {
        let mut s = self.lock();
        self.check_locked(&mut s, limits, need, now)?;
        s.model.on_send(need.tokens, now);
        s.quota.on_send_tokens(need.tokens);
        s.reserved_tokens = s.reserved_tokens.saturating_add(need.tokens);
        drop(s);
        let mut guard = self.begin(now);
        guard.tokens = need.tokens;
        guard.prompt_bytes = need.prompt_bytes;
        Ok(guard)
    }

    /// The provider's rate-limit headers on an answer that is not a 429.
    pub fn learn_from_report(&self, report: &RateLimitReport, now: Instant) {
        self.lock().model.on_report(report, false, now);
    }

    /// A 429 to a request sent at `sent`: what it reveals about the key's limits.
    pub fn learn_from_429(&self, report: &RateLimitReport, sent: Instant, now: Instant) {
        self.lock().model.on_rate_limited(report, sent, now);
    }

    /// Where the key's use is heading (see [`Forecast`]).
    pub fn forecast(&self, now: Instant) -> Forecast {
        let mut s = self.lock();
        let requests_per_second = s.requests.sum(now) as f64 / 60.0;
        let tokens_per_second = s.tokens.sum(now) as f64 / 60.0;
        let normal = s.calibration.estimate(0, None);
        let room = s.model.room_at(normal, now);
        let model = &mut s.model;
        let requests =
            model.requests.bucket(now).map(|b| (b.capacity, b.rate, b.exhausted_at(requests_per_second, now)));
        let tokens = model.tokens.bucket(now).and_then(|b| b.exhausted_at(tokens_per_second, now));
        let exhausted = requests.and_then(|(_, _, at)| at).into_iter().chain(tokens).min();
        Forecast {
            exhausted_in: exhausted.map(|at| at.saturating_duration_since(now)),
            room_in: Some(room.saturating_duration_since(now)),
            reserved_tokens: s.reserved_tokens,
            learned_burst: requests.map(|(c, _, _)| c),
            learned_rate: requests.map(|(_, r, _)| r),
        }
    }
}

impl InFlightGuard {
    /// The real usage came: the reservation becomes what was used, and the key's
    /// calibration learns from it. Without this, dropping the guard gives it back.
    pub fn settle(&mut self, input: u64, output: u64, now: Instant) {
        let state = &self.state;
        state.counters.input_tokens.fetch_add(input, Ordering::Relaxed);
        state.counters.output_tokens.fetch_add(output, Ordering::Relaxed);
        let used = input.saturating_add(output);
        let mut s = state.lock();
        s.tokens.add(now, used);
        s.shared.on_tokens(used);
        s.model.settle_tokens(self.tokens, Some(used), now);
        s.reserved_tokens = s.reserved_tokens.saturating_sub(self.tokens);
        s.calibration.learn(self.prompt_bytes, input, output);
        self.tokens = 0;
        self.settled = true;
    }

    /// Gives back an unsettled reservation (the attempt failed, was cancelled or its
    /// stream was cut before the usage came).
    pub(super) fn release(&mut self, s: &mut Inner, now: Instant) {
        if !self.settled {
            s.model.settle_tokens(self.tokens, None, now);
            s.reserved_tokens = s.reserved_tokens.saturating_sub(self.tokens);
            self.tokens = 0;
            self.settled = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(tokens: u64) -> Need {
        Need { tokens, prompt_bytes: tokens * 4, ..Need::default() }
    }

    #[test]
    fn every_way_an_attempt_ends_leaves_nothing_reserved() {
        let s = Arc::new(EndpointState::default());
        let limits = Limits { tpm: Some(10_000), ..Limits::default() };
        let now = Instant::now();
        // Failed or cancelled before any usage came (the guard is dropped).
        drop(s.reserve(&limits, &need(6_000), now).expect("room"));
        assert_eq!(s.forecast(now).reserved_tokens, 0);
        // A stream cut mid-way: same.
        let cut = s.reserve(&limits, &need(6_000), now).expect("given back, so room again");
        assert_eq!(s.forecast(now).reserved_tokens, 6_000);
        assert!(s.reserve(&limits, &need(6_000), now).is_err(), "the reservation holds the tokens");
        drop(cut);
        // Settled by the usage.
        let mut done = s.reserve(&limits, &need(6_000), now).expect("room");
        done.settle(100, 20, now);
        assert_eq!(s.forecast(now).reserved_tokens, 0);
        drop(done);
        assert_eq!(s.forecast(now).reserved_tokens, 0, "settled once, not given back twice");
        assert!(s.reserve(&limits, &need(9_000), now).is_ok(), "only the 120 used stay counted");
    }

    #[test]
    fn low_priority_leaves_the_reserve() {
        let s = Arc::new(EndpointState::default());
        let limits = Limits { rpm: Some(10), ..Limits::default() };
        let now = Instant::now();
        for _ in 0..8 {
            drop(s.reserve(&limits, &Need::default(), now).expect("room"));
        }
        let low = Need { priority: Priority::Low, reserve: 0.25, ..Need::default() };
        assert_eq!(s.check(&limits, &low, now), Err(Exclusion::Reserved));
        assert!(s.check(&limits, &Need { priority: Priority::High, ..low }, now).is_ok());
    }

    #[test]
    fn calibration_learns_bytes_per_token_and_completion_size() {
        let s = Arc::new(EndpointState::default());
        let now = Instant::now();
        assert_eq!(s.estimate_tokens(4_000, Some(10)), 1_010);
        for _ in 0..40 {
            let mut g = s.reserve(&Limits::default(), &need(1), now).expect("room");
            g.prompt_bytes = 3_000;
            g.settle(1_000, 50, now);
        }
        let estimate = s.estimate_tokens(3_000, None);
        assert!((1_040..=1_060).contains(&estimate), "{estimate}");
    }

    #[test]
    fn priorities_parse_from_words_and_litellm_integers() {
        assert_eq!(Priority::parse("HIGH"), Some(Priority::High));
        assert_eq!(Priority::parse("\"low\""), Some(Priority::Low));
        assert_eq!(Priority::parse("0"), Some(Priority::High));
        assert_eq!(Priority::parse("1"), Some(Priority::Normal));
        assert_eq!(Priority::parse("7"), Some(Priority::Low));
        assert_eq!(Priority::parse("urgent!"), None);
    }
}
