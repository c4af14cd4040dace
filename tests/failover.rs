//! Failover over loopback against the mock provider: 429s, 5xx, dropped and refused
//! connections and hangs move a request to the next key, cooldowns are honoured, and
//! fallbacks are tried in order.

mod support;

use std::time::Duration;

use support::*;

async fn mock(keys: &[&str]) -> MockProvider {
    let config = keys.iter().fold(MockConfig::new(), |c, k| c.key(*k, KeyLimit::unlimited()));
    MockProvider::start(config).await.expect("mock starts")
}

/// One alias `m` served by one deployment on `base` with the given key names.
fn one_alias(base: &str, keys: &[&str], extra: &str) -> String {
    format!(
        "server:\n  timeouts: {{ request: 10s, attempt: 2s }}\nmodels:\n  m:\n    strategy: round-robin\n{extra}    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{}]\n",
        keys.join(", ")
    )
}

#[tokio::test]
async fn rate_limited_key_is_retried_on_another_and_rests() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let proxy = Proxy::start(&one_alias(&mock.base_url(), &["KA", "KB"], ""), &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    mock.push_fault(Some("sk-a"), Fault::RateLimited { retry_after: Some("30".into()) });

    // Round-robin starts at KA: it answers 429, KB answers 200.
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-attempts"), "2");
    assert_eq!(r.header("x-keyrelay-key"), "KB");

    // During KA's 30 s cooldown nothing is sent with it.
    for _ in 0..6 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-keyrelay-key"), "KB");
        assert_eq!(r.header("x-keyrelay-attempts"), "1");
    }
    assert_eq!(mock.requests_for_key("sk-a"), 1);
    assert_eq!(mock.requests_for_key("sk-b"), 7);
}

#[tokio::test]
async fn a_key_whose_quota_is_spent_is_not_called_until_its_reset() {
    // One key, one request per 400 ms window; the mock reports remaining and reset.
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::rpm(1).with_window(Duration::from_millis(400))))
            .await
            .unwrap();
    let proxy = Proxy::start(&one_alias(&mock.base_url(), &["KA"], ""), &[("KA", "sk-a")]).await;

    // Before the first request, so the window starts after it: the second request
    // cannot be admitted sooner than 400 ms from here, however slow the machine is.
    let started = std::time::Instant::now();
    assert_eq!(proxy.chat("m").await.status, 200);
    // The first answer said "0 remaining, resets in 400 ms": the second request waits
    // in the queue for the reset instead of being sent into a sure 429.
    let second = proxy.chat("m").await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert!(started.elapsed() >= Duration::from_millis(400), "answered before the reset");
    assert_eq!(second.header("x-keyrelay-attempts"), "1");
    assert_eq!(mock.stats().key("sk-a").rate_limited, 0, "a request was sent while the quota was spent");
    assert_eq!(mock.requests_for_key("sk-a"), 2);
}

#[tokio::test]
async fn retry_after_as_http_date_cools_the_key() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let proxy = Proxy::start(&one_alias(&mock.base_url(), &["KA", "KB"], ""), &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
    mock.push_fault(Some("sk-a"), Fault::RateLimited { retry_after: Some(later) });
    assert_eq!(proxy.chat("m").await.header("x-keyrelay-attempts"), "2");
    for _ in 0..4 {
        assert_eq!(proxy.chat("m").await.header("x-keyrelay-key"), "KB");
    }
    assert_eq!(mock.requests_for_key("sk-a"), 1);
}

#[tokio::test]
async fn server_errors_and_dropped_connections_fail_over() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let proxy = Proxy::start(&one_alias(&mock.base_url(), &["KA", "KB"], ""), &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    for fault in
        [Fault::Status(500), Fault::Status(502), Fault::Status(503), Fault::Status(504), Fault::ResetConnection]
    {
        let label = format!("{fault:?}");
        // Whichever key round-robin picks first fails; the other answers.
        mock.push_fault(None, fault);
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "{label}: {}", r.text());
        assert_eq!(r.header("x-keyrelay-attempts"), "2", "{label}");
    }
}

#[tokio::test]
async fn hung_attempt_times_out_and_fails_over() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let config = one_alias(&mock.base_url(), &["KA", "KB"], "").replace("attempt: 2s", "attempt: 1s");
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    mock.push_fault(Some("sk-a"), Fault::Hang);
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-key"), "KB");
    assert_eq!(r.header("x-keyrelay-attempts"), "2");
}

#[tokio::test]
async fn refused_connection_fails_over_to_next_deployment() {
    let mock = mock(&["sk-b"]).await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "models:\n  m:\n    deployments:\n      - name: dead\n        provider: openai-compatible\n        model: up\n        api_base: http://{dead}/v1\n        keys: [KA]\n        order: 0\n      - name: alive\n        provider: openai-compatible\n        model: up\n        api_base: {}\n        keys: [KB]\n        order: 1\n",
        mock.base_url()
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-deployment"), "alive");
    assert_eq!(r.header("x-keyrelay-attempts"), "2");
}

#[tokio::test]
async fn fallback_alias_is_tried_after_the_primary_is_exhausted() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let base = mock.base_url();
    let config = format!(
        "models:\n  primary:\n    num_retries: 0\n    fallbacks: [backup]\n    deployments:\n      - provider: openai-compatible\n        model: big-model\n        api_base: {base}\n        keys: [KA]\n  backup:\n    deployments:\n      - name: small\n        provider: openai-compatible\n        model: small-model\n        api_base: {base}\n        keys: [KB]\n"
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    mock.push_fault(Some("sk-a"), Fault::Status(503));
    let r = proxy.chat("primary").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-deployment"), "small");
    assert_eq!(r.header("x-keyrelay-attempts"), "2");
    let models: Vec<_> = mock.requests().iter().map(|r| r.model.clone().unwrap_or_default()).collect();
    assert_eq!(models, ["big-model", "small-model"]);
}

#[tokio::test]
async fn client_errors_pass_through_without_retry() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let proxy = Proxy::start(&one_alias(&mock.base_url(), &["KA", "KB"], ""), &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    for status in [400u16, 404, 422] {
        mock.push_fault(None, Fault::Status(status));
        let before = mock.requests().len();
        let r = proxy.chat("m").await;
        assert_eq!(r.status.as_u16(), status, "{}", r.text());
        assert_eq!(r.header("x-keyrelay-attempts"), "1");
        assert!(r.json()["error"]["message"].is_string(), "upstream body passed through: {}", r.text());
        assert_eq!(mock.requests().len(), before + 1, "status {status} was retried");
    }
}

#[tokio::test]
async fn when_every_attempt_fails_the_last_upstream_answer_is_returned() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let proxy = Proxy::start(&one_alias(&mock.base_url(), &["KA", "KB"], ""), &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    mock.push_fault(Some("sk-a"), Fault::Status(502));
    mock.push_fault(Some("sk-b"), Fault::Status(503));
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-keyrelay-attempts"), "2");
    assert_eq!(r.header("x-keyrelay-key"), "KB");
    assert!(r.json()["error"].is_object(), "{}", r.text());
}

#[tokio::test]
async fn unreachable_or_hung_upstreams_give_openai_shaped_502_and_504() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let proxy =
        Proxy::start(&one_alias(&format!("http://{dead}/v1"), &["KA", "KB"], ""), &[("KA", "a"), ("KB", "b")]).await;
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["code"], "upstream_unavailable");
    assert_eq!(r.header("x-keyrelay-attempts"), "2");

    let mock = mock(&["sk-a"]).await;
    let config = one_alias(&mock.base_url(), &["KA"], "").replace("request: 10s, attempt: 2s", "request: 300ms");
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    mock.push_fault(None, Fault::Hang);
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn rate_limit_headers_of_each_provider_dialect_keep_a_spent_key_out() {
    for style in [
        HeaderStyle::OpenAi,
        HeaderStyle::Anthropic,
        HeaderStyle::Cerebras,
        HeaderStyle::OpenRouter,
        HeaderStyle::Gemini,
    ] {
        let mock = MockProvider::start(
            MockConfig::new()
                .style(style)
                .key("sk-a", KeyLimit::rpm(1).with_window(Duration::from_secs(60)))
                .key("sk-b", KeyLimit::unlimited()),
        )
        .await
        .unwrap();
        let proxy = Proxy::start(
            &one_alias(&mock.base_url(), &["KA", "KB"], "    cooldown: 1ms\n"),
            &[("KA", "sk-a"), ("KB", "sk-b")],
        )
        .await;
        for _ in 0..8 {
            assert_eq!(proxy.chat("m").await.status, 200, "{style:?}");
        }
        // Dialects that report quota on every response (OpenAI/Groq, Anthropic,
        // Cerebras) keep KA out before it ever answers 429; OpenRouter and Gemini only
        // speak up in the 429 itself, so exactly one is taken, and its hint (not the
        // 1 ms default cooldown) keeps KA out for the rest of the window.
        let expected_429s = usize::from(matches!(style, HeaderStyle::OpenRouter | HeaderStyle::Gemini));
        assert_eq!(mock.stats().key("sk-a").rate_limited, expected_429s, "{style:?}");
        assert_eq!(mock.stats().key("sk-a").ok, 1, "{style:?}");
    }
}
