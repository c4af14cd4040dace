#![allow(dead_code)]
//! A real OTLP trace receiver on loopback: OTLP/HTTP (`POST /v1/traces`, protobuf) and
//! OTLP/gRPC (h2c, `TraceService/Export`) on the same port, decoded with the
//! `opentelemetry-proto` types. It runs on a thread and runtime of its own, so it
//! outlives any one test's runtime (the process-wide exporter keeps sending to it).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message;

/// `Span.kind` values.
pub const SERVER: i32 = 2;
pub const CLIENT: i32 = 3;
/// `Status.code` value for an error.
pub const STATUS_ERROR: i32 = 2;

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    Other,
}

/// One exported span, flattened: ids in hex, attributes by key.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub kind: i32,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub status_code: i32,
    pub attributes: BTreeMap<String, Attr>,
    /// Attribute keys that occur more than once on the span (should be none).
    pub duplicate_keys: Vec<String>,
    pub resource: BTreeMap<String, Attr>,
}

impl ExportedSpan {
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(Attr::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(Attr::Int(v)) => Some(*v),
            _ => None,
        }
    }

    pub fn double(&self, key: &str) -> Option<f64> {
        match self.attributes.get(key) {
            Some(Attr::Double(v)) => Some(*v),
            Some(Attr::Int(v)) => Some(*v as f64),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Shared {
    /// Keep bodies undecoded (benchmarks: decode after the measurement).
    counting_only: bool,
    counted: Mutex<(usize, usize)>,
    stored: Mutex<Vec<Bytes>>,
    spans: Mutex<Vec<ExportedSpan>>,
    /// Every export body as received (for scanning for key material).
    raw: Mutex<Vec<u8>>,
    /// (path, content-type) of every export request.
    requests: Mutex<Vec<(String, String)>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Self::start_with(Shared::default())
    }

    /// A receiver that only counts and keeps export bodies, decoding nothing until
    /// asked (benchmarks: it should cost little next to the process being measured).
    pub fn start_counting() -> Receiver {
        Self::start_with(Shared { counting_only: true, ..Shared::default() })
    }

    /// (export requests, bytes) received so far by a counting receiver.
    pub fn counted(&self) -> (usize, usize) {
        *self.shared.counted.lock().unwrap()
    }

    /// Decodes what a counting receiver kept: the number of spans received.
    pub fn count_stored_spans(&self) -> usize {
        let stored = self.shared.stored.lock().unwrap();
        stored.iter().filter_map(|b| ExportTraceServiceRequest::decode(&b[..]).ok()).map(|r| flatten(r).len()).sum()
    }

    fn start_with(shared: Shared) -> Receiver {
        let shared = Arc::new(shared);
        let (tx, rx) = std::sync::mpsc::channel();
        let serving = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                    tx.send(listener.local_addr().expect("addr")).expect("send addr");
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        let shared = Arc::clone(&serving);
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&shared), req));
                            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                            let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                        });
                    }
                });
            })
            .expect("spawn receiver");
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("receiver started");
        Receiver { addr, shared }
    }

    /// The OTLP/HTTP traces URL.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// The OTLP/gRPC endpoint.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ExportedSpan> {
        self.shared.spans.lock().unwrap().clone()
    }

    pub fn raw(&self) -> Vec<u8> {
        self.shared.raw.lock().unwrap().clone()
    }

    /// (path, content-type) of the export requests received so far.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Polls (calling `flush` first each time) until `pick` finds what it wants in the
    /// spans received so far; panics with `what` after `deadline`.
    pub async fn wait_for<T, F, Fut>(
        &self,
        deadline: Duration,
        what: &str,
        mut flush: F,
        pick: impl Fn(&[ExportedSpan]) -> Option<T>,
    ) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let until = Instant::now() + deadline;
        loop {
            flush().await;
            if let Some(found) = pick(&self.spans()) {
                return found;
            }
            assert!(
                Instant::now() < until,
                "timed out after {deadline:?} waiting for spans: {what}\n{:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let path = request.uri().path().to_owned();
    let content_type =
        request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let grpc = content_type.starts_with("application/grpc");
    let body = request.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    if shared.counting_only {
        let mut counted = shared.counted.lock().unwrap();
        counted.0 += 1;
        counted.1 += body.len();
        shared.stored.lock().unwrap().push(body);
        let reply = ExportTraceServiceResponse::default().encode_to_vec();
        return Ok(Response::new(Full::new(Bytes::from(reply)).map_err(|n| match n {}).boxed()));
    }
    shared.requests.lock().unwrap().push((path, content_type));
    shared.raw.lock().unwrap().extend_from_slice(&body);
    // gRPC messages carry a 5-byte prefix: compressed flag and length.
    let message = if grpc { body.get(5..).unwrap_or_default() } else { &body[..] };
    let Ok(export) = ExportTraceServiceRequest::decode(message) else {
        let mut response =
            Response::new(Full::new(Bytes::from_static(b"bad protobuf")).map_err(|n| match n {}).boxed());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(response);
    };
    shared.spans.lock().unwrap().extend(flatten(export));
    let reply = ExportTraceServiceResponse::default().encode_to_vec();
    if grpc {
        let mut framed = BytesMut::with_capacity(5 + reply.len());
        framed.put_u8(0);
        framed.put_u32(reply.len() as u32);
        framed.put_slice(&reply);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let frames = vec![Ok::<_, Infallible>(Frame::data(framed.freeze())), Ok(Frame::trailers(trailers))];
        let mut response = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
        response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        return Ok(response);
    }
    let mut response = Response::new(Full::new(Bytes::from(reply)).map_err(|n| match n {}).boxed());
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
    Ok(response)
}

fn attrs(list: &[KeyValue]) -> BTreeMap<String, Attr> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => Attr::Str(s.clone()),
                Some(any_value::Value::IntValue(i)) => Attr::Int(*i),
                Some(any_value::Value::DoubleValue(d)) => Attr::Double(*d),
                Some(any_value::Value::BoolValue(b)) => Attr::Bool(*b),
                _ => Attr::Other,
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn duplicates(list: &[KeyValue]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    list.iter().filter(|kv| !seen.insert(kv.key.as_str())).map(|kv| kv.key.clone()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn flatten(export: ExportTraceServiceRequest) -> Vec<ExportedSpan> {
    let mut out = Vec::new();
    for resource_spans in export.resource_spans {
        let resource = resource_spans.resource.map(|r| attrs(&r.attributes)).unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                out.push(ExportedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    start_unix_nano: span.start_time_unix_nano,
                    end_unix_nano: span.end_time_unix_nano,
                    status_code: span.status.map_or(0, |s| s.code),
                    attributes: attrs(&span.attributes),
                    duplicate_keys: duplicates(&span.attributes),
                    resource: resource.clone(),
                });
            }
        }
    }
    out
}
