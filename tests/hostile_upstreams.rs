//! Providers that answer with absurd rate-limit hints, through the real proxy over
//! loopback: numbers too large for any clock, hints that would lock a key out for
//! years, and hints of zero that would turn one client request into a retry storm.
//! Each must end in a clean answer for the client and bounded work upstream.

mod support;

use std::time::Duration;

use support::*;

const BODY_429: &str = r#"{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limit_exceeded"}}"#;

async fn mock(keys: &[&str]) -> MockProvider {
    let config = keys.iter().fold(MockConfig::new(), |c, k| c.key(*k, KeyLimit::unlimited()));
    MockProvider::start(config).await.expect("mock starts")
}

/// One alias `m` on one deployment at `base` with these key names; `extra` goes into
/// the alias (indented four spaces).
fn native(base: &str, keys: &[&str], extra: &str) -> String {
    format!(
        "models:\n  m:\n    strategy: round-robin\n{extra}    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{}]\n",
        keys.join(", ")
    )
}

fn retry_after_secs(r: &Reply) -> u64 {
    r.header("retry-after")
        .parse()
        .unwrap_or_else(|_| panic!("retry-after {:?} is not whole seconds", r.header("retry-after")))
}

/// The `/status` entry of key `name` under alias `m`.
async fn key_status(proxy: &Proxy, name: &str) -> serde_json::Value {
    let status = proxy.admin_get("/status").await.json();
    let endpoints = status["models"][0]["endpoints"].as_array().expect("endpoints").clone();
    endpoints.into_iter().find(|e| e["key"] == name).unwrap_or_else(|| panic!("no key {name} in {status}"))
}

/// Hints no clock can hold: each used to panic the request task (an empty reply, no
/// failover). Now they count as malformed, and the next key answers.
#[tokio::test]
async fn hints_too_large_for_any_clock_fail_over_to_the_next_key() {
    let cases: [&[(&str, &str)]; 6] = [
        &[("retry-after", "1e20")],
        &[("retry-after-ms", "1e30")],
        &[("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "99999999999999999999s")],
        &[("x-ratelimit-remaining-requests-day", "0"), ("x-ratelimit-reset-requests-day", "1e300")],
        &[("x-ratelimit-remaining-tokens-minute", "0"), ("x-ratelimit-reset-tokens-minute", "1e300")],
        &[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
    ];
    for headers in cases {
        let mock = mock(&["sk-a", "sk-b"]).await;
        let proxy = Proxy::start(&native(&mock.base_url(), &["KA", "KB"], ""), &[("KA", "sk-a"), ("KB", "sk-b")]).await;
        mock.set_standing_fault(Some("sk-a"), Some(Fault::answer(429, headers, BODY_429)));
        for _ in 0..3 {
            let r = proxy.chat("m").await;
            assert_eq!(r.status, 200, "{headers:?}: {}", r.text());
            assert_eq!(r.header("x-keyrelay-key"), "KB", "{headers:?}");
        }
        assert!(mock.requests_for_key("sk-a") >= 1, "{headers:?}: KA was never tried");
    }
}

/// The same hints on a 200 (where only the quota headers are read) and on the only
/// key: the client always gets a whole answer, and a 429's `retry-after` is sane.
#[tokio::test]
async fn hints_too_large_for_any_clock_on_the_only_key_give_a_clean_429() {
    let mock = mock(&["sk-a"]).await;
    let config = native(&mock.base_url(), &["KA"], "    queue: { max_wait: 1s }\n");
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    let huge = [("x-ratelimit-remaining-requests", "5"), ("x-ratelimit-reset-requests", "1e300s")];
    mock.push_fault(None, Fault::answer(200, &huge, r#"{"choices":[]}"#));
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());

    mock.set_standing_fault(None, Some(Fault::answer(429, &[("retry-after", "1e20")], BODY_429)));
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(retry_after_secs(&r) <= 3600, "retry-after {}", r.header("retry-after"));
    let ka = key_status(&proxy, "KA").await;
    assert!(ka["counters"]["rate_limited"].as_u64() >= Some(1), "{ka}");
}

/// `retry-after: 99999999` (three years) rests the key no longer than `max_cooldown`,
/// and `/status` says the provider asked for more.
#[tokio::test]
async fn a_lockout_hint_is_clamped_to_max_cooldown_and_shown_as_clamped() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let config = native(&mock.base_url(), &["KA", "KB"], "    max_cooldown: 2m\n");
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    mock.push_fault(Some("sk-a"), Fault::answer(429, &[("retry-after", "99999999")], BODY_429));
    let r = proxy.chat("m").await;
    assert_eq!((r.status.as_u16(), r.header("x-keyrelay-key")), (200, "KB"), "{}", r.text());

    let ka = key_status(&proxy, "KA").await;
    let left = ka["cooldown_seconds"].as_f64().unwrap_or_else(|| panic!("KA is not cooling down: {ka}"));
    assert!(left > 60.0 && left <= 120.0, "cooldown {left} s, want at most max_cooldown (120 s)");
    assert_eq!(ka["cooldown_clamped"], true, "{ka}");
    assert_eq!(key_status(&proxy, "KB").await["cooldown_clamped"], false);
}

/// The default ceiling is one hour, and it also bounds a reset reported as a unix
/// timestamp (OpenRouter's `X-RateLimit-Reset`) at the end of time.
#[tokio::test]
async fn a_reset_at_the_end_of_time_gives_the_client_a_sane_retry_after() {
    let mock = mock(&["sk-a"]).await;
    let config = native(&mock.base_url(), &["KA"], "    queue: { max_wait: 1s }\n");
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    let headers =
        [("x-ratelimit-limit", "20"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "18446744073709551615")];
    mock.push_fault(None, Fault::answer(429, &headers, BODY_429));
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 429, "{}", r.text());
    let secs = retry_after_secs(&r);
    assert!((3000..=3600).contains(&secs), "retry-after {secs}, want about the 1 h ceiling");
    let ka = key_status(&proxy, "KA").await;
    assert_eq!(ka["cooldown_clamped"], true, "{ka}");
    assert_eq!(mock.requests().len(), 1, "a key resting for an hour was called again");
}

/// Sends one chat request against a provider that always answers `fault`, and
/// returns how many upstream requests it caused and the client's reply.
async fn one_request_against(mock: &MockProvider, proxy: &Proxy, fault: Fault) -> (usize, Reply) {
    mock.set_standing_fault(None, Some(fault));
    let r = proxy.chat("m").await;
    let sent = mock.requests().len();
    eprintln!("one client request made {sent} upstream requests (status {})", r.status);
    (sent, r)
}

/// `retry-after: 0` and `retry-after-ms: 20`: one client request used to make about
/// 470 upstream requests in the queue's 10 s. Now it makes at most `num_retries + 1`.
#[tokio::test]
async fn zero_and_tiny_retry_hints_do_not_storm() {
    for hint in [("retry-after", "0"), ("retry-after-ms", "20")] {
        let mock = mock(&["sk-a"]).await;
        let proxy = Proxy::start(&native(&mock.base_url(), &["KA"], ""), &[("KA", "sk-a")]).await;
        let (sent, r) = one_request_against(&mock, &proxy, Fault::answer(429, &[hint], BODY_429)).await;
        assert_eq!(r.status, 429, "{hint:?}: {}", r.text());
        assert!(sent <= 3, "{hint:?}: {sent} upstream requests for one client request (num_retries 2)");
        assert_eq!(r.header("x-keyrelay-attempts"), sent.to_string(), "{hint:?}");
        assert!(retry_after_secs(&r) >= 1, "{hint:?}");
    }
}

/// LiteLLM's `cooldown_time: 0` with 429s that carry no hint at all used to make
/// 8,692 upstream requests for one client request; the cooldown floor stops that.
#[tokio::test]
async fn litellm_cooldown_time_zero_with_hintless_429s_does_not_storm() {
    let mock = mock(&["sk-a"]).await;
    let config = format!(
        "router_settings:\n  cooldown_time: 0\nmodel_list:\n  - model_name: m\n    litellm_params:\n      model: openai/up\n      api_base: {}\n      api_key: os.environ/KA\n",
        mock.base_url()
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    let (sent, r) = one_request_against(&mock, &proxy, Fault::answer(429, &[], BODY_429)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(sent <= 3, "{sent} upstream requests for one client request (num_retries 2)");
}

/// The attempt budget covers the alias and its fallbacks, each with its own
/// `num_retries`, over the request's whole life; 5xx are not waited for.
#[tokio::test]
async fn attempts_are_bounded_over_the_alias_and_its_fallbacks() {
    let mock = mock(&["sk-a", "sk-b", "sk-c"]).await;
    let base = mock.base_url();
    let config = format!(
        "models:\n  m:\n    num_retries: 1\n    fallbacks: [f]\n    deployments:\n      - {{ provider: openai-compatible, model: up, api_base: {base}, keys: [KA, KB] }}\n  f:\n    num_retries: 0\n    deployments:\n      - {{ provider: openai-compatible, model: up, api_base: {base}, keys: [KC] }}\n"
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b"), ("KC", "sk-c")]).await;
    let (sent, r) = one_request_against(&mock, &proxy, Fault::answer(429, &[("retry-after", "0")], BODY_429)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(sent <= 3, "{sent} upstream requests: (1 + 1) for m, (0 + 1) for its fallback f");
    assert!(mock.requests_for_key("sk-c") >= 1, "the fallback was never tried");

    mock.set_standing_fault(None, Some(Fault::Status(503)));
    let before = mock.requests().len();
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(mock.requests().len() - before <= 3);
}

/// A wait for a reset is not an attempt: with one key that asks for a short rest,
/// the request waits and its next attempt succeeds, within the budget.
#[tokio::test]
async fn a_short_rest_on_the_only_key_is_waited_for_within_the_budget() {
    let mock = mock(&["sk-a"]).await;
    let config = native(&mock.base_url(), &["KA"], "    num_retries: 1\n");
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    mock.push_fault(None, Fault::answer(429, &[("retry-after", "1")], BODY_429));
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-attempts"), "2");
}

/// Consecutive hint-less 429s from the same key rest it longer each time (back-off),
/// from `cooldown_floor` up, so traffic from many requests stays bounded too.
#[tokio::test]
async fn consecutive_429s_from_one_key_back_off() {
    let mock = mock(&["sk-a"]).await;
    let config = native(
        &mock.base_url(),
        &["KA"],
        "    num_retries: 0\n    cooldown: 0s\n    cooldown_floor: 200ms\n    queue: { max_wait: 100ms }\n",
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    mock.set_standing_fault(None, Some(Fault::answer(429, &[], BODY_429)));
    let mut rests = Vec::new();
    for _ in 0..4 {
        // Wait out the current rest, then take another 429 and read the new one.
        eventually(Duration::from_secs(15), "KA is ready again", || async {
            key_status(&proxy, "KA").await["available"] == true
        })
        .await;
        assert_eq!(proxy.chat("m").await.status, 429);
        let ka = key_status(&proxy, "KA").await;
        rests.push(ka["cooldown_seconds"].as_f64().unwrap_or(0.0));
    }
    // Floor 0.2 s doubling with up to +50% jitter: 0.2-0.3, 0.4-0.6, 0.8-1.2, 1.6-2.4 s
    // (each read a little after it began: the margins absorb a slow machine).
    assert!(rests[3] > 0.8 && rests[3] <= 2.4, "rests {rests:?}");
    assert!(rests[3] > rests[0] * 2.5, "rests {rests:?} do not grow");
}
