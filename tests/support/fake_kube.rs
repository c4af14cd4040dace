//! A fake Kubernetes API server on loopback that speaks just enough for kube's
//! `watcher`: list and watch of Secrets and ConfigMaps in a namespace, with a
//! `metadata.name` field selector, resource versions, and a chunked watch stream of
//! `{"type": ..., "object": ...}` lines. Tests change objects and keyrelay must follow.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// One stored change: resource version, kind (`secrets`/`configmaps`), namespace,
/// name, event type, object.
type Change = (u64, String, String, String, &'static str, Value);

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<(String, String, String), Value>,
    log: Vec<Change>,
    requests: Vec<String>,
}

struct State {
    inner: Mutex<Inner>,
    version: watch::Sender<u64>,
    /// `true`: the server is gone (listener closed, every connection cut).
    down: watch::Sender<bool>,
}

pub struct FakeKube {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKube {
    pub async fn start() -> FakeKube {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state =
            Arc::new(State { inner: Mutex::default(), version: watch::channel(0).0, down: watch::channel(false).0 });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                let mut down = shared.down.subscribe();
                let service = service_fn(move |req| handle(Arc::clone(&state), req));
                tokio::spawn(async move {
                    let connection =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        _ = down.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        FakeKube { addr, state, task }
    }

    /// A kube client talking plain HTTP to this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().expect("url"));
        kube::Client::try_from(config).expect("kube client")
    }

    pub fn put_secret(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let secret = Secret {
            metadata: meta(namespace, name),
            data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Default::default()
        };
        self.put("secrets", namespace, name, serde_json::to_value(secret).expect("json"));
    }

    pub fn put_config_map(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let config_map = ConfigMap {
            metadata: meta(namespace, name),
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        };
        self.put("configmaps", namespace, name, serde_json::to_value(config_map).expect("json"));
    }

    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let mut inner = self.state.inner.lock().unwrap();
        let key = (kind.to_owned(), namespace.to_owned(), name.to_owned());
        if let Some(mut object) = inner.objects.remove(&key) {
            inner.rv += 1;
            let rv = inner.rv;
            object["metadata"]["resourceVersion"] = json!(rv.to_string());
            inner.log.push((rv, key.0, key.1, key.2, "DELETED", object));
            self.state.version.send_replace(rv);
        }
    }

    /// The API server goes away: the port is closed and open watches are cut.
    pub fn stop(&self) {
        self.task.abort();
        self.state.down.send_replace(true);
    }

    /// Every request's path and query, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.state.inner.lock().unwrap().requests.clone()
    }

    fn put(&self, kind: &str, namespace: &str, name: &str, mut object: Value) {
        let mut inner = self.state.inner.lock().unwrap();
        inner.rv += 1;
        let rv = inner.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (kind.to_owned(), namespace.to_owned(), name.to_owned());
        let kind_of_event = if inner.objects.contains_key(&key) { "MODIFIED" } else { "ADDED" };
        inner.objects.insert(key.clone(), object.clone());
        inner.log.push((rv, key.0, key.1, key.2, kind_of_event, object));
        self.state.version.send_replace(rv);
    }
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta { name: Some(name.to_owned()), namespace: Some(namespace.to_owned()), ..Default::default() }
}

/// A response body fed from a channel: the watch stream stays open and gets a line
/// per change.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
    })
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Response<ChannelBody>, Infallible> {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    state.inner.lock().unwrap().requests.push(format!("{path}?{query}"));
    let (tx, rx) = mpsc::channel(64);
    let respond = |status: StatusCode, rx| {
        let mut response = Response::new(ChannelBody(rx));
        *response.status_mut() = status;
        response.headers_mut().insert("content-type", "application/json".parse().expect("header"));
        Ok(response)
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (namespace, kind) = match parts.as_slice() {
        ["api", "v1", "namespaces", ns, kind @ ("secrets" | "configmaps")] => (ns.to_string(), kind.to_string()),
        _ => {
            let _ = tx.try_send(Bytes::from(r#"{"kind":"Status","status":"Failure","code":404}"#));
            return respond(StatusCode::NOT_FOUND, rx);
        }
    };
    let name = query_param(&query, "fieldSelector").and_then(|s| s.strip_prefix("metadata.name=").map(str::to_owned));
    let matches =
        move |k: &str, ns: &str, n: &str| k == kind && ns == namespace && name.as_deref().is_none_or(|want| want == n);

    if query_param(&query, "watch").as_deref() != Some("true") {
        let inner = state.inner.lock().unwrap();
        let items: Vec<Value> =
            inner.objects.iter().filter(|((k, ns, n), _)| matches(k, ns, n)).map(|(_, v)| v.clone()).collect();
        let list_kind = if path.ends_with("secrets") { "SecretList" } else { "ConfigMapList" };
        let metadata = json!({"resourceVersion": inner.rv.to_string()});
        let body = json!({"apiVersion": "v1", "kind": list_kind, "metadata": metadata, "items": items});
        let _ = tx.try_send(Bytes::from(body.to_string()));
        return respond(StatusCode::OK, rx);
    }

    let mut cursor: u64 = query_param(&query, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut version = state.version.subscribe();
    tokio::spawn(async move {
        loop {
            let lines: Vec<(u64, Bytes)> = {
                let inner = state.inner.lock().unwrap();
                inner
                    .log
                    .iter()
                    .filter(|(rv, k, ns, n, _, _)| *rv > cursor && matches(k, ns, n))
                    .map(|(rv, _, _, _, kind, object)| {
                        (*rv, Bytes::from(format!("{}\n", json!({"type": kind, "object": object}))))
                    })
                    .collect()
            };
            for (rv, line) in lines {
                if tx.send(line).await.is_err() {
                    return;
                }
                cursor = rv;
            }
            if version.changed().await.is_err() {
                return;
            }
        }
    });
    respond(StatusCode::OK, rx)
}
