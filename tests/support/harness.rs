//! Starts keyrelay in-process (the same `Running::start` the binary uses) on port 0,
//! with its config and secrets written to a temp dir, and talks to it over loopback.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use keyrelay::runtime::{Options, Running};

pub struct Proxy {
    pub running: Running,
    pub dir: tempfile::TempDir,
    pub client: Client<HttpConnector, Full<Bytes>>,
}

/// A fully read response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

pub fn http_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

impl Proxy {
    /// Writes `config` (YAML) and each secret as `<dir>/secrets/NAME`, then starts.
    pub async fn start(config: &str, secrets: &[(&str, &str)]) -> Proxy {
        Self::start_with_dir(config, |dir| {
            for (name, value) in secrets {
                std::fs::write(dir.join(name), value).expect("write secret");
            }
        })
        .await
    }

    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.path().join("secrets")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.proxy_addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.running.admin_addr, path)
    }

    /// Sends a request and returns the response head with the body still streaming.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> http::Response<Incoming> {
        let mut req = Request::builder().method(method).uri(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).expect("request");
        self.client.request(req).await.expect("request to keyrelay failed")
    }

    pub async fn call(&self, method: Method, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        read(self.send(method, path, headers, body).await).await
    }

    /// `POST /v1/chat/completions` with a small chat body for `model`.
    pub async fn chat(&self, model: &str) -> Reply {
        let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
        self.call(Method::POST, "/v1/chat/completions", &[("content-type", "application/json")], &body).await
    }

    pub async fn admin_get(&self, path: &str) -> Reply {
        get(&self.admin_url(path)).await
    }
}

pub async fn get(url: &str) -> Reply {
    let req = Request::get(url).body(Full::new(Bytes::new())).expect("request");
    read(http_client().request(req).await.expect("GET failed")).await
}

pub async fn read(response: http::Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(30), body.collect())
        .await
        .expect("body not finished within 30s")
        .expect("body read failed")
        .to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

impl Proxy {
    /// Like [`Proxy::start`], but hands `<dir>/secrets` (already created, empty) to
    /// `prepare` before starting, so a test can lay secrets out itself: kubelet's
    /// `..data` symlinks, odd file contents, or nothing at all (environment fallback).
    pub async fn start_with_dir(config: &str, prepare: impl FnOnce(&std::path::Path)) -> Proxy {
        Self::start_with(config, prepare, None).await
    }

    /// The general form: also trusts `upstream_ca` (PEM) for upstream TLS.
    pub async fn start_with(
        config: &str,
        prepare: impl FnOnce(&std::path::Path),
        upstream_ca: Option<PathBuf>,
    ) -> Proxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let secrets_dir = dir.path().join("secrets");
        std::fs::create_dir(&secrets_dir).expect("mkdir");
        prepare(&secrets_dir);
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let options = Options {
            config: config_path,
            secrets_dir: Some(secrets_dir),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            admin: Some("127.0.0.1:0".parse().unwrap()),
            upstream_ca,
        };
        let running = Running::start(options).await.unwrap_or_else(|e| panic!("keyrelay did not start: {e}"));
        Proxy { running, dir, client: http_client() }
    }
}
