//! Time spellings used by provider rate-limit headers. Every conversion rounds *up* to
//! the millisecond: a client that waits exactly the advertised time must find the
//! window already reset.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whole milliseconds, rounded up.
pub(crate) fn ceil_ms(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// `retry-after` seconds: rounded up, at least 1 (0 would invite a hot retry loop).
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    let secs = ceil_ms(d).div_ceil(1000).max(1);
    u64::try_from(secs).unwrap_or(u64::MAX)
}

/// `s` or `s.fff` (trailing zeros trimmed) from milliseconds.
fn secs_with_fraction(ms: u128) -> String {
    let (whole, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        let frac = format!("{frac:03}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

/// Go's `time.Duration` spelling as OpenAI and Groq send it: `0s`, `12ms`, `1s`,
/// `7.66s`, `6m0s`, `1h2m3.5s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = ceil_ms(d);
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m) = (ms / 3_600_000, (ms / 60_000) % 60);
    let secs = secs_with_fraction(ms % 60_000);
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// Protobuf `Duration` JSON (Gemini's `retryDelay`): `2s`, `0.3s`.
pub(crate) fn proto_duration(d: Duration) -> String {
    format!("{}s", secs_with_fraction(ceil_ms(d)))
}

/// Float seconds with millisecond precision (Cerebras): `0.3`, `33011.383`.
pub(crate) fn float_secs(d: Duration) -> String {
    let ms = ceil_ms(d);
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Milliseconds since the epoch of `now + d`, rounded up (OpenRouter's reset).
pub(crate) fn unix_ms_after(now: SystemTime, d: Duration) -> u128 {
    ceil_ms((now + d).duration_since(UNIX_EPOCH).unwrap_or_default())
}

/// RFC 3339 UTC instant with milliseconds (`2025-01-31T12:00:00.300Z`) of `now + d`,
/// rounded up (Anthropic's reset).
pub(crate) fn rfc3339_after(now: SystemTime, d: Duration) -> String {
    let ms = u64::try_from(unix_ms_after(now, d)).unwrap_or(u64::MAX);
    let at = UNIX_EPOCH.checked_add(Duration::from_millis(ms)).unwrap_or(now);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn go_durations_round_up() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_micros(11_200)), "12ms");
        assert_eq!(go_duration(ms(300)), "300ms");
        assert_eq!(go_duration(ms(1000)), "1s");
        assert_eq!(go_duration(ms(7660)), "7.66s");
        assert_eq!(go_duration(ms(360_000)), "6m0s");
        assert_eq!(go_duration(ms(3_723_500)), "1h2m3.5s");
    }

    #[test]
    fn other_spellings() {
        assert_eq!(retry_after_secs(ms(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
        assert_eq!(proto_duration(ms(2000)), "2s");
        assert_eq!(proto_duration(ms(300)), "0.3s");
        assert_eq!(float_secs(ms(300)), "0.300");
        let epoch = UNIX_EPOCH;
        assert_eq!(rfc3339_after(epoch, ms(300)), "1970-01-01T00:00:00.300Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_251_199); // 2024-02-29T23:59:59Z
        assert_eq!(rfc3339_after(t, Duration::from_millis(1500)), "2024-03-01T00:00:00.500Z");
        assert_eq!(unix_ms_after(epoch, Duration::from_micros(1)), 1);
    }
}
