//! Keys the provider refuses, and the waiting room, over loopback against the mock:
//! an answer that says the key is invalid or out of credits takes that key out and
//! the request fails over; an answer about one request only (a missing scope) reaches
//! the client and leaves the key alone; when no key is left the app gets a 503 that
//! says why; and the queue's front request does not hold the others while it waits
//! for a slow upstream.

mod support;

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use support::*;
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(10);

/// OpenAI's answer to a restricted key on an endpoint it has no scope for.
const MISSING_SCOPE: &str = r#"{"error":{"message":"You have insufficient permissions for this operation. Missing scopes: api.fine_tuning.jobs.write. Check that you have the correct role in your organization (Reader, Writer, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.","type":"invalid_request_error","param":null,"code":null}}"#;
/// OpenRouter's answer for a key whose credits ran out.
const OPENROUTER_NO_CREDITS: &str =
    r#"{"error":{"code":402,"message":"Insufficient credits. Add more using https://openrouter.ai/credits"}}"#;
/// OpenAI's answer for an account out of credits: a 429 that no retry-after fixes.
const OPENAI_NO_QUOTA: &str = r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;

async fn mock(keys: &[&str]) -> MockProvider {
    let config = keys.iter().fold(MockConfig::new(), |c, k| c.key(*k, KeyLimit::unlimited()));
    MockProvider::start(config).await.expect("mock starts")
}

/// One round-robin alias `m` on `base` with keys KA, KB, ... (values sk-a, sk-b, ...);
/// `model` and `deployment` add lines to the model and the deployment.
fn config(base: &str, keys: usize, model: &str, deployment: &str) -> String {
    let names: Vec<String> = (0..keys).map(|i| format!("K{}", (b'A' + i as u8) as char)).collect();
    format!(
        "server:\n  timeouts: {{ request: 20s, attempt: 15s }}\nmodels:\n  m:\n    strategy: round-robin\n{model}    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{}]\n{deployment}",
        names.join(", ")
    )
}

async fn start(mock: &MockProvider, keys: usize, model: &str, deployment: &str) -> Proxy {
    let values = ["sk-a", "sk-b", "sk-c"];
    let secrets: Vec<(String, &str)> =
        (0..keys).map(|i| (format!("K{}", (b'A' + i as u8) as char), values[i])).collect();
    let secrets: Vec<(&str, &str)> = secrets.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    Proxy::start(&config(&mock.base_url(), keys, model, deployment), &secrets).await
}

/// `/status`'s entry for key `name` of model `m`.
async fn key_status(proxy: &Proxy, name: &str) -> Value {
    let status = proxy.admin_get("/status").await.json();
    let endpoints = status["models"][0]["endpoints"].as_array().cloned().unwrap_or_default();
    endpoints.into_iter().find(|e| e["key"] == name).unwrap_or_else(|| panic!("no key {name} in {status}"))
}

/// The value of the `/metrics` sample `name` for key `key` whose labels also include
/// `extra` (`reason="..."`), if there is one.
async fn metric(proxy: &Proxy, name: &str, key: &str, extra: &str) -> Option<f64> {
    let text = proxy.admin_get("/metrics").await.text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&format!("key=\"{key}\"")) && l.contains(extra))
        .find_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()))
}

#[tokio::test]
async fn requests_behind_the_front_of_the_queue_get_a_free_key_while_the_front_one_waits_upstream() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    // One request per key at a time, and up to 3 s in the queue.
    let proxy = Arc::new(start(&mock, 2, "    queue: { max_wait: 3s }\n", "        max_inflight: 1\n").await);
    // Both keys answer 429 (KA for 1 s, KB for 2 s); KA's next answer takes until the
    // test says so.
    mock.push_fault(Some("sk-a"), Fault::RateLimited { retry_after: Some("1".into()) });
    mock.push_fault(Some("sk-b"), Fault::RateLimited { retry_after: Some("2".into()) });
    let gate = Arc::new(Notify::new());
    mock.push_fault(Some("sk-a"), Fault::StreamGate(Arc::clone(&gate)));

    // The front request: both keys 429, it waits for KA's reset, then waits on KA.
    let p = Arc::clone(&proxy);
    let front = tokio::spawn(async move { p.chat("m").await });
    eventually(LONG, "both keys answered 429", || async { mock.stats().total().rate_limited == 2 }).await;
    // The next request finds no key with capacity and queues behind it. KB frees up
    // after 2 s, while the front request is still waiting for KA's answer.
    let behind = proxy.chat("m").await;
    assert_eq!(behind.status, 200, "{}", behind.text());
    assert_eq!(behind.header("x-keyrelay-key"), "KB");
    assert!(!front.is_finished(), "the front request is still waiting upstream");
    assert_eq!(mock.requests_for_key("sk-a"), 2, "the front request's attempt on KA is in flight");

    gate.notify_one();
    let front = front.await.unwrap();
    assert_eq!((front.status.as_u16(), front.header("x-keyrelay-key")), (200, "KA"), "{}", front.text());
}

#[tokio::test]
async fn a_missing_scope_concerns_that_request_only() {
    let mock = mock(&["sk-a", "sk-b", "sk-c"]).await;
    let proxy = start(&mock, 3, "    queue: { max_wait: 500ms }\n", "").await;
    let job = r#"{"model":"m","training_file":"file-abc123"}"#;
    let headers = [("content-type", "application/json")];
    for _ in 0..3 {
        mock.push_fault(None, Fault::answer(403, &[("x-request-id", "req_scope")], MISSING_SCOPE));
        let r = proxy.call(Method::POST, "/v1/fine_tuning/jobs", &headers, job).await;
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.text(), MISSING_SCOPE, "the provider's answer reaches the app unchanged");
        assert_eq!(r.header("x-keyrelay-attempts"), "1", "not retried on another key");
    }
    assert_eq!(mock.requests().len(), 3);
    // Every key still serves chat.
    let mut keys = Vec::new();
    for _ in 0..3 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        keys.push(r.header("x-keyrelay-key").to_owned());
    }
    keys.sort();
    assert_eq!(keys, ["KA", "KB", "KC"]);
    for key in ["KA", "KB", "KC"] {
        let s = key_status(&proxy, key).await;
        assert_eq!((s["health"].as_str(), &s["refusal"]), (Some("ready"), &Value::Null), "{s}");
    }
}

#[tokio::test]
async fn an_error_body_larger_than_what_is_read_to_classify_it_reaches_the_app_whole() {
    let mock = mock(&["sk-a"]).await;
    let proxy = start(&mock, 1, "", "").await;
    let message = "x".repeat(200 * 1024);
    let body =
        format!(r#"{{"error":{{"message":"Missing scopes: {message}","type":"invalid_request_error","code":null}}}}"#);
    mock.push_fault(None, Fault::answer(403, &[], &body));
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body.len(), body.len());
    assert!(r.text() == body, "the body was changed on the way");
    assert_eq!(key_status(&proxy, "KA").await["health"], "ready");
}

#[tokio::test]
async fn an_invalid_key_is_taken_out_and_the_request_fails_over() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let proxy = start(&mock, 2, "", "").await;
    // Revoked: the mock answers 401 `invalid_api_key`, as OpenAI does.
    mock.remove_key("sk-a");
    // Round-robin starts at KA.
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!((r.header("x-keyrelay-key"), r.header("x-keyrelay-attempts")), ("KB", "2"));
    for _ in 0..6 {
        let r = proxy.chat("m").await;
        assert_eq!((r.status.as_u16(), r.header("x-keyrelay-key")), (200, "KB"));
    }
    assert_eq!(mock.requests_for_key("sk-a"), 1, "the refused key was used again");

    let a = key_status(&proxy, "KA").await;
    assert_eq!(a["health"], "refused", "{a}");
    assert_eq!(a["refusal"]["reason"], "key_invalid", "{a}");
    let next = a["refusal"]["next_probe_seconds"].as_f64().unwrap_or_default();
    assert!(next > 0.0 && next <= 60.0, "probed again within a minute: {a}");
    assert_eq!(a["counters"]["unauthorized"], 1);
    assert_eq!(key_status(&proxy, "KB").await["health"], "ready");
    assert_eq!(metric(&proxy, "keyrelay_key_refusal", "KA", "reason=\"key_invalid\"").await, Some(1.0));
    assert_eq!(metric(&proxy, "keyrelay_key_refusal", "KB", "reason=\"key_invalid\"").await, Some(0.0));
    assert_eq!(metric(&proxy, "keyrelay_key_disabled", "KA", "").await, Some(1.0));
    assert_eq!(metric(&proxy, "keyrelay_upstream_unauthorized_total", "KA", "").await, Some(1.0));
    assert!(metric(&proxy, "keyrelay_key_next_probe_seconds", "KA", "").await.is_some_and(|s| s > 0.0));
    assert_eq!(metric(&proxy, "keyrelay_key_next_probe_seconds", "KB", "").await, None);
}

#[tokio::test]
async fn when_every_key_is_refused_the_app_gets_a_503_that_says_why() {
    let mock = mock(&[]).await;
    let proxy = start(&mock, 2, "", "").await;
    // KA is not a key the provider knows (401 invalid_api_key); KB's account is empty.
    mock.set_standing_fault(Some("sk-b"), Some(Fault::answer(402, &[], OPENROUTER_NO_CREDITS)));
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-attempts"), "2");
    assert!(r.headers.get("retry-after").is_none(), "nothing says when this ends");
    let error = &r.json()["error"];
    assert_eq!(error["code"], "keys_refused");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("KA invalid or revoked"), "{message}");
    assert!(message.contains("KB out of credits"), "{message}");
    assert!(!message.contains("sk-"), "names, never values: {message}");

    // The next request is answered at once, without calling the provider.
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn a_key_out_of_credits_is_taken_out_and_every_request_succeeds() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let proxy = start(&mock, 2, "", "").await;
    mock.set_standing_fault(Some("sk-a"), Some(Fault::answer(402, &[], OPENROUTER_NO_CREDITS)));
    let mut ok = 0;
    for _ in 0..10 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        ok += 1;
    }
    assert_eq!(ok, 10);
    assert_eq!(mock.requests_for_key("sk-a"), 1, "an empty account is not asked again at once");

    let a = key_status(&proxy, "KA").await;
    assert_eq!((a["health"].as_str(), a["available"].as_bool()), (Some("out_of_credits"), Some(false)), "{a}");
    assert_eq!(a["refusal"]["reason"], "out_of_credits");
    let next = a["refusal"]["next_probe_seconds"].as_f64().unwrap_or_default();
    assert!(next > 60.0 && next <= 300.0, "probed again in at most 5 minutes: {a}");
    assert_eq!(a["counters"]["out_of_credits"], 1);
    assert_eq!(metric(&proxy, "keyrelay_key_refusal", "KA", "reason=\"out_of_credits\"").await, Some(1.0));
    assert_eq!(metric(&proxy, "keyrelay_upstream_out_of_credits_total", "KA", "").await, Some(1.0));
    let text = proxy.admin_get("/metrics").await.text();
    assert!(text.contains("keyrelay_retries_total{model=\"m\",reason=\"out_of_credits\"} 1"), "{text}");
}

#[tokio::test]
async fn openai_insufficient_quota_is_not_a_rate_limit() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    // A rate-limited key would be back after 1 ms; an empty account must not be.
    let proxy = start(&mock, 2, "    cooldown: 1ms\n", "").await;
    mock.set_standing_fault(Some("sk-a"), Some(Fault::answer(429, &[], OPENAI_NO_QUOTA)));
    for _ in 0..10 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-keyrelay-key"), "KB");
    }
    assert_eq!(mock.requests_for_key("sk-a"), 1);
    let a = key_status(&proxy, "KA").await;
    assert_eq!(a["health"], "out_of_credits", "{a}");
    assert_eq!(a["cooldown_seconds"], Value::Null, "not cooled down as a rate limit: {a}");
    assert_eq!(a["counters"]["rate_limited"], 0, "{a}");
    assert_eq!(a["counters"]["out_of_credits"], 1, "{a}");
}
