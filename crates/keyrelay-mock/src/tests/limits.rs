//! Rate limits over the wire, in every header dialect.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::{HeaderStyle, KeyLimit, MockConfig, MockProvider};

async fn limited_mock(style: HeaderStyle, limit: KeyLimit) -> MockProvider {
    MockProvider::start(MockConfig::new().style(style).key("k", limit)).await.unwrap()
}

/// Sends until the first 429 (at most `max` requests) and returns it.
async fn first_429(client: &TestClient, mock: &MockProvider, max: usize) -> Reply {
    for _ in 0..max {
        let r = chat(client, mock, "k").await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            return r;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    panic!("no 429 after {max} requests");
}

const WINDOW: Duration = Duration::from_secs(30);

fn window() -> KeyLimit {
    KeyLimit::rpm(2).with_tpm(1_000_000).with_window(WINDOW)
}

/// Taken just before a test's first request, so its window started after this: a
/// 429's hint can then be checked against bounds that hold however slow the machine
/// is and however the clocks round (the hint is rounded up, never down).
struct Before {
    instant: std::time::Instant,
    wall: SystemTime,
}

impl Before {
    fn now() -> Self {
        Before { instant: std::time::Instant::now(), wall: SystemTime::now() }
    }

    /// What is left of the window, as advertised: at most all of it, at least all of
    /// it minus the time since `self`.
    fn assert_left(&self, left: Duration, what: &str) {
        let spent = self.instant.elapsed();
        assert!(left <= WINDOW && left + spent >= WINDOW, "{what}: {left:?} left, {spent:?} after the first request");
    }

    /// When the window ends, as advertised in wall-clock time (rounded up to the ms).
    fn assert_reset_at(&self, at: SystemTime, what: &str) {
        let spent = self.instant.elapsed();
        let latest = SystemTime::now() + WINDOW + Duration::from_millis(1);
        assert!(
            at <= latest && at + spent >= self.wall + WINDOW,
            "{what}: resets at {at:?}, {spent:?} after the first request"
        );
    }
}

fn secs(text: &str) -> Duration {
    Duration::from_secs_f64(text.parse().unwrap_or_else(|_| panic!("not seconds: {text}")))
}

#[tokio::test]
async fn openai_style_429_with_precise_reset() {
    let mock = limited_mock(HeaderStyle::OpenAi, window()).await;
    let client = client();
    let before = Before::now();
    let r = first_429(&client, &mock, 3).await;
    assert_eq!(mock.stats().key("k").ok, 2);
    assert_eq!(mock.stats().key("k").rate_limited, 1);
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    before.assert_left(Duration::from_secs(retry_after), "retry-after");
    let ms: u64 = r.header("retry-after-ms").unwrap().parse().unwrap();
    before.assert_left(Duration::from_millis(ms), "retry-after-ms");
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    let reset = r.header("x-ratelimit-reset-requests").unwrap();
    before.assert_left(secs(reset.strip_suffix('s').unwrap()), "x-ratelimit-reset-requests");
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("1000000"));
    assert!(r.header("x-ratelimit-reset-tokens").is_some());
    let v = r.json();
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
}

#[tokio::test]
async fn anthropic_style_429() {
    let mock = limited_mock(HeaderStyle::Anthropic, window()).await;
    let client = client();
    let before = Before::now();
    let ok = chat(&client, &mock, "k").await;
    assert_eq!(ok.header("anthropic-ratelimit-requests-remaining"), Some("1"), "sent on success too");
    let r = first_429(&client, &mock, 3).await;
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("anthropic-ratelimit-requests-limit"), Some("2"));
    assert_eq!(r.header("anthropic-ratelimit-requests-remaining"), Some("0"));
    let reset = r.header("anthropic-ratelimit-requests-reset").unwrap();
    before.assert_reset_at(humantime::parse_rfc3339(reset).unwrap(), reset);
    assert!(r.header("anthropic-ratelimit-tokens-reset").is_some());
    // The OpenAI-compatible path keeps OpenAI's error shape; /messages has Anthropic's.
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    let m = read(send(&client, request(&mock, "POST", "/v1/messages", Some("k"), "{}")).await).await;
    assert_eq!(m.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(m.json()["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn cerebras_style_429() {
    let mock = limited_mock(HeaderStyle::Cerebras, window()).await;
    let client = client();
    let before = Before::now();
    let r = first_429(&client, &mock, 3).await;
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("x-ratelimit-limit-requests-day"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining-requests-day"), Some("0"));
    before.assert_left(secs(r.header("x-ratelimit-reset-requests-day").unwrap()), "x-ratelimit-reset-requests-day");
    assert_eq!(r.header("x-ratelimit-limit-tokens-minute"), Some("1000000"));
    assert!(r.header("x-ratelimit-reset-tokens-minute").is_some());
    assert!(r.header("x-ratelimit-limit-requests").is_none());
}

#[tokio::test]
async fn openrouter_style_429_has_unix_ms_reset_and_no_retry_after() {
    let mock = limited_mock(HeaderStyle::OpenRouter, window()).await;
    let client = client();
    let before = Before::now();
    let ok = chat(&client, &mock, "k").await;
    assert!(ok.header("x-ratelimit-limit").is_none(), "OpenRouter sends them on 429 only");
    let r = first_429(&client, &mock, 3).await;
    assert!(r.header("retry-after").is_none());
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    // Unix milliseconds, compared as instants: rounding `now` to the millisecond on
    // this side raced the mock's own rounding (issue 15: failed about one run in three).
    let reset_ms: u64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    before.assert_reset_at(UNIX_EPOCH + Duration::from_millis(reset_ms), "x-ratelimit-reset");
    let v = r.json();
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["metadata"]["headers"]["X-RateLimit-Limit"], "2");
}

#[tokio::test]
async fn gemini_style_429_is_a_list_with_retry_info() {
    let mock = limited_mock(HeaderStyle::Gemini, window()).await;
    let client = client();
    let before = Before::now();
    let r = first_429(&client, &mock, 3).await;
    assert!(r.header("retry-after").is_none());
    let v = r.json();
    let error = &v[0]["error"];
    assert_eq!(error["code"], 429);
    assert_eq!(error["status"], "RESOURCE_EXHAUSTED");
    let details = error["details"].as_array().unwrap();
    let info = details.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo").unwrap();
    let delay = info["retryDelay"].as_str().unwrap();
    before.assert_left(secs(delay.strip_suffix('s').unwrap()), "retryDelay");
    // The native path gets the plain object form.
    let path = "/v1beta/models/gemini-x:generateContent";
    let native = read(send(&client, request(&mock, "POST", path, Some("k"), "{}")).await).await;
    assert_eq!(native.json()["error"]["status"], "RESOURCE_EXHAUSTED");
}

#[tokio::test]
async fn waiting_the_advertised_reset_is_enough() {
    let limit = KeyLimit::rpm(1).with_window(Duration::from_millis(300));
    let mock = limited_mock(HeaderStyle::OpenAi, limit).await;
    let client = client();
    for _ in 0..3 {
        // Usually the second request; more if a stall let a 300 ms window end between two.
        let r = first_429(&client, &mock, 50).await;
        assert_eq!(r.header("retry-after"), Some("1"), "at least one whole second");
        let reset = r.header("x-ratelimit-reset-requests").unwrap();
        let ms: u64 = reset.strip_suffix("ms").unwrap().parse().unwrap();
        assert!((1..=300).contains(&ms), "{reset}");
        assert_eq!(r.header("retry-after-ms"), Some(ms.to_string().as_str()));
        // Honouring the hint exactly (not a guess) must find a fresh window.
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let again = chat(&client, &mock, "k").await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        assert_eq!(again.header("x-ratelimit-remaining-requests"), Some("0"));
    }
}

#[tokio::test]
async fn token_limit_refuses_and_limits_change_at_run_time() {
    let client = client();
    let mock = limited_mock(HeaderStyle::OpenAi, KeyLimit::unlimited()).await;
    let first = chat(&client, &mock, "k").await;
    let per_request = first.json()["usage"]["total_tokens"].as_u64().unwrap();

    mock.set_key_limit("k", KeyLimit::tpm(per_request * 3).with_window(Duration::from_secs(30)));
    let r = first_429(&client, &mock, 5).await;
    assert_eq!(r.json()["error"]["type"], "tokens");
    assert_eq!(r.header("x-ratelimit-remaining-tokens"), Some("0"));
    // The first request counted in the window too: 3 fit in total.
    assert_eq!(mock.stats().key("k").ok, 3);

    mock.set_key_limit("k", KeyLimit::unlimited().with_window(Duration::from_secs(30)));
    assert_eq!(chat(&client, &mock, "k").await.status, StatusCode::OK);
}
