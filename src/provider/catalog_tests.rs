use super::*;
use crate::provider::{deployment_base, ProviderKind};

#[test]
fn names_and_aliases_are_unique_and_named_constants_point_at_their_entries() {
    let mut seen = std::collections::HashSet::new();
    for p in PROVIDERS {
        for name in std::iter::once(&p.name).chain(p.aliases) {
            assert!(seen.insert(*name), "{name} twice");
        }
        assert!(p.base.is_some() || p.base_env.is_some() || p.shape != Shape::Plain || p.name == "openai-compatible");
    }
    assert_eq!(ProviderKind::Azure.as_str(), "azure");
    assert_eq!(ProviderKind::OpenAiCompatible.as_str(), "openai-compatible");
    assert_eq!(ProviderKind::from_name("together_ai"), Some(ProviderKind::Together));
    assert_eq!(ProviderKind::from_name("text-completion-openai"), Some(ProviderKind::OpenAi));
    assert_eq!(ProviderKind::from_name("bedrock"), None);
}

#[test]
fn litellm_bases_and_key_variables() {
    let at = |name: &str| ProviderKind::from_name(name).unwrap();
    for (name, base, key) in [
        ("nvidia_nim", "https://integrate.api.nvidia.com/v1", "NVIDIA_NIM_API_KEY"),
        ("perplexity", "https://api.perplexity.ai", "PERPLEXITYAI_API_KEY"),
        ("deepinfra", "https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
        ("zai", "https://api.z.ai/api/paas/v4", "ZAI_API_KEY"),
        ("novita", "https://api.novita.ai/v3/openai", "NOVITA_API_KEY"),
        ("github", "https://models.inference.ai.azure.com", "GITHUB_API_KEY"),
        ("cohere", "https://api.cohere.ai/compatibility/v1", "COHERE_API_KEY"),
    ] {
        assert_eq!(at(name).default_base(), Some(base), "{name}");
        assert_eq!(at(name).implicit_key(), Some(key), "{name}");
    }
    assert_eq!(at("azure").auth_style(), AuthStyle::AzureApiKey);
}

#[test]
fn unprefixed_models_get_the_provider_litellm_infers() {
    let infer = |m: &str| ProviderKind::infer_from_model(m).map(ProviderKind::as_str);
    for m in ["gpt-4o", "o1", "o3-mini", "o4-mini", "chatgpt-4o-latest", "text-embedding-3-small", "whisper-1"] {
        assert_eq!(infer(m), Some("openai"), "{m}");
    }
    for m in ["dall-e-3", "tts-1", "ft:gpt-4o-mini:org::id"] {
        assert_eq!(infer(m), Some("openai"), "{m}");
    }
    assert_eq!(infer("claude-sonnet-4-5"), Some("anthropic"));
    assert_eq!(infer("command-r-plus"), Some("cohere"));
    for m in ["llama3", "o5", "omega", "gemini-2.5-flash", "mistral-large"] {
        assert_eq!(infer(m), None, "{m}");
    }
    let by_base = |b: &str| ProviderKind::infer_from_base(b).map(ProviderKind::as_str);
    assert_eq!(by_base("https://api.groq.com/openai/v1"), Some("groq"));
    assert_eq!(by_base("https://api.openai.com/v1"), None);
    assert_eq!(by_base("http://vllm:8000/v1"), None);
}

#[test]
fn local_servers() {
    let local = |u: &str| is_local_server(&u.parse().unwrap());
    for u in [
        "http://localhost:11434",
        "http://127.0.0.1:8000/v1",
        "http://[::1]:8000",
        "http://vllm.models.svc:8000/v1",
        "http://vllm.models.svc.cluster.local/v1",
        "http://10.1.2.3/v1",
        "http://192.168.1.5:1234/v1",
        "http://172.20.0.1/v1",
        "http://[fd00::1]/v1",
        "http://host.docker.internal:11434",
    ] {
        assert!(local(u), "{u}");
    }
    for u in ["https://api.openai.com/v1", "http://8.8.8.8/v1", "http://vllm.example.com/v1", "http://svc.evil.com"] {
        assert!(!local(u), "{u}");
    }
    let openai = ProviderKind::OpenAi;
    assert!(!openai.needs_key(&"http://localhost:8000/v1".parse().unwrap()));
    assert!(openai.needs_key(&"https://api.openai.com/v1".parse().unwrap()));
    assert!(!ProviderKind::Ollama.needs_key(&"https://ollama.example.com".parse().unwrap()));
}

#[test]
fn shaped_bases() {
    let shape = |p: ProviderKind, base: &str, model: &str, v: Option<&str>| {
        let (uri, version) = deployment_base(p, base.parse().unwrap(), model, v).unwrap();
        (uri.to_string(), version)
    };
    let az = "https://r.openai.azure.com";
    assert_eq!(
        shape(ProviderKind::Azure, az, "gpt4o", None),
        (format!("{az}/openai/deployments/gpt4o"), Some(AZURE_DEFAULT_API_VERSION.to_owned()))
    );
    assert_eq!(
        shape(ProviderKind::Azure, &format!("{az}/openai"), "d", Some("2024-10-21")),
        (format!("{az}/openai/deployments/d"), Some("2024-10-21".to_owned()))
    );
    assert_eq!(shape(ProviderKind::Azure, az, "d", Some("v1")), (format!("{az}/openai/v1"), None));
    assert_eq!(
        shape(ProviderKind::Azure, az, "d", Some("preview")),
        (format!("{az}/openai/v1"), Some("preview".into()))
    );
    let legacy = format!("{az}/openai/deployments/x");
    assert_eq!(shape(ProviderKind::Azure, &legacy, "d", None), (legacy.clone(), None));
    assert!(deployment_base(ProviderKind::Azure, az.parse().unwrap(), "a/b", None).is_err());

    assert_eq!(shape(ProviderKind::OllamaChat, "http://o:11434", "m", None).0, "http://o:11434/v1");
    assert_eq!(shape(ProviderKind::OllamaChat, "http://o:11434/v1", "m", None).0, "http://o:11434/v1");
    let cf = "https://api.cloudflare.com/client/v4/accounts/abc";
    assert_eq!(shape(ProviderKind::Cloudflare, &format!("{cf}/ai/run"), "m", None).0, format!("{cf}/ai/v1"));
    let foundry = "https://x.services.ai.azure.com";
    assert_eq!(shape(ProviderKind::AzureAi, foundry, "m", None).0, format!("{foundry}/models"));
    assert_eq!(ProviderKind::AzureAi.auth_style_at(&foundry.parse().unwrap()), AuthStyle::AzureApiKey);
    assert_eq!(
        ProviderKind::AzureAi.auth_style_at(&"https://m.eastus.inference.ai.azure.com".parse().unwrap()),
        AuthStyle::Bearer
    );
}

#[test]
fn api_versions_are_query_safe() {
    assert!(check_api_version("2025-04-01-preview").is_ok());
    assert!(check_api_version("v1").is_ok());
    for bad in ["", "a&b=c", "x y", &"9".repeat(MAX_API_VERSION_LEN + 1)] {
        assert!(check_api_version(bad).is_err(), "{bad}");
    }
}

#[test]
fn azure_series_markers_are_not_part_of_the_deployment() {
    let base: http::Uri = "https://r.openai.azure.com".parse().unwrap();
    let (uri, version) =
        crate::provider::deployment_base(ProviderKind::Azure, base, "o_series/my-o1", Some("2024-12-01-preview"))
            .unwrap();
    assert_eq!(uri.to_string(), "https://r.openai.azure.com/openai/deployments/my-o1");
    assert_eq!(version.as_deref(), Some("2024-12-01-preview"));
}
