//! The HTTP side: the shared server loop ([`keyrelay::http`]: HTTP/1.1 and h2c, or TLS) and
//! the request pipeline: read, record, fault, latency, auth, route, limit, answer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify};

use super::body::{self, ChannelBody, MockBody};
use super::faults::{self, Next};
use super::request::{self, Endpoint, Parsed};
use super::responses::{self, Reply};
use super::state::{Auth, Outcome, Shared};
use super::{styles, RecordedRequest};

/// Request bodies above this are answered 413 (real providers cap them too).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The service error that makes hyper drop the connection without a response: how
/// [`super::Fault::ResetConnection`] is delivered (HTTP/2: the stream is reset).
#[derive(Debug)]
pub(crate) struct ResetByFault;

impl std::fmt::Display for ResetByFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by injected fault")
    }
}

impl std::error::Error for ResetByFault {}

/// Serves until the task is aborted: [`keyrelay::http::serve`] owns its connection tasks,
/// so aborting this task closes every connection too.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, tls: Option<tokio_rustls::TlsAcceptor>) {
    let settings = keyrelay::http::Settings {
        // Never close an idle keep-alive connection: a client's pooled connection must
        // not vanish under it mid-test (only `Fault::ResetConnection` drops connections).
        idle_timeout: None,
        // Benchmarks hold thousands of streams open through it at once.
        max_connections: 100_000,
        tls,
        stats: Arc::clone(&shared.connections),
        ..keyrelay::http::Settings::new("mock")
    };
    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
    keyrelay::http::serve(listener, settings, service, std::future::pending()).await;
}

/// The whole pipeline for one request. Only [`super::Fault::ResetConnection`] yields
/// `Err`; everything else, malformed input included, is an HTTP answer.
async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<MockBody>, ResetByFault> {
    let (parts, body) = req.into_parts();
    let (bytes, body_error) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => (collected.to_bytes(), None),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            (Bytes::new(), Some(StatusCode::PAYLOAD_TOO_LARGE))
        }
        Err(_) => (Bytes::new(), Some(StatusCode::BAD_REQUEST)),
    };
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let parsed = request::parse(&parts.method, &path, query.as_deref(), &parts.headers, &bytes);
    if matches!(parsed.endpoint, Endpoint::Models | Endpoint::KeyInfo) {
        shared.probes.record(parsed.key.as_deref());
    }
    let seq = shared.record(RecordedRequest {
        method: parts.method.to_string(),
        path,
        query,
        headers: parts.headers,
        key: parsed.key.clone(),
        version: parts.version,
        body: bytes.clone(),
        model: parsed.model.clone(),
        stream: parsed.stream,
        form: parsed.form,
    });
    let mut resp = respond(&shared, &parsed, seq, bytes.len(), body_error).await?;
    if let Ok(id) = HeaderValue::from_str(&format!("req_mock{seq:06}")) {
        resp.headers_mut().insert("x-request-id", id);
    }
    Ok(resp)
}

/// Fault, latency, then [`answer`].
async fn respond(
    shared: &Arc<Shared>,
    parsed: &Parsed,
    seq: u64,
    body_len: usize,
    body_error: Option<StatusCode>,
) -> Result<Response<MockBody>, ResetByFault> {
    let key = parsed.key.as_deref();
    let streaming = parsed.stream && responses::can_stream(parsed.endpoint);
    let mut gate = None;
    if let Some(fault) = shared.take_fault(key) {
        match faults::run(fault, shared, key, parsed.endpoint.family()).await {
            Next::Respond(resp) => return Ok(resp),
            Next::Reset => return Err(ResetByFault),
            Next::Proceed { gate: Some(g) } if !streaming => g.notified().await,
            Next::Proceed { gate: g } => gate = g,
        }
    }
    let latency = shared.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    Ok(answer(shared, parsed, seq, body_len, body_error, streaming, gate))
}

/// Auth, routing, validation, limits, then the reply itself.
fn answer(
    shared: &Arc<Shared>,
    parsed: &Parsed,
    seq: u64,
    body_len: usize,
    body_error: Option<StatusCode>,
    streaming: bool,
    gate: Option<Arc<Notify>>,
) -> Response<MockBody> {
    let key = parsed.key.as_deref();
    let family = parsed.endpoint.family();
    // Key checks are counted apart (`KeyStats::probes`), never as traffic.
    let probe = matches!(parsed.endpoint, Endpoint::Models | Endpoint::KeyInfo);
    let fail = |status: StatusCode, outcome: Outcome, message: &str| {
        if !probe {
            shared.count(key, outcome);
        }
        styles::error(status, family, message)
    };
    let label = match shared.authorize(key) {
        Auth::Missing => {
            let msg = "You didn't provide an API key. Provide it in the Authorization header (Bearer auth).";
            return fail(StatusCode::UNAUTHORIZED, Outcome::Unauthorized, msg);
        }
        Auth::Unknown => return fail(StatusCode::UNAUTHORIZED, Outcome::Unauthorized, "Incorrect API key provided."),
        Auth::Known(index) => format!("key #{index}"),
        Auth::Any => "unlisted key".to_string(),
    };
    match (parsed.endpoint, body_error, parsed.json_ok) {
        (Endpoint::NotFound, _, _) => return fail(StatusCode::NOT_FOUND, Outcome::Error, "Unknown request URL."),
        (_, Some(StatusCode::PAYLOAD_TOO_LARGE), _) => {
            return fail(StatusCode::PAYLOAD_TOO_LARGE, Outcome::Error, "Request body too large.");
        }
        (_, Some(status), _) => return fail(status, Outcome::Error, "Could not read the request body."),
        (Endpoint::Models, _, _) => {
            return body::json(StatusCode::OK, &responses::models_list(&shared.models));
        }
        (Endpoint::KeyInfo, _, _) => {
            return body::json(StatusCode::OK, &responses::key_info(&label));
        }
        (_, _, Some(false)) => {
            let msg = "We could not parse the JSON body of your request: expected a JSON object.";
            return fail(StatusCode::BAD_REQUEST, Outcome::Error, msg);
        }
        _ => {}
    }

    let reply = Reply::new(parsed.endpoint, seq, parsed.model.as_deref(), &label, body_len, shared.stream_chunks);
    let quota = match shared.admit(key, reply.total_tokens()) {
        Ok(quota) => quota,
        Err(quota) => {
            shared.count(key, Outcome::RateLimited);
            let retry_after = if quota.spaced { None } else { styles::natural_retry_after(shared.style, &quota) };
            return styles::rate_limited(shared.style, family, &quota, retry_after.as_deref());
        }
    };
    shared.count(key, Outcome::Ok);
    let mut resp = if streaming {
        let body = spawn_stream(Arc::clone(shared), parsed.key.clone(), reply.sse_events(), gate);
        body::event_stream(body)
    } else {
        body::json(StatusCode::OK, &reply.json())
    };
    styles::quota_headers(shared.style, &quota, false, resp.headers_mut());
    resp
}

/// Feeds `events` into a channel body from a task: `stream_interval` apart, holding
/// after the first on `gate` if any. A closed channel means the client went away
/// before the end: counted as an aborted stream.
fn spawn_stream(
    shared: Arc<Shared>,
    key: Option<String>,
    events: Vec<Bytes>,
    gate: Option<Arc<Notify>>,
) -> ChannelBody {
    let (tx, body) = ChannelBody::new();
    let interval = shared.stream_interval;
    tokio::spawn(async move {
        if !produce(&tx, events, interval, gate).await {
            shared.stream_aborted(key.as_deref());
        }
    });
    body
}

/// Sends every event; `false` if the receiver went away first.
async fn produce(tx: &mpsc::Sender<Bytes>, events: Vec<Bytes>, interval: Duration, gate: Option<Arc<Notify>>) -> bool {
    for (i, event) in events.into_iter().enumerate() {
        if i == 1 {
            if let Some(gate) = &gate {
                tokio::select! {
                    _ = gate.notified() => {}
                    _ = tx.closed() => return false,
                }
            }
        }
        if i > 0 && !interval.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = tx.closed() => return false,
            }
        }
        if tx.send(event).await.is_err() {
            return false;
        }
    }
    true
}
