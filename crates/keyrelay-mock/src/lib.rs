//! A mock LLM provider that behaves like the real ones, for keyrelay's integration tests,
//! benchmarks and `keyrelay-demo`. It is not part of the product binary.
//!
//! Real providers cannot be used in tests (keys, cost, network, and they refuse to
//! rate-limit on demand), yet keyrelay's whole job is reacting to what providers say:
//! 429s with their various rate-limit header dialects, 5xx, dropped connections, slow
//! or stalled streams. [`MockProvider`] speaks those dialects over real loopback HTTP,
//! enforces per-key request and token limits in short windows so failover and cooldown
//! can be observed in milliseconds, and records every request so tests can assert on
//! what keyrelay actually sent (which key, which model, which headers).
//!
//! Paths are matched by suffix so any base works (`/v1`, `/openai/v1`, `/api/v1`):
//! `POST .../chat/completions`, `.../completions`, `.../embeddings`, `.../messages`
//! (Anthropic native), `.../responses`, `.../moderations`, `.../images/{generations,edits,
//! variations}`, `.../rerank`, `.../audio/{transcriptions,translations}` (forms: the
//! model is read from the form's `model` field), `.../models/{model}:generateContent` and
//! `:streamGenerateContent` (Gemini native), `GET .../models`, and OpenRouter's key
//! info `GET .../key`. Anything else is 404. The last two are what keyrelay's key
//! probes call: like a real provider they answer 401 to an unknown key, and each one
//! is counted per key ([`KeyStats::probes`], [`MockProvider::probe_times`]).
//!
//! Keys are fake test values: the mock reports them in [`RecordedRequest::key`] and in
//! [`MockStats`] on purpose, but never in a response body (responses name the key by
//! its index, `key #N`, so demo output and logs cannot leak a key-shaped string).

mod body;
mod faults;
mod limits;
mod probes;
mod request;
mod responses;
mod server;
mod state;
mod styles;
#[cfg(test)]
mod tests;
mod timefmt;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use state::Shared;

/// How the mock behaves; fixed for the life of a [`MockProvider`] except the key table
/// and latency, which have run-time setters (key rotation is what keyrelay is for).
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Accepted keys and their limits, in order: the first key is `key #1` in responses.
    pub keys: Vec<(String, KeyLimit)>,
    /// Which provider's rate-limit dialect to speak.
    pub style: HeaderStyle,
    /// Delay before response headers of every request (simulates model think time, so
    /// tests can observe requests in flight).
    pub latency: Duration,
    /// Number of content events in an SSE stream (at least 1 is sent).
    pub stream_chunks: usize,
    /// Pause between SSE events, so pass-through (not buffering) is observable.
    pub stream_interval: Duration,
    /// Accept any non-empty key, unlimited, besides the configured ones (for tests
    /// that do not care about keys). A request without a key is still 401.
    pub accept_any_key: bool,
    /// Answer requests that carry no key at all, as a local server (Ollama, vLLM)
    /// does.
    pub accept_no_key: bool,
    /// Model ids listed by `GET .../models`.
    pub models: Vec<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            keys: Vec::new(),
            style: HeaderStyle::OpenAi,
            latency: Duration::ZERO,
            stream_chunks: 5,
            stream_interval: Duration::from_millis(10),
            accept_any_key: false,
            accept_no_key: false,
            models: vec!["mock-model".to_string()],
        }
    }
}

impl MockConfig {
    /// Same as `Default`: OpenAI style, no keys, no latency, 5 chunks 10 ms apart.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an accepted key (builder style, for one-line test setups).
    pub fn key(mut self, key: impl Into<String>, limit: KeyLimit) -> Self {
        self.keys.push((key.into(), limit));
        self
    }

    /// Sets the rate-limit dialect.
    pub fn style(mut self, style: HeaderStyle) -> Self {
        self.style = style;
        self
    }

    /// Sets the delay before response headers.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Sets the SSE shape: number of content events and the pause between events.
    pub fn stream(mut self, chunks: usize, interval: Duration) -> Self {
        self.stream_chunks = chunks;
        self.stream_interval = interval;
        self
    }

    /// Accepts any non-empty key (unlimited) besides the configured ones.
    pub fn accept_any_key(mut self, accept: bool) -> Self {
        self.accept_any_key = accept;
        self
    }

    /// Answers requests without any key, like a local model server.
    pub fn accept_no_key(mut self, accept: bool) -> Self {
        self.accept_no_key = accept;
        self
    }
}

/// Per-key quota. Windows are fixed: the first admitted request opens a window of
/// `window`; at its end both counters reset at once. Fixed windows make the reset
/// instant exact, so a client that honours the advertised reset never sees a second
/// 429, which is what keyrelay's cooldown logic must be tested against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyLimit {
    /// Requests admitted per window (`None`: unlimited).
    pub rpm: Option<u32>,
    /// Tokens (`usage.total_tokens` of admitted responses) per window. A request whose
    /// tokens would push the window past this is refused, as OpenAI does.
    pub tpm: Option<u64>,
    /// Window length; 60 s by default, tests use short ones such as 300 ms.
    pub window: Duration,
    /// A limit with no burst at all (GCRA with zero tolerance): one request per
    /// `1/n` s, as providers that enforce a per-second rate do. Its 429 says only
    /// `limit` (as per minute), `remaining: 0` and the reset to the next slot; its
    /// successes say nothing.
    pub per_second_no_burst: Option<u32>,
}

impl Default for KeyLimit {
    fn default() -> Self {
        KeyLimit { rpm: None, tpm: None, window: Duration::from_secs(60), per_second_no_burst: None }
    }
}

impl KeyLimit {
    /// No limit at all (headers still report the window where the style does).
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// `rpm` requests per 60 s window.
    pub fn rpm(rpm: u32) -> Self {
        KeyLimit { rpm: Some(rpm), ..Self::default() }
    }

    /// `tpm` tokens per 60 s window.
    pub fn tpm(tpm: u64) -> Self {
        KeyLimit { tpm: Some(tpm), ..Self::default() }
    }

    /// `n` requests per second, evenly spaced, with no burst (see
    /// [`KeyLimit::per_second_no_burst`]).
    pub fn spaced(n: u32) -> Self {
        KeyLimit { per_second_no_burst: Some(n.max(1)), ..Self::default() }
    }

    /// Adds a token limit to this limit.
    pub fn with_tpm(mut self, tpm: u64) -> Self {
        self.tpm = Some(tpm);
        self
    }

    /// Replaces the window length (tests: milliseconds rather than a minute).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }
}

/// Which provider's rate-limit dialect the mock speaks. keyrelay must understand all
/// of them; each style sends exactly what that provider sends, so a parser bug for one
/// dialect cannot be hidden by a hint from another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderStyle {
    /// OpenAI and Groq: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` on every
    /// response (reset as a Go duration such as `300ms`, `7.66s`, `6m0s`); on 429 also
    /// `retry-after` (whole seconds, rounded up) and `retry-after-ms` (precise).
    #[default]
    OpenAi,
    /// `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}` on every response
    /// (reset as an RFC 3339 instant with milliseconds); `retry-after` on 429.
    Anthropic,
    /// `x-ratelimit-{limit,remaining,reset}-requests-day` and `-tokens-minute` on every
    /// response (reset in float seconds); `retry-after` on 429.
    Cerebras,
    /// `X-RateLimit-{Limit,Remaining,Reset}` (reset: unix milliseconds) on 429 only,
    /// also echoed in the body's `error.metadata.headers`; no `retry-after`.
    OpenRouter,
    /// No rate-limit headers at all; a 429 carries only `retry-after` (whole seconds):
    /// the provider that tells a client nothing until it is too late.
    Bare,
    /// No rate-limit headers; a 429's only hint is `RetryInfo.retryDelay` in the body
    /// (the OpenAI-compatible endpoint's list form `[{"error":...}]`).
    Gemini,
}

/// A one-shot misbehaviour for the next matching request (see
/// [`MockProvider::push_fault`]). Faults take precedence over auth and limits: they
/// model the provider failing, whatever the request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and an error body of the path's shape (OpenAI by default).
    Status(u16),
    /// 429 with `retry-after: <value>` verbatim (seconds or HTTP date) and style hints
    /// consistent with it; `None` sends a 429 with no hint at all (neither header nor
    /// reset nor `RetryInfo`), to test the client's default cooldown.
    RateLimited { retry_after: Option<String> },
    /// Close the TCP connection without any response (HTTP/2: reset the stream).
    ResetConnection,
    /// Never answer; the request is held until the client gives up or the mock stops.
    Hang,
    /// Wait this long, then process the request normally.
    SlowFirstByte(Duration),
    /// Streaming request: send the first SSE event, then wait for one `notify_one()`
    /// before the rest (a permit stored before the wait counts). Non-streaming request:
    /// wait for the notification before answering.
    StreamGate(Arc<Notify>),
    /// Answer with exactly this status, these headers and this body (no style hints
    /// added): the hostile and odd answers real providers and broken proxies send
    /// (`retry-after: 1e20`, a 402 with a billing message, a 403 for a missing scope).
    Answer { status: u16, headers: Vec<(String, String)>, body: String },
}

impl Fault {
    /// [`Fault::Answer`] with a JSON body.
    pub fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Fault {
        let mut headers: Vec<(String, String)> =
            headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
            headers.push(("content-type".to_owned(), "application/json".to_owned()));
        }
        Fault::Answer { status, headers, body: body.to_owned() }
    }
}

/// One request as the mock received it, recorded before it is answered (faults too).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `POST`, `GET`, ...
    pub method: String,
    /// The path without the query (`/v1/chat/completions`).
    pub path: String,
    /// The raw query string, if any (Gemini's `key=` and `alt=sse` live here).
    pub query: Option<String>,
    /// Headers as received: lets tests check what keyrelay stripped, injected or
    /// propagated (`traceparent`, `anthropic-version`, ...).
    pub headers: http::HeaderMap,
    /// The key found in `Authorization: Bearer`, `x-api-key`, `api-key`,
    /// `x-goog-api-key` or the `key` query parameter, in that order.
    pub key: Option<String>,
    /// HTTP version the request arrived with (HTTP/2 when negotiated by ALPN).
    pub version: http::Version,
    /// The body as received (after keyrelay's `model` rewrite).
    pub body: Bytes,
    /// The JSON body's `model`, a multipart form's `model` field, or the Gemini-native
    /// path's model segment.
    pub model: Option<String>,
    /// The body was a `multipart/form-data` form (`body.len()`: the bytes received).
    pub form: bool,
    /// `"stream": true` in the body, or a Gemini `:streamGenerateContent` path.
    pub stream: bool,
}

/// Counters for one key (a key value, or `""` for requests without one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// 2xx responses sent (a stream counts when its headers are sent).
    pub ok: usize,
    /// 429s sent, from limits or from [`Fault::RateLimited`].
    pub rate_limited: usize,
    /// 401s sent.
    pub unauthorized: usize,
    /// Other error statuses sent (400, 404, 413, [`Fault::Status`]).
    pub errors: usize,
    /// Faults consumed by requests with this key, of any kind.
    pub faults: usize,
    /// Streams whose client went away before the last event.
    pub aborted_streams: usize,
    /// Key checks (`GET .../models`, `GET .../key`) carrying this key, whatever their
    /// answer (401 for an unknown key). Counted here only, not in `ok`,
    /// `unauthorized` or `errors`: those count traffic.
    pub probes: usize,
}

/// A snapshot of [`KeyStats`] for every key seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MockStats {
    /// Keyed by key value (`""`: requests without a key).
    pub per_key: BTreeMap<String, KeyStats>,
}

impl MockStats {
    /// Counters for `key` (zeros if it was never seen).
    pub fn key(&self, key: &str) -> KeyStats {
        self.per_key.get(key).copied().unwrap_or_default()
    }

    /// Sum over all keys.
    pub fn total(&self) -> KeyStats {
        self.per_key.values().fold(KeyStats::default(), |a, s| KeyStats {
            ok: a.ok + s.ok,
            rate_limited: a.rate_limited + s.rate_limited,
            unauthorized: a.unauthorized + s.unauthorized,
            errors: a.errors + s.errors,
            faults: a.faults + s.faults,
            aborted_streams: a.aborted_streams + s.aborted_streams,
            probes: a.probes + s.probes,
        })
    }
}

/// A running mock provider on a loopback port. Dropping it stops the server and closes
/// every connection, so a test cannot leak it into the next one.
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockProvider").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl MockProvider {
    /// Binds `127.0.0.1:0` (a free port; tests never collide) and starts serving
    /// HTTP/1.1 and h2c.
    pub async fn start(config: MockConfig) -> std::io::Result<MockProvider> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Like [`MockProvider::start`] on a chosen address (the demo may want fixed ports).
    pub async fn start_on(addr: SocketAddr, config: MockConfig) -> std::io::Result<MockProvider> {
        Self::bind(addr, config, None).await
    }

    /// Like [`MockProvider::start`] but serving HTTPS with `tls` (whose ALPN list
    /// decides whether clients get HTTP/2), as real providers do.
    pub async fn start_tls(config: MockConfig, tls: Arc<rustls::ServerConfig>) -> std::io::Result<MockProvider> {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config, Some(acceptor)).await
    }

    async fn bind(
        addr: SocketAddr,
        config: MockConfig,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared), tls));
        Ok(MockProvider { addr, shared, task })
    }

    /// TCP connections accepted so far (keep-alive pooling shows as few connections).
    pub fn connections(&self) -> usize {
        usize::try_from(self.shared.connections.accepted()).unwrap_or(usize::MAX)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`: what a deployment's `api_base` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// How many requests carried `key` (whatever their outcome), key checks
    /// (`GET .../models`, `.../key`: see [`KeyStats::probes`]) apart.
    pub fn requests_for_key(&self, key: &str) -> usize {
        self.shared.requests_for_key(key)
    }

    /// Queues a one-shot fault. With `Some(key)` it hits the next request carrying that
    /// key; with `None` the next request whose key has no fault queued. Each queue is
    /// FIFO; a key's own queue is served before the global one.
    pub fn push_fault(&self, key: Option<&str>, fault: Fault) {
        self.shared.push_fault(key, fault);
    }

    /// Sets (or with `None` clears) a standing fault: it hits every request carrying
    /// `key` (with `None`: every request) for which no one-shot fault is queued, until
    /// cleared. Retry storms and lockouts need a provider that keeps misbehaving.
    pub fn set_standing_fault(&self, key: Option<&str>, fault: Option<Fault>) {
        self.shared.set_standing_fault(key, fault);
    }

    /// Faults queued and not yet consumed (all queues).
    pub fn pending_faults(&self) -> usize {
        self.shared.pending_faults()
    }

    /// Changes a key's limit at run time, keeping its current window's counters (adds
    /// the key if unknown).
    pub fn set_key_limit(&self, key: &str, limit: KeyLimit) {
        self.shared.set_key_limit(key, limit);
    }

    /// Starts accepting `key` (a rotated-in key), with a fresh window. A key that was
    /// known before keeps its original index.
    pub fn add_key(&self, key: &str, limit: KeyLimit) {
        self.shared.add_key(key, limit);
    }

    /// Stops accepting `key` (revoked): its next request gets 401.
    pub fn remove_key(&self, key: &str) {
        self.shared.remove_key(key);
    }

    /// Changes the delay before response headers for requests that arrive from now on.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.set_latency(latency);
    }

    /// Per-key counters.
    pub fn stats(&self) -> MockStats {
        self.shared.stats()
    }

    /// When key checks carrying `key` arrived, oldest first.
    pub fn probe_times(&self, key: &str) -> Vec<std::time::Instant> {
        self.shared.probes.times(key)
    }

    /// Streams whose client went away before the last event (all keys).
    pub fn streams_aborted(&self) -> usize {
        self.shared.streams_aborted()
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}
