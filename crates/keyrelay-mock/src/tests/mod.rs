//! Tests of the mock over real loopback HTTP, with hyper-util's client as the caller.

mod basic;
mod faults;
mod limits;
mod stream;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::MockProvider;

pub(super) type TestClient = Client<HttpConnector, Full<Bytes>>;

pub(super) fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A request to the mock with a Bearer key (`None`: no credentials at all).
pub(super) fn request(
    mock: &MockProvider,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", mock.addr()))
        .header("content-type", "application/json");
    if let Some(key) = key {
        builder = builder.header("authorization", format!("Bearer {key}"));
    }
    builder.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

pub(super) async fn send(client: &TestClient, req: Request<Full<Bytes>>) -> Response<Incoming> {
    client.request(req).await.expect("request to the mock failed")
}

/// A whole response, read to the end.
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub(super) async fn read(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, text: String::from_utf8_lossy(&bytes).into_owned() }
}

/// `POST /v1/chat/completions` with `key`, read to the end.
pub(super) async fn chat(client: &TestClient, mock: &MockProvider, key: &str) -> Reply {
    let body = r#"{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}"#;
    read(send(client, request(mock, "POST", "/v1/chat/completions", Some(key), body)).await).await
}
