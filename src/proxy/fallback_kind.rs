//! The two client errors that LiteLLM answers with a different model instead of
//! passing them on: the prompt does not fit the model's context window
//! (`context_window_fallbacks`), and the provider's content policy refused it
//! (`content_policy_fallbacks`). Retrying the same alias cannot cure either; a
//! model with a larger window, or another provider's filter, can.
//!
//! The phrasings are LiteLLM's (litellm_core_utils/exception_mapping_utils.py and
//! the per-provider mappings): providers say it in words, not in one code.

use http::StatusCode;

use crate::config::ModelRoute;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackKind {
    ContextWindow,
    ContentPolicy,
}

/// Lowercase substrings that mean the context window was exceeded.
const CONTEXT_WINDOW: [&str; 14] = [
    "context_length_exceeded",
    "exceed context limit",
    "this model's maximum context length is",
    "maximum context length",
    "string too long. expected a string with maximum length",
    "model's maximum context limit",
    "is longer than the model's context length",
    "input tokens exceed the configured limit",
    "`inputs` tokens + `max_new_tokens` must be",
    "exceeds the available context size",
    "exceeds the maximum number of tokens allowed",
    "prompt is too long",
    "input is too long",
    "reduce the length of the messages",
];

/// Lowercase substrings that mean a content-policy refusal.
const CONTENT_POLICY: [&str; 9] = [
    "content_policy_violation",
    "content_filter",
    "responsibleaipolicyviolation",
    "the response was filtered due to the prompt triggering azure openai's content management",
    "your task failed as a result of our safety system",
    "your request was rejected as a result of our safety system",
    "request was rejected as a result of the safety system",
    "violating our usage policy",
    "the model produced invalid content",
];

impl FallbackKind {
    /// What an error answer (its status and first bytes) says, if either.
    pub fn classify(status: StatusCode, body: &[u8]) -> Option<FallbackKind> {
        if !matches!(status.as_u16(), 400 | 413 | 422) {
            return None;
        }
        let text = String::from_utf8_lossy(body).to_lowercase();
        // A parameter too long (OpenAI's `user` field) is not the prompt.
        let param_too_long = text.contains("string_above_max_length")
            || (text.contains("invalid 'user'") && text.contains("string too long"));
        let cerebras = text.contains("current length is") && text.contains("while limit is");
        let input_length = text.contains("maximum input length is") && text.contains("tokens");
        if !param_too_long && (CONTEXT_WINDOW.iter().any(|s| text.contains(s)) || cerebras || input_length) {
            return Some(FallbackKind::ContextWindow);
        }
        CONTENT_POLICY.iter().any(|s| text.contains(s)).then_some(FallbackKind::ContentPolicy)
    }

    /// The aliases a route falls back to on this kind of error.
    pub fn fallbacks(self, route: &ModelRoute) -> &[String] {
        match self {
            FallbackKind::ContextWindow => &route.context_window_fallbacks,
            FallbackKind::ContentPolicy => &route.content_policy_fallbacks,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            FallbackKind::ContextWindow => "context_window_exceeded",
            FallbackKind::ContentPolicy => "content_policy_violation",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_phrasings_are_recognised_and_ordinary_400s_are_not() {
        let bad = StatusCode::BAD_REQUEST;
        for body in [
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens.","code":"context_length_exceeded"}}"#,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
            r#"{"error":{"message":"The input token count exceeds the maximum number of tokens allowed (1048576)."}}"#,
            r#"{"message":"Current length is 9000 while limit is 8192"}"#,
        ] {
            assert_eq!(FallbackKind::classify(bad, body.as_bytes()), Some(FallbackKind::ContextWindow), "{body}");
        }
        for body in [
            r#"{"error":{"code":"content_policy_violation","message":"Your request was rejected"}}"#,
            r#"{"error":{"code":"content_filter","message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy."}}"#,
        ] {
            assert_eq!(FallbackKind::classify(bad, body.as_bytes()), Some(FallbackKind::ContentPolicy), "{body}");
        }
        let user = r#"{"error":{"message":"Invalid 'user': string too long. Expected a string with maximum length 64","code":"string_above_max_length"}}"#;
        for (status, body) in [
            (bad, user),
            (bad, r#"{"error":{"message":"Invalid value for 'temperature'","code":"invalid_value"}}"#),
            (StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":{"code":"context_length_exceeded"}}"#),
        ] {
            assert_eq!(FallbackKind::classify(status, body.as_bytes()), None, "{body}");
        }
    }
}
