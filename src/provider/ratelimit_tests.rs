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

// The property: one pass over the headers reads what a lookup per name read.

/// `parse` as it was before `Hints`: one `HeaderMap` lookup per name.
fn parse_by_lookup(headers: &HeaderMap, now: SystemTime, ceiling: Duration) -> RateLimitReport {
    let mut r = RateLimitReport::default();

    if headers.contains_key("retry-after-ms") {
        r.retry_after = dur_by_lookup(&mut r, headers, "retry-after-ms", ceiling, parse_millis);
    } else if headers.contains_key("retry-after") {
        r.retry_after = dur_by_lookup(&mut r, headers, "retry-after", ceiling, |v| parse_retry_after(v, now));
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
    r.reset_requests = dur_by_lookup(&mut r, headers, "x-ratelimit-reset-requests", ceiling, parse_go_duration);
    r.reset_tokens = dur_by_lookup(&mut r, headers, "x-ratelimit-reset-tokens", ceiling, parse_go_duration);

    // Cerebras: daily request quota and per-minute tokens, resets in float seconds.
    if headers.contains_key("x-ratelimit-remaining-requests-day")
        || headers.contains_key("x-ratelimit-remaining-tokens-minute")
    {
        r.limit_requests = r.limit_requests.or(num(&mut r, "x-ratelimit-limit-requests-day"));
        r.remaining_requests = r.remaining_requests.or(num(&mut r, "x-ratelimit-remaining-requests-day"));
        r.limit_tokens = r.limit_tokens.or(num(&mut r, "x-ratelimit-limit-tokens-minute"));
        r.remaining_tokens = r.remaining_tokens.or(num(&mut r, "x-ratelimit-remaining-tokens-minute"));
        let day = dur_by_lookup(&mut r, headers, "x-ratelimit-reset-requests-day", ceiling, parse_float_secs);
        r.reset_requests = r.reset_requests.or(day);
        let minute = dur_by_lookup(&mut r, headers, "x-ratelimit-reset-tokens-minute", ceiling, parse_float_secs);
        r.reset_tokens = r.reset_tokens.or(minute);
    }

    // Anthropic: RFC 3339 reset instants; the tightest token family wins.
    if headers.keys().any(|k| k.as_str().starts_with("anthropic-ratelimit-")) {
        let at = |r: &mut RateLimitReport, name: &str| {
            dur_by_lookup(r, headers, name, ceiling, |v| parse_rfc3339_from(v, now))
        };
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
        let reset = dur_by_lookup(&mut r, headers, "x-ratelimit-reset", ceiling, |v| parse_unix_ms_from(v, now));
        r.reset_requests = r.reset_requests.or(reset);
    }
    r
}

fn dur_by_lookup(
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

#[test]
fn every_hint_sits_at_its_index() {
    for (i, hint) in Hint::ALL.iter().enumerate() {
        assert_eq!(*hint as usize, i, "{hint:?}");
    }
}

fn header_name() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        4 => proptest::sample::select(Hint::ALL.map(Hint::name).to_vec()).prop_map(str::to_owned),
        1 => "(x-ratelimit-|anthropic-ratelimit-|retry-after)[a-z-]{0,12}",
        1 => "[a-z][a-z-]{0,20}",
    ]
}

fn header_value() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        (0u32..100_000).prop_map(|n| format!("{}.{}", n / 100, n % 100)),
        "[0-9]{1,3}(h|m|s|ms|us)([0-9]{1,2}(m|s))?",
        (0u64..200_000)
            .prop_map(|s| humantime::format_rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_000_000 + s)).to_string()),
        (0u64..200_000).prop_map(|s| httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(1_796_000_000 + s))),
        (0u64..200_000_000).prop_map(|ms| (1_796_000_000_000 + ms).to_string()),
        "[ -~]{0,12}",
    ]
}

proptest::proptest! {
    #[test]
    fn one_pass_reads_what_lookups_read(
        pairs in proptest::collection::vec((header_name(), header_value()), 0..24),
        ceiling_secs in 1u64..100_000,
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in &pairs {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            // `append`: a repeated header keeps every value, as on the wire.
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        let now = UNIX_EPOCH + Duration::from_secs(1_796_100_000);
        let ceiling = Duration::from_secs(ceiling_secs);
        proptest::prop_assert_eq!(parse(&headers, now, ceiling), parse_by_lookup(&headers, now, ceiling));
    }
}
