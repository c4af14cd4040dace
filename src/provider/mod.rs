//! What differs between LLM providers: where they live, how they want the key, how
//! they report rate limits, and how they say a key is refused. Everything else about a
//! request is the same for all.

mod auth;
pub mod ratelimit;
#[cfg(test)]
mod ratelimit_fuzz;
pub mod refusal;

pub use auth::{Auth, InvalidKey, CLIENT_CREDENTIAL_HEADERS};

use std::fmt;

/// A known provider. `api_base` in config overrides the default base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    Anthropic,
    Gemini,
    OpenRouter,
    Groq,
    Cerebras,
    Mistral,
    DeepSeek,
    Together,
    Fireworks,
    Xai,
    Azure,
    OpenAiCompatible,
}

/// How a provider expects the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>`
    Bearer,
    /// `x-api-key: <key>` plus `anthropic-version` when the client sent none.
    Anthropic,
    /// `api-key: <key>` (Azure OpenAI).
    AzureApiKey,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 13] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::OpenRouter,
        ProviderKind::Groq,
        ProviderKind::Cerebras,
        ProviderKind::Mistral,
        ProviderKind::DeepSeek,
        ProviderKind::Together,
        ProviderKind::Fireworks,
        ProviderKind::Xai,
        ProviderKind::Azure,
        ProviderKind::OpenAiCompatible,
    ];

    /// The name used in config (`provider: groq`, LiteLLM `groq/...`) and telemetry.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::OpenRouter => "openrouter",
            ProviderKind::Groq => "groq",
            ProviderKind::Cerebras => "cerebras",
            ProviderKind::Mistral => "mistral",
            ProviderKind::DeepSeek => "deepseek",
            ProviderKind::Together => "together",
            ProviderKind::Fireworks => "fireworks",
            ProviderKind::Xai => "xai",
            ProviderKind::Azure => "azure",
            ProviderKind::OpenAiCompatible => "openai-compatible",
        }
    }

    /// Parses a provider name, accepting LiteLLM's spellings of the same providers.
    pub fn from_name(name: &str) -> Option<Self> {
        let kind = match name {
            "openai" | "text-completion-openai" => ProviderKind::OpenAi,
            "anthropic" => ProviderKind::Anthropic,
            "gemini" => ProviderKind::Gemini,
            "openrouter" => ProviderKind::OpenRouter,
            "groq" => ProviderKind::Groq,
            "cerebras" => ProviderKind::Cerebras,
            "mistral" => ProviderKind::Mistral,
            "deepseek" => ProviderKind::DeepSeek,
            "together" | "together_ai" => ProviderKind::Together,
            "fireworks" | "fireworks_ai" => ProviderKind::Fireworks,
            "xai" => ProviderKind::Xai,
            "azure" => ProviderKind::Azure,
            "openai-compatible" | "openai_compatible" | "hosted_vllm" | "vllm" | "ollama_chat" | "lm_studio" => {
                ProviderKind::OpenAiCompatible
            }
            _ => return None,
        };
        Some(kind)
    }

    /// The base URL that replaces the client's `/v1`, or `None` when `api_base` is
    /// required.
    pub fn default_base(self) -> Option<&'static str> {
        Some(match self {
            ProviderKind::OpenAi => "https://api.openai.com/v1",
            ProviderKind::Anthropic => "https://api.anthropic.com/v1",
            ProviderKind::Gemini => "https://generativelanguage.googleapis.com/v1beta/openai",
            ProviderKind::OpenRouter => "https://openrouter.ai/api/v1",
            ProviderKind::Groq => "https://api.groq.com/openai/v1",
            ProviderKind::Cerebras => "https://api.cerebras.ai/v1",
            ProviderKind::Mistral => "https://api.mistral.ai/v1",
            ProviderKind::DeepSeek => "https://api.deepseek.com/v1",
            ProviderKind::Together => "https://api.together.xyz/v1",
            ProviderKind::Fireworks => "https://api.fireworks.ai/inference/v1",
            ProviderKind::Xai => "https://api.x.ai/v1",
            ProviderKind::Azure | ProviderKind::OpenAiCompatible => return None,
        })
    }

    pub fn auth_style(self) -> AuthStyle {
        match self {
            ProviderKind::Anthropic => AuthStyle::Anthropic,
            ProviderKind::Azure => AuthStyle::AzureApiKey,
            _ => AuthStyle::Bearer,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
