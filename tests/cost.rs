//! Cost per request, end to end: the real binary serves JSON and streamed answers from
//! the mock for a deployment priced in its config, one priced by the built-in table
//! (`openai` / `gpt-4o-mini`) and one with no price. Each answer's cost, its reported
//! tokens times the price, is on `keyrelay_cost_usd_total`, on `/status` (per key, per
//! model, in total), on the server and attempt spans (`keyrelay.cost_usd`) and on the
//! access log line; the unpriced one has none of it.

#[path = "support/otlp.rs"]
mod otlp;
mod support;

use std::time::Duration;

use http::Method;
use otlp::{Receiver, CLIENT, SERVER};
use serde_json::Value;
use support::daemon::Daemon;
use support::*;

const LONG: Duration = Duration::from_secs(30);

/// USD per token: the config's price (1000 / 3000 per million) and the built-in
/// gpt-4o-mini one (0.15 / 0.60 per million).
const CONFIG_PRICE: (f64, f64) = (1000e-6, 3000e-6);
const BUILTIN_PRICE: (f64, f64) = (0.15e-6, 0.60e-6);

fn config(base: &str) -> String {
    format!(
        "server:\n  timeouts: {{ request: 10s, attempt: 5s }}\nmodels:\n\
         \x20 priced:\n    deployments:\n      - provider: openai-compatible\n        name: own\n        model: up\n        api_base: {base}\n        keys: [KP]\n        price: {{ input_per_million: 1000, output_per_million: 3000 }}\n\
         \x20 listed:\n    deployments:\n      - provider: openai\n        name: oai\n        model: gpt-4o-mini\n        api_base: {base}\n        keys: [KL]\n\
         \x20 free:\n    deployments:\n      - provider: openai-compatible\n        name: self\n        model: local\n        api_base: {base}\n        keys: [KF]\n"
    )
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 + b.abs() * 1e-9
}

fn cost(tokens: (u64, u64), price: (f64, f64)) -> f64 {
    tokens.0 as f64 * price.0 + tokens.1 as f64 * price.1
}

fn endpoint<'a>(status: &'a Value, model: &str) -> &'a Value {
    let m = status["models"].as_array().and_then(|ms| ms.iter().find(|m| m["model"] == model));
    &m.unwrap_or_else(|| panic!("no model {model} in {status}"))["endpoints"][0]
}

#[tokio::test]
async fn cost_is_on_metrics_status_spans_and_the_access_log_for_json_and_streams() {
    let receiver = Receiver::start();
    let mock = MockProvider::start(
        MockConfig::new()
            .key("sk-cost-p-0123456789", KeyLimit::unlimited())
            .key("sk-cost-l-0123456789", KeyLimit::unlimited())
            .key("sk-cost-f-0123456789", KeyLimit::unlimited())
            .stream(3, Duration::from_millis(1)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for (name, value) in
        [("KP", "sk-cost-p-0123456789"), ("KL", "sk-cost-l-0123456789"), ("KF", "sk-cost-f-0123456789")]
    {
        std::fs::write(secrets.join(name), value).unwrap();
    }
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(&mock.base_url())).unwrap();
    let otlp = format!("http://{}", receiver.addr);
    let daemon = Daemon::spawn(
        &config_path,
        &secrets,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp), ("OTEL_BSP_SCHEDULE_DELAY", "50")],
    );
    let (proxy, admin) = (daemon.proxy.clone(), daemon.admin.clone());

    let client = support::harness::http_client();
    for model in ["priced", "listed", "free"] {
        for stream in [false, true] {
            let body = format!(
                r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"what does this cost?"}}]}}"#
            );
            let request = http::Request::builder()
                .method(Method::POST)
                .uri(format!("http://{proxy}/v1/chat/completions"))
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap();
            let r = read(client.request(request).await.expect("request")).await;
            assert_eq!(r.status, 200, "{model} stream={stream}: {}", r.text());
        }
    }

    // Usage is recorded when each body ends, just after the client read it.
    let costed = |status: &Value| {
        ["priced", "listed", "free"].iter().all(|m| endpoint(status, m)["counters"]["successes"] == 2)
            && ["priced", "listed"].iter().all(|m| endpoint(status, m)["cost_usd"].as_f64().is_some_and(|c| c > 0.0))
    };
    let status = eventually_ok(LONG, "the answers costed", || async {
        let status = get(&format!("http://{admin}/status")).await.json();
        if costed(&status) {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .await;
    let tokens = |model: &str| {
        let t = &endpoint(&status, model)["tokens"];
        (t["input"].as_u64().unwrap_or(0), t["output"].as_u64().unwrap_or(0))
    };
    let priced = cost(tokens("priced"), CONFIG_PRICE);
    let listed = cost(tokens("listed"), BUILTIN_PRICE);
    assert!(tokens("priced").1 > 0 && tokens("listed").1 > 0, "{status}");
    let (p, l, f) = (endpoint(&status, "priced"), endpoint(&status, "listed"), endpoint(&status, "free"));
    assert!(close(p["cost_usd"].as_f64().unwrap_or(0.0), priced), "{p}");
    assert_eq!(p["price"]["source"], "config");
    assert_eq!(p["price"]["input_per_million"], 1000.0);
    assert!(close(l["cost_usd"].as_f64().unwrap_or(0.0), listed), "{l}");
    assert_eq!(l["price"]["source"], "built-in");
    assert_eq!(l["price"]["output_per_million"], 0.6);
    assert_eq!(f["cost_usd"], 0.0);
    assert!(f["price"].is_null());
    assert!(close(status["cost_usd"].as_f64().unwrap_or(0.0), priced + listed), "{status}");
    let model_cost =
        |m: &str| status["models"].as_array().unwrap().iter().find(|x| x["model"] == m).unwrap()["cost_usd"].clone();
    assert!(close(model_cost("priced").as_f64().unwrap_or(0.0), priced));
    assert!(status["builtin_prices_as_of"].as_str().is_some_and(|d| d.len() == 10));

    let metrics = get(&format!("http://{admin}/metrics")).await.text();
    let sample = |key: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with("keyrelay_cost_usd_total{") && l.contains(&format!("key=\"{key}\"")))
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse::<f64>().unwrap_or(-1.0))
            .unwrap_or_else(|| panic!("no cost sample for {key}:\n{metrics}"))
    };
    assert!(close(sample("KP"), priced), "{metrics}");
    assert!(close(sample("KL"), listed), "{metrics}");
    assert_eq!(sample("KF"), 0.0);
    assert!(metrics.contains("# TYPE keyrelay_cost_usd counter"), "{metrics}");
    let line = metrics.lines().find(|l| l.starts_with("keyrelay_cost_usd_total{") && l.contains("KP")).unwrap();
    assert!(line.contains("model=\"priced\"") && line.contains("deployment=\"own\""), "{line}");

    // Spans: each answered request's server span and its attempt carry the cost of
    // their own reported tokens; streams included.
    let spans = receiver
        .wait_for(
            LONG,
            "server and client spans of all 6 requests",
            || async {},
            |spans| {
                let servers = spans.iter().filter(|s| s.kind == SERVER).count();
                let clients = spans.iter().filter(|s| s.kind == CLIENT).count();
                (servers >= 6 && clients >= 6).then(|| spans.to_vec())
            },
        )
        .await;
    for (model, price) in [("priced", Some(CONFIG_PRICE)), ("listed", Some(BUILTIN_PRICE)), ("free", None)] {
        let servers: Vec<_> =
            spans.iter().filter(|s| s.kind == SERVER && s.str("gen_ai.request.model") == Some(model)).collect();
        assert_eq!(servers.len(), 2, "{model}");
        for server in servers {
            let attempt = spans
                .iter()
                .find(|s| s.kind == CLIENT && s.trace_id == server.trace_id)
                .unwrap_or_else(|| panic!("no attempt span for {model}"));
            for span in [server, attempt] {
                let used = (
                    span.int("gen_ai.usage.input_tokens").unwrap_or(0) as u64,
                    span.int("gen_ai.usage.output_tokens").unwrap_or(0) as u64,
                );
                assert!(used.1 > 0, "{span:#?}");
                match price {
                    Some(price) => {
                        let got = span.double("keyrelay.cost_usd").unwrap_or_else(|| panic!("no cost: {span:#?}"));
                        assert!(close(got, cost(used, price)), "{model}: {got} for {used:?}");
                    }
                    None => assert_eq!(span.double("keyrelay.cost_usd"), None, "{span:#?}"),
                }
            }
        }
    }

    daemon.terminate();
    let (exit, logs) = tokio::task::spawn_blocking(move || daemon.wait()).await.unwrap();
    assert!(exit.success(), "{exit:?}");
    let access: Vec<Value> = logs
        .iter()
        .filter(|l| l.contains("\"target\":\"keyrelay::access\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(access.len(), 6, "{logs:#?}");
    for line in &access {
        let fields = line.get("fields").unwrap_or(line);
        let used = (fields["input_tokens"].as_u64().unwrap_or(0), fields["output_tokens"].as_u64().unwrap_or(0));
        match fields["model"].as_str() {
            Some("priced") => {
                assert!(close(fields["cost_usd"].as_f64().unwrap_or(-1.0), cost(used, CONFIG_PRICE)), "{line}")
            }
            Some("listed") => {
                assert!(close(fields["cost_usd"].as_f64().unwrap_or(-1.0), cost(used, BUILTIN_PRICE)), "{line}")
            }
            _ => assert!(fields.get("cost_usd").is_none(), "no price, no cost: {line}"),
        }
    }
}
