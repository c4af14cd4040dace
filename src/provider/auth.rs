//! The one place a key's value is read: turning a [`Secret`] into auth headers.
//!
//! Headers are built once per snapshot (so a key with characters HTTP cannot carry is
//! rejected at load time, not per request) and marked sensitive, which keeps them out
//! of HPACK tables and of `http`'s own `Debug` output.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};

use super::AuthStyle;
use crate::secret::Secret;

const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const API_KEY: HeaderName = HeaderName::from_static("api-key");
const X_GOOG_API_KEY: HeaderName = HeaderName::from_static("x-goog-api-key");
const ANTHROPIC_VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const DEFAULT_ANTHROPIC_VERSION: HeaderValue = HeaderValue::from_static("2023-06-01");

/// The key name of the one endpoint a deployment without keys gets (a local server
/// that needs none): shown in status, metrics and `x-keyrelay-key`.
pub const NO_KEY: &str = "no-key";

/// Prepared credentials for one endpoint. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Auth {
    style: AuthStyle,
    /// `None`: a deployment without a key; nothing is injected.
    headers: Option<Headers>,
}

#[derive(Clone)]
struct Headers {
    /// The header for OpenAI-format paths.
    primary: (HeaderName, HeaderValue),
    /// `x-goog-api-key`, for Gemini-native paths.
    goog: HeaderValue,
}

/// A key that cannot be sent in an HTTP header. Carries no part of the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the key contains characters that cannot be sent in an HTTP header")]
pub struct InvalidKey;

impl Auth {
    pub fn new(style: AuthStyle, secret: &Secret) -> Result<Self, InvalidKey> {
        let raw = secret.expose();
        let sensitive = |v: &str| {
            let mut value = HeaderValue::from_str(v).map_err(|_| InvalidKey)?;
            value.set_sensitive(true);
            Ok::<_, InvalidKey>(value)
        };
        let primary = match style {
            AuthStyle::Bearer => (AUTHORIZATION, sensitive(&format!("Bearer {raw}"))?),
            AuthStyle::Anthropic => (X_API_KEY, sensitive(raw)?),
            AuthStyle::AzureApiKey => (API_KEY, sensitive(raw)?),
        };
        Ok(Auth { style, headers: Some(Headers { primary, goog: sensitive(raw)? }) })
    }

    /// Credentials of a deployment that has no key: no header is set at all (the
    /// client's own were stripped already).
    pub fn none(style: AuthStyle) -> Self {
        Auth { style, headers: None }
    }

    /// Sets this endpoint's credentials on an upstream request whose client
    /// credentials were already stripped.
    pub fn apply(&self, headers: &mut HeaderMap, gemini_native: bool) {
        let Some(own) = &self.headers else { return };
        if gemini_native {
            headers.insert(X_GOOG_API_KEY, own.goog.clone());
            return;
        }
        headers.insert(own.primary.0.clone(), own.primary.1.clone());
        if self.style == AuthStyle::Anthropic && !headers.contains_key(ANTHROPIC_VERSION) {
            headers.insert(ANTHROPIC_VERSION, DEFAULT_ANTHROPIC_VERSION);
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = self.headers.as_ref().map(|h| &h.primary.0);
        f.debug_struct("Auth").field("style", &self.style).field("header", &header).finish_non_exhaustive()
    }
}

/// Every header a client may use to send its own credentials; all are removed before
/// the endpoint's key is injected.
pub const CLIENT_CREDENTIAL_HEADERS: [HeaderName; 5] =
    [AUTHORIZATION, X_API_KEY, API_KEY, X_GOOG_API_KEY, http::header::PROXY_AUTHORIZATION];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_anthropic_azure_and_goog() {
        let s = Secret::new("sk-abc");
        let mut h = HeaderMap::new();
        Auth::new(AuthStyle::Bearer, &s).unwrap().apply(&mut h, false);
        assert_eq!(h[AUTHORIZATION], "Bearer sk-abc");
        assert!(h[AUTHORIZATION].is_sensitive());

        let mut h = HeaderMap::new();
        Auth::new(AuthStyle::Anthropic, &s).unwrap().apply(&mut h, false);
        assert_eq!(h["x-api-key"], "sk-abc");
        assert_eq!(h["anthropic-version"], "2023-06-01");

        let mut h = HeaderMap::new();
        h.insert(ANTHROPIC_VERSION, HeaderValue::from_static("2024-01-01"));
        Auth::new(AuthStyle::Anthropic, &s).unwrap().apply(&mut h, false);
        assert_eq!(h["anthropic-version"], "2024-01-01");

        let mut h = HeaderMap::new();
        Auth::new(AuthStyle::AzureApiKey, &s).unwrap().apply(&mut h, false);
        assert_eq!(h["api-key"], "sk-abc");

        let mut h = HeaderMap::new();
        Auth::new(AuthStyle::Bearer, &s).unwrap().apply(&mut h, true);
        assert_eq!(h["x-goog-api-key"], "sk-abc");
        assert!(!h.contains_key(AUTHORIZATION));
    }

    #[test]
    fn no_key_sets_nothing() {
        let mut h = HeaderMap::new();
        Auth::none(AuthStyle::Anthropic).apply(&mut h, false);
        Auth::none(AuthStyle::Bearer).apply(&mut h, true);
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn debug_redacts_and_bad_keys_rejected() {
        let a = Auth::new(AuthStyle::Bearer, &Secret::new("sk-topsecret")).unwrap();
        assert!(!format!("{a:?}").contains("topsecret"));
        assert_eq!(Auth::new(AuthStyle::Bearer, &Secret::new("bad\nkey")).unwrap_err(), InvalidKey);
    }
}
