//! Replicas sharing keys through a real redis-server: declared limits hold across
//! instances, one replica's cooldown keeps the key out of the others, an outage is
//! served on local state and sharing resumes, and Redis' password is checked.

mod support;

use std::time::Duration;

use support::redis::Redis;
use support::*;

const LONG: Duration = Duration::from_secs(30);
const KEYS: [(&str, &str); 3] = [("K1", "sk-shared-one"), ("K2", "sk-shared-two"), ("K3", "sk-shared-three")];

/// One alias over `keys` (secret names) at `base`, each key declared at `rpm`.
fn config(base: &str, redis: Option<&str>, keys: &[&str], rpm: Option<u32>, extra_shared: &str) -> String {
    let shared = redis.map_or(String::new(), |url| format!("shared:\n  url: {url}\n{extra_shared}"));
    let rpm = rpm.map_or(String::new(), |n| format!("        rpm: {n}\n"));
    format!(
        "{shared}models:\n  m:\n    num_retries: 3\n    queue: {{ max_wait: 100ms }}\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{}]\n{rpm}",
        keys.join(", ")
    )
}

async fn replicas(n: usize, config: &str, secrets: &[(&str, &str)]) -> Vec<Proxy> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Proxy::start(config, secrets).await);
    }
    out
}

async fn shared_status(proxy: &Proxy) -> serde_json::Value {
    proxy.admin_get("/status").await.json()["shared"].clone()
}

async fn all_up(proxies: &[Proxy]) -> bool {
    for p in proxies {
        if shared_status(p).await["up"] != true {
            return false;
        }
    }
    true
}

fn cooling(status: &serde_json::Value, key: &str) -> bool {
    status["models"][0]["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| e["key"] == key && e["health"] == "cooling_down")
}

#[tokio::test]
async fn declared_rpm_holds_across_four_replicas_without_provider_headers() {
    let redis = Redis::start().await;
    let mut mock = MockConfig::new().style(HeaderStyle::Bare);
    for (_, value) in KEYS {
        mock = mock.key(value, KeyLimit::rpm(10));
    }
    let mock = MockProvider::start(mock).await.expect("mock");
    let names: Vec<&str> = KEYS.iter().map(|(n, _)| *n).collect();
    let proxies = replicas(4, &config(&mock.base_url(), Some(&redis.url()), &names, Some(10), ""), &KEYS).await;
    eventually(LONG, "every replica connected to Redis", || all_up(&proxies)).await;

    // Offered load above the shared capacity (30 a minute) until all of it is used.
    let mut own_429s = Vec::new();
    let deadline = std::time::Instant::now() + LONG;
    while mock.stats().total().ok < 30 {
        assert!(std::time::Instant::now() < deadline, "capacity not used: {:?}", mock.stats().total());
        let wave = proxies.iter().flat_map(|p| [p.chat("m"), p.chat("m")]);
        for reply in futures_util::future::join_all(wave).await {
            if reply.status == 429 {
                own_429s.push(reply);
            } else {
                assert_eq!(reply.status, 200, "{}", reply.text());
            }
        }
    }
    // Past the shared capacity: every replica answers itself, none tries upstream.
    let wave = proxies.iter().flat_map(|p| [p.chat("m"), p.chat("m")]);
    for reply in futures_util::future::join_all(wave).await {
        assert_eq!(reply.status, 429, "{}", reply.text());
        own_429s.push(reply);
    }
    let total = mock.stats().total();
    assert_eq!(total.ok, 30, "the capacity used, not more: {total:?}");
    assert!(total.rate_limited <= 2, "upstream 429s: {total:?}");
    assert!(!own_429s.is_empty(), "load above capacity gets keyrelay's own 429s");
    for reply in &own_429s {
        let after: u64 = reply.header("retry-after").parse().unwrap_or_else(|_| panic!("retry-after: {reply:?}"));
        assert!(after >= 1, "{reply:?}");
    }
}

#[tokio::test]
async fn a_cooldown_learned_by_one_replica_keeps_the_key_out_of_the_others() {
    let redis = Redis::start().await;
    let keys = &KEYS[..2];
    let mut mock = MockConfig::new().style(HeaderStyle::Bare);
    for (_, value) in keys {
        mock = mock.key(*value, KeyLimit::unlimited());
    }
    let mock = MockProvider::start(mock).await.expect("mock");
    let proxies = replicas(2, &config(&mock.base_url(), Some(&redis.url()), &["K1", "K2"], None, ""), keys).await;
    eventually(LONG, "both replicas connected", || all_up(&proxies)).await;

    mock.set_standing_fault(Some("sk-shared-one"), Some(Fault::answer(429, &[("retry-after", "30")], "{}")));
    while mock.stats().key("sk-shared-one").faults == 0 {
        assert_eq!(proxies[0].chat("m").await.status, 200);
    }
    mock.set_standing_fault(Some("sk-shared-one"), None);
    let other = &proxies[1];
    eventually(LONG, "the other replica learned the cooldown", || async {
        cooling(&other.admin_get("/status").await.json(), "K1")
    })
    .await;
    let before = mock.requests_for_key("sk-shared-one");
    for _ in 0..10 {
        let reply = other.chat("m").await;
        assert_eq!((reply.status.as_u16(), reply.header("x-keyrelay-key")), (200, "K2"));
    }
    assert_eq!(mock.requests_for_key("sk-shared-one"), before, "the other replica never tried the cooling key");
}

#[tokio::test]
async fn redis_stopped_mid_run_serves_on_local_state_and_sharing_resumes() {
    let mut redis = Redis::start().await;
    let keys = &KEYS[..2];
    let mut mock = MockConfig::new().style(HeaderStyle::Bare);
    for (_, value) in keys {
        mock = mock.key(*value, KeyLimit::unlimited());
    }
    let mock = MockProvider::start(mock).await.expect("mock");
    let proxies = replicas(2, &config(&mock.base_url(), Some(&redis.url()), &["K1", "K2"], Some(1000), ""), keys).await;
    eventually(LONG, "both replicas connected", || all_up(&proxies)).await;
    for p in &proxies {
        assert_eq!(p.chat("m").await.status, 200);
    }

    redis.stop();
    let mut served = 0;
    for _ in 0..20 {
        for p in &proxies {
            let reply = p.chat("m").await;
            assert_eq!(reply.status, 200, "served while Redis is gone: {}", reply.text());
            served += 1;
        }
    }
    assert_eq!(served, 40);
    for p in &proxies {
        eventually(LONG, "the outage shows", || async { shared_status(p).await["up"] == false }).await;
        let status = shared_status(p).await;
        assert!(status["failed_rounds"].as_u64() > Some(0) || status["error"].is_string(), "{status}");
        let ready = p.admin_get("/readyz").await;
        assert_eq!(ready.status, 200, "readiness does not depend on Redis");
        assert!(ready.text().contains("shared state: DOWN"), "{}", ready.text());
        let metrics = p.admin_get("/metrics").await.text();
        assert!(metrics.contains("keyrelay_shared_state_up 0"), "{metrics}");
        // Requests may wait for a lease only up to the bound: those that reached it
        // went out on local state and were counted; none waited on Redis past it.
        let timeouts = status["lease_timeouts"].as_u64().unwrap_or(0);
        assert!(timeouts <= 2, "lease waits that hit the bound: {timeouts}");
    }

    redis.restart().await;
    eventually(LONG, "sharing resumes by itself", || all_up(&proxies)).await;
    assert!(proxies[0].admin_get("/metrics").await.text().contains("keyrelay_shared_state_up 1"));
    mock.set_standing_fault(Some("sk-shared-two"), Some(Fault::answer(429, &[("retry-after", "30")], "{}")));
    while mock.stats().key("sk-shared-two").faults == 0 {
        assert_eq!(proxies[0].chat("m").await.status, 200);
    }
    mock.set_standing_fault(Some("sk-shared-two"), None);
    let other = &proxies[1];
    eventually(LONG, "a cooldown is shared again", || async {
        cooling(&other.admin_get("/status").await.json(), "K2")
    })
    .await;
}

#[tokio::test]
async fn a_password_protected_redis_and_a_wrong_password() {
    let redis = Redis::start_with_password("correct-horse").await;
    let mock = MockProvider::start(MockConfig::new().key("sk-shared-one", KeyLimit::unlimited())).await.expect("mock");
    let text = config(&mock.base_url(), Some(&redis.url()), &["K1"], Some(100), "  password: REDIS_PASSWORD\n");
    let good = Proxy::start(&text, &[("K1", "sk-shared-one"), ("REDIS_PASSWORD", "correct-horse")]).await;
    eventually(LONG, "connected with the password", || all_up(std::slice::from_ref(&good))).await;

    let wrong = Proxy::start(&text, &[("K1", "sk-shared-one"), ("REDIS_PASSWORD", "wrong-staple")]).await;
    eventually(LONG, "a clear error", || async {
        shared_status(&wrong).await["error"].as_str().is_some_and(|e| e.contains("authentication failed"))
    })
    .await;
    let status = wrong.admin_get("/status").await.text();
    assert!(!status.contains("wrong-staple") && !status.contains("correct-horse"), "{status}");
    let ready = wrong.admin_get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert!(ready.text().contains("authentication failed"), "{}", ready.text());
    assert_eq!(wrong.chat("m").await.status, 200, "served on local state");

    // Fixing the Secret and reloading connects.
    std::fs::write(wrong.secrets_dir().join("REDIS_PASSWORD"), "correct-horse").unwrap();
    wrong.running.request_reload();
    eventually(LONG, "connected after the fix", || all_up(std::slice::from_ref(&wrong))).await;
}
