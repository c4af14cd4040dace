//! The model of one key's limits: a token bucket per limit (requests, tokens), shaped
//! by the declared `rpm`/`tpm`, by every rate-limit header the provider sends, and by
//! what the key's own 429s reveal. It answers "has this key room for this request now,
//! or when", so a request goes only where the provider will take it, instead of the
//! key being marked spent after the provider said so.
//!
//! Pure: every method takes the `Instant` it is about, so tests drive the clock.
//!
//! How a 429 is read: the model admitted the request, so it held at least one token
//! where the provider's bucket held less. If the model's bucket was last full at `f`
//! and `k` requests (the refused one included) went out since, a provider bucket of
//! capacity `C` and rate `r` admits at most `C + r (s - f)` of them, so
//! `C < k - r (s - f)`. The capacity becomes the smaller of that bound and half the
//! old one (at least 1), and the level is drained. A burst-free limit (capacity 1)
//! is learned from a key's first two or three 429s. The refill rate comes from the
//! provider's `limit` over its reset horizon (a minute unless its resets show a
//! shorter window), less a safety margin so jitter between keyrelay and the provider
//! cannot turn an exactly spaced request into a 429. While no 429 comes for
//! [`PROBE_AFTER`], the capacity grows by one and one request goes early: a raised
//! limit is found (a 429 to the probe names the new limit), a lowered one shows as
//! the next 429 (and in the provider's `limit` header, taken at once).

use std::time::{Duration, Instant};

use crate::provider::ratelimit::RateLimitReport;

/// The share of a header-derived rate the model uses: requests sent exactly at the
/// provider's spacing arrive a little early or late.
pub const RATE_MARGIN: f64 = 0.9;

/// Without a 429 for this long, the learned capacity is probed one higher.
pub const PROBE_AFTER: Duration = Duration::from_secs(30);

/// The reset horizon assumed for a `limit` header until resets show a shorter one.
const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

/// How many recent sends a key remembers, to read its 429s.
const RECENT_SENDS: usize = 64;

/// A token bucket: holds up to `capacity`, refills at `rate` per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub capacity: f64,
    pub rate: f64,
    level: f64,
    at: Instant,
    /// When the level last reached capacity.
    full_at: Instant,
}

impl Bucket {
    /// A full bucket. Capacity and rate are kept positive and finite.
    pub fn new(capacity: f64, rate: f64, now: Instant) -> Bucket {
        let (capacity, rate) = sane(capacity, rate);
        Bucket { capacity, rate, level: capacity, at: now, full_at: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        if elapsed > 0.0 {
            let before = self.level;
            self.level = (self.level + elapsed * self.rate).min(self.capacity);
            if before < self.capacity && self.level >= self.capacity {
                let deficit = (self.capacity - before) / self.rate;
                self.full_at =
                    Duration::try_from_secs_f64(deficit).ok().and_then(|d| self.at.checked_add(d)).unwrap_or(now);
            }
            self.at = now;
        }
    }

    /// What it holds at `now`.
    pub fn level(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.level
    }

    /// When it holds `need` (at most its capacity: a request larger than the whole
    /// bucket goes when the bucket is full). `now` if it does already.
    pub fn room_at(&mut self, need: f64, now: Instant) -> Instant {
        self.refill(now);
        let need = need.min(self.capacity);
        if self.level >= need {
            return now;
        }
        let wait = (need - self.level) / self.rate;
        Duration::try_from_secs_f64(wait).ok().and_then(|d| now.checked_add(d)).unwrap_or(now + DEFAULT_PERIOD)
    }

    pub fn take(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.level -= n;
    }

    /// Returns `n` taken before (a reservation that was not used), never past full.
    pub fn give_back(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.level = (self.level + n).min(self.capacity);
    }

    /// The provider says it holds nothing.
    pub fn drain(&mut self, now: Instant) {
        self.refill(now);
        self.level = self.level.min(0.0);
    }

    /// The provider says at most `left` remain.
    pub fn at_most(&mut self, left: f64, now: Instant) {
        self.refill(now);
        self.level = self.level.min(left);
    }

    /// A new shape; the level keeps its share of the capacity no larger than before.
    pub fn reshape(&mut self, capacity: f64, rate: f64, now: Instant) {
        self.refill(now);
        let (capacity, rate) = sane(capacity, rate);
        self.level = self.level.min(capacity);
        self.capacity = capacity;
        self.rate = rate;
    }

    /// Fraction of capacity left (0..=1).
    pub fn headroom(&mut self, now: Instant) -> f64 {
        self.refill(now);
        (self.level / self.capacity).clamp(0.0, 1.0)
    }

    /// At the current `rate_of_use` (per second): when it runs dry, if it ever does.
    pub fn exhausted_at(&mut self, rate_of_use: f64, now: Instant) -> Option<Instant> {
        self.refill(now);
        let net = rate_of_use - self.rate;
        if net <= 0.0 || !net.is_finite() {
            return None;
        }
        Duration::try_from_secs_f64(self.level.max(0.0) / net).ok().and_then(|d| now.checked_add(d))
    }
}

fn sane(capacity: f64, rate: f64) -> (f64, f64) {
    let capacity = if capacity.is_finite() { capacity.clamp(1.0, 1e15) } else { 1e15 };
    let rate = if rate.is_finite() { rate.clamp(1e-6, 1e15) } else { 1e15 };
    (capacity, rate)
}

/// What shapes one limit, from each source; the bucket takes the tightest.
#[derive(Debug, Clone, Default)]
struct Sources {
    /// `rpm`/`tpm` from the config: (capacity, rate per second).
    declared: Option<(f64, f64)>,
    /// The provider's `limit` header.
    reported_limit: Option<u64>,
    /// The longest reset the provider reported on a success: its window.
    period: Option<Duration>,
    /// Capacity learned from 429s (requests only).
    learned_capacity: Option<f64>,
    /// Rate learned from 429s when the provider names no limit.
    learned_rate: Option<f64>,
}

impl Sources {
    fn shape(&self) -> Option<(f64, f64)> {
        let reported = self.reported_limit.map(|limit| {
            let period = self.period.unwrap_or(DEFAULT_PERIOD).as_secs_f64().max(0.001);
            (limit as f64, RATE_MARGIN * limit as f64 / period)
        });
        let mut shape: Option<(f64, f64)> = None;
        for (c, r) in [self.declared, reported].into_iter().flatten() {
            shape = Some(shape.map_or((c, r), |(sc, sr)| (sc.min(c), sr.min(r))));
        }
        if let Some(r) = self.learned_rate {
            shape = Some(shape.map_or((r.max(1.0), r), |(c, sr)| (c, sr.min(r))));
        }
        let (c, r) = shape?;
        Some((self.learned_capacity.map_or(c, |l| l.min(c)), r))
    }
}

/// One limit (requests or tokens) of a key: its bucket and what shaped it.
#[derive(Debug, Clone, Default)]
pub struct Limit {
    sources: Sources,
    bucket: Option<Bucket>,
}

impl Limit {
    fn apply(&mut self, now: Instant) {
        match (self.sources.shape(), &mut self.bucket) {
            (None, _) => self.bucket = None,
            (Some((c, r)), Some(b)) => b.reshape(c, r, now),
            (Some((c, r)), None) => self.bucket = Some(Bucket::new(c, r, now)),
        }
    }

    /// The bucket, if anything is known about this limit.
    pub fn bucket(&mut self, now: Instant) -> Option<&mut Bucket> {
        let b = self.bucket.as_mut()?;
        b.refill(now);
        Some(b)
    }
}

/// Both limits of a key, and the recent sends its 429s are read against.
#[derive(Debug, Clone, Default)]
pub struct KeyModel {
    pub requests: Limit,
    pub tokens: Limit,
    recent_sends: std::collections::VecDeque<Instant>,
    /// The last 429 or capacity probe: the next probe is due [`PROBE_AFTER`] later.
    last_learned: Option<Instant>,
}

impl KeyModel {
    /// Takes in the configured limits (per minute).
    pub fn declare(&mut self, rpm: Option<u32>, tpm: Option<u64>, now: Instant) {
        let per_minute = |n: f64| (n, n / 60.0);
        let requests = rpm.map(|n| per_minute(f64::from(n)));
        let tokens = tpm.map(|n| per_minute(n as f64));
        if self.requests.sources.declared != requests {
            self.requests.sources.declared = requests;
            self.requests.apply(now);
        }
        if self.tokens.sources.declared != tokens {
            self.tokens.sources.declared = tokens;
            self.tokens.apply(now);
        }
    }

    /// When the key has room for one request of `tokens` tokens; `now` if it has.
    pub fn room_at(&mut self, tokens: u64, now: Instant) -> Instant {
        let requests = self.requests.bucket(now).map(|b| b.room_at(1.0, now));
        let tokens = self.tokens.bucket(now).map(|b| b.room_at(tokens as f64, now));
        requests.into_iter().chain(tokens).max().unwrap_or(now)
    }

    /// When the request bucket has room again, if it has none now: the model itself
    /// holds the key back until then.
    pub fn requests_held_until(&mut self, now: Instant) -> Option<Instant> {
        let at = self.requests.bucket(now)?.room_at(1.0, now);
        (at > now).then_some(at)
    }

    /// Fraction of the tightest modelled limit left.
    pub fn headroom(&mut self, now: Instant) -> Option<f64> {
        let r = self.requests.bucket(now).map(|b| b.headroom(now));
        let t = self.tokens.bucket(now).map(|b| b.headroom(now));
        r.into_iter().chain(t).reduce(f64::min)
    }

    /// A request of `tokens` estimated tokens goes out.
    pub fn on_send(&mut self, tokens: u64, now: Instant) {
        if let Some(b) = self.requests.bucket(now) {
            b.take(1.0, now);
        }
        if let Some(b) = self.tokens.bucket(now) {
            b.take(tokens as f64, now);
        }
        if self.recent_sends.len() == RECENT_SENDS {
            self.recent_sends.pop_front();
        }
        self.recent_sends.push_back(now);
        self.probe(now);
    }

    /// A reservation of `reserved` tokens settled at `used` (`None`: nothing known was
    /// used, as when the attempt failed or the client left before the usage came).
    pub fn settle_tokens(&mut self, reserved: u64, used: Option<u64>, now: Instant) {
        let Some(b) = self.tokens.bucket(now) else { return };
        match used {
            Some(used) if used >= reserved => b.take((used - reserved) as f64, now),
            Some(used) => b.give_back((reserved - used) as f64, now),
            None => b.give_back(reserved as f64, now),
        }
    }

    /// The provider's rate-limit headers, from a success or a 429.
    pub fn on_report(&mut self, report: &RateLimitReport, rate_limited: bool, now: Instant) {
        let take = |limit: &mut Limit, reported: Option<u64>, remaining: Option<u64>, reset: Option<Duration>| {
            let mut changed = false;
            if let Some(l) = reported.filter(|&l| l > 0) {
                if limit.sources.reported_limit != Some(l) {
                    limit.sources.reported_limit = Some(l);
                    // A new limit makes what was learned about the old one moot.
                    limit.sources.learned_rate = None;
                    changed = true;
                }
            }
            // On a success the reset is the window's end; on a 429 it is only the
            // time to the next free slot, which says nothing about the window.
            if let (false, Some(reset), true) = (rate_limited, reset, reported.is_some() || remaining.is_some()) {
                let reset = reset.max(Duration::from_millis(1));
                if limit.sources.period.is_none_or(|p| reset > p) && reset <= DEFAULT_PERIOD {
                    limit.sources.period = Some(reset);
                    changed = true;
                }
            }
            if changed {
                limit.apply(now);
            }
            if let (Some(left), Some(b)) = (remaining, limit.bucket(now)) {
                b.at_most(left as f64, now);
            }
        };
        take(&mut self.requests, report.limit_requests, report.remaining_requests, report.reset_requests);
        take(&mut self.tokens, report.limit_tokens, report.remaining_tokens, report.reset_tokens);
    }

    /// A 429 to a request this model admitted, sent at `sent` (see the module doc).
    pub fn on_rate_limited(&mut self, report: &RateLimitReport, sent: Instant, now: Instant) {
        self.on_report(report, true, now);
        let tokens_spent = report.remaining_tokens == Some(0) && report.remaining_requests != Some(0);
        if tokens_spent {
            if let Some(b) = self.tokens.bucket(now) {
                b.drain(now);
            }
            return;
        }
        self.last_learned = Some(now);
        let limit = &mut self.requests;
        let Some(b) = limit.bucket(now) else {
            // Nothing known yet: the sends that were refused bound the rate.
            let span = self.recent_sends.front().map(|f| sent.saturating_duration_since(*f).as_secs_f64());
            if let Some(span) = span.filter(|&s| s >= 1.0) {
                let k = self.recent_sends.iter().filter(|&&s| s <= sent).count() as f64;
                limit.sources.learned_rate = Some(RATE_MARGIN * k / span);
                limit.apply(now);
            }
            return;
        };
        let (capacity, rate, full_at) = (b.capacity, b.rate, b.full_at);
        let since = sent.saturating_duration_since(full_at);
        let k = self.recent_sends.iter().filter(|&&s| s >= full_at && s <= sent).count() as f64;
        let bound = k - rate * since.as_secs_f64();
        let learned = bound.min(capacity / 2.0).floor().max(1.0);
        // The sends since the bucket was full were too many for the provider's rate:
        // at least `k` in `since` were refused, so its rate is below `k / since`.
        if since >= Duration::from_secs(1) && capacity <= 1.0 {
            let bound = RATE_MARGIN * k / since.as_secs_f64();
            if bound < rate {
                limit.sources.learned_rate = Some(bound);
            }
        }
        limit.sources.learned_capacity = Some(learned);
        limit.apply(now);
        if let Some(b) = limit.bucket(now) {
            b.drain(now);
        }
    }

    /// Grows a learned capacity (and rate) by a step once no 429 came for a while.
    fn probe(&mut self, now: Instant) {
        let due = self.last_learned.is_some_and(|at| now.saturating_duration_since(at) >= PROBE_AFTER);
        if !due {
            return;
        }
        self.last_learned = Some(now);
        // One request more than the model allows, at once: the provider's answer
        // (a success, or a 429 naming its limit) says whether there is more room.
        if let Some(b) = self.requests.bucket(now) {
            b.give_back(1.0, now);
        }
        let s = &mut self.requests.sources;
        if let Some(c) = &mut s.learned_capacity {
            *c += 1.0;
        }
        if let Some(r) = &mut s.learned_rate {
            *r *= 1.0 / RATE_MARGIN;
        }
        self.requests.apply(now);
    }
}

#[cfg(test)]
#[path = "bucket_tests.rs"]
mod tests;
