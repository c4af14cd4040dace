//! `cooldown_floor` and `max_cooldown`: inherited from `defaults`, bounded, checked
//! against each other, and at their defaults for LiteLLM files (which have neither).

use std::path::Path;
use std::time::Duration;

use super::*;

const DEPLOYMENT: &str = "    deployments:\n      - {provider: groq, model: llama, keys: [G]}\n";

fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    load_str(text, Path::new("config.yaml"))
}

/// Every diagnostic of a file that must not load.
fn errors(text: &str) -> Vec<Diagnostic> {
    match load(text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(ConfigErrors(list)) => list,
    }
}

#[test]
fn defaults_are_one_second_and_one_hour_and_sections_override_them() {
    let c = load(&format!("models:\n  m:\n{DEPLOYMENT}")).unwrap().config;
    let expected = CooldownBounds { floor: Duration::from_secs(1), ceiling: Duration::from_secs(3600) };
    assert_eq!(c.models["m"].cooldown_bounds, expected);

    let text = format!(
        "defaults:\n  cooldown_floor: 200ms\n  max_cooldown: 10m\nmodels:\n  a:\n{DEPLOYMENT}  b:\n    max_cooldown: 90s\n{DEPLOYMENT}"
    );
    let c = load(&text).unwrap().config;
    let a = CooldownBounds { floor: Duration::from_millis(200), ceiling: Duration::from_secs(600) };
    assert_eq!(c.models["a"].cooldown_bounds, a);
    assert_eq!(c.models["b"].cooldown_bounds, CooldownBounds { ceiling: Duration::from_secs(90), ..a });
}

#[test]
fn out_of_range_and_inconsistent_bounds_are_errors_at_their_field() {
    let text = format!(
        "defaults:\n  cooldown_floor: 0s\nmodels:\n  a:\n    max_cooldown: 400d\n{DEPLOYMENT}  b:\n    cooldown_floor: 30s\n    max_cooldown: 10s\n{DEPLOYMENT}  c:\n    max_cooldown: soon\n{DEPLOYMENT}"
    );
    let list = errors(&text);
    let at = |path: &str| {
        list.iter().find(|d| d.origin.path == path).unwrap_or_else(|| panic!("no error at {path}: {list:#?}"))
    };
    assert!(at("defaults.cooldown_floor").message.contains("out of range: use 10ms to 1m"), "{list:#?}");
    assert_eq!(at("defaults.cooldown_floor").origin.line, Some(2));
    assert!(at("models.a.max_cooldown").message.contains("use 1s to 1day"), "{list:#?}");
    assert!(at("models.b.cooldown_floor").message.contains("longer than max_cooldown"), "{list:#?}");
    assert!(at("models.c.max_cooldown").message.contains("invalid duration"), "{list:#?}");
    assert_eq!(list.len(), 4, "{list:#?}");
}

#[test]
fn a_cooldown_longer_than_the_ceiling_is_a_warning() {
    let text = format!("models:\n  m:\n    cooldown: 45m\n    max_cooldown: 30m\n{DEPLOYMENT}");
    let loaded = load(&text).unwrap();
    let warning = loaded.warnings.iter().find(|d| d.origin.path == "models.m.cooldown").expect("a warning");
    assert!(warning.message.contains("longer than max_cooldown 30m"), "{}", warning.message);
}

#[test]
fn litellm_files_get_the_default_bounds_even_with_cooldown_time_zero() {
    let text = "router_settings:\n  cooldown_time: 0\nmodel_list:\n  - model_name: m\n    litellm_params:\n      model: groq/llama\n      api_key: os.environ/G\n";
    let m = &load(text).unwrap().config.models["m"];
    assert_eq!(m.cooldown, Duration::ZERO);
    assert_eq!(m.cooldown_bounds, CooldownBounds::default());
}
