//! Rate limits over the wire, in every header dialect.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::mock::{HeaderStyle, KeyLimit, MockConfig, MockProvider};

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

fn window() -> KeyLimit {
    KeyLimit::rpm(2).with_tpm(1_000_000).with_window(Duration::from_secs(30))
}

#[tokio::test]
async fn openai_style_429_with_precise_reset() {
    let mock = limited_mock(HeaderStyle::OpenAi, window()).await;
    let client = client();
    let r = first_429(&client, &mock, 3).await;
    assert_eq!(mock.stats().key("k").ok, 2);
    assert_eq!(mock.stats().key("k").rate_limited, 1);
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry_after), "{retry_after}");
    let ms: u64 = r.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(ms > 29_000 && ms <= 30_000, "{ms}");
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    let reset = r.header("x-ratelimit-reset-requests").unwrap();
    let secs: f64 = reset.strip_suffix('s').unwrap().parse().unwrap();
    assert!(secs > 28.0 && secs <= 30.0, "{reset}");
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
    let ok = chat(&client, &mock, "k").await;
    assert_eq!(ok.header("anthropic-ratelimit-requests-remaining"), Some("1"), "sent on success too");
    let r = first_429(&client, &mock, 3).await;
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("anthropic-ratelimit-requests-limit"), Some("2"));
    assert_eq!(r.header("anthropic-ratelimit-requests-remaining"), Some("0"));
    let reset = r.header("anthropic-ratelimit-requests-reset").unwrap();
    let at = humantime::parse_rfc3339(reset).unwrap();
    let ahead = at.duration_since(SystemTime::now()).unwrap();
    assert!(ahead > Duration::from_secs(28) && ahead <= Duration::from_secs(30), "{reset}");
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
    let r = first_429(&client, &mock, 3).await;
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("x-ratelimit-limit-requests-day"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining-requests-day"), Some("0"));
    let reset: f64 = r.header("x-ratelimit-reset-requests-day").unwrap().parse().unwrap();
    assert!(reset > 28.0 && reset <= 30.0, "{reset}");
    assert_eq!(r.header("x-ratelimit-limit-tokens-minute"), Some("1000000"));
    assert!(r.header("x-ratelimit-reset-tokens-minute").is_some());
    assert!(r.header("x-ratelimit-limit-requests").is_none());
}

#[tokio::test]
async fn openrouter_style_429_has_unix_ms_reset_and_no_retry_after() {
    let mock = limited_mock(HeaderStyle::OpenRouter, window()).await;
    let client = client();
    let ok = chat(&client, &mock, "k").await;
    assert!(ok.header("x-ratelimit-limit").is_none(), "OpenRouter sends them on 429 only");
    let r = first_429(&client, &mock, 3).await;
    assert!(r.header("retry-after").is_none());
    assert_eq!(r.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    let reset_ms: u128 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
    assert!(reset_ms > now_ms + 28_000 && reset_ms <= now_ms + 30_000);
    let v = r.json();
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["metadata"]["headers"]["X-RateLimit-Limit"], "2");
}

#[tokio::test]
async fn gemini_style_429_is_a_list_with_retry_info() {
    let mock = limited_mock(HeaderStyle::Gemini, window()).await;
    let client = client();
    let r = first_429(&client, &mock, 3).await;
    assert!(r.header("retry-after").is_none());
    let v = r.json();
    let error = &v[0]["error"];
    assert_eq!(error["code"], 429);
    assert_eq!(error["status"], "RESOURCE_EXHAUSTED");
    let details = error["details"].as_array().unwrap();
    let info = details.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo").unwrap();
    let delay = info["retryDelay"].as_str().unwrap();
    let secs: f64 = delay.strip_suffix('s').unwrap().parse().unwrap();
    assert!(secs > 28.0 && secs <= 30.0, "{delay}");
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
        let r = first_429(&client, &mock, 2).await;
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
