//! Rate-limit hints in provider responses, normalised to "how much is left" and
//! "how long until it resets".
//!
//! Every provider spells these differently; this module is the only place that knows
//! the spellings. A header that does not parse is counted in
//! [`RateLimitReport::malformed`] and otherwise ignored: a provider's odd header must
//! never fail a request.
//!
//! Hints come from the network, so none is trusted with arithmetic: every number is
//! converted with checked operations, a value no clock can hold (negative, NaN,
//! infinite, or beyond `Duration`'s range) counts as malformed, and every wait is cut
//! to the caller's ceiling, so one header cannot lock a key out for years.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;

/// What one response said about the key's remaining quota. Every duration in it is at
/// most the ceiling given to [`parse`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateLimitReport {
    /// `retry-after` / `retry-after-ms` (or Gemini's `RetryInfo.retryDelay`).
    pub retry_after: Option<Duration>,
    pub remaining_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub limit_requests: Option<u64>,
    pub limit_tokens: Option<u64>,
    /// Time from now until the request quota resets.
    pub reset_requests: Option<Duration>,
    /// Time from now until the token quota resets.
    pub reset_tokens: Option<Duration>,
    /// Rate-limit headers present but unparseable.
    pub malformed: u32,
    /// Set when a hint asked for longer than the ceiling: the ceiling it was cut to.
    pub clamped_to: Option<Duration>,
}

/// A wait a provider asked for, cut to the ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub duration: Duration,
    /// The provider asked for longer than the ceiling.
    pub clamped: bool,
}

impl RateLimitReport {
    /// How long a key that just answered 429 should rest: the explicit retry hint if
    /// there is one, else the reset of whichever quota is spent, else the longest
    /// reset reported.
    pub fn cooldown(&self) -> Option<Wait> {
        let spent = [
            (self.remaining_requests == Some(0)).then_some(self.reset_requests).flatten(),
            (self.remaining_tokens == Some(0)).then_some(self.reset_tokens).flatten(),
        ];
        let duration = self
            .retry_after
            .or_else(|| spent.into_iter().flatten().max())
            .or_else(|| self.reset_requests.max(self.reset_tokens))?;
        Some(Wait { duration, clamped: self.clamped_to.is_some_and(|ceiling| duration >= ceiling) })
    }

    /// Cuts a parsed wait to `ceiling`, remembering that it was longer.
    fn bound(&mut self, wait: Duration, ceiling: Duration) -> Duration {
        if wait > ceiling {
            self.clamped_to = Some(ceiling);
            ceiling
        } else {
            wait
        }
    }
}

/// Reads every known rate-limit header family from a response; no wait in the report
/// is longer than `ceiling`.
pub fn parse(headers: &HeaderMap, now: SystemTime, ceiling: Duration) -> RateLimitReport {
    let mut r = RateLimitReport::default();

    if headers.contains_key("retry-after-ms") {
        r.retry_after = dur(&mut r, headers, "retry-after-ms", ceiling, parse_millis);
    } else if headers.contains_key("retry-after") {
        r.retry_after = dur(&mut r, headers, "retry-after", ceiling, |v| parse_retry_after(v, now));
    }

    // OpenAI, Groq and most OpenAI-compatible providers.
    let num = |r: &mut RateLimitReport, name: &str| -> Option<u64> {
        let v = headers.get(name)?;
        let parsed = v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
        r.malformed += u32::from(parsed.is_none());
        parsed
    };
    r.limit_requests = num(&mut r, "x-ratelimit-limit-requests");
    r.remaining_requests = num(&mut r, "x-ratelimit-remaining-requests");
    r.limit_tokens = num(&mut r, "x-ratelimit-limit-tokens");
    r.remaining_tokens = num(&mut r, "x-ratelimit-remaining-tokens");
    r.reset_requests = dur(&mut r, headers, "x-ratelimit-reset-requests", ceiling, parse_go_duration);
    r.reset_tokens = dur(&mut r, headers, "x-ratelimit-reset-tokens", ceiling, parse_go_duration);

    // Cerebras: daily request quota and per-minute tokens, resets in float seconds.
    if headers.contains_key("x-ratelimit-remaining-requests-day")
        || headers.contains_key("x-ratelimit-remaining-tokens-minute")
    {
        r.limit_requests = r.limit_requests.or(num(&mut r, "x-ratelimit-limit-requests-day"));
        r.remaining_requests = r.remaining_requests.or(num(&mut r, "x-ratelimit-remaining-requests-day"));
        r.limit_tokens = r.limit_tokens.or(num(&mut r, "x-ratelimit-limit-tokens-minute"));
        r.remaining_tokens = r.remaining_tokens.or(num(&mut r, "x-ratelimit-remaining-tokens-minute"));
        let day = dur(&mut r, headers, "x-ratelimit-reset-requests-day", ceiling, parse_float_secs);
        r.reset_requests = r.reset_requests.or(day);
        let minute = dur(&mut r, headers, "x-ratelimit-reset-tokens-minute", ceiling, parse_float_secs);
        r.reset_tokens = r.reset_tokens.or(minute);
    }

    // Anthropic: RFC 3339 reset instants; the tightest token family wins.
    if headers.keys().any(|k| k.as_str().starts_with("anthropic-ratelimit-")) {
        let at = |r: &mut RateLimitReport, name: &str| dur(r, headers, name, ceiling, |v| parse_rfc3339_from(v, now));
        r.limit_requests = r.limit_requests.or(num(&mut r, "anthropic-ratelimit-requests-limit"));
        r.remaining_requests = r.remaining_requests.or(num(&mut r, "anthropic-ratelimit-requests-remaining"));
        r.reset_requests = r.reset_requests.or(at(&mut r, "anthropic-ratelimit-requests-reset"));
        for family in ["tokens", "input-tokens", "output-tokens"] {
            let limit = num(&mut r, &format!("anthropic-ratelimit-{family}-limit"));
            let remaining = num(&mut r, &format!("anthropic-ratelimit-{family}-remaining"));
            let reset = at(&mut r, &format!("anthropic-ratelimit-{family}-reset"));
            if remaining.is_some() && (r.remaining_tokens.is_none() || remaining < r.remaining_tokens) {
                r.remaining_tokens = remaining;
                r.limit_tokens = limit.or(r.limit_tokens);
                r.reset_tokens = reset.or(r.reset_tokens);
            }
        }
    }

    // OpenRouter (on 429): `X-RateLimit-Reset` is a unix timestamp in milliseconds.
    if r.remaining_requests.is_none() {
        r.limit_requests = num(&mut r, "x-ratelimit-limit");
        r.remaining_requests = num(&mut r, "x-ratelimit-remaining");
        let reset = dur(&mut r, headers, "x-ratelimit-reset", ceiling, |v| parse_unix_ms_from(v, now));
        r.reset_requests = r.reset_requests.or(reset);
    }
    r
}

/// Gemini puts its retry hint in the 429 body: `error.details[].retryDelay` of a
/// `google.rpc.RetryInfo`, e.g. `"retryDelay": "17s"`. The OpenAI-compatible endpoint
/// wraps the error object in a one-element list. Cut to `ceiling` like any hint.
pub fn gemini_retry_delay(body: &[u8], ceiling: Duration) -> Option<Wait> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = match &value {
        serde_json::Value::Array(items) => items.first()?.get("error")?,
        other => other.get("error")?,
    };
    let delay = error.get("details")?.as_array()?.iter().find_map(|d| {
        let is_retry_info = d.get("@type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with("RetryInfo"));
        let delay = d.get("retryDelay")?.as_str()?;
        if is_retry_info {
            parse_go_duration(delay)
        } else {
            None
        }
    })?;
    Some(Wait { duration: delay.min(ceiling), clamped: delay > ceiling })
}

/// Reads one duration header with `f`, counting it as malformed if it does not parse,
/// and cutting it to `ceiling`.
fn dur(
    r: &mut RateLimitReport,
    headers: &HeaderMap,
    name: &str,
    ceiling: Duration,
    f: impl Fn(&str) -> Option<Duration>,
) -> Option<Duration> {
    let v = headers.get(name)?;
    let parsed = v.to_str().ok().and_then(|s| f(s.trim()));
    r.malformed += u32::from(parsed.is_none());
    parsed.map(|d| r.bound(d, ceiling))
}

/// A number of seconds as a duration, if it is one a clock can hold.
fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

/// `retry-after-ms`: milliseconds, integer or decimal.
fn parse_millis(value: &str) -> Option<Duration> {
    seconds(value.trim().parse::<f64>().ok()? / 1000.0)
}

/// `retry-after`: delay in seconds (integer or decimal) or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Go-style durations as OpenAI and Groq send them: `1s`, `6m0s`, `7.66s`, `12ms`,
/// `1h2m3.5s`, `250us`.
pub fn parse_go_duration(value: &str) -> Option<Duration> {
    let mut rest = value.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    seconds(total)
}

fn parse_float_secs(value: &str) -> Option<Duration> {
    seconds(value.parse().ok()?)
}

fn parse_rfc3339_from(value: &str, now: SystemTime) -> Option<Duration> {
    let at = humantime::parse_rfc3339_weak(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

fn parse_unix_ms_from(value: &str, now: SystemTime) -> Option<Duration> {
    let ms: u64 = value.parse().ok()?;
    let at = UNIX_EPOCH.checked_add(Duration::from_millis(ms))?;
    Some(at.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const HOUR: Duration = Duration::from_secs(3600);

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn wait(secs: f64) -> Option<Wait> {
        Some(Wait { duration: Duration::from_secs_f64(secs), clamped: false })
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_go_duration("7.66s"), Some(Duration::from_millis(7660)));
        assert_eq!(parse_go_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_go_duration("1h2m3s"), Some(Duration::from_secs(3723)));
        for bad in ["", "s", "5", "5x", "-1s", "1.2.3s", "99999999999999999999s", "1e300s"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(120));
        let d = parse_retry_after(&later, now).unwrap();
        assert!(d > Duration::from_secs(118) && d <= Duration::from_secs(120), "{d:?}");
        for bad in ["soon", "-1", "NaN", "inf", "1e20"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn openai_family_and_cooldown_choice() {
        let h = headers(&[
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "7.66s"),
            ("x-ratelimit-remaining-tokens", "100"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ]);
        let r = parse(&h, SystemTime::now(), HOUR);
        assert_eq!(r.remaining_requests, Some(0));
        assert_eq!(r.cooldown(), wait(7.66));
        let h = headers(&[("retry-after", "2"), ("x-ratelimit-reset-requests", "9s")]);
        assert_eq!(parse(&h, SystemTime::now(), HOUR).cooldown(), wait(2.0));
        let h = headers(&[("retry-after-ms", "20")]);
        assert_eq!(parse(&h, SystemTime::now(), HOUR).cooldown(), wait(0.02));
    }

    #[test]
    fn anthropic_cerebras_openrouter() {
        let now = SystemTime::now();
        let reset = humantime::format_rfc3339_seconds(now + Duration::from_secs(30)).to_string();
        let h = headers(&[
            ("anthropic-ratelimit-requests-remaining", "0"),
            ("anthropic-ratelimit-requests-reset", &reset),
            ("anthropic-ratelimit-tokens-remaining", "5000"),
            ("anthropic-ratelimit-output-tokens-remaining", "10"),
        ]);
        let r = parse(&h, now, HOUR);
        assert_eq!(r.remaining_tokens, Some(10));
        let c = r.cooldown().unwrap().duration;
        assert!(c > Duration::from_secs(28) && c <= Duration::from_secs(30), "{c:?}");

        let h = headers(&[("x-ratelimit-remaining-requests-day", "0"), ("x-ratelimit-reset-requests-day", "3011.38")]);
        assert_eq!(parse(&h, now, HOUR).cooldown(), wait(3011.38));

        let at = now.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 + 4000;
        let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &at.to_string())]);
        let c = parse(&h, now, HOUR).cooldown().unwrap().duration;
        assert!(c > Duration::from_millis(3900) && c <= Duration::from_secs(4), "{c:?}");
    }

    #[test]
    fn malformed_headers_counted_not_fatal() {
        let h = headers(&[
            ("retry-after", "tomorrow-ish"),
            ("x-ratelimit-remaining-requests", "lots"),
            ("x-ratelimit-reset-tokens", "??"),
        ]);
        let r = parse(&h, SystemTime::now(), HOUR);
        assert_eq!(r.malformed, 3);
        assert_eq!(r.cooldown(), None);
    }

    /// Each of these used to panic (`Duration::from_secs_f64` overflow).
    #[test]
    fn hints_no_clock_can_hold_are_malformed() {
        let cases: [&[(&'static str, &str)]; 5] = [
            &[("retry-after", "1e20")],
            &[("retry-after-ms", "1e30")],
            &[("x-ratelimit-reset-requests", "99999999999999999999s")],
            &[("x-ratelimit-remaining-requests-day", "0"), ("x-ratelimit-reset-requests-day", "1e300")],
            &[("retry-after", "-5")],
        ];
        for pairs in cases {
            let r = parse(&headers(pairs), SystemTime::now(), HOUR);
            assert_eq!(r.malformed, 1, "{pairs:?}");
            assert_eq!(r.cooldown(), None, "{pairs:?}");
        }
    }

    /// A long but representable hint rests the key for the ceiling, and says so.
    #[test]
    fn long_hints_are_cut_to_the_ceiling() {
        let now = SystemTime::now();
        let h = headers(&[("retry-after", "99999999")]);
        let r = parse(&h, now, Duration::from_secs(120));
        assert_eq!(r.malformed, 0);
        assert_eq!(r.cooldown(), Some(Wait { duration: Duration::from_secs(120), clamped: true }));

        let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &u64::MAX.to_string())]);
        let r = parse(&h, now, HOUR);
        assert_eq!(r.reset_requests, Some(HOUR));
        assert_eq!(r.cooldown(), Some(Wait { duration: HOUR, clamped: true }));

        // A clamped reset of one quota does not mark a short retry hint as clamped.
        let h = headers(&[("retry-after", "3"), ("x-ratelimit-reset-tokens", "9999h")]);
        assert_eq!(parse(&h, now, HOUR).cooldown(), wait(3.0));
    }

    #[test]
    fn gemini_retry_info() {
        let body = br#"[{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"17s"}]}}]"#;
        assert_eq!(gemini_retry_delay(body, HOUR), wait(17.0));
        assert_eq!(gemini_retry_delay(b"not json", HOUR), None);
        let long = br#"{"error":{"details":[{"@type":"google.rpc.RetryInfo","retryDelay":"999999s"}]}}"#;
        assert_eq!(gemini_retry_delay(long, HOUR), Some(Wait { duration: HOUR, clamped: true }));
    }
}
