//! Required regions, health check intervals and the key probe bound: both formats,
//! bounds, the checks that keep a required region a promise, and `check`'s table.

use std::path::Path;
use std::time::Duration;

use super::*;

fn load(text: &str) -> Result<Loaded, ConfigErrors> {
    load_str(text, Path::new("config.yaml"))
}

fn messages(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("expected errors in:\n{text}"),
        Err(ConfigErrors(list)) => list.into_iter().map(|d| format!("{}: {}", d.origin.path, d.message)).collect(),
    }
}

const EU_US: &str = "    deployments:\n      - {provider: groq, model: a, keys: [E], region: eu}\n      - {provider: groq, model: b, keys: [U], region: us}\n";

#[test]
fn native_fields_inherit_from_the_server_and_aliases_override() {
    let text = format!(
        "server:\n  required_regions: [eu]\n  health_check_interval: 5m\n  timeouts: {{key_probe: 3s}}\nmodels:\n  a:\n{EU_US}  b:\n    required_regions: [us, eu, us]\n    health_check_interval: 30s\n{EU_US}"
    );
    let c = load(&text).unwrap().config;
    assert_eq!(c.server.key_probe_timeout, Duration::from_secs(3));
    assert_eq!(
        (&c.models["a"].required_regions[..], c.models["a"].health_check_interval),
        (&["eu".to_owned()][..], Some(Duration::from_secs(300)))
    );
    assert_eq!(c.models["b"].required_regions, ["us", "eu"], "repeats dropped");
    assert_eq!(c.models["b"].health_check_interval, Some(Duration::from_secs(30)));
    let plain = load(&format!("models:\n  a:\n{EU_US}")).unwrap().config;
    assert_eq!(
        (plain.models["a"].health_check_interval, plain.server.key_probe_timeout),
        (None, Duration::from_secs(10))
    );
    assert!(plain.models["a"].required_regions.is_empty(), "off by default");

    let table = render_table(&c);
    assert!(table.contains("required regions: eu"), "{table}");
    assert!(table.contains("never used: outside the required regions"), "{table}");
    assert!(table.contains("health checks: every key probed every 30s"), "{table}");
}

#[test]
fn bad_values_are_errors_with_their_paths() {
    let text = format!(
        "server:\n  health_check_interval: 10ms\n  timeouts: {{key_probe: 1h}}\nmodels:\n  a:\n    required_regions: [asia]\n{EU_US}  b:\n    required_regions: ['']\n    health_check_interval: 2d\n{EU_US}"
    );
    let all = messages(&text).join("\n");
    for path in [
        "server.health_check_interval",
        "server.timeouts.key_probe",
        "models.a.required_regions",
        "models.b.required_regions",
        "models.b.health_check_interval",
    ] {
        assert!(all.contains(path), "{path} missing in:\n{all}");
    }
}

#[test]
fn a_fallback_may_not_leave_the_required_regions() {
    let text = format!("models:\n  a:\n    required_regions: [eu]\n    fallbacks: [b]\n{EU_US}  b:\n{EU_US}");
    let all = messages(&text).join("\n");
    assert!(all.contains("models.a.fallbacks") && all.contains("outside eu"), "{all}");
    let text = format!("models:\n  a:\n    required_regions: [eu]\n    fallbacks: [b]\n{EU_US}  b:\n    required_regions: [eu]\n{EU_US}");
    assert!(load(&text).is_ok());
}

#[test]
fn litellm_background_health_checks_switch_them_on() {
    let list = "model_list:\n  - model_name: m\n    litellm_params: {model: groq/llama, api_key: os.environ/G, region_name: eu}\n";
    let on = load(&format!("{list}general_settings:\n  background_health_checks: true\n  health_check_interval: 60\n"))
        .unwrap();
    assert_eq!(on.config.models["m"].health_check_interval, Some(Duration::from_secs(60)));
    assert!(on.warnings.iter().all(|w| !w.origin.path.starts_with("general_settings")), "{:#?}", on.warnings);
    let default = load(&format!("{list}general_settings:\n  background_health_checks: true\n")).unwrap();
    assert_eq!(default.config.models["m"].health_check_interval, Some(Duration::from_secs(300)), "LiteLLM's default");
    let off = load(&format!("{list}general_settings:\n  health_check_interval: 60\n")).unwrap();
    assert_eq!(off.config.models["m"].health_check_interval, None, "only with background_health_checks");
}
