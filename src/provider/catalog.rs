//! Every provider keyrelay can serve, as one table: adding an OpenAI-compatible
//! provider is one line. Names, bases and key variables are LiteLLM's
//! (`litellm/litellm_core_utils/get_llm_provider_logic.py` and `litellm/llms/<name>/`),
//! so a LiteLLM file means here what it means there.

use super::AuthStyle;

/// How one provider is reached.
#[derive(Debug)]
pub struct Spec {
    /// The name keyrelay shows (native `provider:`, deployment names, telemetry).
    pub name: &'static str,
    /// Other spellings accepted, LiteLLM's prefixes first.
    pub aliases: &'static [&'static str],
    /// The base that replaces the client's `/v1`; `None`: `api_base` is required.
    pub base: Option<&'static str>,
    /// The variable LiteLLM reads for the base when `api_base` is not written.
    pub base_env: Option<&'static str>,
    pub auth: AuthStyle,
    /// The secret LiteLLM uses when an entry has no `api_key`.
    pub key_env: Option<&'static str>,
    pub key: KeyNeed,
    pub shape: Shape,
}

/// Whether a deployment must have a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyNeed {
    Required,
    /// A local server (Ollama, vLLM, ...): without `api_key`, nothing is sent.
    Never,
    /// Needed, except when `api_base` is a local server (`openai/` pointed at vLLM).
    UnlessLocal,
}

/// What the provider does to the base URL beyond `api_base` replacing `/v1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Plain,
    /// `{api_base}/openai/deployments/<deployment>` + `?api-version=`, or the v1 API.
    Azure,
    /// AI Foundry: `/models` on `*.services.ai.azure.com`; `api-key` on Azure hosts.
    AzureAi,
    /// Ollama's OpenAI-compatible API lives under `/v1`, added when missing.
    Ollama,
    /// `https://api.cloudflare.com/client/v4/accounts/<account>/ai/v1`.
    Cloudflare,
}

use AuthStyle::{Anthropic, AzureApiKey, Bearer};
use KeyNeed::{Never, Required, UnlessLocal};
use Shape::Plain;

const fn spec(
    name: &'static str,
    aliases: &'static [&'static str],
    base: Option<&'static str>,
    key_env: Option<&'static str>,
) -> Spec {
    Spec { name, aliases, base, base_env: None, auth: Bearer, key_env, key: Required, shape: Plain }
}

const fn local(name: &'static str, aliases: &'static [&'static str], base: Option<&'static str>, shape: Shape) -> Spec {
    Spec { name, aliases, base, base_env: None, auth: Bearer, key_env: None, key: Never, shape }
}

/// The table. The first entries are the ones code elsewhere names
/// ([`super::ProviderKind::Anthropic`], ...); their order does not matter.
pub static PROVIDERS: &[Spec] = &[
    Spec {
        key: UnlessLocal,
        ..spec("openai", &["text-completion-openai"], Some("https://api.openai.com/v1"), Some("OPENAI_API_KEY"))
    },
    Spec { auth: Anthropic, ..spec("anthropic", &[], Some("https://api.anthropic.com/v1"), Some("ANTHROPIC_API_KEY")) },
    spec("gemini", &[], Some("https://generativelanguage.googleapis.com/v1beta/openai"), Some("GEMINI_API_KEY")),
    spec("openrouter", &[], Some("https://openrouter.ai/api/v1"), Some("OPENROUTER_API_KEY")),
    spec("groq", &[], Some("https://api.groq.com/openai/v1"), Some("GROQ_API_KEY")),
    spec("cerebras", &[], Some("https://api.cerebras.ai/v1"), Some("CEREBRAS_API_KEY")),
    spec("mistral", &[], Some("https://api.mistral.ai/v1"), Some("MISTRAL_API_KEY")),
    spec("deepseek", &[], Some("https://api.deepseek.com/v1"), Some("DEEPSEEK_API_KEY")),
    spec("together", &["together_ai"], Some("https://api.together.xyz/v1"), Some("TOGETHERAI_API_KEY")),
    spec("fireworks", &["fireworks_ai"], Some("https://api.fireworks.ai/inference/v1"), Some("FIREWORKS_AI_API_KEY")),
    spec("xai", &[], Some("https://api.x.ai/v1"), Some("XAI_API_KEY")),
    Spec {
        auth: AzureApiKey,
        base_env: Some("AZURE_API_BASE"),
        shape: Shape::Azure,
        ..spec("azure", &["azure_text"], None, Some("AZURE_API_KEY"))
    },
    Spec { key: UnlessLocal, ..spec("openai-compatible", &["openai_compatible", "custom_openai"], None, None) },
    // Local servers: no key needed, none sent unless `api_key` is written.
    Spec {
        base_env: Some("OLLAMA_API_BASE"),
        ..local("ollama", &[], Some("http://localhost:11434/v1"), Shape::Ollama)
    },
    Spec {
        base_env: Some("OLLAMA_API_BASE"),
        ..local("ollama_chat", &[], Some("http://localhost:11434/v1"), Shape::Ollama)
    },
    Spec { base_env: Some("HOSTED_VLLM_API_BASE"), ..local("hosted_vllm", &["vllm"], None, Plain) },
    Spec { base_env: Some("LM_STUDIO_API_BASE"), ..local("lm_studio", &[], None, Plain) },
    Spec { base_env: Some("LLAMAFILE_API_BASE"), ..local("llamafile", &[], Some("http://127.0.0.1:8080/v1"), Plain) },
    // Hosted OpenAI-compatible APIs.
    Spec {
        shape: Shape::AzureAi,
        base_env: Some("AZURE_AI_API_BASE"),
        ..spec("azure_ai", &[], None, Some("AZURE_AI_API_KEY"))
    },
    spec("github", &[], Some("https://models.inference.ai.azure.com"), Some("GITHUB_API_KEY")),
    spec("cohere", &["cohere_chat"], Some("https://api.cohere.ai/compatibility/v1"), Some("COHERE_API_KEY")),
    Spec { shape: Shape::Cloudflare, ..spec("cloudflare", &[], None, Some("CLOUDFLARE_API_KEY")) },
    spec("nvidia_nim", &[], Some("https://integrate.api.nvidia.com/v1"), Some("NVIDIA_NIM_API_KEY")),
    spec("perplexity", &[], Some("https://api.perplexity.ai"), Some("PERPLEXITYAI_API_KEY")),
    spec("deepinfra", &[], Some("https://api.deepinfra.com/v1/openai"), Some("DEEPINFRA_API_KEY")),
    spec("sambanova", &[], Some("https://api.sambanova.ai/v1"), Some("SAMBANOVA_API_KEY")),
    spec("dashscope", &[], Some("https://dashscope-intl.aliyuncs.com/compatible-mode/v1"), Some("DASHSCOPE_API_KEY")),
    spec("moonshot", &[], Some("https://api.moonshot.ai/v1"), Some("MOONSHOT_API_KEY")),
    spec("zai", &[], Some("https://api.z.ai/api/paas/v4"), Some("ZAI_API_KEY")),
    spec("zhipu", &["zhipuai"], Some("https://open.bigmodel.cn/api/paas/v4"), Some("ZHIPUAI_API_KEY")),
    spec("novita", &[], Some("https://api.novita.ai/v3/openai"), Some("NOVITA_API_KEY")),
    spec("huggingface", &[], Some("https://router.huggingface.co/v1"), Some("HF_TOKEN")),
    spec("codestral", &[], Some("https://codestral.mistral.ai/v1"), Some("CODESTRAL_API_KEY")),
    spec("nebius", &[], Some("https://api.studio.nebius.ai/v1"), Some("NEBIUS_API_KEY")),
    spec("meta_llama", &[], Some("https://api.llama.com/compat/v1"), Some("LLAMA_API_KEY")),
    spec("ai21_chat", &[], Some("https://api.ai21.com/studio/v1"), Some("AI21_API_KEY")),
    spec("volcengine", &[], Some("https://ark.cn-beijing.volces.com/api/v3"), Some("VOLCENGINE_API_KEY")),
    spec("friendliai", &[], Some("https://api.friendli.ai/serverless/v1"), Some("FRIENDLIAI_API_KEY")),
    spec("galadriel", &[], Some("https://api.galadriel.com/v1"), Some("GALADRIEL_API_KEY")),
    spec("empower", &[], Some("https://app.empower.dev/api/v1"), Some("EMPOWER_API_KEY")),
    spec("anyscale", &[], Some("https://api.endpoints.anyscale.com/v1"), Some("ANYSCALE_API_KEY")),
    Spec {
        base_env: Some("LITELLM_PROXY_API_BASE"),
        ..spec("litellm_proxy", &[], None, Some("LITELLM_PROXY_API_KEY"))
    },
];

/// The index of `name` in [`PROVIDERS`], at compile time (a typo fails the build).
pub(super) const fn index_of(name: &str) -> u8 {
    let mut i = 0;
    while i < PROVIDERS.len() {
        if const_eq(PROVIDERS[i].name, name) {
            return i as u8;
        }
        i += 1;
    }
    panic!("provider missing from the catalog");
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The entry named `name` or one of its aliases.
pub(super) fn find(name: &str) -> Option<usize> {
    PROVIDERS.iter().position(|p| p.name == name || p.aliases.contains(&name))
}

/// The provider LiteLLM infers for a model written without a prefix, from its name
/// alone (LiteLLM's model lists, reduced to their prefixes).
pub(super) fn infer_from_model(model: &str) -> Option<&'static str> {
    const OPENAI: [&str; 14] = [
        "gpt-",
        "chatgpt-",
        "text-embedding-",
        "whisper-",
        "dall-e-",
        "tts-",
        "ft:gpt-",
        "gpt-image",
        "omni-moderation",
        "text-moderation",
        "davinci",
        "babbage",
        "codex-",
        "computer-use-",
    ];
    let m = model.to_ascii_lowercase();
    let o_series = matches!(m.as_bytes(), [b'o', b'1'..=b'4', rest @ ..] if rest.is_empty() || rest[0] == b'-');
    if o_series || OPENAI.iter().any(|p| m.starts_with(p)) || m == "*" {
        Some("openai")
    } else if m.starts_with("claude-") {
        Some("anthropic")
    } else if m.starts_with("command") || m.starts_with("embed-english") || m.starts_with("embed-multilingual") {
        Some("cohere")
    } else {
        None
    }
}

/// The provider whose public API an unprefixed entry's `api_base` points at
/// (LiteLLM's `openai_compatible_endpoints`): `api_base: https://api.groq.com/openai/v1`.
pub(super) fn infer_from_base(api_base: &str) -> Option<usize> {
    let host = api_base.parse::<http::Uri>().ok()?.host()?.to_ascii_lowercase();
    PROVIDERS.iter().position(|p| {
        p.name != "openai"
            && p.base.and_then(|b| b.parse::<http::Uri>().ok()).is_some_and(|b| b.host() == Some(host.as_str()))
    })
}

/// A host on the pod's own machine or network: loopback, `localhost`, cluster DNS
/// names (`*.svc`, `*.cluster.local`), private and link-local addresses. A server
/// there needs no key unless one is written.
pub fn is_local_server(base: &http::Uri) -> bool {
    let host = base.host().unwrap_or_default().trim_end_matches('.').to_ascii_lowercase();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&host);
    if host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".svc")
        || host.ends_with(".cluster.local")
        || host == "host.docker.internal"
    {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => {
            let unique_local = (ip.segments()[0] & 0xfe00) == 0xfc00;
            let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
            ip.is_loopback()
                || unique_local
                || link_local
                || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback() || v4.is_private())
        }
        Err(_) => false,
    }
}

/// LiteLLM's `AZURE_DEFAULT_API_VERSION`, used when neither `api_version` nor
/// `AZURE_API_VERSION` says otherwise.
pub const AZURE_DEFAULT_API_VERSION: &str = "2025-02-01-preview";

/// The longest `api_version` accepted (real ones are like `2025-04-01-preview`).
pub const MAX_API_VERSION_LEN: usize = 64;

/// An `api_version` must fit in a query string as is.
pub fn check_api_version(version: &str) -> Result<(), String> {
    let ok = !version.is_empty()
        && version.len() <= MAX_API_VERSION_LEN
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "api_version must be 1 to {MAX_API_VERSION_LEN} letters, digits, `-`, `.` or `_` \
             (e.g. 2024-10-21, 2025-04-01-preview, v1, preview)"
        ))
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
