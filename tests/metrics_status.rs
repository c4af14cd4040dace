//! The admin port's `/metrics` (scraped and parsed as Prometheus text), `/status` and
//! `/ui`, while requests go through: counters move as requests do, and labels carry
//! key names only.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use support::*;

const LONG: Duration = Duration::from_secs(60);

/// One sample of the text format: `name{label="value",...} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A small parser for the Prometheus/OpenMetrics text format (comments skipped).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (name.to_owned(), parse_labels(body))
            }
        };
        out.push(Sample { name, labels, value });
    }
    out
}

fn parse_labels(body: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {key} not quoted in {body}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap_or('\\')),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// The value of the one sample named `name` whose labels include `labels`; 0 if none.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .collect();
    assert!(matching.len() <= 1, "several samples match {name} {labels:?}: {matching:?}");
    matching.first().map_or(0.0, |s| s.value)
}

async fn scrape(proxy: &Proxy) -> Vec<Sample> {
    let r = proxy.admin_get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("application/openmetrics-text"), "{}", r.header("content-type"));
    parse(&r.text())
}

fn config(base: &str) -> String {
    format!(
        "models:\n  m:\n    strategy: round-robin\n    deployments:\n      - provider: openai-compatible\n        name: dep\n        model: up\n        api_base: {base}\n        keys: [KA, KB]\n"
    )
}

async fn started() -> (MockProvider, Proxy) {
    let mock = MockProvider::start(
        MockConfig::new()
            .key("sk-metrics-a-0123456789", KeyLimit::unlimited())
            .key("sk-metrics-b-0123456789", KeyLimit::unlimited())
            .stream(3, Duration::from_millis(1)),
    )
    .await
    .unwrap();
    let proxy = Proxy::start(
        &config(&mock.base_url()),
        &[("KA", "sk-metrics-a-0123456789"), ("KB", "sk-metrics-b-0123456789")],
    )
    .await;
    (mock, proxy)
}

#[tokio::test]
async fn counters_move_as_requests_do_and_labels_are_names() {
    let (mock, proxy) = started().await;
    let before = scrape(&proxy).await;
    assert_eq!(value(&before, "keyrelay_snapshot_generation", &[]), 1.0);
    assert_eq!(value(&before, "keyrelay_config_reload_failures_total", &[]), 0.0);
    assert_eq!(value(&before, "keyrelay_upstream_attempts_total", &[("key", "KA")]), 0.0);
    assert_eq!(value(&before, "keyrelay_breaker_state", &[("key", "KA"), ("state", "closed")]), 1.0);

    // KA answers 429 (30 s cooldown), the request moves to KB; then KB serves alone.
    mock.push_fault(Some("sk-metrics-a-0123456789"), Fault::RateLimited { retry_after: Some("30".into()) });
    for _ in 0..3 {
        assert_eq!(proxy.chat("m").await.status, 200);
    }
    let stream = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = proxy.call(Method::POST, "/v1/chat/completions", &[("content-type", "application/json")], stream).await;
    assert_eq!(r.status, 200);
    assert_eq!(proxy.chat("no-such-model").await.status, 404);

    // Requests are counted when their body ends, just after the client read it.
    let after = eventually_ok(LONG, "5 requests counted", || async {
        let samples = scrape(&proxy).await;
        if samples.iter().filter(|s| s.name == "keyrelay_requests_total").map(|s| s.value).sum::<f64>() == 5.0 {
            Ok(samples)
        } else {
            Err(format!("{samples:#?}"))
        }
    })
    .await;
    let m = [("model", "m"), ("deployment", "dep")];
    let ka = [("model", "m"), ("deployment", "dep"), ("key", "KA")];
    let kb = [("model", "m"), ("deployment", "dep"), ("key", "KB")];
    assert_eq!(value(&after, "keyrelay_requests_total", &[("key", "KB"), ("status_class", "2xx")]), 4.0);
    let unknown = [("model", ""), ("deployment", ""), ("key", ""), ("status_class", "4xx")];
    assert_eq!(value(&after, "keyrelay_requests_total", &unknown), 1.0, "unknown models share one label set");
    assert_eq!(value(&after, "keyrelay_retries_total", &[("model", "m"), ("reason", "rate_limited")]), 1.0);
    assert_eq!(value(&after, "keyrelay_upstream_attempts_total", &ka), 1.0);
    assert_eq!(value(&after, "keyrelay_upstream_attempts_total", &kb), 4.0);
    assert_eq!(value(&after, "keyrelay_upstream_rate_limited_total", &ka), 1.0);
    assert_eq!(value(&after, "keyrelay_upstream_successes_total", &kb), 4.0);
    assert_eq!(value(&after, "keyrelay_cooldowns_total", &ka), 1.0);
    assert_eq!(value(&after, "keyrelay_cooling_down", &ka), 1.0);
    assert!(value(&after, "keyrelay_cooldown_remaining_seconds", &ka) > 20.0);
    assert_eq!(value(&after, "keyrelay_available", &ka), 0.0);
    assert_eq!(value(&after, "keyrelay_available", &kb), 1.0);
    assert_eq!(value(&after, "keyrelay_in_flight", &kb), 0.0);
    assert_eq!(value(&after, "keyrelay_requests_last_minute", &kb), 4.0);
    assert!(value(&after, "keyrelay_input_tokens_total", &kb) > 0.0);
    assert!(value(&after, "keyrelay_output_tokens_total", &kb) > 0.0);
    assert_eq!(value(&after, "keyrelay_input_tokens_total", &ka), 0.0);
    assert_eq!(value(&after, "keyrelay_upstream_latency_seconds_count", &m), 5.0, "every answered attempt");
    assert_eq!(value(&after, "keyrelay_added_latency_seconds_count", &[("model", "m")]), 4.0);
    assert_eq!(value(&after, "keyrelay_request_latency_seconds_count", &[("model", "m")]), 4.0);
    assert_eq!(value(&after, "keyrelay_time_to_first_chunk_seconds_count", &m), 1.0, "the stream");

    for sample in &after {
        assert!(sample.name.starts_with("keyrelay_"), "{sample:?}");
        if let Some(key) = sample.labels.get("key") {
            assert!(["KA", "KB", ""].contains(&key.as_str()), "{sample:?}");
        }
        for v in sample.labels.values() {
            assert!(!v.contains("sk-") && !v.contains("/v1"), "{sample:?}");
        }
    }
}

#[tokio::test]
async fn reload_failures_and_generation_are_exported() {
    let (mock, proxy) = started().await;
    let config_path = proxy.dir.path().join("config.yaml");
    std::fs::write(&config_path, "models: [not: valid").unwrap();
    proxy.running.request_reload();
    eventually(LONG, "the failed reload is counted", || async {
        value(&scrape(&proxy).await, "keyrelay_config_reload_failures_total", &[]) == 1.0
    })
    .await;
    std::fs::write(&config_path, format!("# edited\n{}", config(&mock.base_url()))).unwrap();
    proxy.running.request_reload();
    eventually(LONG, "generation 2 serves", || async {
        let samples = scrape(&proxy).await;
        value(&samples, "keyrelay_snapshot_generation", &[]) == 2.0
            && value(&samples, "keyrelay_config_reloads_total", &[]) == 1.0
    })
    .await;
}

#[tokio::test]
async fn status_shows_each_endpoint_and_ui_renders_it() {
    let (mock, proxy) = started().await;
    mock.push_fault(Some("sk-metrics-a-0123456789"), Fault::RateLimited { retry_after: Some("30".into()) });
    let sent = std::time::Instant::now();
    assert_eq!(proxy.chat("m").await.status, 200);

    let status = eventually_ok(LONG, "KB's tokens recorded", || async {
        let r = proxy.admin_get("/status").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), "application/json");
        let status = r.json();
        // Tokens are recorded when the body ends, just after the client read it.
        if status["models"][0]["endpoints"][1]["tokens"]["input"].as_u64().is_some_and(|n| n > 0) {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .await;
    assert_eq!(status["generation"], 1);
    assert_eq!(status["ready"], true);
    assert_eq!(status["reload"]["failures"], 0);
    assert!(status["reload"]["last_error"].is_null());
    let model = &status["models"][0];
    assert_eq!(model["model"], "m");
    assert_eq!(model["strategy"], "round-robin");
    assert_eq!(model["available_endpoints"], 1);
    let endpoints = model["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 2);
    let (a, b) = (&endpoints[0], &endpoints[1]);
    assert_eq!(a["key"], "KA");
    assert_eq!(a["deployment"], "dep");
    assert_eq!(a["provider"], "openai-compatible");
    assert_eq!(a["upstream_model"], "up");
    assert_eq!(a["health"], "cooling_down");
    assert_eq!(a["available"], false);
    // 30 s from the 429, which came after `sent`; shown rounded to the ms.
    let since = sent.elapsed().as_secs_f64();
    assert!(a["cooldown_seconds"].as_f64().is_some_and(|s| s <= 30.0 && s + since + 0.001 >= 30.0), "{a}");
    assert_eq!(a["breaker"], "closed");
    assert_eq!(a["counters"]["rate_limited"], 1);
    assert_eq!(b["key"], "KB");
    assert_eq!(b["health"], "ready");
    assert_eq!(b["available"], true);
    assert!(b["cooldown_seconds"].is_null());
    assert_eq!(b["in_flight"], 0);
    assert_eq!(b["requests_last_minute"], 1);
    assert!(b["tokens_last_minute"].as_u64().is_some_and(|n| n > 0));
    assert!(b["tokens"]["output"].as_u64().is_some_and(|n| n > 0));
    assert!(b["latency_ms"].as_f64().is_some());
    assert!(b["limits"]["rpm"].is_null());
    for field in ["remaining_requests", "remaining_tokens", "quota_reset_seconds", "headroom", "time_to_first_chunk_ms"]
    {
        assert!(b.get(field).is_some(), "{field} missing from {b}");
    }

    let ui = proxy.admin_get("/ui").await;
    assert_eq!(ui.status, 200);
    assert!(ui.header("content-type").starts_with("text/html"));
    assert!(ui.text().contains("fetch(\"status\""));
    assert!(!ui.text().contains("src=\"http"), "self-contained: no external assets");
}
