//! Issue 9: LiteLLM files as users run them: keys written into the file, values as
//! PyYAML and pydantic read them, and entries keyrelay cannot serve.

use std::path::Path;
use std::time::Duration;

use super::*;

fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    load_str(text, Path::new("proxy-config.yaml"))
}

fn find<'a>(list: &'a [Diagnostic], path: &str) -> &'a Diagnostic {
    list.iter().find(|d| d.origin.path == path).unwrap_or_else(|| panic!("no diagnostic at {path}: {list:#?}"))
}

fn entry(model: &str, api_key: &str) -> String {
    format!("  - model_name: m\n    litellm_params:\n      model: {model}\n      api_key: {api_key}\n")
}

#[test]
fn a_literal_key_is_a_warning_and_is_held_under_a_name_from_the_entry() {
    let text = format!(
        "model_list:\n{}{}",
        entry("groq/llama", "gsk_live_abcdef123456"),
        entry("groq/llama", "\"gsk_live_second789\"")
    );
    let loaded = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let d = &loaded.config.models["m"].deployments[0];
    let names: Vec<_> = d.keys.iter().map(|k| (k.name.as_str(), k.kind)).collect();
    assert_eq!(names, [("inline-key:m#1", KeyRefKind::Literal), ("inline-key:m#2", KeyRefKind::Literal)]);
    assert_eq!(loaded.config.inline_secrets["inline-key:m#1"].expose(), "gsk_live_abcdef123456");
    let w = find(&loaded.warnings, "model_list[0].litellm_params.api_key");
    assert_eq!(w.origin.line, Some(5));
    assert!(w.message.contains("not secret") && w.message.contains("inline-key:m#1"), "{}", w.message);
    let everything = format!("{:?} {:?} {}", loaded.warnings, loaded.config, render_table(&loaded.config));
    assert!(!everything.contains("abcdef123456") && !everything.contains("second789"), "{everything}");

    // Resolved as written, never from the environment or the secrets dir.
    let secrets = ResolvedSecrets::read(&loaded.config, &SecretSource::new(None, loaded.config.inline_secrets.clone()));
    let resolved = secrets.resolve(&d.keys[1]).unwrap();
    assert_eq!((resolved[0].name.as_str(), resolved[0].secret.expose()), ("inline-key:m#2", "gsk_live_second789"));
}

#[test]
fn placeholders_are_sent_without_a_warning_and_references_are_not_expanded() {
    let text = format!(
        "model_list:\n{}{}{}",
        entry("openai/llama", "NONE"),
        entry("openai/llama", "sk-no-key"),
        entry("openai/llama", "${OPENAI_API_KEY}")
    )
    .replace("model: openai/llama", "model: openai/llama\n      api_base: http://localhost:8000/v1");
    let loaded = load(&text).unwrap_or_else(|e| panic!("{e}"));
    let keyed: Vec<_> = loaded.warnings.iter().filter(|d| d.origin.path.ends_with("api_key")).collect();
    assert_eq!(keyed.len(), 1, "{keyed:#?}");
    assert_eq!(keyed[0].origin.path, "model_list[2].litellm_params.api_key");
    assert!(keyed[0].message.contains("not expanded"), "{}", keyed[0].message);
    assert!(keyed[0].message.contains("os.environ/OPENAI_API_KEY"), "{}", keyed[0].message);
    let secrets = &loaded.config.inline_secrets;
    assert_eq!(secrets["inline-key:m#1"].expose(), "NONE");
    assert_eq!(secrets["inline-key:m#3"].expose(), "${OPENAI_API_KEY}");
}

#[test]
fn an_empty_or_null_api_key_means_none_written() {
    let text = "model_list:\n  - model_name: m\n    litellm_params: {model: groq/llama, api_key: null}\n  - model_name: n\n    litellm_params: {model: groq/llama, api_key: ''}\n";
    let c = load(text).unwrap().config;
    assert_eq!(c.models["m"].deployments[0].keys[0].name, "GROQ_API_KEY");
    assert!(c.models["n"].deployments[0].keys[0].implicit);
}

#[test]
fn values_as_pyyaml_and_pydantic_read_them() {
    let text = "\
litellm_settings:
  num_retries: \"3\"
  request_timeout: 12.5
router_settings:
  cooldown_time: 1_0
  timeout: null
general_settings:
  # only comments here
model_list:
  - model_name: m
    litellm_params:
      model: groq/llama
      api_key: os.environ/K
      api_base: null
      rpm: 20_000
      tpm: \"1_000_000\"
      weight: 2.0
      order: \"1\"
  - model_name: e
    litellm_params: {model: groq/llama, api_key: os.environ/K, rpm: 5}
    rpm: 1800
    tpm: 240000
";
    let loaded = load(text).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    let m = &c.models["m"];
    let d = &m.deployments[0];
    assert_eq!((d.rpm, d.tpm, d.weight, d.priority), (Some(20_000), Some(1_000_000), 2, 1));
    assert_eq!(d.base_url.to_string(), "https://api.groq.com/openai/v1");
    assert_eq!((m.num_retries, m.cooldown), (3, Duration::from_secs(10)));
    assert_eq!(c.server.request_timeout, Duration::from_millis(12_500));
    // Beside litellm_params, as in LiteLLM's own examples; LiteLLM's router reads there first.
    let e = &c.models["e"].deployments[0];
    assert_eq!((e.rpm, e.tpm), (Some(1800), Some(240_000)));
    assert!(loaded.warnings.iter().all(|w| !w.origin.path.starts_with("general_settings")), "{:#?}", loaded.warnings);
}

#[test]
fn numbers_that_are_not_numbers_are_still_errors() {
    let text = "model_list:\n  - model_name: m\n    litellm_params: {model: groq/llama, api_key: os.environ/K, rpm: '1_', tpm: 1.5, weight: -1}\n";
    let ConfigErrors(list) = load(text).unwrap_err();
    for field in ["rpm", "tpm", "weight"] {
        find(&list, &format!("model_list[0].litellm_params.{field}"));
    }
}

#[test]
fn a_duplicated_top_level_key_keeps_the_last_and_warns_at_the_dropped_line() {
    let text = "\
litellm_settings:
  num_retries: 1
model_list:
  - model_name: m
    litellm_params: {model: groq/llama, api_key: os.environ/K}
litellm_settings:
  num_retries: 4
";
    let loaded = load(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.config.models["m"].num_retries, 4);
    let w = find(&loaded.warnings, "litellm_settings");
    assert_eq!(w.origin.line, Some(1));
    assert!(w.message.contains("line 6 counts"), "{}", w.message);
    // Later diagnostics point at the occurrence that counts.
    let text = text.replace("num_retries: 4", "num_retries: 4\n  set_verbose: true");
    let loaded = load(&text).unwrap();
    assert_eq!(find(&loaded.warnings, "litellm_settings.set_verbose").origin.line, Some(8));
}

#[test]
fn unservable_entries_warn_and_leave_their_alias_declared() {
    let text = "\
litellm_settings:
  custom_provider_map: [{provider: my-llm, custom_handler: custom.handler}]
  fallbacks: [{ok: [claude]}]
model_list:
  - model_name: claude
    litellm_params: {model: bedrock/anthropic.claude-3, aws_region_name: us-east-1}
  - model_name: claude
    litellm_params: {model: vertex_ai/claude-3, vertex_project: p}
  - model_name: mine
    litellm_params: {model: my-llm/thing}
  - model_name: ok
    litellm_params: {model: groq/llama, api_key: os.environ/K}
  - model_name: mixed
    litellm_params: {model: groq/llama, api_key: os.environ/K}
  - model_name: mixed
    litellm_params: {model: sagemaker/endpoint}
";
    let loaded = load(text).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    let claude = &c.models["claude"];
    assert!(claude.deployments.is_empty());
    assert_eq!(claude.unservable.len(), 2);
    assert!(claude.unservable[0].starts_with("bedrock/anthropic.claude-3: ") && claude.unservable[0].contains("SigV4"));
    assert_eq!(c.models["ok"].fallbacks, ["claude"]);
    assert!(c.models["mine"].unservable[0].contains("custom_provider_map"));
    assert_eq!(c.models["mixed"].deployments.len(), 1);
    let w = find(&loaded.warnings, "model_list[0].litellm_params.model");
    assert_eq!(w.origin.line, Some(6));
    assert!(w.message.contains("not served"), "{}", w.message);
    // One warning per unservable entry, not one per parameter it carries.
    assert!(loaded.warnings.iter().all(|w| !w.origin.path.contains("aws_region_name")), "{:#?}", loaded.warnings);
    assert!(render_table(c).contains("not served (requests get 501): bedrock/anthropic.claude-3"));
}

#[test]
fn a_litellm_file_without_model_list_says_its_models_are_in_the_database() {
    let text = "general_settings:\n  master_key: sk-1234\n  database_url: os.environ/DATABASE_URL\n  store_model_in_db: true\nlitellm_settings:\n  drop_params: true\n";
    let ConfigErrors(list) = load(text).unwrap_err();
    assert_eq!(list.len(), 1, "{list:#?}");
    assert!(list[0].message.contains("without model_list") && list[0].message.contains("database"));
}
