//! LiteLLM `proxy-config.yaml`, read verbatim so users can migrate without edits.
//!
//! Unlike the native format, unknown keys are not errors here: a LiteLLM file
//! carries many settings keyrelay has no use for. Each one is reported as a warning
//! (never silently dropped), and only what changes routing is read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_yaml::Value;

use crate::provider::ProviderKind;

use super::bounds;
use super::lines::{join_index, join_key};
use super::litellm_settings::{environment, litellm_settings, router_settings, Settings};
use super::model::{destination, Config, Deployment, KeyRef, KeyRefKind, ServerSettings};
use super::validate::{self, report, DeploymentDraft, Diags, KeysOverHttp, Named, RouteDraft};
use super::values;
use super::walk::{count, entries, ignore_all, names, string, IGNORED};

/// One `model_list` entry after reading.
struct Entry {
    provider: ProviderKind,
    model: String,
    base_url: http::Uri,
    /// Where the base URL was written (`api_base`, else `model`).
    base_path: String,
    key: KeyRef,
    weight: u32,
    rpm: Option<u32>,
    tpm: Option<u64>,
    order: u32,
    region: Option<String>,
}

impl Entry {
    /// Entries that agree on all of this are one deployment with several keys.
    fn merge_key(&self) -> impl PartialEq + '_ {
        (self.provider, &self.model, &self.base_url, self.weight, self.rpm, self.tpm, self.order, &self.region)
    }
}

/// Converts a parsed LiteLLM document: a mapping that has `model_list`.
pub(crate) fn load(diags: &mut Diags<'_>, root: &Value, source: &Path) -> Config {
    let mut settings = Settings::default();
    let mut inline = BTreeMap::new();
    let mut model_list = None;
    let mut router = None;
    for (key, value) in entries(diags, root, "") {
        match key.as_str() {
            "model_list" => model_list = Some(value),
            "litellm_settings" => litellm_settings(diags, value, &mut settings),
            // Read after litellm_settings so that it wins.
            "router_settings" => router = Some(value),
            "environment_variables" => inline = environment(diags, value),
            "general_settings" => ignore_all(diags, value, "general_settings"),
            _ => diags.warn(&key, IGNORED),
        }
    }
    if let Some(value) = router {
        router_settings(diags, value, &mut settings);
    }

    let mut declared = BTreeSet::new();
    // Per alias: its entries and the fallbacks written on them (kept even when an
    // entry is broken, so that they are checked too).
    let mut groups: Vec<(String, Vec<Entry>, Vec<Named>)> = Vec::new();
    match model_list {
        Some(Value::Sequence(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let path = join_index("model_list", i);
                let (alias, entry, mut fallbacks) = entry(diags, item, &path);
                let Some(alias) = alias else { continue };
                declared.insert(alias.clone());
                let index = match groups.iter().position(|(a, ..)| *a == alias) {
                    Some(index) => index,
                    None => {
                        groups.push((alias, Vec::new(), Vec::new()));
                        groups.len() - 1
                    }
                };
                let (_, list, group_fallbacks) = &mut groups[index];
                list.extend(entry);
                group_fallbacks.append(&mut fallbacks);
            }
        }
        Some(Value::Sequence(_)) | Some(Value::Null) | None => {
            diags.error("model_list", "model_list is empty: no models configured")
        }
        Some(_) => diags.error("model_list", "model_list must be a list of {model_name, litellm_params} entries"),
    }

    let mut routes: Vec<RouteDraft> =
        groups.into_iter().map(|(alias, list, fallbacks)| route(diags, alias, list, fallbacks, &settings)).collect();
    for (alias, alias_path, fb) in settings.fallbacks {
        if alias == "*" {
            for r in routes.iter_mut().filter(|r| r.alias != fb.value) {
                r.fallbacks.push(fb.clone());
            }
        } else if let Some(r) = routes.iter_mut().find(|r| r.alias == alias) {
            r.fallbacks.push(fb);
        } else if !declared.contains(&alias) {
            diags.error(&alias_path, format!("fallbacks given for {alias:?}, which is not a model_name in model_list"));
        }
    }

    let mut server = ServerSettings::default();
    if let Some(t) = settings.request_timeout {
        server.request_timeout = t;
    }
    let shared = std::mem::take(&mut settings.redis).finish(diags);
    let mut config = validate::finish(diags, source, server, routes, &declared, inline);
    config.shared = shared;
    config
}

/// Builds one alias from its entries, merging entries that differ only by key.
fn route(
    diags: &mut Diags<'_>,
    alias: String,
    list: Vec<Entry>,
    fallbacks: Vec<Named>,
    settings: &Settings,
) -> RouteDraft {
    let mut merged: Vec<(Entry, Vec<KeyRef>)> = Vec::new();
    for e in list {
        let key = e.key.clone();
        match merged.iter_mut().find(|(m, _)| m.merge_key() == e.merge_key()) {
            Some((_, keys)) if keys.iter().any(|k| k.name == key.name) => {
                let msg =
                    format!("secret {:?} is already used by an identical entry of {alias:?}; counted once", key.name);
                diags.warn(&key.origin.path, msg);
            }
            Some((_, keys)) => keys.push(key),
            None => merged.push((e, vec![key])),
        }
    }
    let deployments = merged
        .into_iter()
        .map(|(e, keys)| DeploymentDraft {
            explicit_name: None,
            base_path: e.base_path.clone(),
            keys_over_http: KeysOverHttp::WrittenKeysOnly,
            deployment: Deployment {
                name: String::new(),
                provider: e.provider,
                upstream_model: e.model,
                base_url: e.base_url,
                keys,
                weight: e.weight,
                rpm: e.rpm,
                tpm: e.tpm,
                region: e.region,
                max_inflight: None,
                priority: e.order,
            },
        })
        .collect();
    RouteDraft {
        alias,
        strategy: settings.strategy.unwrap_or(validate::DEFAULT_STRATEGY),
        num_retries: settings.num_retries.unwrap_or(validate::DEFAULT_NUM_RETRIES),
        cooldown: settings.cooldown.unwrap_or(validate::DEFAULT_COOLDOWN),
        // LiteLLM has no such settings: `cooldown_time: 0` still gets the floor.
        cooldown_bounds: Default::default(),
        allowed_fails: settings.allowed_fails.unwrap_or(validate::DEFAULT_ALLOWED_FAILS),
        queue: Default::default(),
        fallbacks,
        deployments,
    }
}

/// Reads one `model_list` entry: its alias, the deployment, and its fallbacks. The
/// alias is returned even when the rest is broken, so that fallbacks to it are not
/// reported as unknown too.
fn entry(diags: &mut Diags<'_>, item: &Value, path: &str) -> (Option<String>, Option<Entry>, Vec<Named>) {
    if !item.is_mapping() {
        diags.error(path, "a model_list entry must be a mapping with model_name and litellm_params");
        return (None, None, Vec::new());
    }
    let errors_before = diags.errors.len();
    let (mut alias, mut params, mut fallbacks) = (None, None, Vec::new());
    for (key, value) in entries(diags, item, path) {
        let at = join_key(path, &key);
        match key.as_str() {
            "model_name" => alias = string(diags, value, &at).filter(|a| !a.trim().is_empty()),
            "litellm_params" => params = Some(value),
            "fallbacks" => fallbacks = names(diags, value, &at),
            "model_info" => diags.warn(&at, format!("{IGNORED} (model metadata)")),
            _ => diags.warn(&at, IGNORED),
        }
    }
    if alias.is_none() && diags.errors.len() == errors_before {
        diags.error(path, "missing field `model_name` (the name clients send as `model`)");
    }
    let Some(params) = params else {
        diags.error(path, "missing field `litellm_params`");
        return (alias, None, fallbacks);
    };
    let entry = params_entry(diags, params, &join_key(path, "litellm_params"));
    if diags.errors.len() != errors_before {
        return (alias, None, fallbacks);
    }
    (alias, entry, fallbacks)
}

/// Reads `litellm_params`: where the deployment is and which key it uses.
fn params_entry(diags: &mut Diags<'_>, value: &Value, path: &str) -> Option<Entry> {
    let errors_before = diags.errors.len();
    let (mut model, mut api_key, mut api_base, mut region) = (None, None, None, None);
    let (mut weight, mut rpm, mut tpm, mut order) = (None, None, None, None);
    for (key, v) in entries(diags, value, path) {
        let at = join_key(path, &key);
        match key.as_str() {
            "model" => model = string(diags, v, &at).map(|m| (m, at)),
            "api_key" => api_key = Some((v, at)),
            "api_base" => api_base = string(diags, v, &at).map(|b| (b, at)),
            "rpm" => rpm = count::<u32>(diags, v, &at, 0, bounds::RPM),
            "tpm" => tpm = count::<u64>(diags, v, &at, 0, bounds::TPM),
            "weight" => weight = count::<u32>(diags, v, &at, 1, bounds::WEIGHT),
            "order" => order = count::<u32>(diags, v, &at, 0, bounds::ORDER),
            "region_name" => region = string(diags, v, &at),
            "timeout" | "stream_timeout" => {
                diags.warn(&at, format!("{IGNORED} per deployment; server.timeouts.request applies"));
            }
            _ => diags.warn(&at, IGNORED),
        }
    }
    let Some((model, model_path)) = model else {
        diags.error(path, "missing field `model` (e.g. gemini/gemini-2.5-flash)");
        return None;
    };
    let (provider, upstream) = report(diags, &model_path, split_model(&model))?;
    let base_path = api_base.as_ref().map_or_else(|| model_path.clone(), |(_, at)| at.clone());
    let base_url = match &api_base {
        Some((base, at)) if base.starts_with("os.environ/") => {
            diags.error(at, "api_base from os.environ/ is not supported: write the URL itself");
            None
        }
        Some((base, at)) => report(diags, at, validate::resolve_base(provider, Some(base))),
        None => report(diags, &model_path, validate::resolve_base(provider, None)),
    };
    let key = match api_key {
        Some((v, at)) => key_ref(diags, v, &at),
        None => match default_key_name(provider) {
            Some(name) => {
                let to = base_url.as_ref().map(|b| format!(" and sent to {}", destination(b))).unwrap_or_default();
                let message = format!("no api_key: the secret {name} is used{to}, as LiteLLM does for {provider}");
                diags.warn(path, message);
                let origin = diags.origin(path);
                Some(KeyRef { name: name.to_owned(), kind: KeyRefKind::Single, origin, implicit: true })
            }
            None => {
                diags.error(path, "missing field `api_key` (write api_key: os.environ/NAME)");
                None
            }
        },
    };
    if diags.errors.len() != errors_before {
        return None;
    }
    Some(Entry {
        provider,
        model: upstream,
        base_url: base_url?,
        base_path,
        key: key?,
        weight: weight.unwrap_or(1),
        rpm,
        tpm,
        order: order.unwrap_or(0),
        region: region.filter(|r| !r.trim().is_empty()),
    })
}

/// `os.environ/NAME` -> a reference to the secret `NAME`. A literal key is refused
/// (and never repeated in the message): it would sit in a ConfigMap in clear text.
fn key_ref(diags: &mut Diags<'_>, value: &Value, path: &str) -> Option<KeyRef> {
    let Value::String(text) = value else {
        diags.error(path, "api_key must be a string of the form os.environ/NAME");
        return None;
    };
    match text.trim().strip_prefix("os.environ/") {
        Some(name) => {
            report(diags, path, values::check_secret_name(name))?;
            let origin = diags.origin(path);
            Some(KeyRef { name: name.to_owned(), kind: KeyRefKind::Single, origin, implicit: false })
        }
        None => {
            diags.error(
                path,
                "api_key is written into the config as a literal value: move it into a Secret \
                 and reference it as os.environ/NAME (the value is not shown here)",
            );
            None
        }
    }
}

/// `gemini/gemini-2.5-flash` -> (gemini, `gemini-2.5-flash`); split at the first
/// `/`, so `openrouter/anthropic/claude-sonnet-4.6` keeps `anthropic/...` as the
/// upstream model. No prefix means OpenAI, as in LiteLLM.
pub(crate) fn split_model(model: &str) -> Result<(ProviderKind, String), String> {
    let model = model.trim();
    let (provider, upstream) = match model.split_once('/') {
        None => (ProviderKind::OpenAi, model),
        Some((prefix, rest)) => match ProviderKind::from_name(prefix) {
            Some(p) => (p, rest),
            None => {
                return Err(format!(
                    "unknown provider prefix {prefix:?} in {model:?} (known: {})",
                    validate::known_providers()
                ))
            }
        },
    };
    if upstream.is_empty() {
        return Err(format!("{model:?} names no upstream model"));
    }
    Ok((provider, upstream.to_owned()))
}

/// The variable LiteLLM reads when an entry has no `api_key`.
fn default_key_name(provider: ProviderKind) -> Option<&'static str> {
    Some(match provider {
        ProviderKind::OpenAi => "OPENAI_API_KEY",
        ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
        ProviderKind::Gemini => "GEMINI_API_KEY",
        ProviderKind::OpenRouter => "OPENROUTER_API_KEY",
        ProviderKind::Groq => "GROQ_API_KEY",
        ProviderKind::Cerebras => "CEREBRAS_API_KEY",
        ProviderKind::Mistral => "MISTRAL_API_KEY",
        ProviderKind::DeepSeek => "DEEPSEEK_API_KEY",
        ProviderKind::Together => "TOGETHERAI_API_KEY",
        ProviderKind::Fireworks => "FIREWORKS_AI_API_KEY",
        ProviderKind::Xai => "XAI_API_KEY",
        ProviderKind::Azure => "AZURE_API_KEY",
        ProviderKind::OpenAiCompatible => return None,
    })
}
