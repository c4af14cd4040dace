mod support;
use support::*;

#[tokio::test]
async fn smoke() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited()))
            .await
            .unwrap();
    let config = format!(
        "models:\n  fast:\n    strategy: round-robin\n    deployments:\n      - provider: openai-compatible\n        model: up-model\n        api_base: {}\n        keys: [KA, KB]\n",
        mock.base_url()
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a\n"), ("KB", "sk-b")]).await;
    let r = proxy.chat("fast").await;
    assert_eq!(r.status, 200, "{}", r.text());
    println!("{:?} {}", r.headers, r.text());
    let r2 = proxy.chat("fast").await;
    assert_ne!(r.header("x-keyrelay-key"), r2.header("x-keyrelay-key"));
    println!(
        "{:?}",
        mock.requests()
            .iter()
            .map(|r| (r.key.clone(), r.path.clone(), String::from_utf8_lossy(&r.body).into_owned()))
            .collect::<Vec<_>>()
    );
}
