//! The upper bound of every number and duration either format accepts, in one table.
//!
//! A value past these is an error with its field path, never a value that passes
//! `check` and then overflows an `Instant`, panics a semaphore or holds memory at run
//! time. Each bound is far above what a working deployment needs; the README's
//! configuration reference lists the same table.

use std::time::Duration;

use super::validate::{report, Diags};
use super::values::{parse_duration, NumOrText};

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// TCP + TLS handshake of one upstream attempt.
pub(crate) const CONNECT_TIMEOUT: Duration = minutes(5);
/// Until response headers (all attempts) and the longest silence inside a stream: a
/// non-streamed reasoning request can think for the better part of an hour, and
/// LiteLLM's own default is 6000 s.
pub(crate) const REQUEST_TIMEOUT: Duration = minutes(6 * 60);
pub(crate) const CLIENT_BODY_TIMEOUT: Duration = minutes(60);
/// Long enough to drain a 30-minute stream, short of any pod's patience.
pub(crate) const SHUTDOWN_GRACE: Duration = minutes(60);
/// Also the ceiling of a provider's retry hint.
pub(crate) const COOLDOWN: Duration = minutes(60);
pub(crate) const MAX_WAIT: Duration = minutes(60);
pub(crate) const BODY_LIMIT: u64 = 1 << 30;
pub(crate) const NUM_RETRIES: u64 = 100;
/// Failures per minute kept per key to decide the breaker.
pub(crate) const ALLOWED_FAILS: u64 = 1_000;
pub(crate) const MAX_WAITING: u64 = 100_000;
pub(crate) const WEIGHT: u64 = 10_000;
pub(crate) const RPM: u64 = 10_000_000;
pub(crate) const TPM: u64 = 10_000_000_000;
pub(crate) const MAX_INFLIGHT: u64 = 100_000;
pub(crate) const ORDER: u64 = 1_000;
/// Open connections per listener: no process has more descriptors than this.
pub(crate) const MAX_CONNECTIONS: u64 = 100_000;
/// Longer than this, a peer that never finishes its headers holds a connection for
/// nothing.
pub(crate) const HEADER_READ_TIMEOUT: Duration = minutes(5);
pub(crate) const IDLE_TIMEOUT: Duration = minutes(60);
/// USD per million tokens (native `price:`); LiteLLM's per-token fields are held to
/// the same bound divided by a million. The dearest list price is below 1,000.
pub(crate) const PRICE_PER_MILLION: f64 = 10_000.0;

/// Checks a price (USD per million tokens) against `0..=PRICE_PER_MILLION`.
pub(crate) fn price_per_million(value: f64) -> Result<f64, String> {
    if value.is_finite() && (0.0..=PRICE_PER_MILLION).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be a price from 0 to {PRICE_PER_MILLION} (USD per million tokens)"))
    }
}

/// How long a changed key's value waits for its pre-flight probe before it serves
/// anyway: past a few minutes the old value would serve on for no reason.
pub(crate) const KEY_PROBE_TIMEOUT: Duration = minutes(5);
/// Active health checks: a day between probes is the least that is still a check.
pub(crate) const HEALTH_CHECK_INTERVAL: Duration = minutes(24 * 60);
/// The shortest interval: more often would spend the provider's patience on probes.
pub(crate) const HEALTH_CHECK_FLOOR: Duration = Duration::from_millis(100);
/// Regions in one required set.
pub(crate) const REQUIRED_REGIONS: usize = 64;

/// Whether zero is a meaningful value of a duration field.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Zero {
    /// A zero timeout would fail every request.
    Refused,
    /// A zero cooldown or wait means "none".
    Allowed,
}

/// Parses a duration and checks it against `max`.
pub(crate) fn duration(value: &NumOrText, max: Duration, zero: Zero) -> Result<Duration, String> {
    let d = parse_duration(value)?;
    if d.is_zero() && zero == Zero::Refused {
        return Err("must be greater than zero".into());
    }
    if d > max {
        return Err(format!("must be at most {}", humantime::format_duration(max)));
    }
    Ok(d)
}

/// Reports and drops a duration outside `(0 or more)..=max`.
pub(crate) fn duration_at(
    diags: &mut Diags<'_>,
    path: &str,
    value: &NumOrText,
    max: Duration,
    zero: Zero,
) -> Option<Duration> {
    report(diags, path, duration(value, max, zero))
}

/// Checks a count against `min..=max` and narrows it to the runtime type (always
/// possible: every bound fits the type it is stored in).
pub(crate) fn count<T: TryFrom<u64>>(value: u64, min: u64, max: u64) -> Result<T, String> {
    if value < min {
        return Err(format!("must be at least {min}"));
    }
    if value > max {
        return Err(format!("must be at most {max}"));
    }
    T::try_from(value).map_err(|_| format!("must be at most {max}"))
}

/// Reports and drops a count outside `min..=max`.
pub(crate) fn count_at<T: TryFrom<u64>>(
    diags: &mut Diags<'_>,
    path: &str,
    value: u64,
    min: u64,
    max: u64,
) -> Option<T> {
    report(diags, path, count(value, min, max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_past_their_bound_are_errors_not_overflows() {
        let huge = [
            NumOrText::Float(1e19),
            NumOrText::Int(u64::MAX),
            NumOrText::Text("1e19".into()),
            NumOrText::Text("10000000000000000000s".into()),
            NumOrText::Text("500000years".into()),
        ];
        for value in huge {
            let err = duration(&value, REQUEST_TIMEOUT, Zero::Refused).unwrap_err();
            assert!(err == "must be at most 6h" || err.starts_with("invalid duration"), "{value:?}: {err}");
        }
        assert_eq!(duration(&NumOrText::Text("6h".into()), REQUEST_TIMEOUT, Zero::Refused), Ok(REQUEST_TIMEOUT));
        assert!(duration(&NumOrText::Int(0), COOLDOWN, Zero::Refused).is_err());
        assert_eq!(duration(&NumOrText::Int(0), COOLDOWN, Zero::Allowed), Ok(Duration::ZERO));
    }

    #[test]
    fn counts_are_checked_and_narrowed() {
        assert_eq!(count::<usize>(100_000, 0, MAX_WAITING), Ok(100_000));
        assert_eq!(count::<usize>(u64::MAX, 0, MAX_WAITING), Err("must be at most 100000".into()));
        assert_eq!(count::<u32>(0, 1, WEIGHT), Err("must be at least 1".into()));
        assert_eq!(count::<u64>(TPM, 1, TPM), Ok(TPM));
    }
}
