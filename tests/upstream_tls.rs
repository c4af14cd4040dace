//! Upstream TLS: keyrelay verifies the provider's certificate (rustls), negotiates
//! HTTP/2 by ALPN when offered, and reuses pooled keep-alive connections.

mod support;

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::*;

/// A test CA (PEM) and a server config for `localhost` signed by it.
fn pki(alpn: &[&[u8]]) -> (String, Arc<rustls::ServerConfig>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut server = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (ca.pem(), Arc::new(server))
}

fn config(port: u16) -> String {
    format!(
        "models:\n  m:\n    deployments:\n      - provider: openai\n        model: gpt-4o\n        api_base: https://localhost:{port}/v1\n        keys: [KA]\n"
    )
}

/// The mock over TLS and keyrelay in front of it, trusting the test CA if `trust`.
/// The returned temp dir holds the CA file and must outlive the proxy.
async fn start(alpn: &[&[u8]], trust: bool) -> (MockProvider, Proxy, tempfile::TempDir) {
    start_with_mock(alpn, trust, MockConfig::new()).await
}

/// [`start`] with the mock configured as `mock` says (its one key added here).
async fn start_with_mock(alpn: &[&[u8]], trust: bool, mock: MockConfig) -> (MockProvider, Proxy, tempfile::TempDir) {
    let (ca_pem, server) = pki(alpn);
    let mock = MockProvider::start_tls(mock.key("sk-a", KeyLimit::unlimited()), server).await.unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_pem).unwrap();
    let proxy = Proxy::start_with(
        &config(mock.addr().port()),
        |dir| std::fs::write(dir.join("KA"), "sk-a").unwrap(),
        trust.then_some(ca_path),
    )
    .await;
    (mock, proxy, ca_dir)
}

#[tokio::test]
async fn http2_is_negotiated_by_alpn_and_one_connection_carries_every_request() {
    let (mock, proxy, _ca) = start(&[b"h2", b"http/1.1"], true).await;
    for _ in 0..5 {
        let r = proxy.chat("m").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), 5);
    assert!(
        requests.iter().all(|r| r.version == http::Version::HTTP_2),
        "{:?}",
        requests.iter().map(|r| r.version).collect::<Vec<_>>()
    );
    assert!(requests.iter().all(|r| r.key.as_deref() == Some("sk-a")));
    assert_eq!(mock.connections(), 1, "requests were not multiplexed on one pooled connection");
}

/// More streams at once than one HTTP/2 connection to the provider may carry (the mock,
/// like hyper's server, allows 200 at a time): every one reaches the provider at once,
/// none waits inside a full connection for another to end.
#[tokio::test]
async fn streams_past_one_connections_stream_limit_all_reach_the_provider_at_once() {
    const STREAMS: usize = 250;
    // Each stream stays open after its first chunk: the second comes ten minutes later.
    let slow_streams = MockConfig::new().stream(2, std::time::Duration::from_secs(600));
    let (mock, proxy, _ca) = start_with_mock(&[b"h2", b"http/1.1"], true, slow_streams).await;
    let client = harness::http_client();
    let url = proxy.url("/v1/chat/completions");
    let mut heads = tokio::task::JoinSet::new();
    for _ in 0..STREAMS {
        let request = http::Request::post(&url)
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(
                br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
            )))
            .unwrap();
        heads.spawn(client.request(request));
    }
    // The streams' response heads, kept (and their bodies open) until the end.
    let mut open = Vec::new();
    let all = async {
        while let Some(head) = heads.join_next().await {
            open.push(head.unwrap().unwrap());
        }
    };
    let waited = tokio::time::timeout(std::time::Duration::from_secs(60), all).await;
    assert!(
        waited.is_ok(),
        "{} of {STREAMS} streams answered, {} reached the provider",
        open.len(),
        mock.requests().len()
    );
    assert!(open.iter().all(|r| r.status() == 200));
    let requests = mock.requests();
    assert_eq!(requests.len(), STREAMS);
    assert!(requests.iter().all(|r| r.version == http::Version::HTTP_2));
    assert!(mock.connections() >= STREAMS.div_ceil(100), "{} connections", mock.connections());
}

#[tokio::test]
async fn http1_keep_alive_connections_are_reused() {
    let (mock, proxy, _ca) = start(&[b"http/1.1"], true).await;
    for _ in 0..5 {
        assert_eq!(proxy.chat("m").await.status, 200);
    }
    assert!(mock.requests().iter().all(|r| r.version == http::Version::HTTP_11));
    assert_eq!(mock.connections(), 1, "sequential requests did not reuse the keep-alive connection");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_before_any_request_is_sent() {
    let (mock, proxy, _ca) = start(&[b"h2", b"http/1.1"], false).await;
    let r = proxy.chat("m").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "upstream_unavailable");
    assert!(mock.requests().is_empty(), "a request went to a server whose certificate is not trusted");
}

#[tokio::test]
async fn ssl_verify_applies_to_its_deployment_only() {
    let (ca_pem, server) = pki(&[b"h2", b"http/1.1"]);
    let mock = MockProvider::start_tls(MockConfig::new().key("sk-a", KeyLimit::unlimited()), server).await.unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_path = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_pem).unwrap();
    let base = format!("https://localhost:{}/v1", mock.addr().port());
    let entry = |alias: &str, extra: &str| {
        format!("  - model_name: {alias}\n    litellm_params: {{ model: openai/gpt-4o, api_base: {base}, api_key: os.environ/KA{extra} }}\n")
    };
    let config = format!(
        "model_list:\n{}{}{}",
        entry("bundle", &format!(", ssl_verify: {}", ca_path.display())),
        entry("unverified", ", ssl_verify: false"),
        entry("plain", ""),
    );
    let proxy = Proxy::start_with(&config, |dir| std::fs::write(dir.join("KA"), "sk-a").unwrap(), None).await;
    for alias in ["bundle", "unverified"] {
        let r = proxy.chat(alias).await;
        assert_eq!(r.status, 200, "{alias}: {}", r.text());
    }
    assert_eq!(mock.requests().len(), 2);
    let r = proxy.chat("plain").await;
    assert_eq!(r.status, 502, "a deployment without ssl_verify trusts only the default roots: {}", r.text());
    assert_eq!(mock.requests().len(), 2);
}
