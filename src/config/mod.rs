//! Configuration: raw serde types for both formats, validation that reports every
//! error at once (file, line, field path), and the typed runtime [`Config`].
//!
//! The file is parsed twice: serde_yaml gives values (and syntax errors with their
//! position), and [`LineIndex`] maps the field paths of later errors back to lines.

mod bounds;
mod deployment_options;
mod dupes;
mod keylike;
mod kubernetes;
mod lines;
mod litellm;
mod litellm_compat;
mod litellm_keys;
mod litellm_params;
mod litellm_settings;
mod litellm_unsupported;
mod mode;
mod model;
mod native;
mod native_server;
mod params;
mod price;
mod read;
mod render;
mod resolved;
mod secret;
pub mod shared;
mod validate;
mod values;
mod walk;

#[cfg(test)]
mod cooldown_tests;
#[cfg(test)]
mod deployment_options_tests;
#[cfg(test)]
mod hardening_tests;
#[cfg(test)]
mod lifecycle_tests;
#[cfg(test)]
mod listener_tests;
#[cfg(test)]
mod litellm_compat_tests;
#[cfg(test)]
mod litellm_migration_tests;
#[cfg(test)]
mod litellm_tests;
#[cfg(test)]
mod params_tests;
#[cfg(test)]
mod price_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use deployment_options::{BodyDefault, DeploymentOptions, TlsProfile};
pub use lines::LineIndex;
pub use litellm_compat::{render_report, CompatRow, Section as LitellmSection, Support};
pub use mode::Mode;
pub use model::*;
pub use params::{resolve_params, Resolved};
pub use price::Price;
pub use read::{MAX_CONFIG_BYTES, MAX_SECRET_BYTES};
pub use render::render_table;
pub use resolved::ResolvedSecrets;
pub use secret::{NamedKey, SecretError, SecretSource};
pub use validate::Consulted;

use validate::Diags;

/// Reads and loads a config file. A file that cannot be read is reported like any
/// other config error, so `check` and reloads have one error path.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigErrors> {
    let text = read_config_text(path).map_err(|message| single(path, message))?;
    load_str(&text, path)
}

/// The config file's text: a regular file (after symlinks) of at most
/// [`MAX_CONFIG_BYTES`], opened without blocking (see `read`).
pub fn read_config_text(path: &Path) -> Result<String, String> {
    let bytes = match read::read_regular(path, MAX_CONFIG_BYTES) {
        Ok(bytes) => bytes,
        Err(read::ReadError::NotFound) => {
            return Err(format!("cannot read config file: {} does not exist", path.display()))
        }
        Err(read::ReadError::Refused(reason)) => return Err(format!("cannot read config file: {reason}")),
    };
    String::from_utf8(bytes).map_err(|_| "config file is not valid UTF-8".to_owned())
}

/// Loads config text; `source` is only used in messages. A top-level `model_list`
/// means a LiteLLM `proxy-config.yaml`, anything else is the native format. Text
/// over [`MAX_CONFIG_BYTES`] is refused before parsing, wherever it came from (the
/// file or the ConfigMap through the API).
pub fn load_str(text: &str, source: &Path) -> Result<Loaded, ConfigErrors> {
    load_str_with_secrets(text, source, None).0
}

/// [`load_str`], reading `model: os.environ/NAME` from `secrets` (a LiteLLM entry's
/// model decides its provider, so it is needed to validate the entry). Also returns
/// each secret read that way with what it gave, found or not, for the reloader to hash.
pub fn load_str_with_secrets(
    text: &str,
    source: &Path,
    secrets: Option<&SecretSource>,
) -> (Result<Loaded, ConfigErrors>, Vec<Consulted>) {
    let mut consulted = Vec::new();
    let loaded = load_checked(text, source, secrets, &mut consulted);
    (loaded, consulted)
}

fn load_checked(
    text: &str,
    source: &Path,
    secrets: Option<&SecretSource>,
    consulted: &mut Vec<Consulted>,
) -> Result<Loaded, ConfigErrors> {
    if text.len() as u64 > MAX_CONFIG_BYTES {
        let limit = read::size(MAX_CONFIG_BYTES);
        return Err(single(source, format!("config is larger than the limit of {limit}")));
    }
    let Converted { config, mut errors, mut warnings, compat } = convert(text, source, secrets, consulted)?;
    if !errors.is_empty() {
        sort_by_line(&mut errors);
        return Err(ConfigErrors(errors));
    }
    sort_by_line(&mut warnings);
    Ok(Loaded { config, warnings, compat })
}

/// The process settings of a config that does not load, for `run` to start with while
/// it waits for a good version: `server` and `kubernetes` as the text states them when
/// that section has no error of its own, else the defaults (and no API watch). A
/// typo in a model must not move the ports, nor slow the fix by dropping the API watch.
pub fn process_settings_despite_errors(text: &str, source: &Path) -> (ServerSettings, Option<KubernetesSource>) {
    let Ok(Converted { config, errors, .. }) = convert(text, source, None, &mut Vec::new()) else {
        return (ServerSettings::default(), None);
    };
    let clean = |section: &str| {
        !errors.iter().any(|d| d.origin.path == section || d.origin.path.starts_with(&format!("{section}.")))
    };
    let server = if clean("server") { config.server } else { ServerSettings::default() };
    (server, config.kubernetes.filter(|_| clean("kubernetes")))
}

/// What [`convert`] found.
struct Converted {
    config: Config,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    compat: Vec<CompatRow>,
}

/// Parses and converts either format, collecting errors and warnings (unsorted); the
/// config is complete but, where there are errors, partly made of defaults.
fn convert(
    text: &str,
    source: &Path,
    secrets: Option<&SecretSource>,
    consulted: &mut Vec<Consulted>,
) -> Result<Converted, ConfigErrors> {
    // A key written twice: the last one counts, as in PyYAML (and so in LiteLLM).
    let (text, duplicates) = dupes::dedupe(text);
    let text = text.as_ref();
    let mut root: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return Err(ConfigErrors(vec![syntax_error(source, &e)])),
    };
    // YAML merge keys (`<<: *anchor`) let users share deployment settings.
    if let Err(e) = root.apply_merge() {
        return Err(ConfigErrors(vec![syntax_error(source, &e)]));
    }
    let lines = LineIndex::build(text);
    let mut diags = Diags::new(source, &lines);
    diags.secrets = secrets;
    for d in duplicates {
        let message =
            format!("written twice: line {} counts, line {} is ignored (as in LiteLLM)", d.kept_line, d.dropped_line);
        let diagnostic = Diagnostic {
            file: source.to_path_buf(),
            origin: Origin { line: Some(d.dropped_line), path: keylike::redact_path(&d.path) },
            message,
        };
        diags.warnings.push(diagnostic);
    }
    let config = match &root {
        serde_yaml::Value::Mapping(map) if map.contains_key("model_list") => litellm::load(&mut diags, &root, source),
        serde_yaml::Value::Mapping(map) if is_litellm_without_models(map) => {
            return Err(single(
                source,
                "this is a LiteLLM config without model_list: its models are kept in LiteLLM's database \
                 (store_model_in_db / the admin UI), which keyrelay does not read. Export them into a model_list \
                 in this file (model_name + litellm_params per deployment) and check again"
                    .into(),
            ))
        }
        serde_yaml::Value::Mapping(map) => native::load(&mut diags, map, source),
        serde_yaml::Value::Null => {
            return Err(single(source, "config file is empty: it needs at least `models`".into()))
        }
        _ => {
            return Err(single(
                source,
                "config file must be a YAML mapping (with `models`, or LiteLLM's `model_list`)".into(),
            ))
        }
    };
    let compat = litellm_compat::report(&diags.seen);
    consulted.append(&mut diags.consulted);
    Ok(Converted { config, errors: diags.errors, warnings: diags.warnings, compat })
}

/// Only LiteLLM's own top-level sections, and no `model_list`: a file whose models
/// live in LiteLLM's database. A key of neither format (`modelz`) is left to the
/// native reader, which names the typo.
fn is_litellm_without_models(map: &serde_yaml::Mapping) -> bool {
    const LITELLM: [&str; 12] = [
        "litellm_settings",
        "general_settings",
        "router_settings",
        "environment_variables",
        "callback_settings",
        "guardrails",
        "credential_list",
        "mcp_servers",
        "include",
        "files_settings",
        "assistant_settings",
        "finetune_settings",
    ];
    !map.is_empty() && map.keys().all(|k| k.as_str().is_some_and(|k| LITELLM.contains(&k)))
}
/// Reports in file order, so the output reads top to bottom like the file.
fn sort_by_line(list: &mut [Diagnostic]) {
    list.sort_by_key(|d| d.origin.line.unwrap_or(usize::MAX));
}

fn single(file: &Path, message: String) -> ConfigErrors {
    ConfigErrors(vec![Diagnostic { file: file.to_path_buf(), origin: Origin::default(), message }])
}

/// A YAML syntax error; serde_yaml's message already names line and column.
fn syntax_error(file: &Path, err: &serde_yaml::Error) -> Diagnostic {
    let line = err.location().map(|loc| loc.line());
    let message = format!("invalid YAML: {err}");
    Diagnostic { file: file.to_path_buf(), origin: Origin { line, path: String::new() }, message }
}
