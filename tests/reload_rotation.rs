//! Key rotation under load: the proof that a rotation fails no request and that the
//! old value is never used once the new snapshot serves and the requests that
//! started before it have finished. The mock revokes each old value at that point,
//! so any later use of it would be a 401 and a failed client request.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::atomic_writer::Mounted;
use support::harness::http_client;
use support::*;
use tokio::sync::Notify;

const LONG: Duration = Duration::from_secs(60);
const ROTATIONS: usize = 200;
const CLIENTS: usize = 4;

fn pool_config(base: &str, keys: &str) -> String {
    format!(
        "models:\n  m:\n    strategy: round-robin\n    num_retries: 0\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        {keys}\n"
    )
}

/// What the concurrent clients saw. Each request is counted in flight under the
/// epoch it started in, so the test can wait for exactly the requests that started
/// before a swap was observed.
#[derive(Default)]
struct Load {
    stop: AtomicBool,
    epoch: AtomicU64,
    in_flight: [AtomicU64; 2],
    ok: AtomicU64,
    failed: Mutex<Vec<String>>,
}

async fn client(url: String, load: Arc<Load>) {
    let client = http_client();
    let body = Bytes::from_static(br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
    while !load.stop.load(Ordering::SeqCst) {
        // Count in, then check the epoch did not turn meanwhile: otherwise the test
        // could find the old slot empty just before this request counted itself in it.
        let slot = loop {
            let slot = (load.epoch.load(Ordering::SeqCst) % 2) as usize;
            load.in_flight[slot].fetch_add(1, Ordering::SeqCst);
            if (load.epoch.load(Ordering::SeqCst) % 2) as usize == slot {
                break slot;
            }
            load.in_flight[slot].fetch_sub(1, Ordering::SeqCst);
        };
        let request = http::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))
            .expect("request");
        let outcome = match client.request(request).await {
            Ok(response) => {
                let status = response.status();
                let key = response.headers().get("x-keyrelay-key").cloned();
                let body = response.into_body().collect().await.map(|b| b.to_bytes());
                match body {
                    Ok(_) if status == 200 => Ok(()),
                    Ok(body) => Err(format!("{status} via {key:?}: {}", String::from_utf8_lossy(&body))),
                    Err(e) => Err(format!("body: {e}")),
                }
            }
            Err(e) => Err(format!("request: {e}")),
        };
        load.in_flight[slot].fetch_sub(1, Ordering::SeqCst);
        match outcome {
            Ok(()) => load.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                load.failed.lock().unwrap().push(e);
                0
            }
        };
    }
}

/// [`eventually`] for a condition that needs no `await`.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    eventually(LONG, what, || std::future::ready(f())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_rotations_under_load_fail_no_request_and_retire_every_old_value() {
    let mock = MockProvider::start(
        MockConfig::new()
            .key("sk-0", KeyLimit::unlimited())
            .key("sk-static", KeyLimit::unlimited())
            .latency(Duration::from_millis(2)),
    )
    .await
    .unwrap();
    let m =
        Mounted::start(&pool_config(&mock.base_url(), "keys: [KA, KB]"), &[("KA", "sk-0"), ("KB", "sk-static")]).await;
    let load = Arc::new(Load::default());
    let clients: Vec<_> =
        (0..CLIENTS).map(|_| tokio::spawn(client(m.proxy.url("/v1/chat/completions"), Arc::clone(&load)))).collect();

    let mut retired = Vec::new();
    for i in 1..=ROTATIONS {
        let (old, new) = (format!("sk-{}", i - 1), format!("sk-{i}"));
        mock.add_key(&new, KeyLimit::unlimited());
        m.secrets.write(&[("KA", &new), ("KB", "sk-static")]);

        // The new snapshot serves once a request with the new value got through.
        until(&format!("rotation {i} serving"), || mock.stats().key(&new).ok > 0).await;
        // Requests that started before that may still hold the old snapshot: let
        // exactly those finish, then revoke the old value.
        let before = (load.epoch.fetch_add(1, Ordering::SeqCst) % 2) as usize;
        until(&format!("rotation {i}: earlier requests drained"), || {
            load.in_flight[before].load(Ordering::SeqCst) == 0
        })
        .await;
        mock.remove_key(&old);
        retired.push((old.clone(), mock.requests_for_key(&old)));
        let failed = load.failed.lock().unwrap().clone();
        assert!(failed.is_empty(), "rotation {i}: client requests failed: {failed:?}");
    }
    // A few more requests after the last revocation.
    let ok = load.ok.load(Ordering::SeqCst);
    until("traffic after the last rotation", || load.ok.load(Ordering::SeqCst) > ok + 20).await;
    load.stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    let failed = load.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "client requests failed: {failed:?}");
    for (old, seen) in &retired {
        assert_eq!(mock.requests_for_key(old), *seen, "{old} was sent after it was retired");
    }
    let ok = load.ok.load(Ordering::SeqCst);
    assert!(ok >= 2 * ROTATIONS as u64, "too little traffic to prove anything: {ok} requests");
    // Two per rotation: the new value's probe is under way (the old value serves),
    // then it passed and the new value serves.
    assert_eq!(m.generation(), 1 + 2 * ROTATIONS as u64, "two generations per rotation, none for no-op events");
    assert_eq!(m.proxy.running.health.reload_failures(), 0);
    assert_eq!(mock.stats().total().unauthorized, 0);
}

#[tokio::test]
async fn a_keys_from_pool_grows_and_shrinks_and_in_flight_requests_finish() {
    let mock = MockProvider::start(
        MockConfig::new()
            .key("p1", KeyLimit::unlimited())
            .key("p2", KeyLimit::unlimited())
            .key("p3", KeyLimit::unlimited()),
    )
    .await
    .unwrap();
    let m = Mounted::start(&pool_config(&mock.base_url(), "keys_from: POOL"), &[("POOL", "p1\np2\n")]).await;

    // Growth: a new line is a new key, used at once.
    let g = m.generation();
    m.secrets.write(&[("POOL", "p1\np2\np3\n")]);
    m.wait_generation_past(g).await;
    let mut used = Vec::new();
    for _ in 0..3 {
        let r = m.proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        used.push(r.header("x-keyrelay-key").to_owned());
    }
    used.sort();
    assert_eq!(used, ["POOL#1", "POOL#2", "POOL#3"]);
    assert_eq!(mock.requests_for_key("p3"), 1);

    // A request in flight on p1 when its line is dropped.
    let gate = Arc::new(Notify::new());
    mock.push_fault(Some("p1"), Fault::StreamGate(Arc::clone(&gate)));
    let proxy = Arc::new(m);
    let mut held = None;
    for _ in 0..3 {
        let p = Arc::clone(&proxy);
        let task = tokio::spawn(async move { p.proxy.chat("m").await });
        eventually(LONG, "request finished or held on p1", || async {
            task.is_finished() || mock.pending_faults() == 0
        })
        .await;
        if mock.pending_faults() == 0 {
            held = Some(task);
            break;
        }
        assert_eq!(task.await.unwrap().status, 200);
    }
    let held = held.expect("round-robin reached p1 within three requests");

    // Shrink. A comment in place of the retired line keeps the other keys' names
    // (POOL#2, POOL#3) and therefore their state.
    let g = proxy.generation();
    proxy.secrets.write(&[("POOL", "# p1 retired\np2\np3\n")]);
    proxy.wait_generation_past(g).await;
    assert!(!held.is_finished(), "the held request must still be in flight");
    gate.notify_one();
    let r = held.await.unwrap();
    assert_eq!((r.status.as_u16(), r.header("x-keyrelay-key")), (200, "POOL#1"), "in-flight request on a dropped key");

    // p1 is not picked anymore: revoke it and prove nothing uses it.
    mock.remove_key("p1");
    let p1_seen = mock.requests_for_key("p1");
    for _ in 0..6 {
        let r = proxy.proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_ne!(r.header("x-keyrelay-key"), "POOL#1");
    }
    assert_eq!(mock.requests_for_key("p1"), p1_seen);
}
