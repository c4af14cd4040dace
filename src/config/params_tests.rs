//! `os.environ/NAME` in `litellm_params` strings: kept as names by validation,
//! resolved against a [`SecretSource`] like keys, with errors at the field.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn load(text: &str) -> Config {
    load_str(text, Path::new("proxy-config.yaml")).unwrap_or_else(|e| panic!("{e}")).config
}

/// A secrets dir holding `files`.
fn secrets(files: &[(&str, &str)]) -> (tempfile::TempDir, SecretSource) {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in files {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    let source = SecretSource::new(Some(dir.path().into()), BTreeMap::new());
    (dir, source)
}

fn only(config: &Config) -> &Deployment {
    let route = config.models.values().next().unwrap();
    &route.deployments[0]
}

const AZURE: &str = "model_list:
  - model_name: m
    litellm_params:
      model: azure/gpt-4o-eu
      api_key: os.environ/PARAMS_T_AZ_KEY
      api_base: os.environ/PARAMS_T_AZ_BASE
      api_version: os.environ/PARAMS_T_AZ_VERSION
      organization: os.environ/PARAMS_T_ORG
      region_name: os.environ/PARAMS_T_REGION
";

#[test]
fn every_field_resolves_from_its_secret_and_none_is_a_key() {
    let config = load(AZURE);
    let d = only(&config);
    let fields: Vec<ParamField> = d.from_secrets.iter().map(|p| p.field).collect();
    use ParamField::*;
    assert_eq!(fields, [ApiBase, ApiVersion, Organization, Region]);
    assert_eq!(d.from_secrets[0].origin.path, "model_list[0].litellm_params.api_base");
    assert_eq!(d.keys.len(), 1, "only api_key is a key");

    let (_dir, source) = secrets(&[
        ("PARAMS_T_AZ_KEY", "k"),
        ("PARAMS_T_AZ_BASE", "https://eu.openai.azure.com/\n"),
        ("PARAMS_T_AZ_VERSION", "2024-10-21"),
        ("PARAMS_T_ORG", "org-team-a"),
        ("PARAMS_T_REGION", "eu-west"),
    ]);
    let resolved = resolve_params(&config, &ResolvedSecrets::read(&config, &source)).unwrap();
    assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
    let d = only(&resolved.config);
    assert_eq!(d.base_url.to_string(), "https://eu.openai.azure.com/openai/deployments/gpt-4o-eu");
    assert_eq!(d.api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(d.organization.as_deref(), Some("org-team-a"));
    assert_eq!(d.region.as_deref(), Some("eu-west"));
    assert_eq!(d.from_secrets.len(), 4, "kept, so the next reload reads them again");
    let table = render_table(&resolved.config);
    assert!(table.contains("https://eu.openai.azure.com/"), "{table}");
    assert!(table.contains("api_base <- secret PARAMS_T_AZ_BASE"), "{table}");
    assert!(table.contains("1 key reference(s)"), "{table}");
}

#[test]
fn a_missing_secret_names_the_secret_and_the_field() {
    let config = load(AZURE);
    let (_dir, source) = secrets(&[("PARAMS_T_AZ_KEY", "k"), ("PARAMS_T_AZ_BASE", "https://x.example.com")]);
    let errors = resolve_params(&config, &ResolvedSecrets::read(&config, &source)).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|d| d.origin.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "model_list[0].litellm_params.api_version",
            "model_list[0].litellm_params.organization",
            "model_list[0].litellm_params.region_name"
        ]
    );
    assert!(errors[0].message.contains("PARAMS_T_AZ_VERSION") && errors[0].message.contains("not found"), "{errors:?}");
    assert!(errors[0].origin.line.is_some(), "line of the field: {errors:?}");
}

#[test]
fn a_value_that_is_not_a_url_is_shown_unless_it_looks_like_a_key() {
    let config = load(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: os.environ/PARAMS_T_KEY\n      api_base: os.environ/PARAMS_T_BASE\n",
    );
    let (_dir, source) = secrets(&[("PARAMS_T_KEY", "k"), ("PARAMS_T_BASE", "upstream.example.com/v1")]);
    let errors = resolve_params(&config, &ResolvedSecrets::read(&config, &source)).unwrap_err();
    assert_eq!(errors.len(), 1);
    let message = &errors[0].message;
    assert_eq!(errors[0].origin.path, "model_list[0].litellm_params.api_base");
    assert!(message.contains("PARAMS_T_BASE") && message.contains("upstream.example.com/v1"), "{message}");

    let key = "sk-proj-Q3vX9kLm2PzT8wRb5NcY7dHf1JgK4sAe";
    let (_dir, source) = secrets(&[("PARAMS_T_KEY", "k"), ("PARAMS_T_BASE", key)]);
    let errors = resolve_params(&config, &ResolvedSecrets::read(&config, &source)).unwrap_err();
    assert!(!errors[0].message.contains("Q3vX9kLm") && errors[0].message.contains("API key"), "{errors:?}");
}

#[test]
fn an_implied_key_is_not_sent_over_plain_http_to_a_url_from_a_secret() {
    let config = load(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-4o\n      api_base: os.environ/PARAMS_T_HTTP_BASE\n",
    );
    let (_dir, source) = secrets(&[("OPENAI_API_KEY", "k"), ("PARAMS_T_HTTP_BASE", "http://vllm.default.svc:8000/v1")]);
    let errors = resolve_params(&config, &ResolvedSecrets::read(&config, &source)).unwrap_err();
    assert!(errors[0].message.contains("OPENAI_API_KEY") && errors[0].message.contains("plain"), "{errors:?}");

    // A written key goes, with a warning; loopback needs none.
    let written = "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/gpt-4o\n      api_key: os.environ/PARAMS_T_KEY\n      api_base: os.environ/PARAMS_T_HTTP_BASE\n";
    let config = load(written);
    let (_dir, source) = secrets(&[("PARAMS_T_KEY", "k"), ("PARAMS_T_HTTP_BASE", "http://vllm.default.svc:8000/v1")]);
    let resolved = resolve_params(&config, &ResolvedSecrets::read(&config, &source)).unwrap();
    assert!(resolved.warnings[0].message.contains("PARAMS_T_KEY"), "{:?}", resolved.warnings);
    let (_dir, source) = secrets(&[("PARAMS_T_KEY", "k"), ("PARAMS_T_HTTP_BASE", "http://127.0.0.1:8000/v1")]);
    assert!(resolve_params(&config, &ResolvedSecrets::read(&config, &source)).unwrap().warnings.is_empty());
}

#[test]
fn written_values_are_checked_like_ones_from_secrets() {
    let text = "model_list:\n  - model_name: m\n    litellm_params:\n      model: azure/x\n      api_key: os.environ/K\n      api_base: https://a.openai.azure.com\n      api_version: '2024-10-21&x=1'\n      organization: org-1\n";
    let errors = load_str(text, Path::new("c.yaml")).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].origin.path, "model_list[0].litellm_params.api_version");
    let ok = text.replace("'2024-10-21&x=1'", "2024-10-21");
    let config = load(&ok);
    let d = only(&config);
    assert_eq!((d.api_version.as_deref(), d.organization.as_deref()), (Some("2024-10-21"), Some("org-1")));
    assert!(d.from_secrets.is_empty());
}

#[test]
fn entries_that_differ_in_a_parameter_secret_stay_two_deployments() {
    let text = "model_list:
  - model_name: m
    litellm_params: {model: azure/x, api_key: os.environ/K1, api_base: os.environ/BASE_A}
  - model_name: m
    litellm_params: {model: azure/x, api_key: os.environ/K2, api_base: os.environ/BASE_B}
  - model_name: m
    litellm_params: {model: azure/x, api_key: os.environ/K3, api_base: os.environ/BASE_B}
";
    let config = load(text);
    let route = config.models.values().next().unwrap();
    let keys: Vec<usize> = route.deployments.iter().map(|d| d.keys.len()).collect();
    assert_eq!(keys, [1, 2]);
}

#[test]
fn a_model_from_a_secret_decides_the_provider_and_is_watched() {
    let text = "model_list:\n  - model_name: m\n    litellm_params:\n      model: os.environ/PARAMS_T_MODEL\n      api_key: os.environ/K\n";
    // Without secrets there is nothing to read it from: an error at the field.
    let errors = load_str(text, Path::new("c.yaml")).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].origin.path, "model_list[0].litellm_params.model");
    assert!(errors[0].message.contains("PARAMS_T_MODEL"), "{errors:?}");

    let (_dir, source) = secrets(&[("PARAMS_T_MODEL", "groq/llama-3.3-70b\n")]);
    let (loaded, consulted) = load_str_with_secrets(text, Path::new("c.yaml"), Some(&source));
    let loaded = loaded.unwrap_or_else(|e| panic!("{e}"));
    let d = only(&loaded.config);
    assert_eq!((d.provider.as_str(), d.upstream_model.as_str()), ("groq", "llama-3.3-70b"));
    assert_eq!(d.base_url.to_string(), "https://api.groq.com/openai/v1");
    assert_eq!(d.from_secrets[0].field, ParamField::Model);
    let names: Vec<&str> = consulted.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["PARAMS_T_MODEL"], "the reloader must hash it");
    assert_eq!(consulted[0].1.as_deref(), Ok("groq/llama-3.3-70b"), "with the value the config was read with");

    // A secret that is missing is still watched (it may arrive later).
    let (_dir, empty) = secrets(&[]);
    let (loaded, consulted) = load_str_with_secrets(text, Path::new("c.yaml"), Some(&empty));
    assert!(loaded.unwrap_err().to_string().contains("PARAMS_T_MODEL"));
    assert_eq!(consulted.len(), 1);
    assert!(consulted[0].0 == "PARAMS_T_MODEL" && consulted[0].1.is_err(), "{consulted:?}");
}
