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

use http::{HeaderMap, HeaderValue};

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
    let hints = Hints::of(headers);
    let mut r = RateLimitReport::default();

    if hints.has(Hint::RetryAfterMs) {
        r.retry_after = dur(&mut r, &hints, Hint::RetryAfterMs, ceiling, parse_millis);
    } else if hints.has(Hint::RetryAfter) {
        r.retry_after = dur(&mut r, &hints, Hint::RetryAfter, ceiling, |v| parse_retry_after(v, now));
    }

    // OpenAI, Groq and most OpenAI-compatible providers.
    let num = |r: &mut RateLimitReport, hint: Hint| -> Option<u64> {
        let v = hints.get(hint)?;
        let parsed = v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
        r.malformed += u32::from(parsed.is_none());
        parsed
    };
    r.limit_requests = num(&mut r, Hint::LimitRequests);
    r.remaining_requests = num(&mut r, Hint::RemainingRequests);
    r.limit_tokens = num(&mut r, Hint::LimitTokens);
    r.remaining_tokens = num(&mut r, Hint::RemainingTokens);
    r.reset_requests = dur(&mut r, &hints, Hint::ResetRequests, ceiling, parse_go_duration);
    r.reset_tokens = dur(&mut r, &hints, Hint::ResetTokens, ceiling, parse_go_duration);

    // Cerebras: daily request quota and per-minute tokens, resets in float seconds.
    if hints.has(Hint::RemainingRequestsDay) || hints.has(Hint::RemainingTokensMinute) {
        r.limit_requests = r.limit_requests.or(num(&mut r, Hint::LimitRequestsDay));
        r.remaining_requests = r.remaining_requests.or(num(&mut r, Hint::RemainingRequestsDay));
        r.limit_tokens = r.limit_tokens.or(num(&mut r, Hint::LimitTokensMinute));
        r.remaining_tokens = r.remaining_tokens.or(num(&mut r, Hint::RemainingTokensMinute));
        let day = dur(&mut r, &hints, Hint::ResetRequestsDay, ceiling, parse_float_secs);
        r.reset_requests = r.reset_requests.or(day);
        let minute = dur(&mut r, &hints, Hint::ResetTokensMinute, ceiling, parse_float_secs);
        r.reset_tokens = r.reset_tokens.or(minute);
    }

    // Anthropic: RFC 3339 reset instants; the tightest token family wins.
    if hints.anthropic {
        let at = |r: &mut RateLimitReport, hint| dur(r, &hints, hint, ceiling, |v| parse_rfc3339_from(v, now));
        r.limit_requests = r.limit_requests.or(num(&mut r, Hint::AnthropicRequestsLimit));
        r.remaining_requests = r.remaining_requests.or(num(&mut r, Hint::AnthropicRequestsRemaining));
        r.reset_requests = r.reset_requests.or(at(&mut r, Hint::AnthropicRequestsReset));
        for [limit, remaining, reset] in Hint::ANTHROPIC_TOKEN_FAMILIES {
            let limit = num(&mut r, limit);
            let remaining = num(&mut r, remaining);
            let reset = at(&mut r, reset);
            if remaining.is_some() && (r.remaining_tokens.is_none() || remaining < r.remaining_tokens) {
                r.remaining_tokens = remaining;
                r.limit_tokens = limit.or(r.limit_tokens);
                r.reset_tokens = reset.or(r.reset_tokens);
            }
        }
    }

    // OpenRouter (on 429): `X-RateLimit-Reset` is a unix timestamp in milliseconds.
    if r.remaining_requests.is_none() {
        r.limit_requests = num(&mut r, Hint::Limit);
        r.remaining_requests = num(&mut r, Hint::Remaining);
        let reset = dur(&mut r, &hints, Hint::Reset, ceiling, |v| parse_unix_ms_from(v, now));
        r.reset_requests = r.reset_requests.or(reset);
    }
    r
}

/// Declares [`Hint`] from one table: each header's variant and name, listed once.
macro_rules! hints {
    ($($hint:ident => $name:literal,)*) => {
        /// A header [`parse`] reads.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Hint {
            $($hint,)*
        }

        impl Hint {
            /// Every hint, each at the index of its discriminant.
            const ALL: [Hint; [$($name),*].len()] = [$(Hint::$hint),*];

            fn name(self) -> &'static str {
                match self {
                    $(Hint::$hint => $name,)*
                }
            }
        }
    };
}

hints! {
    RetryAfterMs => "retry-after-ms",
    RetryAfter => "retry-after",
    LimitRequests => "x-ratelimit-limit-requests",
    RemainingRequests => "x-ratelimit-remaining-requests",
    LimitTokens => "x-ratelimit-limit-tokens",
    RemainingTokens => "x-ratelimit-remaining-tokens",
    ResetRequests => "x-ratelimit-reset-requests",
    ResetTokens => "x-ratelimit-reset-tokens",
    LimitRequestsDay => "x-ratelimit-limit-requests-day",
    RemainingRequestsDay => "x-ratelimit-remaining-requests-day",
    LimitTokensMinute => "x-ratelimit-limit-tokens-minute",
    RemainingTokensMinute => "x-ratelimit-remaining-tokens-minute",
    ResetRequestsDay => "x-ratelimit-reset-requests-day",
    ResetTokensMinute => "x-ratelimit-reset-tokens-minute",
    AnthropicRequestsLimit => "anthropic-ratelimit-requests-limit",
    AnthropicRequestsRemaining => "anthropic-ratelimit-requests-remaining",
    AnthropicRequestsReset => "anthropic-ratelimit-requests-reset",
    AnthropicTokensLimit => "anthropic-ratelimit-tokens-limit",
    AnthropicTokensRemaining => "anthropic-ratelimit-tokens-remaining",
    AnthropicTokensReset => "anthropic-ratelimit-tokens-reset",
    AnthropicInputTokensLimit => "anthropic-ratelimit-input-tokens-limit",
    AnthropicInputTokensRemaining => "anthropic-ratelimit-input-tokens-remaining",
    AnthropicInputTokensReset => "anthropic-ratelimit-input-tokens-reset",
    AnthropicOutputTokensLimit => "anthropic-ratelimit-output-tokens-limit",
    AnthropicOutputTokensRemaining => "anthropic-ratelimit-output-tokens-remaining",
    AnthropicOutputTokensReset => "anthropic-ratelimit-output-tokens-reset",
    Limit => "x-ratelimit-limit",
    Remaining => "x-ratelimit-remaining",
    Reset => "x-ratelimit-reset",
}

impl Hint {
    /// Anthropic's token families (all tokens, input, output): limit, remaining, reset.
    const ANTHROPIC_TOKEN_FAMILIES: [[Hint; 3]; 3] = [
        [Hint::AnthropicTokensLimit, Hint::AnthropicTokensRemaining, Hint::AnthropicTokensReset],
        [Hint::AnthropicInputTokensLimit, Hint::AnthropicInputTokensRemaining, Hint::AnthropicInputTokensReset],
        [Hint::AnthropicOutputTokensLimit, Hint::AnthropicOutputTokensRemaining, Hint::AnthropicOutputTokensReset],
    ];
}

/// The first value of each [`Hint`] header (what `HeaderMap::get` returns), found in
/// one pass over the response's headers: a response without rate-limit headers costs
/// a prefix check per header, not a hashed lookup per name this module knows.
struct Hints<'a> {
    values: [Option<&'a HeaderValue>; Hint::ALL.len()],
    /// Any `anthropic-ratelimit-*` header, known or not.
    anthropic: bool,
}

impl<'a> Hints<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let mut hints = Hints { values: [None; Hint::ALL.len()], anthropic: false };
        for (name, value) in headers {
            let name = name.as_str();
            let anthropic = name.starts_with("anthropic-ratelimit-");
            hints.anthropic |= anthropic;
            if !(anthropic || name.starts_with("x-ratelimit-") || name.starts_with("retry-after")) {
                continue;
            }
            if let Some(hint) = Hint::ALL.iter().find(|h| h.name() == name) {
                // A repeated header's first value comes first.
                hints.values[*hint as usize].get_or_insert(value);
            }
        }
        hints
    }

    fn get(&self, hint: Hint) -> Option<&'a HeaderValue> {
        self.values[hint as usize]
    }

    fn has(&self, hint: Hint) -> bool {
        self.get(hint).is_some()
    }
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
    hints: &Hints<'_>,
    hint: Hint,
    ceiling: Duration,
    f: impl Fn(&str) -> Option<Duration>,
) -> Option<Duration> {
    let v = hints.get(hint)?;
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
#[path = "ratelimit_tests.rs"]
mod tests;
