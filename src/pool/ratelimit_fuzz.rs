//! Property tests over arbitrary rate-limit headers and 429 bodies: whatever a
//! provider (or something pretending to be one) sends, parsing never panics, every
//! wait it yields is within the ceiling, and the pool takes the report in without
//! panicking either.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::EndpointState;
use crate::config::CooldownBounds;
use crate::provider::ratelimit::{gemini_retry_delay, parse, parse_go_duration, parse_retry_after, RateLimitReport};

/// Every header name some dialect reads.
const NAMES: &[&str] = &[
    "retry-after",
    "retry-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "x-ratelimit-limit-requests-day",
    "x-ratelimit-remaining-requests-day",
    "x-ratelimit-reset-requests-day",
    "x-ratelimit-limit-tokens-minute",
    "x-ratelimit-remaining-tokens-minute",
    "x-ratelimit-reset-tokens-minute",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// Spelled-out numbers that break naive parsers.
const NASTY: &[&str] = &[
    "NaN",
    "nan",
    "inf",
    "-inf",
    "infinity",
    "+Infinity",
    "-0",
    "-0.0",
    "1e20",
    "1e30",
    "1e300",
    "1e309",
    "-1",
    "-1e20",
    "0",
    "0.0",
    "4e-324",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999s",
    "1e300s",
    "9223372036854775807ms",
    ".s",
    "1..2s",
    "1h-1s",
    "µs",
    "1µs",
    "",
    " ",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(NAMES).prop_map(str::to_owned),
        1 => "(x-ratelimit-|anthropic-ratelimit-)?[a-z0-9-]{0,24}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(NASTY).prop_map(str::to_owned),
        any::<String>(),
        "[ -~]{0,40}",
        any::<f64>().prop_map(|f| f.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "-?[0-9]{1,400}(\\.[0-9]{0,30})?([eE][+-]?[0-9]{1,4})?(h|m|s|ms|us|µs|ns)?",
        "([0-9]{1,25}(\\.[0-9]{1,6})?(h|m|s|ms|us|µs|ns)){1,8}",
        any::<u32>().prop_map(|s| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(u64::from(s) * 4))),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
    ]
}

/// Headers as a provider could send them; pairs HTTP cannot carry are dropped, as a
/// client library would refuse them.
fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_bytes(v.as_bytes())) {
            h.append(n, v);
        }
    }
    h
}

fn now() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        Just(SystemTime::now()),
        Just(UNIX_EPOCH),
        (0u64..=253_402_300_799).prop_map(|s| UNIX_EPOCH + Duration::from_secs(s)),
    ]
}

fn ceiling() -> impl Strategy<Value = Duration> {
    (0u64..=48 * 3600 * 1000).prop_map(Duration::from_millis)
}

fn waits(r: &RateLimitReport) -> [Option<Duration>; 3] {
    [r.retry_after, r.reset_requests, r.reset_tokens]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_headers_never_panic_and_stay_within_the_ceiling(
        pairs in prop::collection::vec((name(), value()), 0..10),
        now in now(),
        ceiling in ceiling(),
    ) {
        let headers = header_map(&pairs);
        let report = parse(&headers, now, ceiling);
        for wait in waits(&report).into_iter().flatten() {
            prop_assert!(wait <= ceiling, "{wait:?} > {ceiling:?} from {pairs:?}");
        }
        if let Some(wait) = report.cooldown() {
            prop_assert!(wait.duration <= ceiling);
            prop_assert!(!wait.clamped || wait.duration == ceiling);
        }
        prop_assert!(report.malformed as usize <= headers.len());

        // The pool takes any such report in without panicking, and rests within bounds.
        let state = EndpointState::default();
        let at = Instant::now();
        state.on_response(&report, Duration::from_millis(1), at);
        let bounds = CooldownBounds { floor: Duration::from_millis(10).min(ceiling), ceiling };
        let rest = state.record_rate_limited(report.cooldown(), Duration::from_secs(5), bounds, at);
        prop_assert!(rest <= ceiling);
        let view = state.view(at);
        if let Some(reset) = view.quota_reset_at {
            prop_assert!(reset <= at + ceiling);
        }
    }

    #[test]
    fn every_dialect_value_alone_never_panics(
        name in prop::sample::select(NAMES),
        value in value(),
        now in now(),
        ceiling in ceiling(),
    ) {
        let headers = header_map(&[(name.to_owned(), value.clone())]);
        let report = parse(&headers, now, ceiling);
        for wait in waits(&report).into_iter().flatten() {
            prop_assert!(wait <= ceiling, "{name}: {value:?} gave {wait:?}");
        }
        let _ = parse_go_duration(&value);
        let _ = parse_retry_after(&value, now);
    }

    #[test]
    fn arbitrary_429_bodies_never_panic_and_stay_within_the_ceiling(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            value().prop_map(|delay| format!(
                r#"[{{"error":{{"details":[{{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":{}}}]}}}}]"#,
                serde_json::Value::String(delay)
            ).into_bytes()),
        ],
        ceiling in ceiling(),
    ) {
        if let Some(wait) = gemini_retry_delay(&body, ceiling) {
            prop_assert!(wait.duration <= ceiling);
        }
    }
}
