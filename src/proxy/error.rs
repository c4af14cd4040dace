//! The proxy's error boundary: every way a request can fail before an upstream
//! response is passed through, and the one place those map to HTTP statuses.
//!
//! Client messages are generic and in OpenAI's error shape, so SDKs surface them
//! cleanly. They never carry key values, upstream URLs or internal details.

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::body::{full, ProxyBody};
use crate::provider::refusal::KeyRefusal;

/// Why keyrelay itself answered instead of an upstream.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body must be a JSON object")]
    NotAnObject,
    #[error("request body has no \"model\" field (a form: no `model` part); keyrelay routes requests by model")]
    MissingModel,
    #[error("a multipart/form-data body needs a boundary parameter in its content-type")]
    FormWithoutBoundary,
    #[error("\"model\" must be a string")]
    ModelNotString,
    #[error("the model `{0}` does not exist")]
    UnknownModel(String),
    #[error("model `{alias}` has no deployment that serves {api}")]
    NoDeploymentForApi { alias: String, api: &'static str },
    /// Every entry of the alias is one keyrelay cannot serve (a LiteLLM provider that
    /// needs request signing, ...): `reasons` says why, from the config.
    #[error("model `{alias}` is configured, but keyrelay cannot serve it: {}", .reasons.join("; "))]
    NotServable { alias: String, reasons: Vec<String> },
    /// Every deployment's `model_info.mode` names another kind of endpoint.
    #[error("model `{alias}` has no deployment that serves {endpoint} (its deployments' model_info.mode: {modes})")]
    NoDeploymentForMode { alias: String, endpoint: &'static str, modes: String },
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body was not received in time")]
    BodyTimeout,
    #[error("the request body could not be read")]
    BodyRead,
    #[error("{method} {path} is not an API keyrelay routes")]
    UnsupportedPath { method: String, path: String },
    #[error("all keys for model `{alias}` are rate limited; retry later")]
    AllCoolingDown { alias: String, retry_after: Duration },
    /// Every key that could serve the request is refused by its provider. No
    /// `retry-after`: nothing says when that ends; someone must rotate keys or pay.
    #[error("{}", refused_message(.alias, .refused))]
    KeysRefused { alias: String, refused: Vec<(String, KeyRefusal)> },
    #[error("the upstream provider could not be reached")]
    UpstreamConnect,
    #[error("the upstream provider did not answer in time")]
    UpstreamTimeout,
    /// The config `run` started with (or its latest version) does not load: nothing is
    /// routed until one does. Holds a summary of the errors.
    #[error("keyrelay has no valid configuration, so it sends nothing upstream: {0}")]
    NotConfigured(String),
    #[error("the request path must not contain dot segments, empty segments or encoded slashes")]
    UnsafePath,
    #[error("keyrelay is holding as many request bodies as it may; retry shortly")]
    BodyBudgetExhausted,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::InvalidJson(_)
            | ProxyError::NotAnObject
            | ProxyError::MissingModel
            | ProxyError::ModelNotString
            | ProxyError::FormWithoutBoundary => StatusCode::BAD_REQUEST,
            ProxyError::UnknownModel(_) | ProxyError::UnsupportedPath { .. } => StatusCode::NOT_FOUND,
            ProxyError::NoDeploymentForApi { .. } | ProxyError::NoDeploymentForMode { .. } => StatusCode::BAD_REQUEST,
            ProxyError::NotServable { .. } => StatusCode::NOT_IMPLEMENTED,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::BodyRead => StatusCode::BAD_REQUEST,
            ProxyError::AllCoolingDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::KeysRefused { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UpstreamConnect => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::NotConfigured(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UnsafePath => StatusCode::BAD_REQUEST,
            ProxyError::BodyBudgetExhausted => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The error's code (`rate_limit_exceeded`, `model_not_found`...): the client's
    /// `error.code`, and the trace's `error.type`.
    pub fn code(&self) -> &'static str {
        self.kind().1
    }

    /// OpenAI's `error.type` and `error.code` for this error.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ProxyError::InvalidJson(_)
            | ProxyError::NotAnObject
            | ProxyError::BodyRead
            | ProxyError::FormWithoutBoundary => ("invalid_request_error", "invalid_body"),
            ProxyError::MissingModel | ProxyError::ModelNotString => ("invalid_request_error", "invalid_model"),
            ProxyError::UnknownModel(_) => ("invalid_request_error", "model_not_found"),
            ProxyError::NoDeploymentForApi { .. } | ProxyError::NoDeploymentForMode { .. } => {
                ("invalid_request_error", "unsupported_api")
            }
            ProxyError::NotServable { .. } => ("invalid_request_error", "unsupported_provider"),
            ProxyError::UnsupportedPath { .. } => ("invalid_request_error", "unknown_url"),
            ProxyError::BodyTooLarge { .. } => ("invalid_request_error", "request_too_large"),
            ProxyError::BodyTimeout => ("invalid_request_error", "request_timeout"),
            ProxyError::AllCoolingDown { .. } => ("rate_limit_error", "rate_limit_exceeded"),
            ProxyError::KeysRefused { .. } => ("api_error", "keys_refused"),
            ProxyError::UpstreamConnect => ("api_error", "upstream_unavailable"),
            ProxyError::UpstreamTimeout => ("api_error", "upstream_timeout"),
            ProxyError::NotConfigured(_) => ("api_error", "config_invalid"),
            ProxyError::UnsafePath => ("invalid_request_error", "invalid_path"),
            ProxyError::BodyBudgetExhausted => ("api_error", "overloaded"),
        }
    }

    /// The response the client sees.
    pub fn into_response(self) -> Response<ProxyBody> {
        let (kind, code) = self.kind();
        let mut message = self.to_string();
        if message.len() > 300 {
            let cut = (0..=300).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
            message.truncate(cut);
            message.push('…');
        }
        let mut response = error_response(self.status(), &message, kind, code);
        if let ProxyError::AllCoolingDown { retry_after, .. } = &self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let ProxyError::BodyBudgetExhausted = &self {
            // Bodies in memory are freed as their requests end, typically within seconds.
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// "every key for model `m` is refused by its provider: KA, KB invalid or revoked; KC
/// out of credits". Keys by name, a few per reason.
fn refused_message(alias: &str, refused: &[(String, KeyRefusal)]) -> String {
    const NAMED: usize = 4;
    let mut parts = Vec::new();
    for reason in KeyRefusal::ALL {
        let names: Vec<&str> = refused.iter().filter(|(_, r)| *r == reason).map(|(n, _)| n.as_str()).collect();
        if names.is_empty() {
            continue;
        }
        let mut listed = names.iter().take(NAMED).copied().collect::<Vec<_>>().join(", ");
        if names.len() > NAMED {
            listed.push_str(&format!(" and {} more", names.len() - NAMED));
        }
        parts.push(format!("{listed} {}", reason.describe()));
    }
    format!("every key for model `{alias}` is refused by its provider: {}", parts.join("; "))
}

/// A response in OpenAI's error shape: `{"error":{"message","type","param","code"}}`.
pub fn error_response(status: StatusCode, message: &str, kind: &str, code: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_keys_are_a_503_that_names_them_and_why_without_retry_after() {
        let refused = ["K1", "K2", "K3", "K4", "K5", "K6"].map(|k| (k.to_owned(), KeyRefusal::Invalid));
        let mut refused = refused.to_vec();
        refused.push(("KC".to_owned(), KeyRefusal::OutOfCredits));
        let e = ProxyError::KeysRefused { alias: "m".to_owned(), refused };
        assert_eq!(
            e.to_string(),
            "every key for model `m` is refused by its provider: K1, K2, K3, K4 and 2 more invalid or revoked; KC out of credits"
        );
        assert_eq!(e.code(), "keys_refused");
        let response = e.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }
}
