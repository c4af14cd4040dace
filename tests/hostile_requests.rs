//! Requests a client (or whatever got hold of the app port) can send to hurt the
//! process or its upstreams, through keyrelay to the mock provider over loopback:
//! bodies past the memory budget, paths that climb out of `api_base`, headers and
//! query parameters that must not reach a provider, and values too large to trace.

#[path = "support/otlp.rs"]
mod otlp;
mod support;

use std::time::Duration;

use http::Method;
use support::daemon::Daemon;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LONG: Duration = Duration::from_secs(20);
const KIB: usize = 1024;

fn config(base: &str, server: &str) -> String {
    format!(
        "server:\n{server}models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: upstream-m\n        api_base: {base}\n        keys: [KA]\n"
    )
}

async fn mock() -> MockProvider {
    MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap()
}

/// A chat body for `m` of about `len` bytes.
fn body_of(len: usize) -> String {
    format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#, "x".repeat(len.saturating_sub(60)))
}

/// Writes `request` as is and reads one response: (status, head, body).
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = tcp.split();
    let write = async {
        // The server may answer (and stop reading) before all of it is written.
        let _ = writer.write_all(request).await;
    };
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok());
                if length.is_some_and(|n| body.len() >= n) {
                    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
                    return (status, head.to_owned(), body.to_owned());
                }
            }
            let n = reader.read(&mut chunk).await.unwrap_or(0);
            assert!(n > 0, "connection closed before a whole response: {text:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let ((), response) = tokio::time::timeout(LONG, async { tokio::join!(write, read) }).await.expect("answered");
    response
}

/// A chunked request (no `content-length`): the budget must count it as it arrives.
fn chunked(path: &str, body: &str) -> Vec<u8> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n"
    )
    .into_bytes();
    for piece in body.as_bytes().chunks(16 * KIB) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn assert_overloaded(r: &Reply) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), "1");
    let json = r.json();
    assert_eq!(json["error"]["code"], "overloaded");
    assert_eq!(json["error"]["type"], "api_error");
}

#[tokio::test]
async fn bodies_past_the_budget_get_503_with_retry_after_until_the_upstream_answered() {
    let mock = mock().await;
    let server = "  body_limit: 1MiB\n  max_buffered_bodies: 1536KiB\n";
    let proxy = Proxy::start(&config(&mock.base_url(), server), &[("KA", "sk-a")]).await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    mock.push_fault(None, Fault::StreamGate(std::sync::Arc::clone(&gate)));

    // The first body is held by keyrelay until the upstream answers it.
    let big = body_of(900 * KIB);
    let held = tokio::spawn({
        let (client, url, body) = (proxy.client.clone(), proxy.url("/v1/chat/completions"), big.clone());
        async move {
            let request = http::Request::post(url).body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap();
            read(client.request(request).await.unwrap()).await
        }
    });
    eventually(LONG, "the mock holds the first request", || async { mock.requests().len() == 1 }).await;

    let refused = proxy.call(Method::POST, "/v1/chat/completions", &[], &big).await;
    assert_overloaded(&refused);
    let (status, head, body) = raw(proxy.running.proxy_addr, &chunked("/v1/chat/completions", &big)).await;
    assert_eq!(status, 503, "a chunked body is counted as it arrives: {head}\n{body}");
    assert!(head.to_ascii_lowercase().contains("retry-after: 1"), "{head}");
    assert_eq!(mock.requests().len(), 1, "refused bodies never reach the provider");

    let small = proxy.call(Method::POST, "/v1/chat/completions", &[], &body_of(200 * KIB)).await;
    assert_eq!(small.status, 200, "a body within the budget passes: {}", small.text());

    gate.notify_one();
    let first = held.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(mock.requests()[0].body.len(), big.len() - 1 + "upstream-m".len(), "the model was rewritten");
    eventually(LONG, "the budget is back once the first request is done", || async {
        proxy.call(Method::POST, "/v1/chat/completions", &[], &big).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn a_declared_length_is_charged_before_the_body_arrives() {
    let mock = mock().await;
    let server = "  body_limit: 1MiB\n  max_buffered_bodies: 1536KiB\n";
    let proxy = Proxy::start(&config(&mock.base_url(), server), &[("KA", "sk-a")]).await;
    // A client that announces 1 MB and sends ten bytes of it.
    let mut slow = TcpStream::connect(proxy.running.proxy_addr).await.unwrap();
    slow.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n{\"model\":")
        .await
        .unwrap();

    let body = body_of(700 * KIB);
    eventually(LONG, "a body that no longer fits is refused", || async {
        proxy.call(Method::POST, "/v1/chat/completions", &[], &body).await.status == 503
    })
    .await;
    assert_overloaded(&proxy.call(Method::POST, "/v1/chat/completions", &[], &body).await);
    assert_eq!(proxy.call(Method::POST, "/v1/chat/completions", &[], &body_of(100 * KIB)).await.status, 200);

    drop(slow);
    eventually(LONG, "the departed client's share is given back", || async {
        proxy.call(Method::POST, "/v1/chat/completions", &[], &body).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn paths_that_climb_out_of_api_base_are_400_before_any_key_is_used() {
    let mock = mock().await;
    let gemini = format!("http://{}/v1beta/openai", mock.addr());
    let yaml = format!(
        "{}  g:\n    deployments:\n      - provider: gemini\n        model: gemini-2.5-flash\n        api_base: {gemini}\n        keys: [KA]\n",
        config(&format!("http://{}/tenant-a/v1", mock.addr()), "  region: test\n")
    );
    let proxy = Proxy::start(&yaml, &[("KA", "sk-a")]).await;
    let body = r#"{"model":"m","messages":[]}"#;
    for path in [
        "/v1/../../tenant-b/v1/chat/completions",
        "/v1/./chat/completions",
        "/v1/%2e%2e/%2E%2E/tenant-b/v1/chat/completions",
        "/v1/.%2e/tenant-b/chat/completions",
        "/v1/%252e%252e/tenant-b/chat/completions",
        "/v1//chat/completions",
        "/v1/chat%2fcompletions",
        "/v1beta/models/g:generateContent/../../files",
        "/v1beta/models/g:generateContent%2F..%2F..%2Ffiles",
    ] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, head, text) = raw(proxy.running.proxy_addr, request.as_bytes()).await;
        assert_eq!(status, 400, "{path}: {head}\n{text}");
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["error"]["code"], "invalid_path", "{path}");
        assert_eq!(json["error"]["type"], "invalid_request_error", "{path}");
    }
    assert!(mock.requests().is_empty(), "nothing reached the provider: {:?}", mock.requests());
    assert!(mock.stats().per_key.is_empty(), "no key was used");

    let r = proxy.call(Method::POST, "/v1/chat/completions", &[], body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mock.requests()[0].path, "/tenant-a/v1/chat/completions");
}

#[tokio::test]
async fn identity_cookies_our_headers_and_client_keys_stay_home() {
    let mock = mock().await;
    let gemini = format!("http://{}/v1beta/openai", mock.addr());
    let yaml = format!(
        "{}  g:\n    deployments:\n      - provider: gemini\n        model: gemini-2.5-flash\n        api_base: {gemini}\n        keys: [KA]\n",
        config(&mock.base_url(), "  region: test\n")
    );
    let proxy = Proxy::start(&yaml, &[("KA", "sk-a")]).await;
    let stripped = [
        ("x-forwarded-for", "10.1.2.3"),
        ("X-Forwarded-Host", "internal.example"),
        ("x-forwarded-proto", "http"),
        ("forwarded", "for=10.1.2.3;proto=http"),
        ("x-real-ip", "10.1.2.3"),
        ("cookie", "session=secret-session"),
        ("x-keyrelay-priority", "high"),
        ("x-keyrelay-key", "SPOOFED"),
        ("authorization", "Bearer sk-client"),
    ];
    // Every header providers document as client-settable, each with a value of its own.
    let documented: Vec<(String, String)> = keyrelay::proxy::client_headers::PROVIDER_DOCUMENTED
        .iter()
        .filter(|name| **name != "content-type")
        .map(|name| {
            let name = if name.ends_with('-') { format!("{name}lang") } else { (*name).to_owned() };
            let value = format!("client value of {name}");
            (name, value)
        })
        .collect();
    let kept: Vec<(&str, &str)> = documented
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .chain([("x-app-specific", "kept too: the policy is a deny-list")])
        .collect();
    let headers: Vec<(&str, &str)> =
        stripped.iter().chain(&kept).copied().chain([("content-type", "application/json")]).collect();
    let query = "?alt=sse&KEY=a&%6bey=b&api%5Fkey=c&Api_Key=d&key=e&keep=%2F1+2&monkey=1";
    let r = proxy.call(Method::POST, &format!("/v1/chat/completions{query}"), &headers, r#"{"model":"m"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = proxy
        .call(Method::POST, &format!("/v1beta/models/g:generateContent{query}"), &headers, r#"{"contents":[]}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let received = mock.requests();
    assert_eq!(received.len(), 2);
    for up in &received {
        for (name, _) in stripped {
            if name == "authorization" && up.path.starts_with("/v1/") {
                assert_eq!(up.headers["authorization"], "Bearer sk-a", "ours replaced the client's");
                continue;
            }
            assert!(!up.headers.contains_key(name), "{name} reached {}: {:?}", up.path, up.headers);
        }
        for &(name, value) in &kept {
            assert_eq!(up.headers.get(name).and_then(|v| v.to_str().ok()), Some(value), "{name} on {}", up.path);
        }
        assert_eq!(up.query.as_deref(), Some("alt=sse&keep=%2F1+2&monkey=1"), "{}", up.path);
        assert_eq!(up.key.as_deref(), Some("sk-a"));
    }
}

#[tokio::test]
async fn a_huge_model_name_is_cut_in_spans_and_in_the_access_log() {
    let receiver = otlp::Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("KA"), "sk-a").unwrap();
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, config("http://127.0.0.1:9/v1", "  region: test\n")).unwrap();
    let endpoint = format!("http://{}", receiver.addr);
    let daemon = Daemon::spawn(
        &config_path,
        &secrets,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), ("OTEL_BSP_SCHEDULE_DELAY", "50")],
    );

    let model = format!("huge-{}", "é".repeat(512 * KIB));
    let body = format!(r#"{{"model":"{model}","messages":[]}}"#);
    let request = http::Request::post(format!("http://{}/v1/chat/completions", daemon.proxy))
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let r = read(harness::http_client().request(request).await.unwrap()).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.body.len() < 1024, "the error message is cut too: {} bytes", r.body.len());

    let span = receiver
        .wait_for(
            LONG,
            "the server span of the huge request",
            || async {},
            |spans| {
                spans.iter().find(|s| s.str("gen_ai.request.model").is_some_and(|m| m.starts_with("huge-"))).cloned()
            },
        )
        .await;
    let traced = span.str("gen_ai.request.model").unwrap();
    assert!(traced.len() <= 260 && traced.ends_with('…'), "{} bytes on the span", traced.len());
    for (key, value) in &span.attributes {
        if let otlp::Attr::Str(s) = value {
            assert!(s.len() <= 260, "{key} is {} bytes", s.len());
        }
    }

    daemon.terminate();
    let (_, log) = daemon.wait();
    let access: Vec<serde_json::Value> = log
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|j| j["fields"]["status"] == 404)
        .collect();
    assert_eq!(access.len(), 1, "one access line: {log:?}");
    let logged = access[0]["fields"]["model"].as_str().unwrap();
    assert!(logged.starts_with("huge-") && logged.len() <= 260, "{} bytes in the log", logged.len());
    assert!(log.iter().all(|l| l.len() < 8 * KIB), "no log line carries the model whole");
}
