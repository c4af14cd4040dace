//! Per-deployment request options: body defaults, extra headers, timeouts, retries and
//! TLS verification, read from LiteLLM's `litellm_params` or a native deployment.
//!
//! Two aliases of one upstream model that differ only in `reasoning_effort` are two
//! deployments: these options are part of what makes a deployment.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use serde_yaml::Value;

use super::bounds::{self, Zero};
use super::lines::join_key;
use super::validate::Diags;
use super::walk::{count, entries, seconds, string};

/// What a deployment adds to, or changes about, each request it serves.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeploymentOptions {
    /// Top-level JSON members merged into a request body that lacks them, each key
    /// once, in the order written.
    pub body_defaults: Vec<BodyDefault>,
    /// Set on every upstream request (after the client's headers, before the key).
    pub extra_headers: HeaderMap,
    /// One attempt's budget until response headers, instead of `server.timeouts.attempt`.
    pub timeout: Option<Duration>,
    /// The same for requests with `"stream": true`.
    pub stream_timeout: Option<Duration>,
    /// LiteLLM `max_retries`: attempts at this deployment per request are at most
    /// `1 + max_retries` (within the alias's own attempt budget).
    pub max_retries: Option<u32>,
    pub tls: TlsProfile,
}

/// One default body member, serialized once when the config loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDefault {
    pub key: String,
    /// `"key":value`, ready to be spliced into a JSON object.
    pub member: Bytes,
}

/// How a deployment's upstream certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum TlsProfile {
    /// The built-in roots plus the process's `--upstream-ca`, if any.
    #[default]
    Default,
    /// The built-in roots plus this PEM bundle.
    CaBundle(PathBuf),
    /// `ssl_verify: false`: certificates are not checked at all.
    NoVerify,
}

/// The OpenAI request parameters LiteLLM forwards when they are written in
/// `litellm_params` (its `DEFAULT_CHAT_COMPLETION_PARAM_VALUES`, less routing-only ones).
pub(crate) const LITELLM_BODY_PARAMS: [&str; 29] = [
    "temperature",
    "top_p",
    "top_k",
    "n",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "modalities",
    "prediction",
    "audio",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "user",
    "response_format",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
    "verbosity",
    "thinking",
    "web_search_options",
    "service_tier",
    "safety_identifier",
    "functions",
    "function_call",
];

/// Headers a deployment may not set: keyrelay owns credentials, framing and its own.
fn reserved_header(name: &HeaderName) -> bool {
    const RESERVED: [&str; 14] = [
        "authorization",
        "x-api-key",
        "x-goog-api-key",
        "api-key",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "accept-encoding",
    ];
    RESERVED.contains(&name.as_str()) || name.as_str().starts_with("x-keyrelay-")
}

/// Options being read; `finish` turns them into [`DeploymentOptions`].
#[derive(Default)]
pub(crate) struct OptionsDraft {
    options: DeploymentOptions,
    /// Written directly (`temperature: 0.2`).
    direct: Vec<(String, serde_json::Value, String)>,
    /// Members of `extra_body`: they win over direct ones, as in the OpenAI SDK.
    extra_body: Vec<(String, serde_json::Value, String)>,
}

impl OptionsDraft {
    /// Reads one `litellm_params` key if it is a request option; `false` if it is not.
    pub(crate) fn read_litellm(&mut self, diags: &mut Diags<'_>, key: &str, value: &Value, at: &str) -> bool {
        match key {
            "extra_body" => {
                for (k, v) in entries(diags, value, at) {
                    let member_at = join_key(at, &k);
                    if k == "model" {
                        diags.warn(&member_at, "ignored: the model is the deployment's `model`");
                    } else if let Some(json) = to_json(diags, v, &member_at) {
                        self.extra_body.push((k, json, member_at));
                    }
                }
            }
            "extra_headers" => self.headers(diags, value, at),
            "timeout" => self.options.timeout = attempt_timeout(diags, value, at),
            "stream_timeout" => self.options.stream_timeout = attempt_timeout(diags, value, at),
            "max_retries" => self.options.max_retries = count::<u32>(diags, value, at, 0, bounds::NUM_RETRIES),
            "ssl_verify" => self.ssl_verify(diags, value, at),
            k if LITELLM_BODY_PARAMS.contains(&k) => {
                if let Some(json) = to_json(diags, value, at) {
                    self.direct.push((k.to_owned(), json, at.to_owned()));
                }
            }
            _ => return false,
        }
        true
    }

    /// Native `request_defaults:` (any top-level member), `extra_headers`,
    /// `timeout`, `stream_timeout`, `max_retries`, `ssl_verify` of one deployment.
    pub(crate) fn read_native(&mut self, diags: &mut Diags<'_>, path: &str, fields: NativeFields<'_>) {
        if let Some(defaults) = fields.request_defaults {
            let at = join_key(path, "request_defaults");
            for (k, v) in entries(diags, defaults, &at) {
                let member_at = join_key(&at, &k);
                if k == "model" {
                    diags.error(&member_at, "`model` cannot be a request default: it is the deployment's `model`");
                } else if let Some(json) = to_json(diags, v, &member_at) {
                    self.direct.push((k, json, member_at));
                }
            }
        }
        let simple = [
            ("extra_headers", fields.extra_headers),
            ("timeout", fields.timeout),
            ("stream_timeout", fields.stream_timeout),
            ("max_retries", fields.max_retries),
            ("ssl_verify", fields.ssl_verify),
        ];
        for (key, value) in simple {
            if let Some(value) = value {
                self.read_litellm(diags, key, value, &join_key(path, key));
            }
        }
    }

    fn headers(&mut self, diags: &mut Diags<'_>, value: &Value, at: &str) {
        for (name, v) in entries(diags, value, at) {
            let header_at = join_key(at, &name);
            let Some(text) = string(diags, v, &header_at) else { continue };
            let Ok(name) = HeaderName::from_bytes(name.trim().as_bytes()) else {
                diags.error(&header_at, "not a valid HTTP header name");
                continue;
            };
            if reserved_header(&name) {
                diags.error(&header_at, format!("{name} is set by keyrelay and cannot be an extra header"));
                continue;
            }
            match HeaderValue::from_str(&text) {
                Ok(value) if self.options.extra_headers.len() < MAX_EXTRA_HEADERS => {
                    self.options.extra_headers.insert(name, value);
                }
                Ok(_) => diags.error(at, format!("at most {MAX_EXTRA_HEADERS} extra headers")),
                Err(_) => diags.error(&header_at, "not a valid HTTP header value"),
            }
        }
    }

    fn ssl_verify(&mut self, diags: &mut Diags<'_>, value: &Value, at: &str) {
        self.options.tls = match value {
            Value::Bool(true) | Value::Null => TlsProfile::Default,
            Value::Bool(false) => TlsProfile::NoVerify,
            Value::String(s) if s.trim().eq_ignore_ascii_case("false") => TlsProfile::NoVerify,
            Value::String(s) if s.trim().eq_ignore_ascii_case("true") => TlsProfile::Default,
            Value::String(s) if !s.trim().is_empty() => TlsProfile::CaBundle(PathBuf::from(s.trim())),
            _ => {
                diags.error(at, "expected true, false or the path of a PEM CA bundle");
                return;
            }
        };
        if self.options.tls == TlsProfile::NoVerify {
            diags.warn(
                at,
                "ssl_verify: false: this deployment's TLS certificates are NOT verified; anyone on the \
                 path can read its keys and traffic. Use a CA bundle path instead",
            );
        }
    }

    /// The options, with defaults deduplicated (an `extra_body` member replaces a
    /// direct one of the same key) and bounded.
    pub(crate) fn finish(mut self, diags: &mut Diags<'_>, path: &str) -> DeploymentOptions {
        let mut merged: Vec<(String, serde_json::Value)> = Vec::new();
        for (key, json, _) in self.direct.into_iter().chain(self.extra_body) {
            match merged.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = json,
                None => merged.push((key, json)),
            }
        }
        if merged.len() > MAX_BODY_DEFAULTS {
            diags.error(path, format!("at most {MAX_BODY_DEFAULTS} request defaults per deployment"));
            return self.options;
        }
        let mut total = 0usize;
        for (key, json) in merged {
            let member = format!("{}:{json}", serde_json::Value::from(key.as_str()));
            total = total.saturating_add(member.len());
            self.options.body_defaults.push(BodyDefault { key, member: Bytes::from(member) });
        }
        if total > MAX_BODY_DEFAULTS_BYTES {
            diags.error(path, format!("request defaults take at most {MAX_BODY_DEFAULTS_BYTES} bytes of JSON"));
            self.options.body_defaults.clear();
        }
        self.options
    }
}

/// Native deployment fields that become options (raw, read like LiteLLM's).
#[derive(Default)]
pub(crate) struct NativeFields<'a> {
    pub request_defaults: Option<&'a Value>,
    pub extra_headers: Option<&'a Value>,
    pub timeout: Option<&'a Value>,
    pub stream_timeout: Option<&'a Value>,
    pub max_retries: Option<&'a Value>,
    pub ssl_verify: Option<&'a Value>,
}

const MAX_EXTRA_HEADERS: usize = 64;
const MAX_BODY_DEFAULTS: usize = 64;
const MAX_BODY_DEFAULTS_BYTES: usize = 64 * 1024;

fn attempt_timeout(diags: &mut Diags<'_>, value: &Value, at: &str) -> Option<Duration> {
    seconds(diags, value, at, bounds::REQUEST_TIMEOUT, Zero::Refused)
}

/// A YAML value as JSON; `null` means "not set" (LiteLLM drops `None` params).
fn to_json(diags: &mut Diags<'_>, value: &Value, at: &str) -> Option<serde_json::Value> {
    if value.is_null() {
        return None;
    }
    match serde_json::to_value(value) {
        Ok(json) => Some(json),
        Err(e) => {
            diags.error(at, format!("cannot be sent as JSON: {e}"));
            None
        }
    }
}
