//! Rate-limit-aware routing over loopback: quota reported by the provider keeps spent
//! keys out, requests wait for the earliest reset (bounded), sessions stick, the
//! breaker opens and probes, and region and concurrency limits steer traffic.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http_body_util::BodyExt;
use support::*;
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(60);

fn alias(base: &str, keys: &[&str], extra: &str) -> String {
    format!(
        "models:\n  m:\n{extra}    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{}]\n",
        keys.join(", ")
    )
}

async fn chat_with(proxy: &Proxy, headers: &[(&str, &str)]) -> Reply {
    proxy.call(Method::POST, "/v1/chat/completions", headers, r#"{"model":"m","messages":[]}"#).await
}

#[tokio::test]
async fn hidden_per_key_limits_are_used_to_the_last_request_without_a_429() {
    let minute = Duration::from_secs(60);
    let mock = MockProvider::start(
        MockConfig::new()
            .key("sk-1", KeyLimit::rpm(1).with_window(minute))
            .key("sk-2", KeyLimit::rpm(2).with_window(minute))
            .key("sk-3", KeyLimit::rpm(3).with_window(minute)),
    )
    .await
    .unwrap();
    let proxy = Proxy::start(
        &alias(&mock.base_url(), &["K1", "K2", "K3"], "    queue: { max_wait: 30s }\n"),
        &[("K1", "sk-1"), ("K2", "sk-2"), ("K3", "sk-3")],
    )
    .await;
    let first_sent = std::time::Instant::now();
    for i in 0..6 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let stats = mock.stats();
    assert_eq!((stats.key("sk-1").ok, stats.key("sk-2").ok, stats.key("sk-3").ok), (1, 2, 3));
    assert_eq!(stats.total().rate_limited, 0, "the provider's headers told keyrelay each key's limit: {stats:?}");

    // Everything is spent for a minute: longer than the queue's 30 s, so no waiting
    // (waiting would take 30 s at least: the bound says which happened, not how fast).
    let started = std::time::Instant::now();
    let r = proxy.chat("m").await;
    assert!(started.elapsed() < Duration::from_secs(30), "waited although the reset is past the queue's limit");
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["code"], "rate_limit_exceeded");
    // The windows started after `first_sent`: a minute from then, rounded up to seconds.
    let retry_after: u64 = r.header("retry-after").parse().expect("retry-after seconds");
    let spent = first_sent.elapsed().as_secs();
    assert!(retry_after <= 60 && retry_after + spent + 1 >= 60, "retry-after {retry_after}, {spent} s in");
}

#[tokio::test]
async fn the_queue_is_bounded_and_overflow_gets_429_with_retry_after() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::rpm(1).with_window(Duration::from_millis(1500))))
            .await
            .unwrap();
    let config = alias(&mock.base_url(), &["KA"], "    queue: { max_waiting: 1, max_wait: 10s }\n");
    let proxy = Arc::new(Proxy::start(&config, &[("KA", "sk-a")]).await);
    assert_eq!(proxy.chat("m").await.status, 200);

    let mut waiting = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let proxy = Arc::clone(&proxy);
        waiting.spawn(async move { proxy.chat("m").await });
    }
    let mut statuses = Vec::new();
    while let Some(r) = waiting.join_next().await {
        let r = r.unwrap();
        if r.status == 429 {
            let secs: u64 = r.header("retry-after").parse().expect("retry-after");
            assert!((1..=2).contains(&secs), "retry-after {secs}");
        }
        statuses.push(r.status.as_u16());
    }
    statuses.sort_unstable();
    // One waits for the reset and succeeds; the queue holds one, so two are turned away.
    assert_eq!(statuses, [200, 429, 429]);
    assert_eq!(mock.stats().key("sk-a").rate_limited, 0, "nothing was sent into a spent quota");
}

#[tokio::test]
async fn sessions_stick_to_one_key_and_move_only_when_it_must() {
    let mock = MockProvider::start(
        ["sk-1", "sk-2", "sk-3", "sk-4"].iter().fold(MockConfig::new(), |c, k| c.key(*k, KeyLimit::unlimited())),
    )
    .await
    .unwrap();
    let config = alias(&mock.base_url(), &["K1", "K2", "K3", "K4"], "    strategy: round-robin\n");
    let proxy = Proxy::start(&config, &[("K1", "sk-1"), ("K2", "sk-2"), ("K3", "sk-3"), ("K4", "sk-4")]).await;

    let key_for = |session: &'static str| {
        let proxy = &proxy;
        async move { chat_with(proxy, &[("x-session-id", session)]).await.header("x-keyrelay-key").to_owned() }
    };
    let home = key_for("alice").await;
    for _ in 0..8 {
        assert_eq!(key_for("alice").await, home, "round-robin must not move a pinned session");
    }
    let mut homes = std::collections::BTreeSet::new();
    for s in ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"] {
        homes.insert(key_for(s).await);
    }
    assert!(homes.len() >= 2, "sessions all landed on {homes:?}");

    // Alice's key is rate limited: she moves (her request still succeeds) and stays on the new key.
    let secret = format!("sk-{}", &home[1..]);
    mock.push_fault(Some(&secret), Fault::RateLimited { retry_after: Some("30".into()) });
    let moved = chat_with(&proxy, &[("x-session-id", "alice")]).await;
    assert_eq!(moved.status, 200);
    let second_home = moved.header("x-keyrelay-key").to_owned();
    assert_ne!(second_home, home);
    for _ in 0..5 {
        assert_eq!(key_for("alice").await, second_home);
    }
}

/// Issue 15 item 17: the session's endpoint used to be chosen among all four and then
/// sorted behind the local ones, so a session whose winner was remote followed
/// round-robin over the local keys instead of sticking.
#[tokio::test]
async fn sessions_stick_to_a_local_key_when_some_keys_are_remote() {
    let keys = ["sk-1", "sk-2", "sk-3", "sk-4"];
    let mock = MockProvider::start(keys.iter().fold(MockConfig::new(), |c, k| c.key(*k, KeyLimit::unlimited())))
        .await
        .unwrap();
    let base = mock.base_url();
    let deployment = |i: usize, region: &str| {
        format!("      - {{ name: d{i}, provider: openai-compatible, model: up, api_base: {base}, keys: [K{i}], region: {region} }}\n")
    };
    let config = format!(
        "server:\n  region: eu-west\nmodels:\n  m:\n    strategy: round-robin\n    deployments:\n{}{}{}{}",
        deployment(1, "eu-west"),
        deployment(2, "us-east"),
        deployment(3, "eu-west"),
        deployment(4, "us-east"),
    );
    let proxy = Proxy::start(&config, &[("K1", "sk-1"), ("K2", "sk-2"), ("K3", "sk-3"), ("K4", "sk-4")]).await;
    // Over all four keys, dave's and grace's rendezvous winners are remote (K4, K2).
    for session in ["dave", "grace", "carol"] {
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..6 {
            let r = chat_with(&proxy, &[("x-session-id", session)]).await;
            assert_eq!(r.status, 200, "{}", r.text());
            used.insert(r.header("x-keyrelay-key").to_owned());
        }
        assert_eq!(used.len(), 1, "session {session} moved between keys: {used:?}");
        let key = used.first().unwrap();
        assert!(key == "K1" || key == "K3", "session {session} went to the remote key {key}");
    }
}

#[tokio::test]
async fn breaker_opens_after_failures_then_half_open_probe_decides() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited()))
            .await
            .unwrap();
    let config = alias(
        &mock.base_url(),
        &["KA", "KB"],
        "    strategy: round-robin\n    allowed_fails: 2\n    cooldown: 700ms\n",
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    mock.push_fault(Some("sk-a"), Fault::Status(503));
    mock.push_fault(Some("sk-a"), Fault::Status(503));
    // Every request succeeds (KB takes over) while KA fails twice and its breaker opens.
    // It opens during the last of these requests, so not before that one was sent: it
    // is surely still open until 700 ms after that, however slow the machine is.
    let mut sent = std::time::Instant::now();
    while mock.requests_for_key("sk-a") < 2 {
        sent = std::time::Instant::now();
        assert_eq!(proxy.chat("m").await.status, 200);
    }
    let surely_open_until = sent + Duration::from_millis(700);
    for _ in 0..4 {
        let key = proxy.chat("m").await.header("x-keyrelay-key").to_owned();
        if std::time::Instant::now() < surely_open_until {
            assert_eq!(key, "KB", "a request went to an open breaker");
        }
    }
    if std::time::Instant::now() < surely_open_until {
        assert_eq!(mock.requests_for_key("sk-a"), 2, "a request went to an open breaker");
    }

    // Half-open: one probe goes to KA; it fails, so the breaker opens again.
    mock.push_fault(Some("sk-a"), Fault::Status(503));
    let probe_sent = std::cell::Cell::new(std::time::Instant::now());
    eventually(LONG, "a half-open probe reaches KA", || async {
        probe_sent.set(std::time::Instant::now());
        assert_eq!(proxy.chat("m").await.status, 200);
        mock.requests_for_key("sk-a") == 3
    })
    .await;
    let r = proxy.chat("m").await;
    if std::time::Instant::now() < probe_sent.get() + Duration::from_millis(700) {
        assert_eq!(r.header("x-keyrelay-key"), "KB", "the failed probe reopened the breaker");
    }

    // The next probe succeeds: the breaker closes and KA takes its share again.
    eventually(LONG, "KA serves again after a good probe", || async {
        proxy.chat("m").await.header("x-keyrelay-key") == "KA"
    })
    .await;
    let before = mock.requests_for_key("sk-a");
    for _ in 0..4 {
        proxy.chat("m").await;
    }
    assert!(mock.requests_for_key("sk-a") >= before + 2, "closed breaker: round-robin includes KA");
}

#[tokio::test]
async fn tokens_are_counted_from_json_usage_and_the_final_stream_chunk() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let proxy = Proxy::start(&alias(&mock.base_url(), &["KA"], ""), &[("KA", "sk-a")]).await;
    let plain = proxy.chat("m").await.json();
    let plain_tokens = plain["usage"]["total_tokens"].as_u64().unwrap();

    let response = proxy
        .send(
            Method::POST,
            "/v1/chat/completions",
            &[],
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .await;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&body);
    let stream_tokens: u64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .filter_map(|v| v["usage"]["total_tokens"].as_u64())
        .next_back()
        .expect("usage in the stream");

    let state = Arc::clone(&proxy.running.store.load().route("m").unwrap().endpoints[0].state);
    eventually(LONG, "tokens recorded", || {
        let view = state.view(std::time::Instant::now());
        std::future::ready(view.tokens_last_minute == plain_tokens + stream_tokens)
    })
    .await;
    let view = state.view(std::time::Instant::now());
    assert_eq!(view.requests_last_minute, 2);
    assert!(view.latency.is_some() && view.ttfb.is_some());
}

#[tokio::test]
async fn local_region_is_preferred_while_it_has_capacity() {
    let mock = MockProvider::start(
        MockConfig::new().key("sk-near", KeyLimit::unlimited()).key("sk-far", KeyLimit::unlimited()),
    )
    .await
    .unwrap();
    let base = mock.base_url();
    let config = format!(
        "server:\n  region: eu-west\nmodels:\n  m:\n    deployments:\n      - {{ name: far, provider: openai-compatible, model: up, api_base: {base}, keys: [FAR], region: us-east }}\n      - {{ name: near, provider: openai-compatible, model: up, api_base: {base}, keys: [NEAR], region: eu-west }}\n"
    );
    let proxy = Proxy::start(&config, &[("NEAR", "sk-near"), ("FAR", "sk-far")]).await;
    for _ in 0..6 {
        assert_eq!(proxy.chat("m").await.header("x-keyrelay-deployment"), "near");
    }
    mock.push_fault(Some("sk-near"), Fault::RateLimited { retry_after: Some("30".into()) });
    let r = proxy.chat("m").await;
    assert_eq!((r.status.as_u16(), r.header("x-keyrelay-deployment")), (200, "far"));
    assert_eq!(proxy.chat("m").await.header("x-keyrelay-deployment"), "far");
}

#[tokio::test]
async fn max_inflight_sends_concurrent_requests_to_another_key() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited()))
            .await
            .unwrap();
    let base = mock.base_url();
    let config = format!(
        "models:\n  m:\n    strategy: round-robin\n    deployments:\n      - {{ provider: openai-compatible, model: up, api_base: {base}, keys: [KA, KB], max_inflight: 1 }}\n"
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    let gate = Arc::new(Notify::new());
    mock.push_fault(None, Fault::StreamGate(Arc::clone(&gate)));
    let held = proxy.send(Method::POST, "/v1/chat/completions", &[], r#"{"model":"m","stream":true}"#).await;
    let busy = held.headers()["x-keyrelay-key"].to_str().unwrap().to_owned();
    for _ in 0..4 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200);
        assert_ne!(r.header("x-keyrelay-key"), busy, "a key at max_inflight got another request");
    }
    gate.notify_one();
    let _ = held.into_body().collect().await;
}

#[tokio::test]
async fn latency_strategy_prefers_the_faster_deployment() {
    let fast = MockProvider::start(MockConfig::new().key("sk-fast", KeyLimit::unlimited())).await.unwrap();
    let slow =
        // Far slower than any stall of a loaded machine, so "fast" stays the faster one.
        MockProvider::start(MockConfig::new().key("sk-slow", KeyLimit::unlimited()).latency(Duration::from_secs(1)))
            .await
            .unwrap();
    let config = format!(
        "models:\n  m:\n    strategy: latency\n    deployments:\n      - {{ name: slow, provider: openai-compatible, model: up, api_base: {}, keys: [SLOW] }}\n      - {{ name: fast, provider: openai-compatible, model: up, api_base: {}, keys: [FAST] }}\n",
        slow.base_url(),
        fast.base_url()
    );
    let proxy = Proxy::start(&config, &[("SLOW", "sk-slow"), ("FAST", "sk-fast")]).await;
    let mut fast_count = 0;
    for _ in 0..12 {
        if proxy.chat("m").await.header("x-keyrelay-deployment") == "fast" {
            fast_count += 1;
        }
    }
    assert!(fast_count >= 10, "fast deployment served {fast_count} of 12");
}
