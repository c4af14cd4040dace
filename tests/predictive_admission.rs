//! Predictive admission against the mock provider: a burst-free limit learned from
//! its 429s, token limits with prompts of very different sizes, and priorities in the
//! waiting room.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use support::*;

const LONG: Duration = Duration::from_secs(30);
const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

fn config(base: &str, keys: &str, extra: &str) -> String {
    format!(
        "models:\n  m:\n    num_retries: 3\n    queue: {{ max_wait: 20s }}\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{keys}]\n{extra}"
    )
}

fn body(content: &str) -> String {
    format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{content}"}}]}}"#)
}

#[tokio::test]
async fn a_burst_free_limit_is_learned_from_its_429s_and_then_never_exceeded() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::spaced(20))).await.unwrap();
    let proxy = Arc::new(Proxy::start(&config(&mock.base_url(), "KA", ""), &[("KA", "sk-a")]).await);
    // Three clients at once, each sending one request after another: far faster
    // than one every 50 ms.
    let wave = |n: usize| {
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let proxy = Arc::clone(&proxy);
                tokio::spawn(async move {
                    for _ in 0..n {
                        let r = proxy.call(Method::POST, "/v1/chat/completions", &JSON, &body("hi")).await;
                        assert_eq!(r.status, 200, "{}", r.text());
                    }
                })
            })
            .collect();
        async move {
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    wave(5).await;
    let learning = mock.stats().key("sk-a").rate_limited;
    assert!(learning >= 1, "the provider's first 429 is what teaches the limit");
    wave(10).await;
    let after = mock.stats().key("sk-a").rate_limited - learning;
    // Without the model, about half of these attempts are 429s; a rare one may
    // still come from scheduling jitter on a loaded machine.
    assert!(after <= 2, "{after} upstream 429s once learned (before: {learning})");
    let status = proxy.admin_get("/status").await.json();
    let forecast = &status["models"][0]["endpoints"][0]["forecast"];
    assert_eq!(forecast["learned_burst"], 1.0, "{forecast}");
    assert_eq!(forecast["reserved_tokens"], 0);
}

#[tokio::test]
async fn large_and_small_prompts_are_reserved_against_the_token_limit_before_sending() {
    let limit = KeyLimit::tpm(6_000).with_window(Duration::from_secs(30));
    let mock = MockProvider::start(MockConfig::new().key("sk-a", limit).key("sk-b", limit)).await.unwrap();
    let proxy =
        Arc::new(Proxy::start(&config(&mock.base_url(), "KA, KB", ""), &[("KA", "sk-a"), ("KB", "sk-b")]).await);
    // One small request per key: the provider's headers tell the token limit.
    for _ in 0..2 {
        assert_eq!(proxy.call(Method::POST, "/v1/chat/completions", &JSON, &body("hi")).await.status, 200);
    }
    // Four prompts of ~2,500 tokens and four tiny ones at once: two large fit a key,
    // a third would not, and their usage only comes back after they are answered.
    let large = "x".repeat(10_000);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let proxy = Arc::clone(&proxy);
            let content = if i % 2 == 0 { large.clone() } else { "small".to_owned() };
            tokio::spawn(async move {
                proxy.call(Method::POST, "/v1/chat/completions", &JSON, &body(&content)).await.status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let stats = mock.stats();
    let limited = stats.key("sk-a").rate_limited + stats.key("sk-b").rate_limited;
    assert_eq!(limited, 0, "no prompt was sent where it did not fit");
    let status = proxy.admin_get("/status").await.json();
    for e in status["models"][0]["endpoints"].as_array().unwrap() {
        assert_eq!(e["forecast"]["reserved_tokens"], 0, "every reservation settled: {e}");
    }
}

#[tokio::test]
async fn high_priority_is_served_first_from_the_waiting_room() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let proxy =
        Arc::new(Proxy::start(&config(&mock.base_url(), "KA", "        max_inflight: 1\n"), &[("KA", "sk-a")]).await);
    // The first request holds the key's only slot until the gate opens.
    let gate = Arc::new(tokio::sync::Notify::new());
    mock.push_fault(None, Fault::StreamGate(Arc::clone(&gate)));
    let send = |name: &'static str, priority: &'static str| {
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let headers = [("content-type", "application/json"), ("x-keyrelay-priority", priority)];
            proxy.call(Method::POST, "/v1/chat/completions", &headers, &body(name)).await.status
        })
    };
    let waiting = |n: u64| {
        let proxy = Arc::clone(&proxy);
        async move {
            eventually(LONG, "requests waiting", || {
                let proxy = Arc::clone(&proxy);
                async move { proxy.admin_get("/status").await.json()["models"][0]["waiting"] == n }
            })
            .await
        }
    };
    let first = send("first", "normal");
    eventually(LONG, "the first request upstream", || async { mock.requests().len() == 1 }).await;
    let mut tasks = vec![first];
    for (i, name) in ["low-1", "low-2", "low-3"].into_iter().enumerate() {
        tasks.push(send(name, "low"));
        waiting(i as u64 + 1).await;
    }
    tasks.push(send("high", "high"));
    waiting(4).await;
    gate.notify_one();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let order: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["messages"][0]["content"].to_string())
        .collect();
    assert_eq!(order, [r#""first""#, r#""high""#, r#""low-1""#, r#""low-2""#, r#""low-3""#]);
}
