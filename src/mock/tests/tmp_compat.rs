use std::time::{Duration, SystemTime};
use super::*;
use crate::mock::{HeaderStyle, KeyLimit, MockConfig, MockProvider};

#[tokio::test]
async fn tmp_parser_compat() {
    let client = client();
    for style in [HeaderStyle::OpenAi, HeaderStyle::Anthropic, HeaderStyle::Cerebras, HeaderStyle::OpenRouter, HeaderStyle::Gemini] {
        let mock = MockProvider::start(MockConfig::new().style(style).key("k", KeyLimit::rpm(1).with_tpm(100000).with_window(Duration::from_millis(700)))).await.unwrap();
        let ok = chat(&client, &mock, "k").await;
        let r = chat(&client, &mock, "k").await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        let rep_ok = crate::provider::ratelimit::parse(&ok.headers, SystemTime::now());
        let rep = crate::provider::ratelimit::parse(&r.headers, SystemTime::now());
        let gem = crate::provider::ratelimit::gemini_retry_delay(r.text.as_bytes());
        eprintln!("{style:?}: ok={rep_ok:?}\n  429={rep:?} cooldown={:?} gemini={gem:?}\n  headers={:?}\n  body={}", rep.cooldown(), r.headers, r.text);
    }
}
