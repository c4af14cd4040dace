//! Routing over loopback against the mock provider: which key and deployment a request
//! goes to, what keyrelay sends upstream (path, auth, headers, body) and what it adds
//! to the response, for both config formats and for secrets laid out as kubelet does.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use http::Method;
use support::*;

const JSON: (&str, &str) = ("content-type", "application/json");

/// A mock that accepts exactly these key values, unlimited.
async fn mock(keys: &[&str]) -> MockProvider {
    let config = keys.iter().fold(MockConfig::new(), |c, k| c.key(*k, KeyLimit::unlimited()));
    MockProvider::start(config).await.expect("mock starts")
}

/// One native deployment entry (under `deployments:`); `extra` holds more fields,
/// e.g. `[("weight", "3")]`.
fn dep(provider: &str, model: &str, base: &str, keys: &[&str], extra: &[(&str, &str)]) -> String {
    let mut out = format!(
        "      - provider: {provider}\n        model: {model}\n        api_base: {base}\n        keys: [{}]\n",
        keys.join(", ")
    );
    for (field, value) in extra {
        out.push_str(&format!("        {field}: {value}\n"));
    }
    out
}

/// One native alias with its strategy and deployments.
fn alias(name: &str, strategy: &str, deployments: &[String]) -> String {
    format!("  {name}:\n    strategy: {strategy}\n    deployments:\n{}", deployments.concat())
}

/// A whole native config with short timeouts.
fn native(aliases: &[String]) -> String {
    format!("server:\n  timeouts: {{ request: 10s, attempt: 5s }}\nmodels:\n{}", aliases.concat())
}

/// A config with one round-robin alias `m` served by one openai-compatible deployment.
fn simple(base: &str, keys: &[&str]) -> String {
    native(&[alias("m", "round-robin", &[dep("openai-compatible", "up", base, keys, &[])])])
}

fn header<'a>(r: &'a RecordedRequest, name: &str) -> &'a str {
    r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn only_request(mock: &MockProvider) -> RecordedRequest {
    let mut requests = mock.requests();
    assert_eq!(requests.len(), 1, "expected exactly one upstream request: {requests:?}");
    requests.remove(0)
}

// ---- 1. Key pools and strategies -------------------------------------------------

#[tokio::test]
async fn round_robin_uses_every_key_of_the_pool_and_names_it() {
    let mock = mock(&["sk-a", "sk-b", "sk-c"]).await;
    let proxy =
        Proxy::start(&simple(&mock.base_url(), &["KA", "KB", "KC"]), &[("KA", "sk-a"), ("KB", "sk-b"), ("KC", "sk-c")])
            .await;

    let mut names = BTreeSet::new();
    for _ in 0..3 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        let name = r.header("x-keyrelay-key").to_owned();
        assert!(!name.contains("sk-"), "x-keyrelay-key must name the key, not show its value: {name:?}");
        names.insert(name);
    }
    assert_eq!(names, BTreeSet::from(["KA".to_owned(), "KB".to_owned(), "KC".to_owned()]));
    for key in ["sk-a", "sk-b", "sk-c"] {
        assert_eq!(mock.requests_for_key(key), 1, "{key} should have served exactly one of three requests");
    }

    // Three more: the rotation continues evenly.
    for _ in 0..3 {
        assert_eq!(proxy.chat("m").await.status, 200);
    }
    for key in ["sk-a", "sk-b", "sk-c"] {
        assert_eq!(mock.requests_for_key(key), 2, "{key}");
    }
}

#[tokio::test]
async fn weighted_deployments_split_traffic_exactly_by_weight() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let base = mock.base_url();
    let config = native(&[alias(
        "m",
        "weighted",
        &[
            dep("openai-compatible", "big", &base, &["KA"], &[("name", "heavy"), ("weight", "3")]),
            dep("openai-compatible", "small", &base, &["KB"], &[("name", "light"), ("weight", "1")]),
        ],
    )]);
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;

    let mut picks = Vec::new();
    for _ in 0..40 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-keyrelay-attempts"), "1");
        picks.push(r.header("x-keyrelay-deployment").to_owned());
    }
    let count = |name: &str| picks.iter().filter(|p| *p == name).count();
    assert_eq!((count("heavy"), count("light")), (30, 10), "{picks:?}");
    assert_eq!(mock.requests_for_key("sk-a"), 30);
    assert_eq!(mock.requests_for_key("sk-b"), 10);
    // Smooth weighted round-robin interleaves: every window of sum(weights) = 4
    // consecutive requests holds exactly one for the light deployment.
    for (i, window) in picks.chunks(4).enumerate() {
        assert_eq!(window.iter().filter(|p| *p == "light").count(), 1, "window {i}: {window:?}");
    }
    // And the upstream model follows the deployment.
    let models: BTreeMap<String, usize> = mock.requests().iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.model.clone().unwrap_or_default()).or_default() += 1;
        m
    });
    assert_eq!(models, BTreeMap::from([("big".to_owned(), 30), ("small".to_owned(), 10)]));
}

// ---- 2./3. What reaches the provider: credentials and headers ---------------------

#[tokio::test]
async fn client_credentials_never_reach_the_provider() {
    let mock = mock(&["sk-a"]).await;
    let proxy = Proxy::start(&simple(&mock.base_url(), &["KA"]), &[("KA", "sk-a")]).await;

    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let r = proxy
        .call(
            Method::POST,
            "/v1/chat/completions?foo=1&key=client-query-key&monkey=banana&api-version=2024-10-21",
            &[
                JSON,
                ("authorization", "Bearer client-secret"),
                ("x-api-key", "client-x-api-key"),
                ("api-key", "client-azure-key"),
                ("x-goog-api-key", "client-goog-key"),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let up = only_request(&mock);
    assert_eq!(up.key.as_deref(), Some("sk-a"));
    assert_eq!(header(&up, "authorization"), "Bearer sk-a");
    for name in ["x-api-key", "api-key", "x-goog-api-key"] {
        assert!(!up.headers.contains_key(name), "client header {name} was forwarded: {:?}", up.headers);
    }
    for (name, value) in &up.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains("client-"), "a client credential reached the provider in {name}: {value}");
    }
    // The client's own `key=` is dropped; every other parameter is kept, in order.
    assert_eq!(up.query.as_deref(), Some("foo=1&monkey=banana&api-version=2024-10-21"));
    assert_eq!(up.path, "/v1/chat/completions");
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_ordinary_ones_forwarded() {
    let mock = mock(&["sk-a"]).await;
    let proxy = Proxy::start(&simple(&mock.base_url(), &["KA"]), &[("KA", "sk-a")]).await;

    let body = r#"{"model":"m","messages":[]}"#;
    let r = proxy
        .call(
            Method::POST,
            "/v1/chat/completions",
            &[
                JSON,
                ("connection", "keep-alive, x-drop-me"),
                ("x-drop-me", "secret-hop"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic cHJveHk6cGFzcw=="),
                ("x-custom", "kept"),
                ("openai-organization", "org-123"),
            ],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let up = only_request(&mock);
    for name in ["x-drop-me", "keep-alive", "te", "proxy-authorization"] {
        assert!(!up.headers.contains_key(name), "hop-by-hop header {name} was forwarded: {:?}", up.headers);
    }
    let connection = header(&up, "connection");
    assert!(!connection.contains("x-drop-me"), "the client's Connection header was forwarded: {connection:?}");
    assert_eq!(header(&up, "x-custom"), "kept");
    assert_eq!(header(&up, "openai-organization"), "org-123");
    assert_eq!(header(&up, "content-type"), "application/json");
}

#[tokio::test]
async fn upstream_host_comes_from_config_whatever_the_client_says() {
    let mock = mock(&["sk-a"]).await;
    let proxy = Proxy::start(&simple(&mock.base_url(), &["KA"]), &[("KA", "sk-a")]).await;

    // A Host header naming another server.
    let body = r#"{"model":"m","messages":[]}"#;
    let r = proxy.call(Method::POST, "/v1/chat/completions", &[JSON, ("host", "evil.example:8080")], body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(header(&only_request(&mock), "host"), mock.addr().to_string());

    // An absolute-form request target naming another server, with a chunked body.
    let chunk = r#"{"model":"m","messages":[{"role":"user","content":"chunked"}]}"#;
    let request = format!(
        concat!(
            "POST http://evil.example/v1/chat/completions HTTP/1.1\r\n",
            "host: evil.example\r\n",
            "content-type: application/json\r\n",
            "transfer-encoding: chunked\r\n",
            "connection: close\r\n\r\n",
            "{:x}\r\n{}\r\n0\r\n\r\n",
        ),
        chunk.len(),
        chunk
    );
    let response = raw_http(proxy.running.proxy_addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let up = mock.requests().pop().unwrap();
    assert_eq!(header(&up, "host"), mock.addr().to_string());
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(&up.body[..], chunk.replace(r#""model":"m""#, r#""model":"up""#).as_bytes());
    assert!(
        !up.headers.contains_key("transfer-encoding") || !up.headers.contains_key("content-length"),
        "{:?}",
        up.headers
    );
}

/// Sends `request` verbatim over a fresh connection and returns everything read until
/// the server closes it (the request must say `connection: close`).
async fn raw_http(addr: std::net::SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("response within 10s")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

// ---- 4. The body --------------------------------------------------------------------

#[tokio::test]
async fn body_reaches_the_provider_byte_identical_except_the_model() {
    let mock = mock(&["sk-a"]).await;
    let config = native(&[alias(
        "m",
        "round-robin",
        &[dep("openai-compatible", "\"vendor/up-\\\"1\\\"\"", &mock.base_url(), &["KA"], &[])],
    )]);
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;

    // Odd key order, whitespace, a nested "model" before and after the top-level one,
    // numbers beyond f64 precision and past u64, escapes and non-ASCII text.
    let prefix = concat!(
        r#"{ "zeta" : 1.0000000000000000001, "messages":[{"role":"user","model":"m","#,
        r#""content":"h\u00e9llo \"q\" \\ \/ 🚀 ünïcödé"}],"#
    );
    let suffix =
        r#" ,"n":12345678901234567890,"huge":123456789012345678901234567890e-5,"a":{"model":"m"},"stream":false}"#;
    let sent = format!("{prefix}\n  \"model\" :\t\"m\"{suffix}");
    let r = proxy.call(Method::POST, "/v1/chat/completions", &[JSON], &sent).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let up = only_request(&mock);
    let expected = format!("{prefix}\n  \"model\" :\t\"vendor/up-\\\"1\\\"\"{suffix}");
    assert_eq!(String::from_utf8_lossy(&up.body), expected);
    assert_eq!(up.model.as_deref(), Some("vendor/up-\"1\""));
    assert_eq!(header(&up, "content-length"), expected.len().to_string());
}

// ---- 5. /v1/models -----------------------------------------------------------------

#[tokio::test]
async fn models_endpoint_lists_every_alias_in_openai_shape() {
    let mock = mock(&["sk-a"]).await;
    let base = mock.base_url();
    let config = native(&[
        alias("gamma", "round-robin", &[dep("openai-compatible", "g", &base, &["KA"], &[])]),
        alias("alpha", "weighted", &[dep("openai-compatible", "a", &base, &["KA"], &[])]),
        alias("beta", "least-busy", &[dep("anthropic", "b", &base, &["KA"], &[])]),
    ]);
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;

    let r = proxy.call(Method::GET, "/v1/models", &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").starts_with("application/json"), "{:?}", r.headers);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let data = v["data"].as_array().expect("data is a list");
    let mut ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().expect("id is a string")).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["alpha", "beta", "gamma"]);
    for m in data {
        assert_eq!(m["object"], "model", "{m}");
        assert!(m["created"].is_u64(), "{m}");
        assert!(m["owned_by"].is_string(), "{m}");
    }
    assert!(mock.requests().is_empty(), "listing models must not call a provider");
}

#[tokio::test]
async fn unknown_model_is_404_in_openai_error_shape() {
    let mock = mock(&["sk-a"]).await;
    let proxy = Proxy::start(&simple(&mock.base_url(), &["KA"]), &[("KA", "sk-a")]).await;
    let r = proxy.chat("no-such-model").await;
    assert_eq!(r.status, 404, "{}", r.text());
    let v = r.json();
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"]["type"].is_string(), "{v}");
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(mock.requests().is_empty());
}

// ---- 6. Provider auth styles and paths ------------------------------------------------

#[tokio::test]
async fn anthropic_gets_x_api_key_and_default_version() {
    let mock = mock(&["sk-ant"]).await;
    let config = native(&[alias(
        "claude",
        "round-robin",
        &[dep("anthropic", "claude-sonnet-4-5", &mock.base_url(), &["KA"], &[])],
    )]);
    let proxy = Proxy::start(&config, &[("KA", "sk-ant")]).await;

    let body = r#"{"model":"claude","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = proxy.call(Method::POST, "/v1/messages", &[JSON, ("authorization", "Bearer client-secret")], body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-deployment"), "anthropic/claude-sonnet-4-5");

    let up = only_request(&mock);
    assert_eq!(up.path, "/v1/messages");
    assert_eq!(header(&up, "x-api-key"), "sk-ant");
    assert_eq!(header(&up, "anthropic-version"), "2023-06-01");
    assert!(!up.headers.contains_key("authorization"), "{:?}", up.headers);
    assert_eq!(up.model.as_deref(), Some("claude-sonnet-4-5"));

    // Anthropic's OpenAI-compatible path is served by the same deployment, same auth.
    let r = proxy.chat("claude").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = mock.requests().pop().unwrap();
    assert_eq!(up.path, "/v1/chat/completions");
    assert_eq!(header(&up, "x-api-key"), "sk-ant");
    assert!(!up.headers.contains_key("authorization"), "{:?}", up.headers);
}

#[tokio::test]
async fn anthropic_version_sent_by_the_client_is_kept() {
    let mock = mock(&["sk-ant"]).await;
    let config = native(&[alias("claude", "round-robin", &[dep("anthropic", "c", &mock.base_url(), &["KA"], &[])])]);
    let proxy = Proxy::start(&config, &[("KA", "sk-ant")]).await;

    let body = r#"{"model":"claude","max_tokens":16,"messages":[]}"#;
    let headers = [JSON, ("anthropic-version", "2024-10-22"), ("anthropic-beta", "tools-2024-05-16")];
    let r = proxy.call(Method::POST, "/v1/messages", &headers, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = only_request(&mock);
    let versions: Vec<_> = up.headers.get_all("anthropic-version").iter().collect();
    assert_eq!(versions, ["2024-10-22"], "the client's anthropic-version must be kept, alone");
    assert_eq!(header(&up, "anthropic-beta"), "tools-2024-05-16");
}

#[tokio::test]
async fn messages_route_only_to_anthropic_deployments() {
    let mock = mock(&["sk-ant", "sk-oai"]).await;
    let base = mock.base_url();
    let config = native(&[
        alias(
            "mixed",
            "round-robin",
            &[
                dep("openai-compatible", "oai-model", &base, &["KO"], &[]),
                dep("anthropic", "ant-model", &base, &["KA"], &[]),
            ],
        ),
        alias("plain", "round-robin", &[dep("openai-compatible", "oai-model", &base, &["KO"], &[])]),
    ]);
    let proxy = Proxy::start(&config, &[("KA", "sk-ant"), ("KO", "sk-oai")]).await;

    for _ in 0..4 {
        let body = r#"{"model":"mixed","max_tokens":16,"messages":[]}"#;
        let r = proxy.call(Method::POST, "/v1/messages", &[JSON], body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-keyrelay-key"), "KA");
        assert_eq!(r.header("x-keyrelay-attempts"), "1");
    }
    assert_eq!(mock.requests_for_key("sk-ant"), 4);
    assert_eq!(mock.requests_for_key("sk-oai"), 0, "an Anthropic-native request went to an OpenAI deployment");

    // An alias with no Anthropic deployment cannot serve /v1/messages: 400, nothing sent.
    let body = r#"{"model":"plain","max_tokens":16,"messages":[]}"#;
    let r = proxy.call(Method::POST, "/v1/messages", &[JSON], body).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.json()["error"]["message"].is_string(), "{}", r.text());
    assert_eq!(mock.requests().len(), 4);

    // The OpenAI path of the mixed alias uses both deployments.
    for _ in 0..4 {
        assert_eq!(proxy.chat("mixed").await.status, 200);
    }
    assert!(mock.requests_for_key("sk-oai") >= 1, "OpenAI-format requests may use every deployment");
}

#[tokio::test]
async fn anthropic_native_subpaths_route_only_to_anthropic_deployments() {
    // `/v1/messages/count_tokens` (and `/v1/messages/batches`) are Anthropic-native too:
    // the Anthropic SDK's `messages.count_tokens()` posts there with a `model` field.
    let mock = mock(&["sk-ant", "sk-oai"]).await;
    let base = mock.base_url();
    let config = native(&[alias(
        "mixed",
        "round-robin",
        &[
            dep("openai-compatible", "oai-model", &base, &["KO"], &[]),
            dep("anthropic", "ant-model", &base, &["KA"], &[]),
        ],
    )]);
    let proxy = Proxy::start(&config, &[("KA", "sk-ant"), ("KO", "sk-oai")]).await;

    for _ in 0..2 {
        let body = r#"{"model":"mixed","messages":[{"role":"user","content":"hi"}]}"#;
        proxy.call(Method::POST, "/v1/messages/count_tokens", &[JSON], body).await;
    }
    let sent: Vec<(String, Option<String>)> = mock.requests().into_iter().map(|r| (r.path, r.key)).collect();
    assert_eq!(
        mock.requests_for_key("sk-oai"),
        0,
        "an Anthropic-native request was sent to an OpenAI-format deployment: {sent:?}"
    );
}

#[tokio::test]
async fn azure_sends_api_key_to_its_deployment_path() {
    let mock = mock(&["sk-az"]).await;
    let base = format!("http://{}/openai/deployments/gpt-4o", mock.addr());
    let config = native(&[alias("gpt", "round-robin", &[dep("azure", "gpt-4o", &base, &["AZ"], &[])])]);
    let proxy = Proxy::start(&config, &[("AZ", "sk-az")]).await;

    let body = r#"{"model":"gpt","messages":[]}"#;
    let r = proxy
        .call(Method::POST, "/v1/chat/completions?api-version=2024-10-21", &[JSON, ("api-key", "client-key")], body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = only_request(&mock);
    assert_eq!(up.path, "/openai/deployments/gpt-4o/chat/completions");
    assert_eq!(up.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(header(&up, "api-key"), "sk-az");
    assert!(!up.headers.contains_key("authorization"), "{:?}", up.headers);
    assert!(!up.headers.contains_key("x-api-key"), "{:?}", up.headers);
}

#[tokio::test]
async fn base_with_a_path_prefix_keeps_it() {
    let mock = mock(&["sk-groq"]).await;
    let base = format!("http://{}/openai/v1", mock.addr());
    let config =
        native(&[alias("llama", "round-robin", &[dep("groq", "llama-3.3-70b-versatile", &base, &["GK"], &[])])]);
    let proxy = Proxy::start(&config, &[("GK", "sk-groq")]).await;

    let r = proxy.chat("llama").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-deployment"), "groq/llama-3.3-70b-versatile");
    let up = only_request(&mock);
    assert_eq!(up.path, "/openai/v1/chat/completions");
    assert_eq!(header(&up, "authorization"), "Bearer sk-groq");
    assert_eq!(up.model.as_deref(), Some("llama-3.3-70b-versatile"));

    // Embeddings go to the same base.
    let r = proxy.call(Method::POST, "/v1/embeddings", &[JSON], r#"{"model":"llama","input":"x"}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(mock.requests().pop().unwrap().path, "/openai/v1/embeddings");
}

#[tokio::test]
async fn gemini_native_goes_to_the_api_root_with_x_goog_api_key() {
    let mock = mock(&["sk-gem"]).await;
    let base = format!("http://{}/v1beta/openai", mock.addr());
    let config = native(&[alias("flash", "round-robin", &[dep("gemini", "gemini-2.5-flash", &base, &["GEM"], &[])])]);
    let proxy = Proxy::start(&config, &[("GEM", "sk-gem")]).await;

    let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    let r = proxy
        .call(
            Method::POST,
            "/v1beta/models/flash:generateContent?key=client-query-key&foo=bar",
            &[JSON, ("x-goog-api-key", "client-goog-key")],
            body,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-key"), "GEM");
    let up = only_request(&mock);
    assert_eq!(up.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(up.query.as_deref(), Some("foo=bar"));
    assert_eq!(header(&up, "x-goog-api-key"), "sk-gem");
    assert!(!up.headers.contains_key("authorization"), "{:?}", up.headers);
    assert_eq!(up.key.as_deref(), Some("sk-gem"));
    assert_eq!(&up.body[..], body.as_bytes(), "a Gemini-native body has no model to rewrite");

    // The OpenAI-compatible path of the same deployment uses Bearer under /openai.
    let r = proxy.chat("flash").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let up = mock.requests().pop().unwrap();
    assert_eq!(up.path, "/v1beta/openai/chat/completions");
    assert_eq!(header(&up, "authorization"), "Bearer sk-gem");
    assert!(!up.headers.contains_key("x-goog-api-key"), "{:?}", up.headers);
    assert_eq!(up.model.as_deref(), Some("gemini-2.5-flash"));
}

#[tokio::test]
async fn gemini_native_paths_reach_only_gemini_deployments() {
    let mock = mock(&["sk-oai"]).await;
    let config =
        native(&[alias("plain", "round-robin", &[dep("openai-compatible", "x", &mock.base_url(), &["KO"], &[])])]);
    let proxy = Proxy::start(&config, &[("KO", "sk-oai")]).await;
    let r = proxy.call(Method::POST, "/v1beta/models/plain:generateContent", &[JSON], r#"{"contents":[]}"#).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(mock.requests().is_empty());
}

// ---- 7. LiteLLM proxy-config.yaml -----------------------------------------------------

#[tokio::test]
async fn litellm_proxy_config_routes_to_the_mock_over_both_keys() {
    let mock = mock(&["sk-or-1", "sk-or-2", "sk-groq"]).await;
    let base = mock.base_url();
    let groq_base = format!("http://{}/openai/v1", mock.addr());
    let config = format!(
        r#"litellm_settings:
  num_retries: 2
  request_timeout: 30
  drop_params: true

router_settings:
  routing_strategy: simple-shuffle

model_list:
# ===== Claude via OpenRouter (2-key load balanced) =====
# claude-sonnet-4 - Key 1
- litellm_params:
    api_key: os.environ/OPENROUTER_API_KEY
    api_base: {base}
    model: openrouter/anthropic/claude-sonnet-4.6
  model_name: claude-sonnet-4
  fallbacks: [groq-llama]

# claude-sonnet-4 - Key 2
- litellm_params:
    api_key: os.environ/OPENROUTER_API_KEY_2
    api_base: {base}
    model: openrouter/anthropic/claude-sonnet-4.6
  model_name: claude-sonnet-4

# ===== Groq =====
- model_name: groq-llama
  litellm_params:
    model: groq/llama-3.3-70b-versatile
    api_key: os.environ/GROQ_API_KEY
    api_base: {groq_base}
"#
    );
    let secrets = [("OPENROUTER_API_KEY", "sk-or-1"), ("OPENROUTER_API_KEY_2", "sk-or-2"), ("GROQ_API_KEY", "sk-groq")];
    let proxy = Proxy::start(&config, &secrets).await;

    let mut names = BTreeSet::new();
    for _ in 0..20 {
        let r = proxy.chat("claude-sonnet-4").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-keyrelay-deployment"), "openrouter/anthropic/claude-sonnet-4.6");
        names.insert(r.header("x-keyrelay-key").to_owned());
    }
    assert_eq!(names, BTreeSet::from(["OPENROUTER_API_KEY".to_owned(), "OPENROUTER_API_KEY_2".to_owned()]));
    assert!(mock.requests_for_key("sk-or-1") >= 1 && mock.requests_for_key("sk-or-2") >= 1);
    for up in mock.requests() {
        assert_eq!(up.path, "/v1/chat/completions");
        assert_eq!(up.model.as_deref(), Some("anthropic/claude-sonnet-4.6"), "the provider prefix is not sent");
    }

    // Both keys failing: the entry's `fallbacks` takes over (after 2 attempts, one per key).
    mock.push_fault(Some("sk-or-1"), Fault::Status(503));
    mock.push_fault(Some("sk-or-2"), Fault::Status(503));
    let r = proxy.chat("claude-sonnet-4").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-deployment"), "groq/llama-3.3-70b-versatile");
    assert_eq!(r.header("x-keyrelay-key"), "GROQ_API_KEY");
    assert_eq!(r.header("x-keyrelay-attempts"), "3");
    let up = mock.requests().pop().unwrap();
    assert_eq!(up.path, "/openai/v1/chat/completions");
    assert_eq!(up.model.as_deref(), Some("llama-3.3-70b-versatile"));
    assert_eq!(up.key.as_deref(), Some("sk-groq"));
}

// ---- 8. Secrets -------------------------------------------------------------------------

#[tokio::test]
async fn kubelet_symlinked_secret_is_read_and_trimmed() {
    let mock = mock(&["sk-link"]).await;
    let proxy = Proxy::start_with_dir(&simple(&mock.base_url(), &["KA"]), |dir: &Path| {
        // As kubelet's AtomicWriter lays out a Secret volume.
        let stamped = dir.join("..2026_01_01");
        std::fs::create_dir(&stamped).unwrap();
        std::fs::write(stamped.join("KA"), "sk-link\n").unwrap();
        std::os::unix::fs::symlink("..2026_01_01", dir.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/KA", dir.join("KA")).unwrap();
    })
    .await;

    let r = proxy.chat("m").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-key"), "KA");
    assert_eq!(only_request(&mock).key.as_deref(), Some("sk-link"));
}

#[tokio::test]
async fn secret_missing_from_the_dir_falls_back_to_the_environment() {
    const ENV_NAME: &str = "KEYRELAY_ROUTING_TEST_ENV_KEY";
    const SHADOWED: &str = "KEYRELAY_ROUTING_TEST_SHADOWED_KEY";
    // Unique names: no other test reads or writes these variables.
    std::env::set_var(ENV_NAME, "sk-env");
    std::env::set_var(SHADOWED, "sk-env-must-not-be-used");
    let mock = mock(&["sk-env", "sk-file"]).await;
    let config = simple(&mock.base_url(), &[ENV_NAME, SHADOWED]);
    // A file in the secrets dir wins over a variable of the same name.
    let proxy = Proxy::start(&config, &[(SHADOWED, "sk-file")]).await;

    let mut names = BTreeSet::new();
    for _ in 0..2 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        names.insert(r.header("x-keyrelay-key").to_owned());
    }
    assert_eq!(names, BTreeSet::from([ENV_NAME.to_owned(), SHADOWED.to_owned()]));
    assert_eq!(mock.requests_for_key("sk-env"), 1);
    assert_eq!(mock.requests_for_key("sk-file"), 1);
    assert_eq!(mock.requests_for_key("sk-env-must-not-be-used"), 0);
}

#[tokio::test]
async fn keys_from_one_secret_yields_one_endpoint_per_line() {
    let mock = mock(&["sk-p1", "sk-p2", "sk-p3"]).await;
    let config = native(&[alias(
        "m",
        "round-robin",
        &["      - provider: openai-compatible\n        model: up\n        api_base: BASE\n        keys_from: POOL\n"
            .replace("BASE", &mock.base_url())],
    )]);
    let proxy = Proxy::start(&config, &[("POOL", "sk-p1\nsk-p2\r\n  sk-p3  \n")]).await;

    let mut names = BTreeSet::new();
    for _ in 0..3 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
        names.insert(r.header("x-keyrelay-key").to_owned());
    }
    assert_eq!(names, BTreeSet::from(["POOL#1".to_owned(), "POOL#2".to_owned(), "POOL#3".to_owned()]));
    for key in ["sk-p1", "sk-p2", "sk-p3"] {
        assert_eq!(mock.requests_for_key(key), 1, "{key}");
    }
}

// ---- 9. Response headers ------------------------------------------------------------------

#[tokio::test]
async fn success_carries_key_deployment_and_attempts_headers() {
    let mock = mock(&["sk-a", "sk-b"]).await;
    let base = mock.base_url();
    let config = native(&[
        alias("auto", "round-robin", &[dep("openai-compatible", "up-model", &base, &["KA"], &[])]),
        alias("named", "round-robin", &[dep("openai", "gpt-4o", &base, &["KB"], &[("name", "primary")])]),
    ]);
    let proxy = Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await;

    let r = proxy.chat("auto").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-key"), "KA");
    assert_eq!(r.header("x-keyrelay-deployment"), "openai-compatible/up-model");
    assert_eq!(r.header("x-keyrelay-attempts"), "1");

    let r = proxy.chat("named").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-keyrelay-key"), "KB");
    assert_eq!(r.header("x-keyrelay-deployment"), "primary");
    assert_eq!(r.header("x-keyrelay-attempts"), "1");
    // The provider's own response headers pass through alongside.
    assert!(r.header("x-request-id").starts_with("req_mock"), "{:?}", r.headers);
    for (name, value) in &r.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains("sk-"), "a key value leaked into response header {name}: {value}");
    }
}
