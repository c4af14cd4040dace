//! Per-deployment request options, read from both formats.

use std::path::Path;
use std::time::Duration;

use super::*;

fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    load_str(text, Path::new("config.yaml"))
}

fn members(d: &Deployment) -> Vec<String> {
    d.options.body_defaults.iter().map(|b| String::from_utf8_lossy(&b.member).into_owned()).collect()
}

const LITELLM: &str = r#"
model_list:
  - model_name: think-hard
    litellm_params:
      model: openai/o4-mini
      api_key: os.environ/K
      reasoning_effort: high
      temperature: 1
      max_tokens: null
      extra_body: { temperature: 0.5, metadata: { team: a } }
      extra_headers: { OpenAI-Beta: assistants=v2 }
      timeout: 12.5
      stream_timeout: 3
      max_retries: 0
      ssl_verify: /etc/ca.pem
  - model_name: think-hard
    litellm_params:
      model: openai/o4-mini
      api_key: os.environ/K2
      reasoning_effort: low
  - model_name: "*"
    litellm_params: { model: openai/*, api_key: os.environ/K, ssl_verify: false }
"#;

#[test]
fn litellm_request_options_are_read_and_make_deployments_differ() {
    let loaded = load(LITELLM).unwrap();
    let route = &loaded.config.models["think-hard"];
    assert_eq!(route.deployments.len(), 2, "different defaults are different deployments");
    let d = &route.deployments[0];
    assert_eq!(members(d), [r#""reasoning_effort":"high""#, r#""temperature":0.5"#, r#""metadata":{"team":"a"}"#]);
    assert_eq!(d.options.extra_headers["openai-beta"], "assistants=v2");
    assert_eq!(d.options.timeout, Some(Duration::from_millis(12_500)));
    assert_eq!(d.options.stream_timeout, Some(Duration::from_secs(3)));
    assert_eq!(d.options.max_retries, Some(0));
    assert_eq!(d.options.tls, TlsProfile::CaBundle("/etc/ca.pem".into()));
    assert_eq!(members(&route.deployments[1]), [r#""reasoning_effort":"low""#]);
    let wildcard = &loaded.config.models["*"].deployments[0];
    assert_eq!(wildcard.options.tls, TlsProfile::NoVerify);
    let warning = loaded.warnings.iter().find(|w| w.origin.path == "model_list[2].litellm_params.ssl_verify");
    assert!(warning.is_some_and(|w| w.message.contains("NOT verified")), "{:#?}", loaded.warnings);
    for key in ["reasoning_effort", "extra_body", "timeout", "max_retries", "ssl_verify", "extra_headers"] {
        assert!(
            !loaded.warnings.iter().any(|w| w.origin.path.ends_with(key) && w.message.contains("ignored")),
            "{key}"
        );
    }
}

#[test]
fn credentials_and_framing_cannot_be_extra_headers() {
    let text = r#"
model_list:
  - model_name: m
    litellm_params:
      model: openai/x
      api_key: os.environ/K
      extra_headers: { Authorization: Bearer sk-other, Connection: close, x-keyrelay-key: k }
      timeout: 100000
      max_retries: 101
"#;
    let errors = load(text).unwrap_err().0;
    let at = |p: &str| errors.iter().any(|d| d.origin.path == format!("model_list[0].litellm_params.{p}"));
    assert!(at("extra_headers.Authorization") && at("extra_headers.Connection") && at("extra_headers.x-keyrelay-key"));
    assert!(at("timeout") && at("max_retries"), "{errors:#?}");
    assert!(!format!("{errors:?}").contains("sk-other"));
}

#[test]
fn native_deployments_take_the_same_options() {
    let text = r#"
models:
  fast:
    deployments:
      - provider: openai
        model: gpt-4o-mini
        keys: [K]
        request_defaults: { reasoning_effort: minimal, stop: ["\n"] }
        extra_headers: { x-team: a }
        timeout: 2s
        max_retries: 1
        ssl_verify: false
  "openai/*":
    deployments:
      - { provider: openai, model: "*", keys: [K] }
"#;
    let loaded = load(text).unwrap();
    let d = &loaded.config.models["fast"].deployments[0];
    assert_eq!(members(d), [r#""reasoning_effort":"minimal""#, r#""stop":["\n"]"#]);
    assert_eq!(d.options.extra_headers["x-team"], "a");
    assert_eq!(d.options.timeout, Some(Duration::from_secs(2)));
    assert_eq!(d.options.max_retries, Some(1));
    assert_eq!(d.options.tls, TlsProfile::NoVerify);
    assert!(loaded.config.models.contains_key("openai/*"));
    let bad = "models:\n  m:\n    deployments:\n      - { provider: openai, model: x, keys: [K], request_defaults: { model: y } }\n";
    assert!(load(bad).unwrap_err().0.iter().any(|d| d.origin.path.ends_with("request_defaults.model")));
}
