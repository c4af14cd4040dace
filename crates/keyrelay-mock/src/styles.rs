//! Provider dialects: rate-limit headers, 429 bodies and error bodies, each exactly as
//! the provider spells them, so keyrelay's parsers are tested against the real shapes.

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use super::body::{self, MockBody};
use super::limits::{LimitKind, Quota};
use super::request::Family;
use super::timefmt;
use super::HeaderStyle;

fn set(headers: &mut HeaderMap, name: &'static str, value: impl ToString) {
    if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
        headers.insert(HeaderName::from_static(name), v);
    }
}

/// Header names (limit, remaining, reset) of one quota family.
type Names = [&'static str; 3];

/// Adds the style's rate-limit headers for `quota` (`limited`: this is a 429).
/// OpenAI, Anthropic and Cerebras send theirs on every response; OpenRouter only on
/// 429; Gemini never (its hint is in the 429 body).
pub(crate) fn quota_headers(style: HeaderStyle, quota: &Quota, limited: bool, headers: &mut HeaderMap) {
    let now = SystemTime::now();
    let (requests, tokens): (Names, Names) = match style {
        HeaderStyle::OpenRouter => {
            if limited {
                for (name, value) in openrouter_fields(quota, now) {
                    set(headers, name, value);
                }
            }
            return;
        }
        HeaderStyle::Gemini | HeaderStyle::Bare => return,
        HeaderStyle::OpenAi => (
            ["x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"],
            ["x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"],
        ),
        HeaderStyle::Anthropic => (
            [
                "anthropic-ratelimit-requests-limit",
                "anthropic-ratelimit-requests-remaining",
                "anthropic-ratelimit-requests-reset",
            ],
            [
                "anthropic-ratelimit-tokens-limit",
                "anthropic-ratelimit-tokens-remaining",
                "anthropic-ratelimit-tokens-reset",
            ],
        ),
        HeaderStyle::Cerebras => (
            ["x-ratelimit-limit-requests-day", "x-ratelimit-remaining-requests-day", "x-ratelimit-reset-requests-day"],
            [
                "x-ratelimit-limit-tokens-minute",
                "x-ratelimit-remaining-tokens-minute",
                "x-ratelimit-reset-tokens-minute",
            ],
        ),
    };
    let reset = quota.reset.map(|d| match style {
        HeaderStyle::Anthropic => timefmt::rfc3339_after(now, d),
        HeaderStyle::Cerebras => timefmt::float_secs(d),
        _ => timefmt::go_duration(d),
    });
    let families = [
        (requests, quota.req_limit.map(u64::from), quota.req_remaining.map(u64::from)),
        (tokens, quota.tok_limit, quota.tok_remaining),
    ];
    for ([limit_name, remaining_name, reset_name], limit, remaining) in families {
        if let Some(limit) = limit {
            set(headers, limit_name, limit);
            set(headers, remaining_name, remaining.unwrap_or(0));
            if let Some(reset) = &reset {
                set(headers, reset_name, reset);
            }
        }
    }
    if let (HeaderStyle::OpenAi, true, Some(d), false) = (style, limited, quota.reset, quota.spaced) {
        set(headers, "retry-after-ms", timefmt::ceil_ms(d));
    }
}

/// OpenRouter's three fields, for whichever quota is exhausted (requests by default).
fn openrouter_fields(quota: &Quota, now: SystemTime) -> Vec<(&'static str, String)> {
    let (limit, remaining) = match quota.exhausted {
        Some(LimitKind::Tokens) => (quota.tok_limit, quota.tok_remaining),
        _ => (quota.req_limit.map(u64::from), quota.req_remaining.map(u64::from)),
    };
    let mut out = Vec::new();
    if let Some(limit) = limit {
        out.push(("x-ratelimit-limit", limit.to_string()));
        out.push(("x-ratelimit-remaining", remaining.unwrap_or(0).to_string()));
    }
    if let Some(d) = quota.reset {
        out.push(("x-ratelimit-reset", timefmt::unix_ms_after(now, d).to_string()));
    }
    out
}

/// The `retry-after` a provider of this style sends with a limit refusal, if any.
pub(crate) fn natural_retry_after(style: HeaderStyle, quota: &Quota) -> Option<String> {
    match style {
        HeaderStyle::OpenAi | HeaderStyle::Anthropic | HeaderStyle::Cerebras | HeaderStyle::Bare => {
            quota.reset.map(|d| timefmt::retry_after_secs(d).to_string())
        }
        HeaderStyle::OpenRouter | HeaderStyle::Gemini => None,
    }
}

/// A complete 429: status, `retry-after` (if given), style headers, style body.
pub(crate) fn rate_limited(
    style: HeaderStyle,
    family: Family,
    quota: &Quota,
    retry_after: Option<&str>,
) -> Response<MockBody> {
    let kind = match quota.exhausted {
        Some(LimitKind::Tokens) => "tokens",
        _ => "requests",
    };
    let limit = match quota.exhausted {
        Some(LimitKind::Tokens) => quota.tok_limit,
        _ => quota.req_limit.map(u64::from),
    };
    let mut message = format!("Rate limit reached for {kind} (mock provider).");
    if let Some(limit) = limit {
        message.push_str(&format!(" Limit {limit}."));
    }
    if let Some(d) = quota.reset {
        message.push_str(&format!(" Please try again in {}.", timefmt::go_duration(d)));
    }
    let gemini_error = || {
        let mut details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}],
        })];
        if let Some(d) = quota.reset {
            details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                "retryDelay": timefmt::proto_duration(d)}));
        }
        json!({"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}})
    };
    let value = match (family, style) {
        (Family::Anthropic, _) => {
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": message}})
        }
        (Family::Gemini, _) => gemini_error(),
        (Family::OpenAi, HeaderStyle::Gemini) => json!([gemini_error()]),
        (Family::OpenAi, HeaderStyle::OpenRouter) => {
            let fields: serde_json::Map<String, Value> = openrouter_fields(quota, SystemTime::now())
                .into_iter()
                .map(|(k, v)| (openrouter_header_case(k), Value::String(v)))
                .collect();
            json!({"error": {"message": message, "code": 429, "metadata": {"headers": fields}}})
        }
        (Family::OpenAi, _) => {
            json!({"error": {"message": message, "type": kind, "param": null, "code": "rate_limit_exceeded"}})
        }
    };
    let mut resp = body::json(StatusCode::TOO_MANY_REQUESTS, &value);
    if let Some(v) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        resp.headers_mut().insert(http::header::RETRY_AFTER, v);
    }
    quota_headers(style, quota, true, resp.headers_mut());
    resp
}

fn openrouter_header_case(name: &str) -> String {
    name.replace("x-ratelimit-", "X-RateLimit-")
        .replace("limit", "Limit")
        .replace("remaining", "Remaining")
        .replace("reset", "Reset")
}

/// An error response (not 429) in the path family's shape.
pub(crate) fn error(status: StatusCode, family: Family, message: &str) -> Response<MockBody> {
    let code = status.as_u16();
    let value = match family {
        Family::Anthropic => {
            let kind = match code {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        Family::Gemini => {
            let kind = match code {
                400 | 413 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                504 => "DEADLINE_EXCEEDED",
                _ => "INTERNAL",
            };
            json!({"error": {"code": code, "message": message, "status": kind}})
        }
        Family::OpenAi => {
            let (kind, err_code) = match code {
                401 => ("invalid_request_error", Some("invalid_api_key")),
                404 => ("invalid_request_error", Some("unknown_url")),
                413 => ("invalid_request_error", Some("request_too_large")),
                400..=499 => ("invalid_request_error", None),
                _ => ("server_error", None),
            };
            json!({"error": {"message": message, "type": kind, "param": null, "code": err_code}})
        }
    };
    body::json(status, &value)
}

/// The message real providers use for a server-side failure of this status.
pub(crate) fn fault_message(code: u16) -> String {
    match code {
        500 => "The server had an error while processing your request.".to_string(),
        502 => "Bad gateway.".to_string(),
        503 => "The server is overloaded or not ready yet.".to_string(),
        504 => "Gateway timeout.".to_string(),
        529 => "Overloaded".to_string(),
        _ => format!("Injected mock failure ({code})."),
    }
}
