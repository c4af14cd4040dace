//! The compatibility report, the `ignored` warnings and README's table come from one
//! table; these tests hold the readers and README to it.

use std::path::Path;

use super::litellm_compat::{markdown_table, Support, TABLE};
use super::*;

/// Every key of the table, with values the readers accept.
const EVERY_KEY: &str = "\
environment_variables:
  X: y
litellm_settings:
  num_retries: 1
  request_timeout: 10
  fallbacks: []
  context_window_fallbacks: []
  content_policy_fallbacks: []
  drop_params: true
  custom_provider_map: []
  success_callback: [langfuse]
  failure_callback: [langfuse]
  callbacks: [x]
  cache: true
  set_verbose: true
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 1
  timeout: 10
  fallbacks: []
  context_window_fallbacks: []
  content_policy_fallbacks: []
  redis_host: redis.default.svc
  redis_port: 6379
  redis_password: os.environ/REDIS_PASSWORD
  redis_url: redis://redis.default.svc:6379
  allowed_fails: 1
  cooldown_time: 1
  enable_pre_call_checks: true
general_settings:
  background_health_checks: true
  health_check_interval: 300
  master_key: sk-1234
  database_url: os.environ/DATABASE_URL
  store_model_in_db: false
model_list:
  - model_name: m
    litellm_params:
      model: azure/x
      api_key: os.environ/K
      api_base: https://r.openai.azure.com
      rpm: 1
      tpm: 1
      weight: 1
      order: 0
      region_name: eu
      timeout: 5
      stream_timeout: 5
      api_version: 2024-10-21
      organization: org-1
      max_retries: 2
      ssl_verify: true
      extra_headers: {x-team: a}
      extra_body: {top_k: 3}
      temperature: 0.2
      max_tokens: 100
      reasoning_effort: low
    fallbacks: []
    rpm: 1
    tpm: 1
    model_info: {id: x, input_cost_per_token: 0.0000025, output_cost_per_token: 0.00001}
  - model_name: m
    litellm_params: {model: groq/x, api_key: os.environ/K2}
unknown_top: 1
";

#[test]
fn the_report_says_what_the_table_says_for_every_key_in_it() {
    let loaded = load_str(EVERY_KEY, Path::new("c.yaml")).unwrap_or_else(|e| panic!("{e}"));
    for (section, key, support) in TABLE {
        let name = format!("{}{key}", crate::config::litellm_compat::prefix_of(*section));
        let row = loaded.compat.iter().find(|r| r.key == name).unwrap_or_else(|| panic!("{name} not in the report"));
        assert_eq!(row.support, *support, "{name}: the reader and the table disagree");
        // Ignored keys are warned about, with the table's reason; the others are not.
        let path = match section {
            LitellmSection::Top => key.to_string(),
            LitellmSection::Entry => format!("model_list[0].{key}"),
            LitellmSection::Params => format!("model_list[0].litellm_params.{key}"),
            _ => name.clone(),
        };
        let warned = loaded.warnings.iter().find(|w| w.message.starts_with("ignored") && w.origin.path == path);
        match support {
            Support::Ignored(why) => {
                let w = warned.unwrap_or_else(|| panic!("{name} is ignored but not warned about"));
                assert!(w.message.contains(why), "{}", w.message);
            }
            _ => assert!(warned.is_none(), "{name} is warned as ignored: {warned:?}"),
        }
    }
    let unknown = loaded.compat.iter().find(|r| r.key == "unknown_top").unwrap();
    assert_eq!(unknown.support, Support::Ignored("not implemented by keyrelay"));
    let twice = loaded.compat.iter().find(|r| r.key == "model_list[].litellm_params.api_key").unwrap();
    assert_eq!(twice.count, 2);
    let text = render_report(&loaded.compat);
    assert!(text.contains("approximated") && text.contains("general_settings.master_key"), "{text}");
}

#[test]
fn readme_carries_the_same_table() {
    let readme = include_str!("../../README.md");
    let table = markdown_table();
    assert!(readme.contains(&table), "README's LiteLLM table is out of date; it must read:\n{table}");
}

#[test]
fn native_files_have_no_report() {
    let text = "models:\n  m:\n    deployments:\n      - {provider: groq, model: x, keys: [K]}\n";
    assert!(load_str(text, Path::new("c.yaml")).unwrap().compat.is_empty());
}
