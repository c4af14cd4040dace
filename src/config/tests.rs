//! Whole-file tests: both formats end to end, and the error reporting contract
//! (every error at once, each with its file, line and field path).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::provider::ProviderKind;
use crate::secret::Secret;

fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    load_str(text, Path::new("config.yaml"))
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Ok(_) => panic!("expected errors"),
        Err(ConfigErrors(list)) => list,
    }
}

/// The diagnostic whose path is exactly `path`.
fn at<'a>(list: &'a [Diagnostic], path: &str) -> &'a Diagnostic {
    list.iter().find(|d| d.origin.path == path).unwrap_or_else(|| panic!("no diagnostic at {path}: {list:#?}"))
}

const NATIVE: &str = r#"
server:
  listen: 127.0.0.1:4100
  admin: 0.0.0.0:9902
  region: eu-west-1
  body_limit: 8MiB
  timeouts: { connect: 2s, request: 2m, attempt: 20s, client_body: 30, shutdown_grace: 500ms }
  session_header: x-user-id
defaults:
  strategy: least-busy
  num_retries: 4
  cooldown: 10s
  queue: { max_waiting: 7, max_wait: 3s }
models:
  gpt-4o:
    strategy: round-robin
    queue: { max_wait: 1s }
    fallbacks: [small]
    deployments:
      - provider: openai
        model: gpt-4o
        keys: [OPENAI_KEY_1, OPENAI_KEY_2]
        keys_from: OPENAI_POOL
        weight: 3
        rpm: 500
        tpm: 30000
        order: 1
      - provider: openai
        model: gpt-4o
        api_base: https://proxy.internal.example.com/v1/
        keys: [OPENAI_KEY_3]
        region: eu-west-1
        max_inflight: 50
  small:
    deployments:
      - name: local
        provider: openai-compatible
        model: llama3
        api_base: http://ollama:11434/v1
        keys: [OLLAMA_DUMMY]
        send_keys_over_http: true
"#;

#[test]
fn native_format_loads_with_defaults_and_overrides() {
    let loaded = load(NATIVE).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:4100");
    assert_eq!(c.server.body_limit, 8 << 20);
    assert_eq!(c.server.request_timeout, Duration::from_secs(120));
    assert_eq!(c.server.attempt_timeout, Some(Duration::from_secs(20)));
    assert_eq!(c.server.client_body_timeout, Duration::from_secs(30));
    assert_eq!(c.server.shutdown_grace, Duration::from_millis(500));
    assert_eq!(c.server.region.as_deref(), Some("eu-west-1"));
    assert_eq!(c.server.session_header, "x-user-id");

    let gpt = &c.models["gpt-4o"];
    assert_eq!(gpt.strategy, Strategy::RoundRobin);
    let queue = crate::config::QueueSettings { max_waiting: 7, max_wait: Duration::from_secs(1), ..Default::default() };
    assert_eq!(gpt.queue, queue, "model's queue overrides defaults field by field");
    assert_eq!(gpt.num_retries, 4);
    assert_eq!(gpt.cooldown, Duration::from_secs(10));
    assert_eq!(gpt.allowed_fails, 3);
    assert_eq!(gpt.fallbacks, ["small"]);
    let names: Vec<_> = gpt.deployments.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["openai/gpt-4o", "openai/gpt-4o#2"]);
    let d0 = &gpt.deployments[0];
    assert_eq!(d0.base_url.to_string(), "https://api.openai.com/v1");
    assert_eq!((d0.weight, d0.rpm, d0.tpm, d0.priority), (3, Some(500), Some(30000), 1));
    let keys: Vec<_> = d0.keys.iter().map(|k| (k.name.as_str(), k.kind)).collect();
    assert_eq!(
        keys,
        [
            ("OPENAI_KEY_1", KeyRefKind::Single),
            ("OPENAI_KEY_2", KeyRefKind::Single),
            ("OPENAI_POOL", KeyRefKind::Lines)
        ]
    );
    assert_eq!(d0.keys[1].origin, Origin { line: Some(22), path: "models.gpt-4o.deployments[0].keys[1]".into() });
    assert_eq!(d0.keys[2].origin.line, Some(23));
    let d1 = &gpt.deployments[1];
    assert_eq!(d1.base_url.to_string(), "https://proxy.internal.example.com/v1");
    assert_eq!((d1.weight, d1.max_inflight, d1.region.as_deref()), (1, Some(50), Some("eu-west-1")));

    let small = &c.models["small"];
    assert_eq!(small.strategy, Strategy::LeastBusy);
    assert_eq!(small.deployments[0].name, "local");
    assert_eq!(small.deployments[0].provider, ProviderKind::OpenAiCompatible);
    assert_eq!(small.deployments[0].base_url.to_string(), "http://ollama:11434/v1");
}

#[test]
fn minimal_native_uses_documented_defaults() {
    let c =
        load("models:\n  m:\n    deployments:\n      - {provider: groq, model: llama, keys: [G]}\n").unwrap().config;
    assert_eq!(c.server, ServerSettings::default());
    let m = &c.models["m"];
    assert_eq!(
        (m.strategy, m.num_retries, m.cooldown, m.allowed_fails),
        (Strategy::Usage, 2, Duration::from_secs(5), 3)
    );
    assert_eq!(m.queue, crate::config::QueueSettings::default());
    assert_eq!(m.deployments[0].base_url.to_string(), "https://api.groq.com/openai/v1");
}

#[test]
fn every_error_is_reported_at_once_with_line_and_path() {
    let text = "\
models:
  a:
    fallbacks: [nope]
    deployments:
      - provider: bedrock
        model: x
        keys: [K]
      - provider: azure
        model: gpt-4o
        keys: [K]
      - provider: openai
        model: gpt-4o
        keyz: [K]
  b:
    cooldown: soon
    deployments: []
";
    let list = errors(text);
    assert!(list.len() >= 5, "{list:#?}");
    let fb = at(&list, "models.a.fallbacks[0]");
    assert_eq!(fb.origin.line, Some(3));
    assert!(fb.message.contains("\"nope\""), "{}", fb.message);
    let p = at(&list, "models.a.deployments[0].provider");
    assert_eq!(p.origin.line, Some(5));
    assert!(p.message.contains("bedrock") && p.message.contains("openrouter"), "{}", p.message);
    let az = at(&list, "models.a.deployments[1].provider");
    assert_eq!(az.origin.line, Some(8));
    assert!(az.message.contains("api_base"), "{}", az.message);
    let unknown = at(&list, "models.a.deployments[2].keyz");
    assert_eq!(unknown.origin.line, Some(13));
    assert!(unknown.message.contains("unknown field `keyz`"), "{}", unknown.message);
    assert_eq!(at(&list, "models.b.cooldown").origin.line, Some(15));
    assert_eq!(at(&list, "models.b.deployments").origin.line, Some(16));
    // Sorted in file order, and each renders as file:line: path: message.
    let lines: Vec<_> = list.iter().map(|d| d.origin.line.unwrap_or(0)).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
    assert!(fb.to_string().starts_with("config.yaml:3: models.a.fallbacks[0]: "), "{fb}");
}

#[test]
fn unknown_native_fields_name_their_path_and_line() {
    let list = errors("server:\n  listen: 127.0.0.1:4000\n  timeouts:\n    conect: 5s\nmodels:\n  m:\n    deployments:\n      - {provider: groq, model: l, keys: [G]}\n");
    let d = at(&list, "server.timeouts.conect");
    assert_eq!(d.origin.line, Some(4));
    assert!(d.message.contains("unknown field `conect`") && d.message.contains("`connect`"), "{}", d.message);

    let list = errors("modelz: {}\nlitellm_settings: {}\n");
    assert_eq!(at(&list, "modelz").origin.line, Some(1));
    assert!(at(&list, "litellm_settings").message.contains("model_list"));
    assert!(at(&list, "models").message.contains("no models"));
}

#[test]
fn yaml_syntax_errors_carry_their_line() {
    let list = errors("models:\n  m:\n    deployments: [\n      {provider: groq\n  x: 1\n");
    assert_eq!(list.len(), 1);
    assert!(list[0].message.starts_with("invalid YAML"), "{}", list[0].message);
    assert!(matches!(list[0].origin.line, Some(4..=5)), "{:?}", list[0]);

    let list = errors("models:\n  m: 1\n   bad: indentation\n");
    assert_eq!(list[0].origin.line, Some(3), "{:?}", list[0]);
}

#[test]
fn bad_values_in_native_deployments() {
    let list = errors(
        "server:\n  listen: localhost\n  body_limit: 3 parsecs\nmodels:\n  m:\n    deployments:\n      - provider: groq\n        model: l\n        weight: 0\n        keys: [sk-proj-abc123, ../x]\n      - {provider: groq, model: l}\n",
    );
    assert_eq!(at(&list, "server.listen").origin.line, Some(2));
    assert_eq!(at(&list, "server.body_limit").origin.line, Some(3));
    assert_eq!(at(&list, "models.m.deployments[0].weight").origin.line, Some(9));
    let k0 = at(&list, "models.m.deployments[0].keys[0]");
    assert!(k0.message.contains("looks like an API key"), "{}", k0.message);
    assert!(!k0.message.contains("abc123"));
    assert!(at(&list, "models.m.deployments[0].keys[1]").message.contains("not a valid secret name"));
    assert!(at(&list, "models.m.deployments[1]").message.contains("at least one key"));
}

#[test]
fn explicit_deployment_names_must_be_unique() {
    let list = errors(
        "models:\n  m:\n    deployments:\n      - {name: a, provider: groq, model: l, keys: [G]}\n      - {name: a, provider: groq, model: l, keys: [H]}\n",
    );
    assert_eq!(at(&list, "models.m.deployments[1].name").origin.line, Some(5));
}

#[test]
fn fallback_to_itself_is_an_error() {
    let list =
        errors("models:\n  m:\n    fallbacks: [m]\n    deployments:\n      - {provider: groq, model: l, keys: [G]}\n");
    assert!(at(&list, "models.m.fallbacks[0]").message.contains("itself"));
}

#[test]
fn serde_type_errors_do_not_echo_values() {
    let list = errors("models:\n  m:\n    deployments:\n      - {provider: groq, model: l, keys: sk-live-123456}\n");
    let d = at(&list, "models.m.deployments[0].keys");
    assert!(!d.message.contains("123456"), "{}", d.message);
}

#[test]
fn io_errors_are_one_diagnostic() {
    let missing = PathBuf::from("/nonexistent/keyrelay/config.yaml");
    let ConfigErrors(list) = load_file(&missing).unwrap_err();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].file, missing);
    assert!(list[0].message.contains("cannot read"));
    assert!(load("").is_err());
    assert!(load("- a\n- b\n").is_err());
}

#[test]
fn shipped_examples_load_without_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let native = load_file(&dir.join("keyrelay.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(native.warnings.is_empty(), "{:?}", native.warnings);
    assert!(native.config.models.len() >= 3);
    let lite = load_file(&dir.join("litellm-proxy-config.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let gemini = lite.config.models.values().flat_map(|m| &m.deployments).find(|d| d.provider == ProviderKind::Gemini);
    let keys: Vec<_> = gemini.map(|d| d.keys.iter().map(|k| k.name.as_str()).collect()).unwrap_or_default();
    assert_eq!(keys, ["GEMINI_API_KEY", "GEMINI_API_KEY_2"]);
    let cerebras =
        lite.config.models.values().flat_map(|m| &m.deployments).find(|d| d.provider == ProviderKind::Cerebras);
    assert_eq!(cerebras.map(|d| d.keys.len()), Some(3));
}

#[test]
fn render_table_shows_names_not_values() {
    let mut loaded = load(NATIVE).unwrap();
    loaded.config.inline_secrets.insert("INLINE".into(), Secret::new("sk-inline-value"));
    let table = render_table(&loaded.config);
    for needle in [
        "model gpt-4o",
        "round-robin",
        "fallbacks: small",
        "openai/gpt-4o#2",
        "OPENAI_POOL (one key per line)",
        "rpm 500",
        "INLINE",
        "keys: OPENAI_KEY_3 -> sent to https://proxy.internal.example.com\n",
        "keys: OLLAMA_DUMMY -> sent to http://ollama:11434 (plain http)\n",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    assert!(!table.contains("sk-inline-value"));
    // The header and the rows of all aliases share column positions.
    let col = |l: &str| l.find("https://").or_else(|| l.find("http://")).or_else(|| l.find("BASE URL"));
    let cols: Vec<_> = table.lines().filter(|l| !l.trim_start().starts_with("keys:")).filter_map(col).collect();
    assert!(cols.len() >= 5 && cols.windows(2).all(|w| w[0] == w[1]), "{table}");
}

#[test]
fn yaml_merge_keys_share_deployment_settings() {
    let text = "\
models:
  a:
    deployments:
      - &groq {provider: groq, model: llama, keys: [G1]}
      - <<: *groq
        keys: [G2]
        rpm: 10
";
    let c = load(text).unwrap().config;
    let d = &c.models["a"].deployments;
    assert_eq!((d[1].upstream_model.as_str(), d[1].rpm), ("llama", Some(10)));
    assert_eq!(d[1].keys[0].name, "G2");
    assert_eq!(d[1].name, "groq/llama#2");
}

#[test]
fn buffered_bodies_budget_is_a_bounded_size_no_smaller_than_the_body_limit() {
    let m = "models:\n  m:\n    deployments:\n      - {provider: groq, model: l, keys: [G]}\n";
    let c = load(m).unwrap().config;
    assert_eq!(c.server.max_buffered_bodies, 128 << 20);
    let c = load(&format!("server:\n  max_buffered_bodies: 256MiB\n{m}")).unwrap().config;
    assert_eq!(c.server.max_buffered_bodies, 256 << 20);
    let list = errors(&format!("server:\n  max_buffered_bodies: 16MiB\n{m}"));
    assert!(at(&list, "server.max_buffered_bodies").message.contains("body_limit"));
    let list = errors(&format!("server:\n  max_buffered_bodies: 65GiB\n{m}"));
    assert!(at(&list, "server.max_buffered_bodies").message.contains("at most"));
    let list = errors(&format!("server:\n  body_limit: 200MiB\n{m}"));
    assert_eq!(at(&list, "server.max_buffered_bodies").origin.path, "server.max_buffered_bodies");
}
