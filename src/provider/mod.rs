//! What differs between LLM providers: where they live, how they want the key, how
//! they report rate limits, and how they say a key is refused. Everything else about a
//! request is the same for all.

mod auth;
pub mod catalog;
pub mod probe;
pub mod ratelimit;
pub mod refusal;
mod shape;

pub use auth::{Auth, InvalidKey, CLIENT_CREDENTIAL_HEADERS, NO_KEY};
pub use catalog::is_local_server;
pub use shape::{deployment_base, ApiVersion};

use std::fmt;

/// A known provider: an entry of [`catalog::PROVIDERS`]. The constants name the ones
/// other code treats specially; every other entry is reached by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProviderKind(u8);

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

#[allow(non_upper_case_globals)]
impl ProviderKind {
    pub const OpenAi: ProviderKind = ProviderKind(catalog::index_of("openai"));
    pub const Anthropic: ProviderKind = ProviderKind(catalog::index_of("anthropic"));
    pub const Gemini: ProviderKind = ProviderKind(catalog::index_of("gemini"));
    pub const OpenRouter: ProviderKind = ProviderKind(catalog::index_of("openrouter"));
    pub const Groq: ProviderKind = ProviderKind(catalog::index_of("groq"));
    pub const Cerebras: ProviderKind = ProviderKind(catalog::index_of("cerebras"));
    pub const Mistral: ProviderKind = ProviderKind(catalog::index_of("mistral"));
    pub const DeepSeek: ProviderKind = ProviderKind(catalog::index_of("deepseek"));
    pub const Together: ProviderKind = ProviderKind(catalog::index_of("together"));
    pub const Fireworks: ProviderKind = ProviderKind(catalog::index_of("fireworks"));
    pub const Xai: ProviderKind = ProviderKind(catalog::index_of("xai"));
    pub const Azure: ProviderKind = ProviderKind(catalog::index_of("azure"));
    pub const AzureAi: ProviderKind = ProviderKind(catalog::index_of("azure_ai"));
    pub const OpenAiCompatible: ProviderKind = ProviderKind(catalog::index_of("openai-compatible"));
    pub const Ollama: ProviderKind = ProviderKind(catalog::index_of("ollama"));
    pub const OllamaChat: ProviderKind = ProviderKind(catalog::index_of("ollama_chat"));
    pub const HostedVllm: ProviderKind = ProviderKind(catalog::index_of("hosted_vllm"));
    pub const Cloudflare: ProviderKind = ProviderKind(catalog::index_of("cloudflare"));

    /// Every provider, in catalog order.
    pub fn all() -> impl Iterator<Item = ProviderKind> {
        (0..catalog::PROVIDERS.len()).filter_map(|i| u8::try_from(i).ok()).map(ProviderKind)
    }

    pub fn spec(self) -> &'static catalog::Spec {
        &catalog::PROVIDERS[usize::from(self.0)]
    }

    /// The name used in config (`provider: groq`, LiteLLM `groq/...`) and telemetry.
    pub fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// Parses a provider name, accepting LiteLLM's spellings of the same providers.
    pub fn from_name(name: &str) -> Option<Self> {
        catalog::find(name).and_then(|i| u8::try_from(i).ok()).map(ProviderKind)
    }

    /// The provider LiteLLM infers for a model written without `provider/`
    /// (`gpt-4o` -> openai, `claude-sonnet-4-5` -> anthropic), if it can.
    pub fn infer_from_model(model: &str) -> Option<Self> {
        catalog::infer_from_model(model.trim()).and_then(Self::from_name)
    }

    /// The provider whose public API `api_base` points at, for unprefixed models.
    pub fn infer_from_base(api_base: &str) -> Option<Self> {
        catalog::infer_from_base(api_base.trim()).and_then(|i| u8::try_from(i).ok()).map(ProviderKind)
    }

    /// The base URL that replaces the client's `/v1`, or `None` when `api_base` is
    /// required.
    pub fn default_base(self) -> Option<&'static str> {
        self.spec().base
    }

    pub fn auth_style(self) -> AuthStyle {
        self.spec().auth
    }

    /// The auth style for a deployment at `base`: AI Foundry wants `api-key` on
    /// Azure hosts and Bearer elsewhere, as LiteLLM sends it.
    pub fn auth_style_at(self, base: &http::Uri) -> AuthStyle {
        if self.spec().shape == catalog::Shape::AzureAi {
            let host = base.host().unwrap_or_default().to_ascii_lowercase();
            if host.ends_with(".services.ai.azure.com") || host.ends_with(".openai.azure.com") {
                return AuthStyle::AzureApiKey;
            }
        }
        self.auth_style()
    }

    /// The secret LiteLLM reads when an entry names no `api_key`.
    pub fn implicit_key(self) -> Option<&'static str> {
        self.spec().key_env
    }

    /// Whether a deployment at `base` must carry a key.
    pub fn needs_key(self, base: &http::Uri) -> bool {
        match self.spec().key {
            catalog::KeyNeed::Required => true,
            catalog::KeyNeed::Never => false,
            catalog::KeyNeed::UnlessLocal => !catalog::is_local_server(base),
        }
    }

    /// Whether a key is needed wherever the server is (ollama and the like: never).
    pub fn needs_key_anywhere(self) -> bool {
        self.spec().key != catalog::KeyNeed::Never
    }

    /// Whether `api_version` means anything for this provider.
    pub fn takes_api_version(self) -> bool {
        matches!(self.spec().shape, catalog::Shape::Azure | catalog::Shape::AzureAi)
    }
}

impl fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
