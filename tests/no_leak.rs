//! No key value leaks: the real binary runs with known fake key values, debug JSON logs
//! and OTLP export to a loopback receiver, and serves plain, retried, failed (5xx,
//! refused key, connect error, all keys cooling down, bad requests) and streamed requests.
//! Neither any key value nor any 8-character piece of one may appear in its logs, the
//! exported spans, `/metrics`, `/status`, `/readyz` or any response (body or headers).

#[path = "support/otlp.rs"]
mod otlp;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use http::Method;
use otlp::{Receiver, SERVER};
use support::daemon::Daemon;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_keyrelay");

/// (secret name, fake value). Values are random-looking so that any 8-character window
/// found anywhere can only have come from the value itself.
const KEYS: [(&str, &str); 8] = [
    ("P1", "kr-9fQz2LmX7vTb4NwR8cKd"),
    ("R1", "kr-Hs3Jq8ZtVx1Lp6MbYe0G"),
    ("R2", "kr-W5nDk2QrTz8Fy4Uc7AjP"),
    ("F1", "kr-Lb6Xv9Ms2Qe7Rt3Yk0Wn"),
    ("F2", "kr-Cz4Tg8Nh1Vp5Jd9Bq2Ks"),
    ("U1", "kr-Ye7Ra3Mw6Xt0Zn4Lh8Pq"),
    ("D1", "kr-Gf2Kb5Sx9Wm3Tc7Vy1Rd"),
    ("C1", "kr-Nj8Qd4Lz0Hv6Bx2Ft5Mw"),
];

fn value(name: &str) -> &'static str {
    KEYS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).unwrap_or_default()
}

fn config(base: &str) -> String {
    let deployment = |keys: &str, base: &str| {
        format!("    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{keys}]\n")
    };
    let mut yaml = String::from("server:\n  timeouts: { request: 10s, attempt: 3s, connect: 1s }\nmodels:\n");
    yaml += &format!("  plain:\n{}", deployment("P1", base));
    yaml += &format!("  retry:\n    strategy: round-robin\n{}", deployment("R1, R2", base));
    yaml += &format!("  fail5:\n    strategy: round-robin\n{}", deployment("F1, F2", base));
    yaml += &format!("  unauth:\n{}", deployment("U1", base));
    yaml += &format!("  down:\n{}", deployment("D1", "http://127.0.0.1:1/v1"));
    yaml += &format!("  cool:\n    queue: {{ max_wait: 1s }}\n{}", deployment("C1", base));
    yaml
}

/// Every 8-character window of every key value (the values themselves included).
fn pieces() -> Vec<&'static str> {
    KEYS.iter().flat_map(|(_, v)| (0..=v.len() - 8).map(move |i| &v[i..i + 8])).collect()
}

fn assert_clean(what: &str, haystack: &[u8]) {
    for piece in pieces() {
        if let Some(at) = haystack.windows(piece.len()).position(|w| w == piece.as_bytes()) {
            let from = at.saturating_sub(200);
            let context = String::from_utf8_lossy(&haystack[from..(at + 200).min(haystack.len())]);
            panic!("{what} contains {piece:?} (from a key value) near:\n{context}");
        }
    }
}

fn reply_text(r: &Reply) -> String {
    let headers: String =
        r.headers.iter().map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes()))).collect();
    format!("{} {}\n{headers}\n{}\n", r.status, r.header("x-keyrelay-key"), r.text())
}

#[tokio::test]
async fn no_key_value_in_logs_spans_metrics_status_or_responses() {
    let receiver = Receiver::start();
    let accepted = ["P1", "R1", "R2", "F1", "F2", "C1"];
    let mock = MockProvider::start(
        accepted
            .iter()
            .fold(MockConfig::new(), |c, k| c.key(value(k), KeyLimit::unlimited()))
            .stream(3, Duration::from_millis(2)),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    for (name, v) in KEYS {
        std::fs::write(secrets.join(name), v).unwrap();
    }
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config(&mock.base_url())).unwrap();

    let otlp = format!("http://{}", receiver.addr);
    let daemon = Daemon::spawn(
        &config_path,
        &secrets,
        &[
            ("RUST_LOG", "debug"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp),
            ("OTEL_SERVICE_NAME", "keyrelay-no-leak"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let (proxy, admin) = (daemon.proxy.clone(), daemon.admin.clone());

    mock.push_fault(Some(value("R1")), Fault::RateLimited { retry_after: Some("30".into()) });
    mock.push_fault(Some(value("F1")), Fault::Status(503));
    mock.push_fault(Some(value("F2")), Fault::Status(500));
    mock.push_fault(Some(value("C1")), Fault::RateLimited { retry_after: Some("60".into()) });
    let client = support::harness::http_client();
    let send = |body: &str, path: &str| {
        let request = http::Request::builder()
            .method(Method::POST)
            .uri(format!("http://{proxy}{path}"))
            .header("content-type", "application/json")
            .header("authorization", "Bearer app-side-token")
            .body(http_body_util::Full::new(bytes::Bytes::from(body.to_owned())))
            .unwrap();
        let client = client.clone();
        async move { read(client.request(request).await.expect("request")).await }
    };
    let chat = |model: &str| format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    let mut responses = String::new();
    let cases = [
        (chat("plain"), 200),
        (r#"{"model":"plain","stream":true,"messages":[]}"#.to_owned(), 200),
        (chat("retry"), 200),
        (chat("fail5"), 500),
        (chat("unauth"), 503),
        (chat("down"), 502),
        (chat("cool"), 429),
        (chat("cool"), 429),
        (chat("no-such-model"), 404),
        ("{not json".to_owned(), 400),
    ];
    for (body, status) in &cases {
        let r = send(body, "/v1/chat/completions").await;
        assert_eq!(r.status, *status, "{body}: {}", r.text());
        responses += &reply_text(&r);
    }
    assert_eq!(mock.requests_for_key(value("P1")), 2, "the keys were really used");
    assert_eq!(mock.requests_for_key(value("U1")), 1);

    let mut admin_text = String::new();
    for path in ["/metrics", "/status", "/readyz", "/ui"] {
        let r = get(&format!("http://{admin}{path}")).await;
        assert_eq!(r.status, 200, "{path}");
        admin_text += &reply_text(&r);
    }
    assert!(admin_text.contains("\"key\":\"U1\""), "status names the keys");

    daemon.terminate();
    let (exit, logs) = tokio::task::spawn_blocking(move || daemon.wait()).await.unwrap();
    assert!(exit.success(), "{exit:?}");
    let logs = logs.join("\n");

    // The exporter flushed on shutdown: every routed request's server span is here.
    let spans = receiver.spans();
    let servers: Vec<_> = spans.iter().filter(|s| s.kind == SERVER).collect();
    assert!(servers.len() >= cases.len(), "{} server spans for {} requests", servers.len(), cases.len());
    assert!(servers
        .iter()
        .all(|s| s.resource.get("service.name") == Some(&otlp::Attr::Str("keyrelay-no-leak".into()))));
    let access_lines = logs.lines().filter(|l| l.contains("\"target\":\"keyrelay::access\"")).count();
    assert_eq!(access_lines, cases.len(), "one access line per request:\n{logs}");
    assert!(logs.lines().filter(|l| l.contains("\"level\":\"DEBUG\"")).count() > 0, "debug logs were on");

    assert_clean("the logs", logs.as_bytes());
    assert_clean("the exported spans", &receiver.raw());
    assert_clean("the decoded spans", format!("{spans:?}").as_bytes());
    assert_clean("the admin endpoints", admin_text.as_bytes());
    assert_clean("the responses", responses.as_bytes());
}

#[tokio::test]
async fn debug_output_of_the_running_snapshot_names_keys_only() {
    let mock = MockProvider::start(MockConfig::new().key(value("P1"), KeyLimit::unlimited())).await.unwrap();
    let secrets: Vec<(&str, &str)> = KEYS.to_vec();
    let proxy = Proxy::start(&config(&mock.base_url()), &secrets).await;
    assert_eq!(proxy.chat("plain").await.status, 200);
    let debug = format!("{:?}", proxy.running.store.load());
    assert!(debug.contains("P1") && debug.contains("U1"));
    assert_clean("the snapshot's Debug output", debug.as_bytes());
}

#[test]
#[should_panic(expected = "contains")]
fn the_check_finds_a_piece_of_a_key() {
    assert_clean("a log line", b"auth failed for token ...Ms2Qe7Rt... (truncated)");
}

#[tokio::test]
async fn without_an_otlp_endpoint_nothing_is_said_about_traces() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("P1"), value("P1")).unwrap();
    let config_path = dir.path().join("config.yaml");
    let yaml = "models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: http://127.0.0.1:1/v1\n        keys: [P1]\n";
    std::fs::write(&config_path, yaml).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--config"])
        .arg(&config_path)
        .arg("--secrets-dir")
        .arg(&secrets)
        .env("RUST_LOG", "info")
        .env_remove("KEYRELAY_LOG_FORMAT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_TRACES_EXPORTER")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyrelay");
    let stderr = child.stderr.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let serving = line.contains("keyrelay serving");
            seen.push(line);
            if serving {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.last().is_some_and(|l| l.contains("keyrelay serving")), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains("WARN") && !l.contains("OTLP")), "{lines:?}");
}
