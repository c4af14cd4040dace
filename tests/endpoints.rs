//! Every endpoint a LiteLLM user calls: multipart forms stream through with the
//! model read from the form, `model_info.mode` sends each request to a deployment
//! that serves its endpoint, and `context_window_fallbacks` /
//! `content_policy_fallbacks` answer those errors with another alias.

mod support;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body::{Body, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tokio::sync::mpsc;

const LONG: Duration = Duration::from_secs(30);

/// A request body the test feeds piece by piece.
struct Fed(mpsc::Receiver<Bytes>);

impl Body for Fed {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

fn form(boundary: &str, model: &str, file: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\njson\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\n"
    );
    let mut body = head.into_bytes();
    body.extend_from_slice(file);
    let tail = format!("\r\n--{boundary}--\r\n").into_bytes();
    (body, tail)
}

/// [`eventually`] for a condition that needs no `await`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    eventually(LONG, what, || std::future::ready(done())).await;
}

#[tokio::test]
async fn a_transcription_form_streams_through_with_the_model_read_from_the_form() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    // Room for one 900 KiB body in memory, not two.
    let config = format!(
        "server:\n  body_limit: 1MiB\n  max_buffered_bodies: 1MiB\nmodels:\n  whisper:\n    deployments:\n      - provider: openai-compatible\n        model: whisper-large-v3-turbo\n        api_base: {}\n        keys: [KA]\n        mode: audio_transcription\n",
        mock.base_url()
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    let file: Vec<u8> = (0..900 * 1024).map(|i| (i % 251) as u8).collect();
    let (mut sent, tail) = form("XbOuNdArY", "whisper", &file);
    let total = sent.len() + tail.len();
    let mut rest = sent.split_off(300 * 1024);

    let (feed, rx) = mpsc::channel(4);
    let client: Client<_, Fed> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(proxy.url("/v1/audio/transcriptions"))
        .header("content-type", "multipart/form-data; boundary=XbOuNdArY")
        .header("content-length", total)
        .body(Fed(rx))
        .unwrap();
    let response = tokio::spawn(client.request(request));
    feed.send(Bytes::from(sent)).await.unwrap();

    // The upstream request starts while two thirds of the body are still with the
    // client: keyrelay did not wait for (and hold) the whole body.
    until("keyrelay to connect upstream", || mock.connections() > 0).await;
    // A JSON body of the same size still fits the body budget beside it.
    let json = format!(r#"{{"model":"whisper","input":"{}"}}"#, "x".repeat(900 * 1024));
    let beside =
        proxy.call(Method::POST, "/v1/audio/transcriptions", &[("content-type", "application/json")], &json).await;
    assert_eq!(beside.status, 200, "{}", beside.text());

    rest.extend_from_slice(&tail);
    for chunk in rest.chunks(64 * 1024) {
        feed.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    drop(feed);
    let reply = read(tokio::time::timeout(LONG, response).await.unwrap().unwrap().unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["text"].as_str().is_some_and(|t| t.starts_with("Hello from mock")), "{}", reply.text());
    assert!(reply.json()["usage"]["total_tokens"].as_u64().is_some_and(|t| t > 0));

    let recorded = mock.requests().into_iter().find(|r| r.form).expect("the form reached the mock");
    assert_eq!(recorded.path, "/v1/audio/transcriptions");
    assert_eq!(recorded.model.as_deref(), Some("whisper-large-v3-turbo"));
    let grown = "whisper-large-v3-turbo".len() - "whisper".len();
    assert_eq!(recorded.body.len(), total + grown);
    assert_eq!(recorded.headers["content-length"], (total + grown).to_string().as_str());
    assert!(recorded.body.ends_with(&tail));
    assert_eq!(&recorded.body[recorded.body.len() - tail.len() - file.len()..][..file.len()], &file[..]);
}

#[tokio::test]
async fn a_form_with_its_model_after_the_file_and_the_limits_that_hold() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let config = format!(
        "server:\n  body_limit: 256KiB\nmodels:\n  whisper:\n    deployments:\n      - provider: openai-compatible\n        model: whisper-1\n        api_base: {}\n        keys: [KA]\n",
        mock.base_url()
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    // curl -F file=@... -F model=...: the model last, past the head read before routing.
    let file = vec![b'a'; 100 * 1024];
    let body = format!(
        "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n{}\r\n--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--b--\r\n",
        String::from_utf8(file).unwrap()
    );
    let ct = [("content-type", "multipart/form-data; boundary=b")];
    let reply = proxy.call(Method::POST, "/v1/audio/translations", &ct, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(mock.requests()[0].model.as_deref(), Some("whisper-1"));

    let too_big = format!("--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n{}\r\n--b--\r\n", "a".repeat(300 * 1024));
    let reply = proxy.call(Method::POST, "/v1/audio/transcriptions", &ct, &too_big).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    let no_model = "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\nx\r\n--b--\r\n";
    let reply = proxy.call(Method::POST, "/v1/audio/transcriptions", &ct, no_model).await;
    assert_eq!((reply.status.as_u16(), reply.json()["error"]["code"].as_str()), (400, Some("invalid_model")));
    let reply = proxy
        .call(Method::POST, "/v1/audio/transcriptions", &[("content-type", "multipart/form-data")], no_model)
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(mock.requests().len(), 1);
}

fn litellm_entry(alias: &str, model: &str, base: &str, key: &str, mode: Option<&str>) -> String {
    let info = mode.map(|m| format!("    model_info:\n      mode: {m}\n")).unwrap_or_default();
    format!("  - model_name: {alias}\n    litellm_params:\n      model: {model}\n      api_base: {base}\n      api_key: os.environ/{key}\n{info}")
}

#[tokio::test]
async fn model_info_mode_sends_each_endpoint_to_a_deployment_that_serves_it() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let base = mock.base_url();
    let config = format!(
        "model_list:\n{}{}{}",
        litellm_entry("assistant", "openai/text-embedding-3-small", &base, "KA", Some("embedding")),
        litellm_entry("assistant", "openai/gpt-4o-mini", &base, "KA", Some("chat")),
        litellm_entry("chat-only", "openai/gpt-4o", &base, "KA", Some("chat")),
    );
    let proxy = Proxy::start(&config, &[("KA", "sk-a")]).await;
    let json = [("content-type", "application/json")];
    for _ in 0..4 {
        let chat = proxy.chat("assistant").await;
        assert_eq!(chat.status, 200, "{}", chat.text());
        let embedding =
            proxy.call(Method::POST, "/v1/embeddings", &json, r#"{"model":"assistant","input":"hi"}"#).await;
        assert_eq!(embedding.status, 200, "{}", embedding.text());
        assert_eq!(embedding.json()["data"][0]["object"], "embedding");
    }
    let requests = mock.requests();
    assert_eq!(requests.len(), 8);
    for r in &requests {
        let expected = if r.path.ends_with("/embeddings") { "text-embedding-3-small" } else { "gpt-4o-mini" };
        assert_eq!(r.model.as_deref(), Some(expected), "{}", r.path);
    }
    // A chat model also serves the Responses API; nothing here serves embeddings.
    let responses = proxy.call(Method::POST, "/v1/responses", &json, r#"{"model":"chat-only","input":"hi"}"#).await;
    assert_eq!(responses.status, 200, "{}", responses.text());
    let refused = proxy.call(Method::POST, "/v1/embeddings", &json, r#"{"model":"chat-only","input":"hi"}"#).await;
    assert_eq!(refused.status, 400);
    let error = &refused.json()["error"];
    assert_eq!(error["code"], "unsupported_api");
    assert_eq!(error["type"], "invalid_request_error");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("/v1/embeddings") && message.contains("chat"), "{message}");
    assert_eq!(mock.requests().len(), 9, "the refused request never left keyrelay");
}

const CONTEXT_ERROR: &str = r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;

async fn fallback_proxy(mock: &MockProvider, setting: &str) -> Proxy {
    let base = mock.base_url();
    let config = format!(
        "model_list:\n{}{}{}litellm_settings:\n  num_retries: 2\n  {setting}: [{{small: [large]}}]\n",
        litellm_entry("small", "openai/small-model", &base, "KA", None),
        litellm_entry("small", "openai/small-model", &base, "KB", None),
        litellm_entry("large", "openai/large-model", &base, "KA", None),
    );
    Proxy::start(&config, &[("KA", "sk-a"), ("KB", "sk-b")]).await
}

#[tokio::test]
async fn context_window_fallbacks_are_taken_on_a_context_length_error_only() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited()))
            .await
            .unwrap();
    let proxy = fallback_proxy(&mock, "context_window_fallbacks").await;

    mock.push_fault(None, Fault::answer(400, &[], CONTEXT_ERROR));
    let reply = proxy.chat("small").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["model"], "large-model");
    assert_eq!(reply.header("x-keyrelay-attempts"), "2");
    let models: Vec<_> = mock.requests().iter().map(|r| r.model.clone().unwrap_or_default()).collect();
    // Not retried on small's other key: the same prompt does not fit there either.
    assert_eq!(models, ["small-model", "large-model"]);

    // Any other 400 is the client's, as the provider said it.
    let other = r#"{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error","code":"invalid_value"}}"#;
    mock.push_fault(None, Fault::answer(400, &[], other));
    let reply = proxy.chat("small").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "invalid_value");
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn content_policy_fallbacks_are_taken_on_a_content_filter_refusal() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).key("sk-b", KeyLimit::unlimited()))
            .await
            .unwrap();
    let proxy = fallback_proxy(&mock, "content_policy_fallbacks").await;
    let filtered = r#"{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400}}"#;
    mock.push_fault(None, Fault::answer(400, &[], filtered));
    let reply = proxy.chat("small").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["model"], "large-model");
    // A context-length error is not a content-policy one: no fallback configured for it.
    mock.push_fault(None, Fault::answer(400, &[], CONTEXT_ERROR));
    let reply = proxy.chat("small").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"]["code"], "context_length_exceeded");
}
