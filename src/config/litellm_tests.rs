//! LiteLLM `proxy-config.yaml` loading: the migration path must take real files
//! as they are, and say what it ignores.

use std::path::Path;
use std::time::Duration;

use super::litellm_params::split_model;
use super::litellm_settings::map_strategy;
use super::*;
use crate::provider::ProviderKind;

fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    load_str(text, Path::new("proxy-config.yaml"))
}

fn find<'a>(list: &'a [Diagnostic], path: &str) -> &'a Diagnostic {
    list.iter().find(|d| d.origin.path == path).unwrap_or_else(|| panic!("no diagnostic at {path}: {list:#?}"))
}

/// Shaped like the multi-key guide's config (seed 000), plus fallbacks and settings.
const SEED: &str = r#"
environment_variables:
  GEMINI_API_KEY: AIzaSy-first-secret-value
  GEMINI_API_KEY_2: AIzaSy-second-secret-value

litellm_settings:
  num_retries: 3
  request_timeout: 300
  drop_params: true
  set_verbose: true
  fallbacks: [{"gemini-2.5-flash": ["owl-alpha", "claude-sonnet-4"]}]

router_settings:
  routing_strategy: usage-based-routing-v2
  allowed_fails: 5
  cooldown_time: 30
  redis_host: redis

general_settings:
  master_key: sk-1234
  database_url: postgres://x

model_list:
- litellm_params:
    api_key: os.environ/GEMINI_API_KEY
    model: gemini/gemini-2.5-flash
  model_name: gemini-2.5-flash
  fallbacks: [owl-alpha]

- litellm_params:
    api_key: os.environ/GEMINI_API_KEY_2
    model: gemini/gemini-2.5-flash
  model_name: gemini-2.5-flash

- litellm_params:
    api_key: os.environ/OPENROUTER_API_KEY
    model: openrouter/openrouter/owl-alpha
  model_name: owl-alpha

- litellm_params:
    api_key: os.environ/OPENROUTER_API_KEY
    model: openrouter/anthropic/claude-sonnet-4.6
    rpm: 100
  model_name: claude-sonnet-4
  model_info:
    id: abc

- litellm_params:
    api_key: os.environ/OPENROUTER_API_KEY_2
    model: openrouter/anthropic/claude-sonnet-4.6
    temperature: 0.2
  model_name: claude-sonnet-4

- litellm_params:
    api_key: os.environ/CEREBRAS_API_KEY
    model: cerebras/llama-3.1-8b
  model_name: cerebras-llama-3.1-8b
- litellm_params:
    api_key: os.environ/CEREBRAS_API_KEY_2
    model: cerebras/llama-3.1-8b
  model_name: cerebras-llama-3.1-8b
- litellm_params:
    api_key: os.environ/CEREBRAS_API_KEY_3
    model: cerebras/llama-3.1-8b
  model_name: cerebras-llama-3.1-8b
"#;

#[test]
fn seed_style_config_becomes_aliases_with_merged_keys() {
    let loaded = load(SEED).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    let aliases: Vec<_> = c.models.keys().map(String::as_str).collect();
    assert_eq!(aliases, ["cerebras-llama-3.1-8b", "claude-sonnet-4", "gemini-2.5-flash", "owl-alpha"]);

    let gemini = &c.models["gemini-2.5-flash"];
    assert_eq!(gemini.deployments.len(), 1);
    let d = &gemini.deployments[0];
    assert_eq!(
        (d.name.as_str(), d.provider, d.upstream_model.as_str()),
        ("gemini/gemini-2.5-flash", ProviderKind::Gemini, "gemini-2.5-flash")
    );
    assert_eq!(d.base_url.to_string(), "https://generativelanguage.googleapis.com/v1beta/openai");
    let keys: Vec<_> = d.keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(keys, ["GEMINI_API_KEY", "GEMINI_API_KEY_2"]);
    assert_eq!(d.keys[1].origin.path, "model_list[1].litellm_params.api_key");
    assert_eq!(d.keys[1].origin.line, Some(31));
    // Per-entry and global fallbacks, unioned in order without repeats.
    assert_eq!(gemini.fallbacks, ["owl-alpha", "claude-sonnet-4"]);
    assert_eq!((gemini.strategy, gemini.num_retries), (Strategy::Usage, 3));
    assert_eq!((gemini.allowed_fails, gemini.cooldown), (5, Duration::from_secs(30)));
    assert_eq!(c.server.request_timeout, Duration::from_secs(300));

    let owl = &c.models["owl-alpha"].deployments[0];
    assert_eq!((owl.provider, owl.upstream_model.as_str()), (ProviderKind::OpenRouter, "openrouter/owl-alpha"));

    // Different rpm: two deployments, auto-named with a suffix.
    let claude = &c.models["claude-sonnet-4"];
    let names: Vec<_> = claude.deployments.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["openrouter/anthropic/claude-sonnet-4.6", "openrouter/anthropic/claude-sonnet-4.6#2"]);
    assert_eq!(claude.deployments[0].rpm, Some(100));
    assert_eq!(claude.deployments[0].upstream_model, "anthropic/claude-sonnet-4.6");

    let cerebras = &c.models["cerebras-llama-3.1-8b"];
    assert_eq!(cerebras.deployments.len(), 1);
    assert_eq!(cerebras.deployments[0].keys.len(), 3);

    assert_eq!(c.inline_secrets["GEMINI_API_KEY_2"].expose(), "AIzaSy-second-secret-value");
}

#[test]
fn ignored_keys_and_inline_secrets_are_warnings_without_values() {
    let loaded = load(SEED).unwrap();
    let w = &loaded.warnings;
    for path in [
        "litellm_settings.set_verbose",
        "general_settings.master_key",
        "general_settings.database_url",
        "model_list[3].model_info.id",
    ] {
        assert!(find(w, path).message.contains("ignored: not implemented by keyrelay"), "{path}");
    }
    assert_eq!(find(w, "general_settings.master_key").origin.line, Some(20));
    // Implemented (shared state through Redis): not reported as ignored.
    assert!(!w.iter().any(|d| d.origin.path == "router_settings.redis_host"), "{w:?}");
    assert!(loaded.config.shared.is_some());
    let env = find(w, "environment_variables.GEMINI_API_KEY");
    assert!(env.message.contains("not secret"));
    assert_eq!(env.origin.line, Some(3));
    // drop_params is accepted silently.
    assert!(w.iter().all(|d| !d.origin.path.contains("drop_params")));
    let everything = format!("{loaded:?} {w:?}");
    for value in ["first-secret-value", "second-secret-value", "sk-1234", "postgres://"] {
        assert!(!everything.contains(value), "{value} leaked");
    }
}

#[test]
fn unknown_providers_and_fallbacks_of_unknown_aliases_are_warnings_unknown_targets_errors() {
    let text = "\
model_list:
  - model_name: a
    litellm_params: {model: bedrock/claude, api_key: os.environ/K}
  - model_name: b
    litellm_params: {model: azure/my-gpt4o, api_key: os.environ/AZ}
    fallbacks: [zzz]
  - model_name: c
    litellm_params: {model: hosted_vllm/llama, api_base: 'http://vllm:8000/v1/', api_key: os.environ/V}
litellm_settings:
  fallbacks: [{ghost: [a]}]
";
    let ConfigErrors(list) = load(text).unwrap_err();
    // azure/ without api_base reads AZURE_API_BASE like a key (when the snapshot is built).
    assert_eq!(find(&list, "model_list[1].fallbacks[0]").origin.line, Some(6));
    // Fallbacks *for* an alias that does not exist are never used (LiteLLM loads them).
    assert_eq!(list.len(), 1, "{list:#?}");
}

#[test]
fn missing_api_key_uses_the_providers_variable_and_openai_compatible_needs_base() {
    let text = "model_list:\n  - model_name: m\n    litellm_params: {model: groq/llama}\n  - model_name: v\n    litellm_params: {model: hosted_vllm/llama, api_base: 'http://vllm:8000', api_key: os.environ/V}\n";
    let loaded = load(text).unwrap();
    assert_eq!(loaded.config.models["m"].deployments[0].keys[0].name, "GROQ_API_KEY");
    assert!(find(&loaded.warnings, "model_list[0].litellm_params").message.contains("GROQ_API_KEY"));
    let v = &loaded.config.models["v"].deployments[0];
    assert_eq!(v.provider, ProviderKind::HostedVllm);
    assert!(!v.base_url.to_string().ends_with("//"));
    assert!(v.base_url.to_string().starts_with("http://vllm:8000"));
}

#[test]
fn strategies_map_and_unknown_ones_warn() {
    assert_eq!(map_strategy("simple-shuffle"), Some(Strategy::Weighted));
    assert_eq!(map_strategy("least-busy"), Some(Strategy::LeastBusy));
    assert_eq!(map_strategy("usage-based-routing"), Some(Strategy::Usage));
    assert_eq!(map_strategy("usage-based-routing-v2"), Some(Strategy::Usage));
    assert_eq!(map_strategy("latency-based-routing"), Some(Strategy::Latency));
    assert_eq!(map_strategy("cost-based-routing"), None);
    let text = "router_settings:\n  routing_strategy: cost-based-routing\nmodel_list:\n  - model_name: m\n    litellm_params: {model: gpt-4o, api_key: os.environ/K}\n";
    let loaded = load(text).unwrap();
    assert!(find(&loaded.warnings, "router_settings.routing_strategy").message.contains("usage"));
    let m = &loaded.config.models["m"];
    assert_eq!(m.strategy, Strategy::Usage);
    assert_eq!(m.deployments[0].provider, ProviderKind::OpenAi);
}

#[test]
fn model_splits_at_the_first_slash() {
    assert_eq!(split_model("gemini/gemini-2.5-flash"), Ok((ProviderKind::Gemini, "gemini-2.5-flash".into())));
    assert_eq!(
        split_model("openrouter/anthropic/claude-sonnet-4.6"),
        Ok((ProviderKind::OpenRouter, "anthropic/claude-sonnet-4.6".into()))
    );
    assert_eq!(split_model("gpt-4o"), Ok((ProviderKind::OpenAi, "gpt-4o".into())));
    assert_eq!(split_model("together_ai/meta/llama"), Ok((ProviderKind::Together, "meta/llama".into())));
    assert!(split_model("vertex_ai/gemini").unwrap_err().contains("openrouter"));
    assert!(split_model("groq/").is_err());
}

#[test]
fn wildcard_fallbacks_apply_to_every_other_alias() {
    let text = "\
router_settings:
  fallbacks: [{'*': [b]}]
model_list:
  - {model_name: a, litellm_params: {model: groq/x, api_key: os.environ/K}, fallbacks: [c]}
  - {model_name: b, litellm_params: {model: groq/y, api_key: os.environ/K}}
  - {model_name: c, litellm_params: {model: groq/z, api_key: os.environ/K}}
";
    let c = load(text).unwrap().config;
    assert_eq!(c.models["a"].fallbacks, ["c", "b"]);
    assert!(c.models["b"].fallbacks.is_empty());
    assert_eq!(c.models["c"].fallbacks, ["b"]);
}
