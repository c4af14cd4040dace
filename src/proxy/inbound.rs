//! Reading a client request: which API it speaks, which alias it names, and its body
//! (bounded in size and time).

use std::ops::Range;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::Method;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ProxyError;

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

/// A client request ready to be routed.
#[derive(Debug)]
pub struct Inbound {
    pub parts: Parts,
    pub api: Api,
    pub alias: String,
    pub body: Bytes,
    /// Byte range of the top-level `model` value (quotes included), if in the body.
    model_span: Option<Range<usize>>,
}

impl Inbound {
    /// Reads and classifies a request. `limit` bounds the body size, `timeout` the
    /// time the client may take to send it.
    pub async fn read<B>(parts: Parts, body: B, limit: usize, timeout: Duration) -> Result<Inbound, ProxyError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = parts.uri.path();
        let api = if let Some(rest) = path.strip_prefix("/v1beta/models/") {
            let (_, method) = split_gemini(rest).ok_or_else(|| unsupported(&parts))?;
            Api::GeminiNative { method: method.to_owned() }
        } else if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Api::AnthropicMessages
        } else if path.starts_with("/v1/") && parts.method == Method::POST {
            Api::OpenAi
        } else {
            return Err(unsupported(&parts));
        };
        if parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n > limit as u64)
        {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        let body = read_body(body, limit, timeout).await?;
        let (alias, model_span) = match &api {
            Api::GeminiNative { .. } => {
                let rest = parts.uri.path().strip_prefix("/v1beta/models/").unwrap_or_default();
                let (alias, _) = split_gemini(rest).ok_or_else(|| unsupported(&parts))?;
                (percent_decode(alias), None)
            }
            _ => {
                let (alias, span) = find_model(&body)?;
                (alias, Some(span))
            }
        };
        Ok(Inbound { parts, api, alias, body, model_span })
    }

    /// The body to send upstream: identical to the client's, byte for byte, except
    /// the `model` value, which becomes the deployment's upstream model.
    pub fn body_for(&self, upstream_model: &str) -> Bytes {
        let Some(span) = &self.model_span else { return self.body.clone() };
        let replacement = serde_json::Value::from(upstream_model).to_string();
        let mut out = BytesMut::with_capacity(self.body.len() + replacement.len());
        out.extend_from_slice(&self.body[..span.start]);
        out.extend_from_slice(replacement.as_bytes());
        out.extend_from_slice(&self.body[span.end..]);
        out.freeze()
    }
}

async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, ProxyError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ProxyError::BodyTimeout)?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ProxyError::BodyTooLarge { limit }),
        Err(_) => Err(ProxyError::BodyRead),
    }
}

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
}

/// Finds the top-level `model` string and where its JSON value sits in the body.
fn find_model(body: &[u8]) -> Result<(String, Range<usize>), ProxyError> {
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
    let parsed: ModelField<'_> = serde_json::from_slice(body).map_err(|e| ProxyError::InvalidJson(e.to_string()))?;
    let raw = parsed.model.ok_or(ProxyError::MissingModel)?;
    let alias: String = serde_json::from_str(raw.get()).map_err(|_| ProxyError::ModelNotString)?;
    // `raw` borrows from `body`, so its address tells where the value sits.
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    Ok((alias, start..start + raw.get().len()))
}

/// `gemini-2.5-flash:generateContent` -> (`gemini-2.5-flash`, `generateContent`).
fn split_gemini(rest: &str) -> Option<(&str, &str)> {
    let (model, method) = rest.rsplit_once(':')?;
    (!model.is_empty() && !method.is_empty() && !model.contains('/')).then_some((model, method))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unsupported(parts: &Parts) -> ProxyError {
    let path: String = parts.uri.path().chars().take(200).collect();
    ProxyError::UnsupportedPath { method: parts.method.to_string(), path }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound(body: &str) -> Result<Inbound, ProxyError> {
        let (parts, ()) = http::Request::post("/v1/chat/completions").body(()).unwrap().into_parts();
        let body = http_body_util::Full::new(Bytes::from(body.to_owned()));
        futures_lite_block(Inbound::read(parts, body, 1024, Duration::from_secs(1)))
    }

    fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
    }

    #[test]
    fn rewrites_only_the_model_value() {
        let body = r#"{"z":1.000000000000000000001,"model" : "fast","messages":[{"content":"héllo \u00e9 🚀"}],"a":{"model":"inner"}}"#;
        let i = inbound(body).unwrap();
        assert_eq!(i.alias, "fast");
        let out = i.body_for("gemini-2.5-\"flash\"");
        let expected = r#"{"z":1.000000000000000000001,"model" : "gemini-2.5-\"flash\"","messages":[{"content":"héllo \u00e9 🚀"}],"a":{"model":"inner"}}"#;
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
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
    fn gemini_native_paths() {
        assert_eq!(
            split_gemini("gemini-2.5-flash:streamGenerateContent"),
            Some(("gemini-2.5-flash", "streamGenerateContent"))
        );
        assert_eq!(split_gemini("nomethod"), None);
        assert_eq!(percent_decode("a%2Fb%zz"), "a/b%zz");
    }
}
