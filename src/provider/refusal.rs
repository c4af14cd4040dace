//! Whether an error answer is about the key itself or about one request only.
//!
//! A 401 or 403 can mean "this key is invalid or revoked" or "this key may not do this
//! one thing" (OpenAI's `Missing scopes: api.fine_tuning.jobs.write`); a 402, an OpenAI
//! 429 `insufficient_quota` or Anthropic's 400 "credit balance is too low" mean the
//! key's account has no money left, which no retry-after fixes. Only the first kind of
//! each takes a key out of rotation; the rest are the request's business and reach the
//! client unchanged. This module is the only place that knows how providers spell it.
//!
//! Shapes come from the providers' documentation and from answers seen in the wild:
//! OpenAI and the OpenAI-compatible ones (`{"error":{"message","type","code"}}`),
//! Anthropic (`{"type":"error","error":{"type","message"}}`), Gemini
//! (`{"error":{"code","status","details":[{"reason"}]}}`, a list of those on its
//! OpenAI-compatible endpoint), OpenRouter (`{"error":{"message","code":401}}`), xAI
//! (`{"code","error":"..."}`), and plain text.

use http::StatusCode;
use serde_json::Value;

/// Why the provider refuses a key for every request, not just one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRefusal {
    /// The key is invalid, revoked, expired, leaked or disabled.
    Invalid,
    /// The key's account is out of credits, or over its spend or usage limit.
    OutOfCredits,
}

impl KeyRefusal {
    pub const ALL: [KeyRefusal; 2] = [KeyRefusal::Invalid, KeyRefusal::OutOfCredits];

    /// The name in `/status`, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRefusal::Invalid => "key_invalid",
            KeyRefusal::OutOfCredits => "out_of_credits",
        }
    }

    /// What it means, for people (error messages).
    pub fn describe(self) -> &'static str {
        match self {
            KeyRefusal::Invalid => "invalid or revoked",
            KeyRefusal::OutOfCredits => "out of credits",
        }
    }
}

/// Statuses whose body must be read before deciding: they may refuse the key.
pub fn may_refuse_key(status: StatusCode) -> bool {
    matches!(status.as_u16(), 400 | 401 | 402 | 403 | 429)
}

/// Codes, types, statuses and reasons that say the key is invalid, at 400, 401 or 403.
const INVALID_TOKENS: [&str; 8] = [
    "invalid_api_key",         // OpenAI, Groq, Together, ...
    "wrong_api_key",           // Cerebras
    "invalid_authentication",  // OpenAI
    "account_deactivated",     // OpenAI
    "api_key_invalid",         // Gemini ErrorInfo.reason
    "api_key_expired",         // Gemini
    "api_key_service_blocked", // Gemini: the key may not call this API at all
    "consumer_suspended",      // Gemini
];

/// The same, meaningful at 401 only (an Anthropic 403 `permission_error` is about the request).
const INVALID_TOKENS_401: [&str; 2] = [
    "authentication_error", // Anthropic, DeepSeek
    "unauthenticated",      // Gemini
];

/// Messages that say the key is invalid, at 400, 401 or 403 (lowercase).
const INVALID_PHRASES: [&str; 11] = [
    "incorrect api key",  // OpenAI, xAI
    "invalid api key",    // Groq, Together, ...
    "invalid x-api-key",  // Anthropic
    "api key not valid",  // Gemini
    "api key not found",  // Gemini
    "api key is invalid", // DeepSeek ("Your api key: ****1234 is invalid")
    "api key you provided is invalid",
    "api key expired",                // Gemini
    "api key was reported as leaked", // Gemini 403
    "invalid subscription key",       // Azure
    "wrong api key",                  // Cerebras
];

/// The same, meaningful at 401 only: too vague to trust elsewhere.
const INVALID_PHRASES_401: [&str; 3] = [
    "no auth credentials found", // OpenRouter
    "user not found",            // OpenRouter: the key's user is gone
    "authentication fails",      // DeepSeek
];

/// Codes and types that say the account is out of money, at 400, 401, 403 and 429.
const CREDIT_TOKENS: [&str; 9] = [
    "insufficient_quota",                // OpenAI 429 (type, and code)
    "credit_balance_exhausted",          // OpenAI 429
    "organization_spend_limit_exceeded", // OpenAI 429
    "project_spend_limit_exceeded",      // OpenAI 429
    "organization_usage_limit_exceeded", // OpenAI 429
    "billing_not_active",                // OpenAI
    "billing_hard_limit_reached",        // OpenAI
    "billing_error",                     // Anthropic
    "insufficient_balance",
];

/// Messages that say the account is out of money, at 400, 401, 403 and 429 (lowercase).
/// Not "exceeded your current quota": Gemini's per-minute 429s say that too.
const CREDIT_PHRASES: [&str; 7] = [
    "credit balance is too low",               // Anthropic 400
    "reached your specified api usage limits", // Anthropic 400: the workspace spend limit
    "insufficient credits",                    // OpenRouter
    "insufficient balance",                    // DeepSeek, Mistral
    "run out of credits",                      // xAI 403
    "have any credits",                        // xAI 403: "doesn't have any credits"
    "used all available credits",              // xAI 429
];

/// What an error answer says about the key: `None` when it concerns this request
/// only (a 403 for a missing scope, a 401 that does not say the key is invalid, a
/// 429 rate limit, anything else). `body` is the answer's body or its first bytes.
pub fn classify(status: StatusCode, body: &[u8]) -> Option<KeyRefusal> {
    let status = status.as_u16();
    if status == 402 {
        // Payment Required means a billing condition everywhere (OpenRouter, DeepSeek,
        // Mistral, Together, Anthropic's billing_error), whatever the body says.
        return Some(KeyRefusal::OutOfCredits);
    }
    if !matches!(status, 400 | 401 | 403 | 429) {
        return None;
    }
    let said = Said::read(body);
    if said.token(&CREDIT_TOKENS) || said.phrase(&CREDIT_PHRASES) {
        return Some(KeyRefusal::OutOfCredits);
    }
    if status == 429 {
        return None;
    }
    let invalid = said.token(&INVALID_TOKENS)
        || said.phrase(&INVALID_PHRASES)
        || (status == 401 && (said.token(&INVALID_TOKENS_401) || said.phrase(&INVALID_PHRASES_401)));
    invalid.then_some(KeyRefusal::Invalid)
}

/// The words of an error body that matter: the string values of its `code`, `type`,
/// `status`, `reason`, `message` and `error` fields at any depth (lowercased), or
/// for a body that is not JSON, its text.
struct Said {
    tokens: Vec<String>,
    texts: Vec<String>,
}

/// Bounds on what is looked at, so an odd body costs little.
const MAX_DEPTH: usize = 6;
const MAX_STRINGS: usize = 64;
const MAX_TEXT: usize = 4096;

impl Said {
    fn read(body: &[u8]) -> Said {
        let mut said = Said { tokens: Vec::new(), texts: Vec::new() };
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => said.walk(&value, 0),
            Err(_) => {
                let cut = &body[..body.len().min(MAX_TEXT)];
                said.texts.push(String::from_utf8_lossy(cut).to_lowercase());
            }
        }
        said
    }

    fn walk(&mut self, value: &Value, depth: usize) {
        if depth > MAX_DEPTH || self.tokens.len() + self.texts.len() >= MAX_STRINGS {
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("code" | "type" | "status" | "reason", Value::String(s)) => {
                            self.tokens.push(s.trim().to_lowercase());
                        }
                        ("message" | "error" | "detail", Value::String(s)) => {
                            self.texts.push(s.chars().take(MAX_TEXT).collect::<String>().to_lowercase());
                        }
                        _ => self.walk(v, depth + 1),
                    }
                }
            }
            Value::Array(items) => items.iter().take(MAX_STRINGS).for_each(|v| self.walk(v, depth + 1)),
            _ => {}
        }
    }

    fn token(&self, wanted: &[&str]) -> bool {
        self.tokens.iter().any(|t| wanted.contains(&t.as_str()))
    }

    fn phrase(&self, wanted: &[&str]) -> bool {
        self.texts.iter().any(|t| wanted.iter().any(|p| t.contains(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(status: u16, body: &str) -> Option<KeyRefusal> {
        classify(StatusCode::from_u16(status).unwrap(), body.as_bytes())
    }

    const INVALID: Option<KeyRefusal> = Some(KeyRefusal::Invalid);
    const CREDITS: Option<KeyRefusal> = Some(KeyRefusal::OutOfCredits);

    #[test]
    fn invalid_keys_in_each_providers_words() {
        let cases = [
            (
                401,
                r#"{"error":{"message":"Incorrect API key provided: sk-****ZXY. You can find your API key at https://platform.openai.com/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            ),
            (
                401,
                r#"{"error":{"message":"This key is associated with a deactivated account.","type":"invalid_request_error","code":"account_deactivated"}}"#,
            ),
            (
                401,
                r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"},"request_id":"req_1"}"#,
            ),
            (
                400,
                r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
            ),
            (
                400,
                r#"[{"error":{"code":400,"message":"API Key not found. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}]"#,
            ),
            (
                403,
                r#"{"error":{"code":403,"message":"Your API key was reported as leaked. Please use another API key.","status":"PERMISSION_DENIED"}}"#,
            ),
            (
                401,
                r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#,
            ),
            (401, r#"{"error":{"message":"No auth credentials found","code":401}}"#),
            (401, r#"{"error":{"message":"User not found.","code":401}}"#),
            (
                401,
                r#"{"error":{"message":"Authentication Fails, Your api key: ****abcd is invalid","type":"authentication_error","param":null,"code":"invalid_request_error"}}"#,
            ),
            (
                400,
                r#"{"code":"Client specified an invalid argument","error":"Incorrect API key provided: xa***. You can obtain an API key from https://console.x.ai."}"#,
            ),
            (
                401,
                r#"{"message":"Wrong API Key","type":"invalid_request_error","param":"api_key","code":"wrong_api_key"}"#,
            ),
            (
                401,
                r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint."}}"#,
            ),
            (401, "Invalid API key"),
        ];
        for (status, body) in cases {
            assert_eq!(says(status, body), INVALID, "{status} {body}");
        }
    }

    #[test]
    fn accounts_out_of_credits_in_each_providers_words() {
        let cases = [
            (
                402,
                r#"{"error":{"code":402,"message":"Insufficient credits. Add more using https://openrouter.ai/credits"}}"#,
            ),
            (
                402,
                r#"{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}"#,
            ),
            (402, ""),
            (
                429,
                r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
            ),
            (429, r#"{"error":{"message":"...","type":"insufficient_quota","code":"credit_balance_exhausted"}}"#),
            (
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."}}"#,
            ),
            (
                403,
                r#"{"code":"The caller does not have permission to execute the specified operation","error":"Your newly created team doesn't have any credits yet."}"#,
            ),
            (
                429,
                r#"{"code":"x","error":"Your team has either used all available credits or reached its monthly spending limit."}"#,
            ),
        ];
        for (status, body) in cases {
            assert_eq!(says(status, body), CREDITS, "{status} {body}");
        }
    }

    #[test]
    fn answers_about_one_request_leave_the_key_alone() {
        let cases = [
            // Missing scopes: OpenAI sends these as 403, and sometimes as 401.
            (
                403,
                r#"{"error":{"message":"You have insufficient permissions for this operation. Missing scopes: api.fine_tuning.jobs.write. Check that you have the correct role in your organization.","type":"invalid_request_error","param":null,"code":null}}"#,
            ),
            (
                401,
                r#"{"error":{"message":"You have insufficient permissions for this operation. Missing scopes: api.responses.write.","type":"invalid_request_error","param":null,"code":null}}"#,
            ),
            (
                403,
                r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}"#,
            ),
            (
                403,
                r#"{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported"}}"#,
            ),
            (401, ""),
            (401, "Unauthorized"),
            (
                400,
                r#"{"error":{"message":"'messages' is a required property","type":"invalid_request_error","code":null}}"#,
            ),
            // A rate limit, even one that talks about quota (Gemini's per-minute 429).
            (
                429,
                r#"{"error":{"message":"Rate limit reached for requests","type":"requests","code":"rate_limit_exceeded"}}"#,
            ),
            (
                429,
                r#"[{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED"}}]"#,
            ),
            // Vague 401 phrases mean nothing at 400.
            (400, r#"{"error":{"message":"User not found in the tool result","code":400}}"#),
            (404, r#"{"error":{"code":"invalid_api_key"}}"#),
            (500, "insufficient credits"),
            (401, "\u{0}\u{ff}not json{"),
        ];
        for (status, body) in cases {
            assert_eq!(says(status, body), None, "{status} {body}");
        }
    }

    #[test]
    fn deep_or_huge_bodies_are_cheap_and_safe() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(says(401, &deep), None);
        let many = format!("[{}]", vec![r#"{"code":"x"}"#; 10_000].join(","));
        assert_eq!(says(401, &many), None);
    }
}
