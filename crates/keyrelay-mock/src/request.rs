//! Reading a request: which endpoint, which key, which model, streaming or not.
//! Nothing here fails: a malformed request is described, and answered later with the
//! error a real provider would give.

use http::{HeaderMap, Method};
use keyrelay::proxy::multipart;

/// The API operation a path names (matched by suffix, so any base prefix works).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Chat,
    Completions,
    Embeddings,
    /// Anthropic native `/messages`.
    Messages,
    /// `GET .../models`.
    Models,
    /// OpenRouter's `GET .../key`: the key's own limits and usage.
    KeyInfo,
    /// Gemini native `models/{model}:generateContent` / `:streamGenerateContent`.
    GeminiGenerate,
    /// OpenAI's Responses API, `.../responses`.
    Responses,
    Moderations,
    /// `.../images/generations`, `/edits`, `/variations` (the last two: forms).
    Images,
    /// `.../rerank` (Cohere's shape, as LiteLLM serves it).
    Rerank,
    /// `.../audio/transcriptions` (a form).
    Transcriptions,
    /// `.../audio/translations` (a form).
    Translations,
    NotFound,
}

/// Which provider's error body shape a path gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Endpoint {
    pub(crate) fn family(self) -> Family {
        match self {
            Endpoint::Messages => Family::Anthropic,
            Endpoint::GeminiGenerate => Family::Gemini,
            _ => Family::OpenAi,
        }
    }
}

/// What the mock understood of a request.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub endpoint: Endpoint,
    pub key: Option<String>,
    pub model: Option<String>,
    pub stream: bool,
    /// `Some(true)` when the endpoint takes a JSON body and got a JSON object.
    pub json_ok: Option<bool>,
    /// The body is a `multipart/form-data` form (its `model` is a field).
    pub form: bool,
}

/// Describes a request from its head and complete body.
pub(crate) fn parse(method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Parsed {
    let (endpoint, path_model, path_stream) = classify(method, path);
    let key = extract_key(headers, query);
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if multipart::is_form(content_type) {
        let model = multipart::boundary(content_type).and_then(|b| {
            let multipart::Scan::Found(span) = multipart::find_model(body, b) else {
                return None;
            };
            Some(String::from_utf8_lossy(&body[span]).trim().to_owned())
        });
        return Parsed { endpoint, key, model, stream: false, json_ok: None, form: true };
    }
    let takes_json = !matches!(endpoint, Endpoint::Models | Endpoint::KeyInfo | Endpoint::NotFound);
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let object = json.as_ref().and_then(|v| v.as_object());
    let model = path_model.or_else(|| object.and_then(|o| o.get("model")).and_then(|m| m.as_str()).map(str::to_string));
    let stream = path_stream || object.and_then(|o| o.get("stream")).and_then(|s| s.as_bool()) == Some(true);
    Parsed { endpoint, key, model, stream, json_ok: takes_json.then_some(object.is_some()), form: false }
}

/// Endpoint, model from the path (Gemini native), streaming implied by the path.
fn classify(method: &Method, path: &str) -> (Endpoint, Option<String>, bool) {
    let path = path.trim_end_matches('/');
    let last = path.rsplit('/').next().unwrap_or_default();
    if *method == Method::POST {
        if let Some((model, action)) = last.split_once(':') {
            let is_models = path.strip_suffix(last).is_some_and(|p| p.ends_with("/models/"));
            let stream = action == "streamGenerateContent";
            if is_models && !model.is_empty() && (stream || action == "generateContent") {
                return (Endpoint::GeminiGenerate, Some(model.to_string()), stream);
            }
        }
        let endpoint = if path.ends_with("/chat/completions") {
            Endpoint::Chat
        } else if path.ends_with("/completions") {
            Endpoint::Completions
        } else if path.ends_with("/embeddings") {
            Endpoint::Embeddings
        } else if path.ends_with("/messages") {
            Endpoint::Messages
        } else if path.ends_with("/responses") {
            Endpoint::Responses
        } else if path.ends_with("/moderations") {
            Endpoint::Moderations
        } else if ["/images/generations", "/images/edits", "/images/variations"].iter().any(|p| path.ends_with(p)) {
            Endpoint::Images
        } else if path.ends_with("/rerank") {
            Endpoint::Rerank
        } else if path.ends_with("/audio/transcriptions") {
            Endpoint::Transcriptions
        } else if path.ends_with("/audio/translations") {
            Endpoint::Translations
        } else {
            Endpoint::NotFound
        };
        return (endpoint, None, false);
    }
    if *method == Method::GET && path.ends_with("/models") {
        return (Endpoint::Models, None, false);
    }
    if *method == Method::GET && path.ends_with("/key") {
        return (Endpoint::KeyInfo, None, false);
    }
    (Endpoint::NotFound, None, false)
}

/// The key, from the first of: `Authorization: Bearer`, `x-api-key`, `api-key`,
/// `x-goog-api-key`, query `key=`. Empty values count as absent.
pub(crate) fn extract_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let bearer = header("authorization").and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
    });
    let from_headers = [bearer, header("x-api-key"), header("api-key"), header("x-goog-api-key")]
        .into_iter()
        .flatten()
        .find(|k| !k.is_empty())
        .map(str::to_string);
    from_headers.or_else(|| {
        query?
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, value)| *name == "key" && !value.is_empty())
            .map(|(_, value)| percent_decode(value))
    })
}

/// Minimal `%XX` / `+` decoding for a query value; malformed escapes stay as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn classifies_paths_by_suffix() {
        let post = |p: &str| classify(&Method::POST, p).0;
        assert_eq!(post("/v1/chat/completions"), Endpoint::Chat);
        assert_eq!(post("/openai/v1/chat/completions"), Endpoint::Chat);
        assert_eq!(post("/v1/completions"), Endpoint::Completions);
        assert_eq!(post("/v1/embeddings"), Endpoint::Embeddings);
        assert_eq!(post("/v1/messages"), Endpoint::Messages);
        assert_eq!(post("/v1/nope"), Endpoint::NotFound);
        assert_eq!(post("/v1/responses"), Endpoint::Responses);
        assert_eq!(post("/v1/images/edits"), Endpoint::Images);
        assert_eq!(post("/v1/audio/translations"), Endpoint::Translations);
        assert_eq!(post("/v1/rerank"), Endpoint::Rerank);
        assert_eq!(classify(&Method::GET, "/v1/models").0, Endpoint::Models);
        assert_eq!(classify(&Method::GET, "/v1/chat/completions").0, Endpoint::NotFound);
        let (e, m, s) = classify(&Method::POST, "/v1beta/models/gemini-2.5-flash:streamGenerateContent");
        assert_eq!((e, m.as_deref(), s), (Endpoint::GeminiGenerate, Some("gemini-2.5-flash"), true));
        assert_eq!(post("/v1beta/models/:generateContent"), Endpoint::NotFound);
        assert_eq!(post("/v1beta/models/x:explode"), Endpoint::NotFound);
    }

    #[test]
    fn extracts_keys_in_order() {
        let h = headers(&[("authorization", "Bearer k1"), ("x-api-key", "k2")]);
        assert_eq!(extract_key(&h, None).as_deref(), Some("k1"));
        assert_eq!(extract_key(&headers(&[("x-api-key", "k2")]), None).as_deref(), Some("k2"));
        assert_eq!(extract_key(&headers(&[("api-key", "k3")]), None).as_deref(), Some("k3"));
        assert_eq!(extract_key(&headers(&[("x-goog-api-key", "k4")]), None).as_deref(), Some("k4"));
        assert_eq!(extract_key(&HeaderMap::new(), Some("alt=sse&key=k%2B5")).as_deref(), Some("k+5"));
        assert_eq!(extract_key(&headers(&[("authorization", "Basic xx")]), Some("key=")), None);
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
    }

    #[test]
    fn parses_model_and_stream_without_failing() {
        let p =
            parse(&Method::POST, "/v1/chat/completions", None, &HeaderMap::new(), br#"{"model":"m","stream":true}"#);
        assert_eq!((p.model.as_deref(), p.stream, p.json_ok), (Some("m"), true, Some(true)));
        let p = parse(&Method::POST, "/v1/chat/completions", None, &HeaderMap::new(), b"\xff not json");
        assert_eq!((p.model, p.stream, p.json_ok), (None, false, Some(false)));
        let p = parse(&Method::POST, "/v1/chat/completions", None, &HeaderMap::new(), b"[1]");
        assert_eq!(p.json_ok, Some(false));
        let p = parse(&Method::GET, "/v1/models", None, &HeaderMap::new(), b"");
        assert_eq!(p.json_ok, None);
    }
}
