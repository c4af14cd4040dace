//! Reading a client request: which API it speaks, which alias it names, and its body
//! (bounded in size, in time, and with every other body in memory: see `body_budget`).
//!
//! The path is checked before anything else: it is joined to the deployment's
//! `api_base`, so a segment that could climb out of it is refused here, before a key
//! is chosen.

use std::borrow::Cow;
use std::ops::Range;
use std::pin::pin;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::Method;
use http_body_util::BodyExt;

use super::body_budget::{BodyBudget, BodyPermit};
use super::error::ProxyError;
use super::multipart;
use super::outbound::{OutboundBody, Rest};
use crate::config::{BodyDefault, Mode, ServerSettings};

/// The API family of a request, which decides the deployments that may serve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Api {
    /// `/v1/...` in OpenAI's format: any deployment (every provider speaks it).
    OpenAi,
    /// Anthropic's native `/v1/messages`: Anthropic deployments only.
    AnthropicMessages,
    /// Gemini's native `/v1beta/models/{model}:{method}`: Gemini deployments only.
    GeminiNative { method: String },
}

impl Api {
    pub fn describe(&self) -> &'static str {
        match self {
            Api::OpenAi => "the OpenAI API",
            Api::AnthropicMessages => "Anthropic's /v1/messages",
            Api::GeminiNative { .. } => "Gemini's native API",
        }
    }
}

pub use super::attempt_body::AttemptBody;
use super::attempt_body::TopLevel;

/// A client request ready to be routed.
#[derive(Debug)]
pub struct Inbound {
    pub parts: Parts,
    pub api: Api,
    pub alias: String,
    /// The kind of endpoint the path names (`None`: no particular kind): only
    /// deployments whose `mode` serves it are candidates.
    pub wants: Option<Mode>,
    /// The body as received, read once (for a streamed form: its head, up to and
    /// past the `model` field). Its buffer owns the body's [`BodyPermit`], so the
    /// budget gets the bytes back when the last attempt's slice is dropped.
    pub body: Bytes,
    /// The JSON body's top level (where `model` is, which keys are set), if JSON.
    top: Option<TopLevel>,
    /// A streamed form: the byte range of its `model` field's value in `body`, and
    /// the rest of the form, sent by one attempt only.
    form: Option<(Range<usize>, Option<Arc<Rest>>)>,
}

impl Inbound {
    /// Checks the path, then reads and classifies a request. `server.body_limit`
    /// bounds the body's size, `server.client_body_timeout` the time the client may
    /// take to send it, and `budget` (up to `server.max_buffered_bodies`) the bytes
    /// of all bodies held at once. A `multipart/form-data` body is read only up to
    /// its `model` field (see `multipart`); the rest streams to the upstream.
    pub async fn read<B>(
        parts: Parts,
        body: B,
        server: &ServerSettings,
        budget: &Arc<BodyBudget>,
    ) -> Result<Inbound, ProxyError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = parts.uri.path();
        check_path(path)?;
        let api = if let Some(rest) = path.strip_prefix("/v1beta/models/") {
            let (_, method) = split_gemini(rest).ok_or_else(|| unsupported(&parts))?;
            // Joined to the upstream path as is: a method is one word (`generateContent`).
            if !method.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(ProxyError::UnsafePath);
            }
            Api::GeminiNative { method: method.to_owned() }
        } else if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Api::AnthropicMessages
        } else if path.starts_with("/v1/") && parts.method == Method::POST {
            Api::OpenAi
        } else {
            return Err(unsupported(&parts));
        };
        let wants = wanted_mode(&api, path);
        let limit = server.body_limit;
        let declared = match parts.headers.get(http::header::CONTENT_LENGTH) {
            None => None,
            Some(v) => match v.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
                Some(n) if n > limit as u64 => return Err(ProxyError::BodyTooLarge { limit }),
                // Not above `limit`, so it fits a usize.
                Some(n) => usize::try_from(n).ok(),
                None => None,
            },
        };
        let content_type = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        if api == Api::OpenAi && content_type.is_some_and(multipart::is_form) {
            let boundary = content_type.and_then(multipart::boundary).ok_or(ProxyError::FormWithoutBoundary)?;
            let form = multipart::read_form(body, server, budget.permit(), declared, boundary).await?;
            let alias = std::str::from_utf8(&form.head[form.span.clone()])
                .map_err(|_| ProxyError::ModelNotString)?
                .trim()
                .to_owned();
            return Ok(Inbound {
                parts,
                api,
                alias,
                wants,
                body: form.head,
                top: None,
                form: Some((form.span, form.rest)),
            });
        }
        let body = read_body(body, server, budget.permit(), declared, Vec::new()).await?;
        let (alias, top) = match &api {
            Api::GeminiNative { .. } => {
                let rest = parts.uri.path().strip_prefix("/v1beta/models/").unwrap_or_default();
                let (alias, _) = split_gemini(rest).ok_or_else(|| unsupported(&parts))?;
                (percent_encoding::percent_decode_str(alias).decode_utf8_lossy().into_owned(), None)
            }
            _ => {
                let (alias, top) = find_model(&body)?;
                (alias, Some(top))
            }
        };
        Ok(Inbound { parts, api, alias, wants, body, top, form: None })
    }

    /// Its size and priority, for admission: `x-keyrelay-priority` first, then the
    /// body's `priority` (LiteLLM's).
    pub fn demand(&self) -> crate::pool::Demand {
        let header = self.parts.headers.get("x-keyrelay-priority").and_then(|v| v.to_str().ok());
        let priority = header.and_then(crate::pool::Priority::parse).or(self.top.as_ref().and_then(|t| t.priority));
        crate::pool::Demand {
            prompt_bytes: self.body.len() as u64,
            max_tokens: self.top.as_ref().and_then(|t| t.max_tokens),
            priority: priority.unwrap_or_default(),
        }
    }

    /// The body to send upstream: identical to the client's, byte for byte, except
    /// the `model` value, which becomes `upstream_model`, and, for OpenAI-format
    /// JSON requests, each of `defaults` whose key the client did not set, added.
    pub fn body_for(&self, upstream_model: &str, defaults: &[BodyDefault]) -> AttemptBody {
        if let Some((span, _)) = &self.form {
            // A form field's value is raw text.
            let model = Bytes::copy_from_slice(upstream_model.as_bytes());
            return AttemptBody::from_pieces([self.body.slice(..span.start), model, self.body.slice(span.end..)]);
        }
        match &self.top {
            Some(top) => {
                let defaults = if self.api == Api::OpenAi { defaults } else { &[] };
                top.attempt(&self.body, upstream_model, defaults)
            }
            None => AttemptBody::from_whole(self.body.clone()),
        }
    }

    /// Whether the client asked for a streamed response (`"stream": true`).
    pub fn wants_stream(&self) -> bool {
        self.top.as_ref().is_some_and(|t| t.stream)
    }

    /// [`Inbound::body_for`] as a request body, followed by the rest of a streamed form.
    pub fn outbound_body(&self, upstream_model: &str, defaults: &[BodyDefault]) -> OutboundBody {
        let rest = self.form.as_ref().and_then(|(_, rest)| rest.clone());
        OutboundBody::new(self.body_for(upstream_model, defaults).pieces().iter().cloned(), rest)
    }

    /// Whether another attempt can still send the whole body: always, unless an
    /// attempt has started streaming the rest of a form.
    pub fn replayable(&self) -> bool {
        self.form.as_ref().and_then(|(_, rest)| rest.as_ref()).is_none_or(|rest| rest.available())
    }
}

/// The kind of endpoint a request path names, in `model_info.mode` terms.
fn wanted_mode(api: &Api, path: &str) -> Option<Mode> {
    let path = path.trim_end_matches('/');
    match api {
        Api::AnthropicMessages | Api::GeminiNative { .. } => return Some(Mode::Chat),
        Api::OpenAi => {}
    }
    Some(match path {
        "/v1/chat/completions" => Mode::Chat,
        "/v1/completions" => Mode::Completion,
        "/v1/embeddings" => Mode::Embedding,
        "/v1/moderations" => Mode::Moderation,
        "/v1/rerank" => Mode::Rerank,
        "/v1/audio/transcriptions" | "/v1/audio/translations" => Mode::AudioTranscription,
        "/v1/audio/speech" => Mode::AudioSpeech,
        "/v1/responses" => Mode::Responses,
        _ if path.starts_with("/v1/images/") => Mode::ImageGeneration,
        _ => return None,
    })
}

/// A body's bytes together with the budget they are counted against.
pub(super) struct Buffered {
    pub bytes: Vec<u8>,
    pub _permit: BodyPermit,
}

impl AsRef<[u8]> for Buffered {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads a body into one buffer. The budget is charged before memory is taken: the
/// whole `declared` length up front (so a body that cannot fit is refused before it
/// is read), else the buffer's capacity as it grows.
///
/// A refused body is still read to its end (up to `body_limit`), and dropped chunk by
/// chunk: a client still sending would otherwise see its connection reset instead of
/// the 503 that tells it to retry.
pub(super) async fn read_body<B>(
    body: B,
    server: &ServerSettings,
    mut permit: BodyPermit,
    declared: Option<usize>,
    read_already: Vec<u8>,
) -> Result<Bytes, ProxyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (limit, budget) = (server.body_limit, server.max_buffered_bodies);
    // What was read already (a form's head) is charged to `permit` already.
    let mut bytes = read_already;
    let mut refused = false;
    if let Some(len) = declared {
        refused = permit.grow(len, budget).is_err();
        if !refused {
            bytes.reserve_exact(len);
        }
    }
    let read = async {
        let mut body = pin!(body);
        let mut received = bytes.len();
        while let Some(frame) = body.as_mut().frame().await {
            let Ok(data) = frame.map_err(|_| ProxyError::BodyRead)?.into_data() else { continue };
            received = received.saturating_add(data.len());
            if received > limit {
                return Err(ProxyError::BodyTooLarge { limit });
            }
            if refused {
                continue;
            }
            if received > permit.bytes() {
                // No (or a wrong) length: grow geometrically, charged before allocating.
                let target = received.max(permit.bytes().saturating_mul(2)).min(limit);
                if permit.grow(target - permit.bytes(), budget).is_err() {
                    refused = true;
                    bytes = Vec::new();
                    permit.shrink_to(0);
                    continue;
                }
                bytes.reserve_exact(target - bytes.len());
            }
            bytes.extend_from_slice(&data);
        }
        Ok(())
    };
    let outcome = tokio::time::timeout(server.client_body_timeout, read).await;
    if refused {
        return Err(ProxyError::BodyBudgetExhausted);
    }
    outcome.map_err(|_| ProxyError::BodyTimeout)??;
    if bytes.capacity() > bytes.len() {
        bytes.shrink_to_fit();
        permit.shrink_to(bytes.capacity());
    }
    Ok(Bytes::from_owner(Buffered { bytes, _permit: permit }))
}

/// Refuses a path that could name something outside the deployment's `api_base`
/// once joined to it: a dot segment (`..`, `%2e%2E`, `.%2e`, also before a `;`
/// parameter, and once more percent-decoded), an empty segment (`//`; one trailing
/// `/` is allowed: it cannot climb), an encoded `/`, a backslash, or a control character.
fn check_path(path: &str) -> Result<(), ProxyError> {
    let Some(rest) = path.strip_prefix('/') else { return Ok(()) };
    if rest.is_empty() {
        return Ok(());
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.split('/').all(safe_segment) {
        Ok(())
    } else {
        Err(ProxyError::UnsafePath)
    }
}

fn safe_segment(segment: &str) -> bool {
    if segment.is_empty() || segment.contains('\\') {
        return false;
    }
    // Decoded up to three times: a server behind the upstream may decode again. A
    // segment with nothing to decode (nearly all of them) is checked in place.
    let mut decoded: Cow<'_, [u8]> = Cow::Borrowed(segment.as_bytes());
    for _ in 0..3 {
        let is_dot = |s: &[u8]| matches!(s, b"." | b"..");
        let before_param = decoded.split(|&b| b == b';').next().unwrap_or_default();
        if is_dot(&decoded)
            || is_dot(before_param)
            || decoded.iter().any(|&b| b == b'/' || b == b'\\' || b.is_ascii_control())
        {
            return false;
        }
        // Borrowed exactly when decoding changes nothing.
        match Cow::from(percent_encoding::percent_decode(&decoded)) {
            Cow::Borrowed(_) => return true,
            Cow::Owned(next) => decoded = Cow::Owned(next),
        }
    }
    // Still changing after three decodes: nothing legitimate is encoded that deep.
    false
}

/// Finds the top-level `model` string and where its JSON value sits in the body.
fn find_model(body: &[u8]) -> Result<(String, TopLevel), ProxyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ProxyError::MissingModel);
    }
    // Checked first: serde would also accept a struct written as a JSON array.
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => ProxyError::NotAnObject,
            Err(e) => ProxyError::InvalidJson(e.to_string()),
        });
    }
    let mut top = TopLevel::parse(body).map_err(|e| ProxyError::InvalidJson(e.to_string()))?;
    if top.model_not_string {
        return Err(ProxyError::ModelNotString);
    }
    // The name moves to the `Inbound`; the attempts need only where it sits.
    let alias = top.model.as_mut().map(|(alias, _)| std::mem::take(alias)).ok_or(ProxyError::MissingModel)?;
    Ok((alias, top))
}

/// `gemini-2.5-flash:generateContent` -> (`gemini-2.5-flash`, `generateContent`).
fn split_gemini(rest: &str) -> Option<(&str, &str)> {
    let (model, method) = rest.rsplit_once(':')?;
    (!model.is_empty() && !method.is_empty() && !model.contains('/')).then_some((model, method))
}

fn unsupported(parts: &Parts) -> ProxyError {
    let path: String = parts.uri.path().chars().take(200).collect();
    ProxyError::UnsupportedPath { method: parts.method.to_string(), path }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    fn read(path: &str, body: &str, budget: &Arc<BodyBudget>) -> Result<Inbound, ProxyError> {
        let (parts, ()) = http::Request::post(path).body(()).unwrap().into_parts();
        let body = http_body_util::Full::new(Bytes::from(body.to_owned()));
        let server = ServerSettings { body_limit: 1024, max_buffered_bodies: 1536, ..ServerSettings::default() };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(Inbound::read(parts, body, &server, budget))
    }

    fn inbound(body: &str) -> Result<Inbound, ProxyError> {
        read("/v1/chat/completions", body, &Arc::default())
    }

    fn flat(mut body: AttemptBody) -> String {
        String::from_utf8(body.copy_to_bytes(body.remaining()).to_vec()).unwrap()
    }

    #[test]
    fn rewrites_only_the_model_value() {
        let body = r#"{"z":1.000000000000000000001,"model" : "fast","messages":[{"content":"héllo \u00e9 🚀"}],"a":{"model":"inner"}}"#;
        let i = inbound(body).unwrap();
        assert_eq!(i.alias, "fast");
        let out = i.body_for("gemini-2.5-\"flash\"", &[]);
        let expected = r#"{"z":1.000000000000000000001,"model" : "gemini-2.5-\"flash\"","messages":[{"content":"héllo \u00e9 🚀"}],"a":{"model":"inner"}}"#;
        assert_eq!(flat(out), expected);
    }

    #[test]
    fn attempts_share_the_client_buffer() {
        let i = inbound(r#"{"model":"fast","messages":[]}"#).unwrap();
        let (a, b) = (i.body_for("up", &[]), i.body_for("other", &[]));
        for body in [&a, &b] {
            assert_eq!(body.pieces()[0].as_ptr(), i.body.as_ptr());
            assert_eq!(body.pieces()[2].as_ptr(), i.body[i.body.len() - 15..].as_ptr());
        }
        assert_eq!(flat(b), r#"{"model":"other","messages":[]}"#);
    }

    #[test]
    fn the_budget_is_held_until_the_last_attempt_body_is_dropped() {
        let budget = Arc::new(BodyBudget::default());
        let body = format!(r#"{{"model":"m","x":"{}"}}"#, "x".repeat(900));
        let first = read("/v1/chat/completions", &body, &budget).unwrap();
        assert!(budget.held() >= body.len());
        assert!(matches!(read("/v1/chat/completions", &body, &budget), Err(ProxyError::BodyBudgetExhausted)));
        let attempt = first.body_for("up", &[]);
        drop(first);
        assert!(budget.held() >= body.len(), "an attempt still holds the buffer");
        drop(attempt);
        assert_eq!(budget.held(), 0);
        assert!(read("/v1/chat/completions", &body, &budget).is_ok());
    }

    #[test]
    fn escaped_alias_is_decoded() {
        let i = inbound(r#"{"model":"a\u002fb"}"#).unwrap();
        assert_eq!(i.alias, "a/b");
    }

    #[test]
    fn bad_bodies_are_clear_errors() {
        assert!(matches!(inbound("not json"), Err(ProxyError::InvalidJson(_))));
        assert!(matches!(inbound("[1,2]"), Err(ProxyError::NotAnObject)));
        assert!(matches!(inbound("{}"), Err(ProxyError::MissingModel)));
        assert!(matches!(inbound(""), Err(ProxyError::MissingModel)));
        assert!(matches!(inbound(r#"{"model":5}"#), Err(ProxyError::ModelNotString)));
        assert!(matches!(inbound(r#"{"model":"a","model":"b"}"#), Err(ProxyError::InvalidJson(_))));
        assert!(matches!(inbound(r#"{"model":"a"} trailing"#), Err(ProxyError::InvalidJson(_))));
        let big = format!(r#"{{"model":"a","x":"{}"}}"#, "x".repeat(2000));
        assert!(matches!(inbound(&big), Err(ProxyError::BodyTooLarge { limit: 1024 })));
    }

    #[test]
    fn paths_that_could_leave_the_base_are_refused() {
        for path in [
            "/v1/../../tenant-b/v1/chat/completions",
            "/v1/./chat/completions",
            "/v1/%2e%2e/x",
            "/v1/%2E%2e/x",
            "/v1/.%2e/x",
            "/v1/%2e/x",
            "/v1/%252e%252e/x",
            "/v1/..;/x",
            "/v1//chat/completions",
            "/v1/chat%2fcompletions",
            "/v1/chat%5Ccompletions",
            "/v1/chat%00/completions",
            "/v1beta/models/gemini-2.5-flash:generateContent/../../files",
            "/v1beta/models/gemini-2.5-flash:generateContent/files",
            "/v1beta/models/gemini-2.5-flash:generate.Content",
        ] {
            assert!(matches!(check_path(path).and_then(|()| inbound_at(path)), Err(ProxyError::UnsafePath)), "{path}");
        }
        for path in ["/", "/v1/chat/completions", "/v1/chat/completions/", "/v1/files/file-abc.jsonl", "/v1/a..b/.c"] {
            assert!(check_path(path).is_ok(), "{path}");
        }
    }

    /// `safe_segment` as it was before it checked undecodable segments in place: it
    /// copied and decoded every segment three times over.
    fn safe_segment_decoding_copies(segment: &str) -> bool {
        if segment.is_empty() || segment.contains('\\') {
            return false;
        }
        let mut decoded = segment.as_bytes().to_vec();
        for _ in 0..3 {
            let before_param = decoded.split(|&b| b == b';').next().unwrap_or_default();
            let is_dot = |s: &[u8]| matches!(s, b"." | b"..");
            if is_dot(&decoded)
                || is_dot(before_param)
                || decoded.iter().any(|&b| b == b'/' || b == b'\\' || b.is_ascii_control())
            {
                return false;
            }
            let next: Vec<u8> = percent_encoding::percent_decode(&decoded).collect();
            if next == decoded {
                return true;
            }
            decoded = next;
        }
        false
    }

    proptest::proptest! {
        #[test]
        fn checking_in_place_agrees_with_decoding_copies(segment in "([.;%/\\\\a-f0-9A-F]|%2[eEfF]|%25|%5[cC]|%00){0,12}") {
            proptest::prop_assert_eq!(safe_segment(&segment), safe_segment_decoding_copies(&segment));
        }
    }

    fn inbound_at(path: &str) -> Result<Inbound, ProxyError> {
        read(path, r#"{"model":"m"}"#, &Arc::default())
    }

    #[test]
    fn gemini_native_paths() {
        assert_eq!(
            split_gemini("gemini-2.5-flash:streamGenerateContent"),
            Some(("gemini-2.5-flash", "streamGenerateContent"))
        );
        assert_eq!(split_gemini("nomethod"), None);
        let i = inbound_at("/v1beta/models/a%20b%zz:generateContent").unwrap();
        assert_eq!(i.alias, "a b%zz");
        assert_eq!(i.api, Api::GeminiNative { method: "generateContent".into() });
    }
}
