//! The cheapest authenticated call each provider has: a request that proves a key
//! works and costs no tokens, for rotation pre-flight and active health checks
//! ([`crate::lifecycle`]). One builder for every provider kind, from the same catalog
//! (base URL shape and auth style) requests use, and one reading of the answer.
//!
//! | provider | probe |
//! |---|---|
//! | OpenAI, Groq, Cerebras, Mistral, ... (OpenAI-compatible) | `GET {base}/models` |
//! | Anthropic | `GET /v1/models` with `x-api-key` and `anthropic-version` |
//! | Gemini | `GET /v1beta/models` with `x-goog-api-key` |
//! | OpenRouter | `GET /api/v1/key` (the key's own info: limit, usage) |
//! | Azure OpenAI | `GET {resource}/openai/models?api-version=...` (v1 API: `/openai/v1/models`) |
//! | Azure AI Foundry | `GET {base}/info?api-version=...` on `/models`, else `{base}/models` |

use http::header::HeaderMap;
use http::{StatusCode, Uri};

use super::catalog::Shape;
use super::refusal::{self, KeyRefusal};
use super::{Auth, ProviderKind};

/// What a probe's answer says about the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The provider knows the key (2xx, or a 429 that is only a rate limit).
    Accepted,
    /// The provider refuses the key itself.
    Refused(KeyRefusal),
    /// No answer: connect error, timeout, 5xx.
    Unreachable,
    /// An answer that says nothing about the key (404: no such endpoint here; a 403
    /// for a missing scope: a restricted key that may still chat).
    Inconclusive,
}

impl Verdict {
    /// The `outcome` label of `keyrelay_probes_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Refused(KeyRefusal::Invalid) => "refused",
            Verdict::Refused(KeyRefusal::OutOfCredits) => "out_of_credits",
            Verdict::Unreachable => "unreachable",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The probe's URL for a deployment of `provider` at `base` (already shaped, as
/// requests use it) with Azure's `api_version`.
pub fn probe_uri(provider: ProviderKind, base: &Uri, api_version: Option<&str>) -> Result<Uri, String> {
    let path = base.path().trim_end_matches('/');
    let (path, version) = match provider.spec().shape {
        Shape::Azure => match path.find("/openai/deployments/") {
            Some(at) => (format!("{}/openai/models", &path[..at]), api_version),
            // The v1 API: the model list is OpenAI's.
            None => (format!("{path}/models"), api_version),
        },
        Shape::AzureAi if path.ends_with("/models") => (format!("{path}/info"), api_version),
        _ if provider == ProviderKind::Gemini => {
            // Its OpenAI-compatible base ends in `/openai`; the native list is beside it.
            (format!("{}/models", path.strip_suffix("/openai").unwrap_or(path)), None)
        }
        _ if provider == ProviderKind::OpenRouter => (format!("{path}/key"), None),
        _ => (format!("{path}/models"), api_version.filter(|_| provider.takes_api_version())),
    };
    let path_and_query = match version {
        Some(v) => format!("{path}?api-version={}", urlencoding(v)),
        None => path,
    };
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse().map_err(|e| format!("probe URL: {e}"))?);
    Uri::from_parts(parts).map_err(|e| format!("probe URL: {e}"))
}

/// The probe's headers: the key as `auth` injects it (Gemini: `x-goog-api-key`, as its
/// native model list wants).
pub fn probe_headers(provider: ProviderKind, auth: &Auth) -> HeaderMap {
    let mut headers = HeaderMap::new();
    auth.apply(&mut headers, provider == ProviderKind::Gemini);
    headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json"));
    headers
}

/// Reads an answer (`body`: its first bytes).
pub fn verdict(status: StatusCode, body: &[u8]) -> Verdict {
    if status.is_success() {
        return Verdict::Accepted;
    }
    if let Some(reason) = refusal::classify(status, body) {
        return Verdict::Refused(reason);
    }
    match status.as_u16() {
        401 => Verdict::Refused(KeyRefusal::Invalid),
        403 => {
            let text = String::from_utf8_lossy(body).to_ascii_lowercase();
            if text.contains("scope") || text.contains("permission") {
                Verdict::Inconclusive
            } else {
                Verdict::Refused(KeyRefusal::Invalid)
            }
        }
        429 => Verdict::Accepted,
        500..=599 => Verdict::Unreachable,
        _ => Verdict::Inconclusive,
    }
}

/// Percent-encodes what a query value must not carry raw (a checked `api_version`
/// has none of it, but this keeps the URL valid whatever it holds).
fn urlencoding(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn uri(provider: &str, base: &str, version: Option<&str>) -> String {
        let p = ProviderKind::from_name(provider).unwrap();
        probe_uri(p, &base.parse().unwrap(), version).unwrap().to_string()
    }

    #[test]
    fn each_provider_gets_its_token_free_endpoint() {
        assert_eq!(uri("openai", "https://api.openai.com/v1", None), "https://api.openai.com/v1/models");
        assert_eq!(uri("groq", "https://api.groq.com/openai/v1", None), "https://api.groq.com/openai/v1/models");
        assert_eq!(uri("cerebras", "https://api.cerebras.ai/v1", None), "https://api.cerebras.ai/v1/models");
        assert_eq!(uri("anthropic", "https://api.anthropic.com/v1", None), "https://api.anthropic.com/v1/models");
        assert_eq!(
            uri("gemini", "https://generativelanguage.googleapis.com/v1beta/openai", None),
            "https://generativelanguage.googleapis.com/v1beta/models"
        );
        assert_eq!(uri("openrouter", "https://openrouter.ai/api/v1", None), "https://openrouter.ai/api/v1/key");
        assert_eq!(
            uri("azure", "https://r.openai.azure.com/openai/deployments/gpt4o", Some("2024-10-21")),
            "https://r.openai.azure.com/openai/models?api-version=2024-10-21"
        );
        assert_eq!(
            uri("azure", "https://r.openai.azure.com/openai/v1", None),
            "https://r.openai.azure.com/openai/v1/models"
        );
    }

    #[test]
    fn headers_are_the_providers_auth() {
        let auth = |p: ProviderKind| Auth::new(p.auth_style(), &Secret::new("sk-x")).unwrap();
        let h = probe_headers(ProviderKind::Anthropic, &auth(ProviderKind::Anthropic));
        assert_eq!(
            (&h["x-api-key"], &h["anthropic-version"]),
            (&"sk-x".parse::<http::HeaderValue>().unwrap(), &"2023-06-01".parse::<http::HeaderValue>().unwrap())
        );
        let h = probe_headers(ProviderKind::Gemini, &auth(ProviderKind::Gemini));
        assert_eq!(h["x-goog-api-key"], "sk-x");
        let h = probe_headers(ProviderKind::Azure, &auth(ProviderKind::Azure));
        assert_eq!(h["api-key"], "sk-x");
        let h = probe_headers(ProviderKind::OpenAi, &auth(ProviderKind::OpenAi));
        assert_eq!(h["authorization"], "Bearer sk-x");
    }

    #[test]
    fn answers_read_as_verdicts() {
        let v = |status: u16, body: &str| verdict(StatusCode::from_u16(status).unwrap(), body.as_bytes());
        assert_eq!(v(200, "{}"), Verdict::Accepted);
        assert_eq!(v(401, "{}"), Verdict::Refused(KeyRefusal::Invalid));
        assert_eq!(v(403, r#"{"error":{"message":"forbidden"}}"#), Verdict::Refused(KeyRefusal::Invalid));
        assert_eq!(v(403, "Missing scopes: api.model.read"), Verdict::Inconclusive);
        assert_eq!(v(402, "{}"), Verdict::Refused(KeyRefusal::OutOfCredits));
        assert_eq!(v(429, r#"{"error":{"code":"insufficient_quota"}}"#), Verdict::Refused(KeyRefusal::OutOfCredits));
        assert_eq!(v(429, "slow down"), Verdict::Accepted);
        assert_eq!(v(503, ""), Verdict::Unreachable);
        assert_eq!(v(404, ""), Verdict::Inconclusive);
    }
}
