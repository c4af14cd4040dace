//! The admin port as operators and Prometheus see it, after mixed traffic through the
//! mock (successes, a 429 absorbed by a retry, streams, a key the provider refuses):
//! `/ui` rendered by a real headless Chromium has a chart per key with data points and
//! each key's state (and a screenshot lands in `target/` for a person to look at);
//! `promtool check metrics` accepts a `/metrics` scrape; `/status/history` serves
//! every key's fixed-size window.
//!
//! `scripts/test` installs Debian's `chromium` and `prometheus` (promtool) when missing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use support::*;

const LONG: Duration = Duration::from_secs(30);

const KEYS: [(&str, &str); 4] = [
    ("KA", "sk-dash-a-0123456789"),
    ("KB", "sk-dash-b-0123456789"),
    // Unknown to the mock: it answers 401 invalid_api_key, and the key is refused.
    ("KR", "sk-dash-revoked-0123456789"),
    ("KP", "sk-dash-p-0123456789"),
];

fn config(base: &str) -> String {
    format!(
        "server:\n  timeouts: {{ request: 10s, attempt: 5s }}\nmodels:\n\
         \x20 gpt-4o-mini:\n    strategy: round-robin\n    deployments:\n      - provider: openai\n        name: openai-mini\n        model: gpt-4o-mini\n        api_base: {base}\n        keys: [KA, KB, KR]\n        rpm: 120\n\
         \x20 local:\n    deployments:\n      - provider: openai-compatible\n        name: vllm\n        model: llama\n        api_base: {base}\n        keys: [KP]\n        price: {{ input_per_million: 500, output_per_million: 1500 }}\n"
    )
}

/// A proxy whose keys have seen every kind of answer.
async fn after_mixed_traffic() -> (MockProvider, Proxy) {
    let mock = MockProvider::start(
        MockConfig::new()
            .key(KEYS[0].1, KeyLimit::rpm(100))
            .key(KEYS[1].1, KeyLimit::rpm(100))
            .key(KEYS[3].1, KeyLimit::unlimited())
            .stream(3, Duration::from_millis(1)),
    )
    .await
    .unwrap();
    let proxy = Proxy::start(&config(&mock.base_url()), &KEYS).await;
    let chat = |model: &str, stream: bool| {
        format!(
            r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"how are the keys?"}}]}}"#
        )
    };
    let json = [("content-type", "application/json")];
    for i in 0..9 {
        let r = proxy.call(Method::POST, "/v1/chat/completions", &json, &chat("gpt-4o-mini", i % 3 == 0)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // KA answers 429 once, the retry on the next key absorbs it; KA then cools down.
    mock.push_fault(Some(KEYS[0].1), Fault::RateLimited { retry_after: Some("120".into()) });
    for _ in 0..3 {
        assert_eq!(proxy.chat("gpt-4o-mini").await.status, 200);
    }
    for stream in [false, true, false] {
        let r = proxy.call(Method::POST, "/v1/chat/completions", &json, &chat("local", stream)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    eventually_ok(LONG, "the traffic shows", || async {
        let status = proxy.admin_get("/status").await.json();
        let endpoints: Vec<Value> = status["models"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|m| m["endpoints"].as_array().cloned().unwrap_or_default())
            .collect();
        let health = |key: &str| endpoints.iter().find(|e| e["key"] == key).map(|e| e["health"].clone());
        let costed = endpoints.iter().filter(|e| e["cost_usd"].as_f64().is_some_and(|c| c > 0.0)).count();
        if health("KR") == Some("refused".into()) && health("KA") == Some("cooling_down".into()) && costed == 3 {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await;
    (mock, proxy)
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

/// Runs headless Chromium (Debian's `chromium`) on `url` with `args`, in a fresh
/// profile, off the async runtime so the proxy keeps serving it.
async fn chromium(url: String, args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().expect("profile dir");
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--timeout=30000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(&args)
            .arg(&url)
            .stdin(Stdio::null())
            .output()
            .expect("chromium runs (scripts/test installs Debian's chromium)")
    })
    .await
    .expect("chromium thread")
}

/// The attributes of every `<tag ...>` in `html` (enough of a parser for Chromium's
/// serialized DOM, whose attribute values are quoted and escaped).
fn tags<'a>(html: &'a str, tag: &str) -> Vec<Vec<(&'a str, &'a str)>> {
    let open = format!("<{tag} ");
    html.split(open.as_str())
        .skip(1)
        .map(|rest| {
            let head = &rest[..rest.find('>').unwrap_or(rest.len())];
            let mut attrs = Vec::new();
            let mut s = head;
            while let Some(eq) = s.find("=\"") {
                let name = s[..eq].trim();
                let after = &s[eq + 2..];
                let end = after.find('"').unwrap_or(after.len());
                attrs.push((name, &after[..end]));
                s = &after[(end + 1).min(after.len())..];
            }
            attrs
        })
        .collect()
}

fn attr<'a>(tag: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    tag.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_in_headless_chromium_charts_every_key_and_shows_its_state() {
    let (_mock, proxy) = after_mixed_traffic().await;
    // A bad edit: rejected, the previous configuration keeps serving.
    std::fs::write(proxy.dir.path().join("config.yaml"), "models: [not: valid").unwrap();
    proxy.running.request_reload();
    eventually(LONG, "the failed reload shows", || async {
        proxy.admin_get("/status").await.json()["reload"]["failures"] == 1
    })
    .await;
    let url = proxy.admin_url("/ui");

    // A 1366x768 laptop screen: the page must not scroll sideways.
    let args = vec!["--dump-dom".into(), "--virtual-time-budget=5000".into(), "--window-size=1366,768".into()];
    let dom = chromium(url.clone(), args).await;
    assert!(dom.status.success(), "chromium failed: {}", String::from_utf8_lossy(&dom.stderr));
    let html = String::from_utf8_lossy(&dom.stdout).into_owned();
    assert!(html.contains("data-rendered="), "the page's script rendered /status:\n{html}");
    assert!(html.contains("data-fits-width=\"true\""), "no sideways scrolling at 1366 px");

    let charts = tags(&html, "svg");
    for (key, _) in KEYS {
        let of_key: Vec<_> = charts.iter().filter(|t| attr(t, "data-key") == Some(key)).collect();
        for name in ["requests", "rate_limited", "quota", "latency", "tokens", "cost"] {
            assert!(of_key.iter().any(|t| attr(t, "data-chart") == Some(name)), "{key} has no {name} chart:\n{html}");
        }
        let requests = of_key.iter().find(|t| attr(t, "data-chart") == Some("requests")).unwrap();
        let points: u32 = attr(requests, "data-points").and_then(|p| p.parse().ok()).unwrap_or(0);
        assert!(points >= 1, "{key}'s requests chart has no data points:\n{html}");
    }
    let absorbed = charts
        .iter()
        .find(|t| attr(t, "data-key") == Some("KA") && attr(t, "data-chart") == Some("rate_limited"))
        .and_then(|t| attr(t, "data-points"));
    assert_eq!(absorbed, Some("1"), "KA's absorbed 429 is one bar");
    for key in ["KA", "KB", "KP"] {
        let latency = charts
            .iter()
            .find(|t| attr(t, "data-key") == Some(key) && attr(t, "data-chart") == Some("latency"))
            .and_then(|t| attr(t, "data-points"))
            .and_then(|p| p.parse::<u32>().ok());
        assert!(latency.is_some_and(|n| n >= 1), "{key} has latency points");
    }

    let cards = tags(&html, "div");
    let state = |key: &str| {
        cards.iter().find(|t| attr(t, "data-key") == Some(key)).and_then(|t| attr(t, "data-state")).map(str::to_owned)
    };
    assert_eq!(state("KA").as_deref(), Some("cooling_down"));
    assert_eq!(state("KB").as_deref(), Some("ready"));
    assert_eq!(state("KR").as_deref(), Some("refused"));
    assert!(html.contains("cooling until "), "KA's cooldown shows its end");
    assert!(html.contains("refused (key invalid, probe in"), "KR's refusal shows why and when");
    assert!(html.contains("Recent reloads"));
    assert!(html.contains(">rejected<") && html.contains(">applied<"), "both reloads are listed");
    assert!(!html.contains("id=\"meta\">cannot load"), "{html}");

    let shot = target_dir().join("keyrelay-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let args = vec![
        format!("--screenshot={}", shot.display()),
        "--window-size=1400,900".into(),
        "--virtual-time-budget=5000".into(),
    ];
    let out = chromium(url, args).await;
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real picture");
    eprintln!("dashboard screenshot: {}", shot.display());
}

#[tokio::test]
async fn promtool_accepts_the_metrics_after_mixed_traffic() {
    let (_mock, proxy) = after_mixed_traffic().await;
    // promtool reads the Prometheus text format (0.0.4), which a scraper gets by asking.
    let request = http::Request::get(proxy.admin_url("/metrics"))
        .header("accept", "text/plain; version=0.0.4")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let scrape = read(support::harness::http_client().request(request).await.expect("scrape")).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape.header("content-type").starts_with("text/plain; version=0.0.4"),
        "{}",
        scrape.header("content-type")
    );
    let text = scrape.text();
    for name in ["keyrelay_cost_usd_total", "keyrelay_upstream_rate_limited_total", "keyrelay_key_disabled"] {
        assert!(text.contains(name), "{name} in the scrape");
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (scripts/test installs Debian's prometheus)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(text.as_bytes()).expect("scrape written to promtool");
    }
    let out = child.wait_with_output().expect("promtool ends");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

#[tokio::test]
async fn status_history_serves_a_fixed_window_per_key() {
    let (_mock, proxy) = after_mixed_traffic().await;
    let r = proxy.admin_get("/status/history").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    let h = r.json();
    assert_eq!(h["bucket_seconds"], 15);
    assert_eq!(h["buckets"], 60);
    let bytes = h["bytes_per_key"].as_u64().unwrap_or(0);
    assert!(bytes > 0 && bytes < 8192, "{bytes}");
    let endpoints: Vec<&Value> =
        h["models"].as_array().unwrap().iter().flat_map(|m| m["endpoints"].as_array().unwrap()).collect();
    assert_eq!(endpoints.len(), 4);
    for e in &endpoints {
        for column in ["requests", "rate_limited", "latency_p50_ms", "latency_p95_ms", "remaining_requests", "cost_usd"]
        {
            assert_eq!(e[column].as_array().map(Vec::len), Some(60), "{column} of {}", e["key"]);
        }
    }
    let ka = endpoints.iter().find(|e| e["key"] == "KA").unwrap();
    let sum = |e: &Value, c: &str| e[c].as_array().unwrap().iter().filter_map(Value::as_f64).sum::<f64>();
    assert_eq!(sum(ka, "rate_limited"), 1.0);
    assert!(sum(ka, "requests") >= 3.0);
    assert!(
        ka["remaining_requests"].as_array().unwrap().iter().any(|v| v.as_u64().is_some()),
        "the mock reports quota"
    );
    assert!(ka["limit_requests"].as_array().unwrap().iter().any(|v| v == 100), "{ka}");
    let kr = endpoints.iter().find(|e| e["key"] == "KR").unwrap();
    assert!(sum(kr, "refused") >= 1.0);
    let status = proxy.admin_get("/status").await.json();
    assert!(status["reload"]["recent"].is_array());
}
