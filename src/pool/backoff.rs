//! How long a key rests after a 429 or a breaker trip: the provider's hint, or the
//! configured `cooldown` when it gave none, never less than a floor that doubles with
//! each consecutive 429 from the same key, never more than the ceiling.
//!
//! The floor is what stops a retry storm: a provider that answers `retry-after: 0`
//! forever still sees each key at most once per floor, and less often the longer it
//! goes on. Jitter spreads out keys (and replicas) that were refused together.

use std::time::{Duration, Instant};

use crate::config::CooldownBounds;
use crate::provider::ratelimit::Wait;

/// A provider's own hint is honoured down to this fraction of the floor: it knows its
/// limits better than a configured guess, but zero is never a rest.
const HINTED_FLOOR_DIVISOR: u32 = 10;
/// The floor stops doubling here (2^16 times even the smallest floor is hours).
const MAX_DOUBLINGS: u32 = 16;
/// Up to this share of the doubled floor is added at random.
const JITTER: f64 = 0.5;
/// Used if a deadline cannot be represented (never, for bounded rests).
const FAR: Duration = Duration::from_secs(3600);

/// How long to rest, and whether the provider asked for longer than the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rest {
    pub duration: Duration,
    pub clamped: bool,
}

/// The rest after a 429. `hint`: what the provider said (already cut to the ceiling);
/// `hintless`: the configured cooldown when it said nothing; `streak`: consecutive
/// 429s from this key, this one included; `jitter`: a random number in `0..1`.
pub fn after_429(hint: Option<Wait>, hintless: Duration, bounds: CooldownBounds, streak: u32, jitter: f64) -> Rest {
    let base = match hint {
        Some(_) => bounds.floor / HINTED_FLOOR_DIVISOR,
        None => bounds.floor,
    };
    let doubled = base.saturating_mul(1 << streak.saturating_sub(1).min(MAX_DOUBLINGS));
    let spread =
        Duration::try_from_secs_f64(doubled.as_secs_f64() * JITTER * jitter.clamp(0.0, 1.0)).unwrap_or_default();
    let floor = doubled.saturating_add(spread);
    let asked = hint.map_or(hintless, |w| w.duration);
    let duration = asked.max(floor).min(bounds.ceiling);
    Rest { duration, clamped: hint.is_some_and(|w| w.clamped) && duration >= bounds.ceiling }
}

/// The rest after a 429 the key's own model already paces (see
/// `EndpointState::record_rate_limited`): exactly the provider's hint, within the ceiling.
pub fn as_hinted(hint: Wait, bounds: CooldownBounds) -> Rest {
    let duration = hint.duration.min(bounds.ceiling);
    Rest { duration, clamped: hint.clamped && duration >= bounds.ceiling }
}

/// How long a tripped breaker stays open: the configured cooldown, within the bounds.
pub fn breaker_open_for(cooldown: Duration, bounds: CooldownBounds) -> Duration {
    cooldown.max(bounds.floor).min(bounds.ceiling)
}

/// `now + d` without the panic of `Instant + Duration` on overflow.
pub fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).or_else(|| now.checked_add(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: CooldownBounds = CooldownBounds { floor: Duration::from_secs(1), ceiling: Duration::from_secs(3600) };

    fn hint(secs: f64) -> Option<Wait> {
        Some(Wait { duration: Duration::from_secs_f64(secs), clamped: false })
    }

    #[test]
    fn hintless_429s_rest_at_least_the_floor_and_back_off() {
        let zero = Duration::ZERO;
        let rests: Vec<Duration> = (1..=5).map(|n| after_429(None, zero, BOUNDS, n, 0.0).duration).collect();
        let secs: Vec<u64> = rests.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16]);
        // The configured cooldown wins while it is longer than the grown floor.
        let five = Duration::from_secs(5);
        assert_eq!(after_429(None, five, BOUNDS, 1, 0.0).duration, five);
        assert_eq!(after_429(None, five, BOUNDS, 4, 0.0).duration, Duration::from_secs(8));
    }

    #[test]
    fn a_hint_is_honoured_down_to_a_tenth_of_the_floor() {
        assert_eq!(after_429(hint(3.0), Duration::ZERO, BOUNDS, 1, 0.9).duration, Duration::from_secs(3));
        assert_eq!(after_429(hint(0.0), Duration::ZERO, BOUNDS, 1, 0.0).duration, Duration::from_millis(100));
        assert_eq!(after_429(hint(0.02), Duration::ZERO, BOUNDS, 3, 0.0).duration, Duration::from_millis(400));
    }

    #[test]
    fn jitter_adds_up_to_half_the_floor() {
        let low = after_429(None, Duration::ZERO, BOUNDS, 2, 0.0).duration;
        let high = after_429(None, Duration::ZERO, BOUNDS, 2, 0.999).duration;
        assert_eq!(low, Duration::from_secs(2));
        assert!(high > Duration::from_millis(2990) && high < Duration::from_secs(3), "{high:?}");
        assert_eq!(after_429(None, Duration::ZERO, BOUNDS, 2, f64::NAN).duration, low);
    }

    #[test]
    fn the_ceiling_bounds_everything_and_says_when_the_provider_asked_for_more() {
        let long = Some(Wait { duration: BOUNDS.ceiling, clamped: true });
        assert_eq!(after_429(long, Duration::ZERO, BOUNDS, 1, 0.0), Rest { duration: BOUNDS.ceiling, clamped: true });
        let grown = after_429(hint(0.0), Duration::ZERO, BOUNDS, u32::MAX, 0.999);
        assert_eq!(grown, Rest { duration: BOUNDS.ceiling, clamped: false });
        let configured = after_429(None, Duration::from_secs(99_999), BOUNDS, 1, 0.0);
        assert_eq!(configured, Rest { duration: BOUNDS.ceiling, clamped: false });
        assert_eq!(breaker_open_for(Duration::ZERO, BOUNDS), BOUNDS.floor);
        assert_eq!(breaker_open_for(Duration::from_secs(1 << 40), BOUNDS), BOUNDS.ceiling);
    }

    #[test]
    fn later_never_panics() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::from_secs(2)), now + Duration::from_secs(2));
        assert!(later(now, Duration::MAX) >= now);
    }
}
