//! Key lifecycle against the mock over loopback, with secrets changed the way kubelet
//! changes them: a changed key value is probed before it serves (a refused one never
//! serves, an unreachable provider switches after the bound, a removed key goes at
//! once), active health checks take a revoked key out before a request fails on it,
//! and a required region is never left.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::atomic_writer::Mounted;
use support::*;

const LONG: Duration = Duration::from_secs(60);

fn config(base: &str, extra_model: &str, keys: &str) -> String {
    format!(
        "server:\n  timeouts:\n    key_probe: 500ms\nmodels:\n  m:\n    strategy: round-robin\n    num_retries: 2\n{extra_model}    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{keys}]\n"
    )
}

/// Concurrent clients sending chat requests until stopped; every failure is kept.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    ok: AtomicU64,
    failed: Mutex<Vec<String>>,
    /// Requests each client has finished, answered or not.
    done: Vec<AtomicU64>,
}

impl Load {
    fn start(m: &Arc<Mounted>, clients: usize) -> (Arc<Load>, Vec<tokio::task::JoinHandle<()>>) {
        let load = Arc::new(Load { done: (0..clients).map(|_| AtomicU64::new(0)).collect(), ..Load::default() });
        let tasks = (0..clients)
            .map(|client| {
                let (m, load) = (Arc::clone(m), Arc::clone(&load));
                tokio::spawn(async move {
                    while !load.stop.load(Ordering::SeqCst) {
                        let r = m.proxy.chat("m").await;
                        if r.status == 200 {
                            load.ok.fetch_add(1, Ordering::SeqCst);
                        } else {
                            load.failed.lock().unwrap().push(format!("{}: {}", r.status, r.text()));
                        }
                        load.done[client].fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        (load, tasks)
    }

    async fn more(&self, n: u64) {
        let target = self.ok.load(Ordering::SeqCst) + n;
        eventually(LONG, "more successful requests", || async { self.ok.load(Ordering::SeqCst) >= target }).await;
    }

    /// Waits until every client has finished the request it had in flight when called
    /// (each client sends one at a time): those routed on an older snapshot are done.
    async fn settle(&self) {
        let marks: Vec<u64> = self.done.iter().map(|d| d.load(Ordering::SeqCst)).collect();
        eventually(LONG, "the requests in flight finished", || async {
            self.done.iter().zip(&marks).all(|(done, mark)| done.load(Ordering::SeqCst) > *mark)
        })
        .await;
    }

    async fn finish(&self, tasks: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        assert!(failed.is_empty(), "client requests failed: {failed:?}");
    }
}

async fn endpoint_status(m: &Mounted, key: &str) -> Option<Value> {
    let status = m.proxy.admin_get("/status").await.json();
    let endpoints = status["models"][0]["endpoints"].as_array()?.clone();
    endpoints.into_iter().find(|e| e["key"] == key)
}

async fn metrics(m: &Mounted) -> String {
    m.proxy.admin_get("/metrics").await.text()
}

/// Chat requests (not key checks) the mock saw with `value`.
fn traffic(mock: &MockProvider, value: &str) -> usize {
    mock.requests().iter().filter(|r| r.key.as_deref() == Some(value) && r.method == "POST").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rotation_fails_no_request_and_the_next_good_one_switches() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited()))
            .await
            .unwrap();
    let m = Arc::new(Mounted::start(&config(&mock.base_url(), "", "KA, KB"), &[("KA", "sk-a"), ("KB", "sk-b")]).await);
    let (load, tasks) = Load::start(&m, 4);
    load.more(20).await;

    // A typo: the provider refuses it, so the old value serves on.
    m.secrets.write(&[("KA", "sk-a-typo"), ("KB", "sk-b")]);
    eventually(LONG, "rotation rejected on /status", || async {
        endpoint_status(&m, "KA").await.is_some_and(|e| e["rotation_rejected"] == true)
    })
    .await;
    let ka = endpoint_status(&m, "KA").await.unwrap();
    assert_eq!(
        (ka["rotation"]["state"].as_str(), ka["rotation"]["reason"].as_str()),
        (Some("rejected"), Some("key_invalid"))
    );
    assert_eq!(ka["health"], "ready", "the old value still serves");
    let text = metrics(&m).await;
    assert!(
        text.contains(r#"keyrelay_key_rotation_rejected{model="m",deployment="openai-compatible/up",key="KA"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"keyrelay_key_rotations_total{outcome="rejected"} 1"#), "{text}");
    assert!(text.contains(r#"keyrelay_probes_total{kind="rotation",outcome="refused"} 1"#), "{text}");
    assert!(!text.contains("sk-a-typo") && !text.contains("sk-a\""), "no key value in metrics");
    let with_old = traffic(&mock, "sk-a");
    load.more(20).await;
    assert!(traffic(&mock, "sk-a") > with_old, "the old value keeps serving");
    assert_eq!(traffic(&mock, "sk-a-typo"), 0, "the refused value never carried a request");
    assert_eq!(mock.stats().key("sk-a-typo").probes, 1, "probed once, not at every reload");

    // The good rotation: probed, then it serves and the old value is retired.
    mock.add_key("sk-a2", KeyLimit::unlimited());
    m.secrets.write(&[("KA", "sk-a2"), ("KB", "sk-b")]);
    eventually(LONG, "the new value serves", || async { traffic(&mock, "sk-a2") > 0 }).await;
    let ka = endpoint_status(&m, "KA").await.unwrap();
    assert_eq!((ka["rotation"].clone(), ka["rotation_rejected"].clone()), (Value::Null, Value::Bool(false)));
    assert!(metrics(&m).await.contains(r#"keyrelay_key_rotations_total{outcome="accepted"} 1"#));
    load.more(20).await;
    load.finish(tasks).await;
    let old_total = traffic(&mock, "sk-a");
    let r = m.proxy.chat("m").await;
    assert_eq!(r.status, 200);
    assert_eq!(traffic(&mock, "sk-a"), old_total, "the old value is not used after the switch");
    assert_eq!(mock.stats().total().unauthorized, 0, "no request ever met a refused key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_while_the_provider_is_unreachable_switches_after_the_bound() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited()))
            .await
            .unwrap();
    let m = Arc::new(Mounted::start(&config(&mock.base_url(), "", "KA, KB"), &[("KA", "sk-a"), ("KB", "sk-b")]).await);
    let (load, tasks) = Load::start(&m, 2);
    load.more(10).await;

    mock.add_key("sk-new", KeyLimit::unlimited());
    // Every connection carrying the new value is dropped: its probe finds nobody.
    mock.set_standing_fault(Some("sk-new"), Some(Fault::ResetConnection));
    m.secrets.write(&[("KA", "sk-new"), ("KB", "sk-b")]);
    eventually(LONG, "the rotation is pending", || async {
        endpoint_status(&m, "KA").await.is_some_and(|e| e["rotation"]["state"] == "pending")
    })
    .await;
    eventually(LONG, "switched after the bound", || async {
        metrics(&m).await.contains(r#"keyrelay_key_rotations_total{outcome="unreachable"} 1"#)
    })
    .await;
    assert!(mock.stats().key("sk-new").probes >= 1, "it was probed until the bound");
    mock.set_standing_fault(Some("sk-new"), None);
    eventually(LONG, "the new value serves", || async { traffic(&mock, "sk-new") > 0 }).await;
    assert_eq!(endpoint_status(&m, "KA").await.unwrap()["rotation"], Value::Null);
    load.finish(tasks).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_key_is_gone_at_once_even_while_its_rotation_is_pending() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited()))
            .await
            .unwrap();
    let base = mock.base_url();
    let m = Arc::new(Mounted::start(&config(&base, "", "KA, KB"), &[("KA", "sk-a"), ("KB", "sk-b")]).await);
    // A probe that never answers: the rotation stays pending until the bound.
    mock.set_standing_fault(Some("sk-a-next"), Some(Fault::Hang));
    m.secrets.write(&[("KA", "sk-a-next"), ("KB", "sk-b")]);
    eventually(LONG, "pending", || async {
        endpoint_status(&m, "KA").await.is_some_and(|e| e["rotation"]["state"] == "pending")
    })
    .await;
    let (load, tasks) = Load::start(&m, 2);
    load.more(10).await;

    let g = m.generation();
    m.config.write(&[("config.yaml", &config(&base, "", "KB"))]);
    m.secrets.write(&[("KB", "sk-b")]);
    m.wait_generation_past(g).await;
    assert!(endpoint_status(&m, "KA").await.is_none(), "KA is gone from the serving snapshot");
    // A request routed on the old snapshot just before the swap may still reach the
    // provider with the old value (and succeed): "at once" is for requests routed after.
    load.settle().await;
    let seen = traffic(&mock, "sk-a");
    load.more(20).await;
    load.finish(tasks).await;
    assert_eq!(traffic(&mock, "sk-a"), seen, "the removed key's old value serves no more");
    assert_eq!(traffic(&mock, "sk-a-next"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_take_a_revoked_key_out_before_a_request_fails_and_put_it_back() {
    let interval = Duration::from_millis(300);
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited()))
            .await
            .unwrap();
    let started = Instant::now();
    let text = config(&mock.base_url(), "    health_check_interval: 300ms\n", "KA, KB");
    let m = Arc::new(Mounted::start(&text, &[("KA", "sk-a"), ("KB", "sk-b")]).await);
    eventually(LONG, "both keys probed", || async {
        let s = mock.stats();
        s.key("sk-a").probes > 0 && s.key("sk-b").probes > 0
    })
    .await;

    // Revoked at the provider, with no traffic: the next probe takes it out.
    mock.remove_key("sk-a");
    eventually(LONG, "KA taken out by a probe", || async {
        endpoint_status(&m, "KA").await.is_some_and(|e| e["health"] == "refused")
    })
    .await;
    let (load, tasks) = Load::start(&m, 4);
    load.more(40).await;
    assert_eq!(traffic(&mock, "sk-a"), 0, "no request was sent with the revoked key");
    assert!(metrics(&m).await.contains(r#"keyrelay_probes_total{kind="health",outcome="refused"}"#));

    // Accepted again: the next probe puts it back.
    mock.add_key("sk-a", KeyLimit::unlimited());
    eventually(LONG, "KA back in rotation", || async { traffic(&mock, "sk-a") > 0 }).await;
    load.more(20).await;
    load.finish(tasks).await;
    assert_eq!(mock.stats().total().unauthorized, 0, "no request met the revoked key");

    // Never more than one probe per key per interval (counted over the whole run).
    let elapsed = started.elapsed();
    let most = (elapsed.as_secs_f64() / interval.as_secs_f64()).floor() as usize + 1;
    for value in ["sk-a", "sk-b"] {
        let probes = mock.stats().key(value).probes;
        assert!(probes <= most, "{value}: {probes} probes in {elapsed:?} (at most {most})");
    }
    // Probes are not requests in keyrelay's metrics either.
    let status = m.proxy.admin_get("/status").await.json();
    let attempts: u64 = status["models"][0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["counters"]["attempts"].as_u64().unwrap())
        .sum();
    assert_eq!(attempts as usize, traffic(&mock, "sk-a") + traffic(&mock, "sk-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_region_is_never_left_even_when_every_key_there_is_cooling() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-eu", KeyLimit::rpm(1)).key("sk-us", KeyLimit::unlimited()))
            .await
            .unwrap();
    let base = mock.base_url();
    let text = format!(
        "server:\n  region: us\nmodels:\n  m:\n    required_regions: [eu]\n    num_retries: 3\n    queue: {{max_wait: 0s}}\n    deployments:\n      - {{provider: openai-compatible, model: up, api_base: \"{base}\", keys: [KEU], region: eu}}\n      - {{provider: openai-compatible, model: up, api_base: \"{base}\", keys: [KUS], region: us, name: us}}\n"
    );
    let m = Mounted::start(&text, &[("KEU", "sk-eu"), ("KUS", "sk-us")]).await;
    let r = m.proxy.chat("m").await;
    assert_eq!((r.status.as_u16(), r.header("x-keyrelay-key")), (200, "KEU"));
    // sk-eu's one request a minute is spent: every allowed key is cooling now.
    for _ in 0..5 {
        let r = m.proxy.chat("m").await;
        assert_eq!(r.status, 429, "{}", r.text());
        let retry_after: u64 = r.header("retry-after").parse().expect("retry-after in seconds");
        assert!(retry_after >= 1, "{retry_after}");
    }
    assert_eq!(mock.requests_for_key("sk-us"), 0, "the remote region was never used");
    let status = m.proxy.admin_get("/status").await.json();
    assert_eq!(status["models"][0]["required_regions"], serde_json::json!(["eu"]));
    assert_eq!(status["models"][0]["endpoints"].as_array().unwrap().len(), 1);
}
