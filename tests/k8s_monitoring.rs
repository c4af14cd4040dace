//! The chart's monitoring objects: the PrometheusRule passes `promtool check rules`,
//! the Grafana dashboard ConfigMap follows the sidecar convention, the PodMonitor
//! selects what the injector labels, and every metric name the dashboard and the
//! alerts use is one keyrelay really serves on `/metrics` after traffic (there is no
//! single list of names in the code: the scrape is the list).
//!
//! kubernetes-validate has no schemas for prometheus-operator's CRDs, so their
//! structure is checked here field by field; the ConfigMap and the rest are validated
//! strictly. helm, kubernetes-validate and promtool come from `./scripts/test`; these
//! tests fail without them, never skip.

#[path = "support/k8s_tools.rs"]
mod k8s_tools;
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use k8s_tools::{parse_all, repo, tool, validate_strict};
use serde_json::Value;
use support::*;

const MONITORING: [&str; 6] = [
    "image.repository=registry.example/platform/keyrelay",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.prometheusRule.labels.release=kube-prometheus-stack",
    "monitoring.podMonitor.enabled=true",
    "monitoring.grafanaDashboard.enabled=true",
    "monitoring.grafanaDashboard.folder=LLM",
];

fn render(set: &[&str]) -> (String, Vec<Value>) {
    let mut cmd = Command::new(tool("helm"));
    cmd.args(["template", "kr", "--namespace", "keyrelay"]).arg(repo().join("charts/keyrelay"));
    for value in set {
        cmd.args(["--set", value]);
    }
    let out = cmd.output().expect("run helm");
    assert!(out.status.success(), "helm template failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let objects = parse_all(&text);
    (text, objects)
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

fn is_monitoring_crd(object: &Value) -> bool {
    object["apiVersion"] == "monitoring.coreos.com/v1"
}

fn dashboard(objects: &[Value]) -> Value {
    let config_map =
        objects.iter().find(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1");
    let text =
        config_map.expect("a ConfigMap labelled grafana_dashboard: \"1\"")["data"]["keyrelay.json"].as_str().unwrap();
    serde_json::from_str(text).expect("the dashboard is JSON")
}

/// Every `keyrelay_*` name in a PromQL expression (label names never start so).
fn metric_names(text: &str, into: &mut BTreeSet<String>) {
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(found) = text[at..].find("keyrelay_") {
        let start = at + found;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = start
            + text[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len() - start);
        if boundary {
            into.insert(text[start..end].to_owned());
        }
        at = end;
    }
}

fn exprs(objects: &[Value]) -> Vec<String> {
    let mut all: Vec<String> = one(objects, "PrometheusRule")["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter().map(|r| r["expr"].as_str().unwrap().to_owned()))
        .collect();
    let dashboard = dashboard(objects);
    for panel in dashboard["panels"].as_array().unwrap() {
        all.extend(panel["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_owned()));
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            all.push(query.to_owned());
        }
    }
    all
}

#[test]
fn the_monitoring_objects_are_off_by_default_and_validate_when_on() {
    let (_, defaults) = render(&MONITORING[..1]);
    assert!(defaults.iter().all(|o| !is_monitoring_crd(o)), "CRD objects need their CRDs: off by default");
    assert!(defaults.iter().all(|o| o["metadata"]["labels"]["grafana_dashboard"].is_null()));

    let (text, objects) = render(&MONITORING);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitoring.yaml");
    std::fs::write(&path, text).unwrap();
    validate_strict(&[path], objects.iter().filter(|o| !is_monitoring_crd(o)).count());

    // The CRDs, by hand: what prometheus-operator reads.
    let rule = one(&objects, "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "keyrelay");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus-stack");
    let rules = rule["spec"]["groups"][0]["rules"].as_array().unwrap();
    let alerts: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(
        alerts,
        [
            "KeyrelayKeyRefused",
            "KeyrelayAliasExhausted",
            "KeyrelayKeyQuotaLow",
            "KeyrelayReloadFailing",
            "KeyrelayRateLimitsReachApp"
        ]
    );
    for r in rules {
        let known: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert!(known.is_subset(&BTreeSet::from(["alert", "expr", "for", "labels", "annotations"])), "{r}");
        assert!(
            r["expr"].is_string() && r["labels"]["severity"].is_string() && r["annotations"]["summary"].is_string()
        );
    }
    let monitor = one(&objects, "PodMonitor");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"]["keyrelay.dev/injected"], "true");
    assert_eq!(monitor["spec"]["namespaceSelector"]["any"], true);
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    // The injected container's port name (src/k8s/sidecar.rs).
    assert_eq!(endpoint["port"], "keyrelay-admin");
    assert_eq!(endpoint["path"], "/metrics");

    let config_map = objects.iter().find(|o| o["metadata"]["labels"]["grafana_dashboard"] == "1").unwrap();
    assert_eq!(config_map["metadata"]["annotations"]["grafana_folder"], "LLM");
    let dashboard = dashboard(&objects);
    assert_eq!(dashboard["uid"], "keyrelay");
    assert!(dashboard["panels"].as_array().unwrap().len() >= 10);
}

#[test]
fn promtool_checks_the_rendered_rules() {
    let (_, objects) = render(&MONITORING);
    let spec = &one(&objects, "PrometheusRule")["spec"];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yaml");
    std::fs::write(&path, serde_yaml::to_string(spec).unwrap()).unwrap();
    let out = Command::new("promtool").arg("check").arg("rules").arg(&path).output().unwrap_or_else(|e| {
        panic!("promtool is not installed ({e}): run ./scripts/test, which installs Debian's prometheus package")
    });
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && output.contains("SUCCESS: 5 rules found"), "{output}");

    // Guards the guard: promtool does reject a broken expression.
    let broken = serde_yaml::to_string(spec).unwrap().replacen("keyrelay_key_disabled)", "keyrelay_key_disabled", 1);
    std::fs::write(&path, broken).unwrap();
    assert!(!Command::new("promtool").arg("check").arg("rules").arg(&path).output().unwrap().status.success());
}

/// Traffic that makes every family the chart uses have a sample: successes with
/// rate-limit headers (quota), a 429 absorbed by retrying the other key, and 429s
/// that reach the client once both keys cool down.
#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_is_served() {
    let (_, objects) = render(&MONITORING);
    let mut used = BTreeSet::new();
    for expr in exprs(&objects) {
        metric_names(&expr, &mut used);
    }
    assert!(used.len() >= 15, "{used:?}");

    let limit = KeyLimit::rpm(1000).with_tpm(1_000_000);
    let mock = MockProvider::start(MockConfig::new().key("sk-a", limit).key("sk-b", limit)).await.unwrap();
    let config = format!(
        "models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {}\n        keys: [KA, KB]\n",
        mock.base_url()
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;
    for _ in 0..4 {
        assert_eq!(proxy.chat("m").await.status, 200);
    }
    let too_many = || Fault::answer(429, &[("retry-after", "60")], r#"{"error":{"message":"slow down"}}"#);
    mock.push_fault(Some("sk-a"), too_many());
    mock.push_fault(Some("sk-b"), too_many());
    let mut got_429 = false;
    for _ in 0..4 {
        got_429 |= proxy.chat("m").await.status == 429;
    }
    assert!(got_429, "with both keys cooling down the client gets a 429");

    // Polled: a scrape can race the last request's bookkeeping.
    eventually_ok(Duration::from_secs(10), "every metric the chart uses served", || async {
        let text = proxy.admin_get("/metrics").await.text();
        let served: BTreeSet<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_owned)
            .collect();
        let missing: Vec<&String> = used.difference(&served).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("the chart uses metrics keyrelay does not serve: {missing:?}\nserved: {served:?}"))
        }
    })
    .await;
}
