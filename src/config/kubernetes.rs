//! The native `kubernetes:` section: which Secret and ConfigMap to watch through the
//! API server (see `reload::api_source`). Names are checked here so a typo is a config
//! error with a line, not a watch that silently never matches.

use serde::Deserialize;
use serde_yaml::Value;

use super::lines::join_key;
use super::model::KubernetesSource;
use super::validate::Diags;
use super::values::de;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "kubernetes")]
struct RawKubernetes {
    namespace: Option<String>,
    secret: Option<String>,
    config_map: Option<String>,
}

/// Converts the section; `None` when it is empty, `null`, or has errors.
pub(crate) fn load(diags: &mut Diags<'_>, value: Value) -> Option<KubernetesSource> {
    if value.is_null() {
        return None;
    }
    let raw: RawKubernetes = de(diags, value, "kubernetes")?;
    let errors_before = diags.errors.len();
    let mut check = |field: &str, name: &Option<String>, max: usize| {
        if let Some(name) = name {
            if !is_dns_name(name, max) {
                diags.error(
                    &join_key("kubernetes", field),
                    format!(
                        "{name:?} is not a valid Kubernetes name (lowercase letters, digits, '-', '.', at most {max})"
                    ),
                );
            }
        }
    };
    check("namespace", &raw.namespace, 63);
    check("secret", &raw.secret, 253);
    check("config_map", &raw.config_map, 253);
    if raw.secret.is_none() && raw.config_map.is_none() {
        diags.error("kubernetes", "set `secret` and/or `config_map`: the objects to watch through the API server");
    }
    if diags.errors.len() != errors_before {
        return None;
    }
    Some(KubernetesSource { namespace: raw.namespace, secret: raw.secret, config_map: raw.config_map })
}

/// RFC 1123 subdomain (Secret, ConfigMap) or label (namespace, `max` 63, no dots).
fn is_dns_name(name: &str, max: usize) -> bool {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (c == '.' && max > 63);
    !name.is_empty()
        && name.len() <= max
        && name.chars().all(allowed)
        && name.split('.').all(|part| !part.is_empty() && !part.starts_with('-') && !part.ends_with('-'))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::load_str;

    const MODELS: &str = "models:\n  m:\n    deployments:\n      - { provider: openai, model: x, keys: [K] }\n";

    #[test]
    fn section_is_parsed_and_checked() {
        let text = format!("kubernetes:\n  secret: llm-keys\n  config_map: keyrelay\n{MODELS}");
        let loaded = load_str(&text, Path::new("c.yaml")).unwrap();
        let k = loaded.config.kubernetes.unwrap();
        assert_eq!(
            (k.secret.as_deref(), k.config_map.as_deref(), k.namespace),
            (Some("llm-keys"), Some("keyrelay"), None)
        );

        let bad = format!("kubernetes:\n  namespace: Bad_NS\n  secrett: x\n{MODELS}");
        let errors = load_str(&bad, Path::new("c.yaml")).unwrap_err().to_string();
        assert!(errors.contains("secrett"), "{errors}");

        let bad = format!("kubernetes:\n  namespace: Bad_NS\n{MODELS}");
        let errors = load_str(&bad, Path::new("c.yaml")).unwrap_err().to_string();
        assert!(errors.contains("kubernetes.namespace") && errors.contains("set `secret`"), "{errors}");
    }

    #[test]
    fn dns_names() {
        assert!(super::is_dns_name("llm-keys.v2", 253));
        assert!(!super::is_dns_name("llm-keys.v2", 63));
        assert!(!super::is_dns_name("-x", 253));
        assert!(!super::is_dns_name("", 253));
        assert!(!super::is_dns_name("a..b", 253));
    }
}
