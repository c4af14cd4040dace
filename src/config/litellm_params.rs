//! One LiteLLM `model_list` entry's `litellm_params`: which provider and upstream model,
//! where it lives (`api_base`, Azure's `api_version`, values from secrets), which key
//! it is sent with, and the per-deployment options. `litellm.rs` groups the entries
//! into aliases.

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::provider::ProviderKind;

use super::bounds;
use super::deployment_options::OptionsDraft;
use super::lines::join_key;
use super::litellm_compat::{self as compat, Section};
use super::litellm_keys;
use super::litellm_settings::Settings;
use super::mode::Mode;
use super::model::{destination, KeyRef, KeyRefKind, ParamField, PendingBase, SecretParam};
use super::params::{self, Written};
use super::validate::{self, report, Diags};
use super::values;
use super::walk::{count, entries, string};
use crate::secret::Secret;

use super::litellm::{Entry, Read};

/// Why the entry whose `litellm_params.model` is `model` cannot be served, if so: a
/// prefix the provider catalog does not know.
fn unservable(model: &str, settings: &Settings) -> Option<String> {
    let (prefix, _) = model.trim().split_once('/')?;
    // `os.environ/NAME` as the model has its own message.
    if ProviderKind::from_name(prefix).is_some() || prefix == "os.environ" {
        return None;
    }
    Some(super::litellm_unsupported::unservable_reason(
        prefix,
        &settings.custom_providers,
        &validate::known_providers(),
    ))
}

/// What `model_info` changes: `mode` (which endpoints the entry serves) and the
/// price of its tokens; the rest is metadata. A mode keyrelay has no endpoint for is
/// reported and ignored.
#[derive(Debug, Default)]
pub(super) struct ModelInfo {
    pub(super) mode: Option<Mode>,
    pub(super) price: Option<crate::config::Price>,
}

pub(super) fn model_info(diags: &mut Diags<'_>, value: &Value, path: &str) -> ModelInfo {
    let mut info = ModelInfo::default();
    let (mut input, mut output) = (None, None);
    for (key, v) in entries(diags, value, path) {
        let at = join_key(path, &key);
        match key.as_str() {
            "mode" => {
                let Some(name) = string(diags, v, &at) else { continue };
                info.mode = Mode::from_name(name.trim());
                if info.mode.is_none() {
                    let message = format!("mode {name:?} has no endpoint in keyrelay: the entry serves every endpoint");
                    diags.warn(&at, message);
                }
            }
            "input_cost_per_token" => input = Some(cost_per_token(diags, v, &at)),
            "output_cost_per_token" => output = Some(cost_per_token(diags, v, &at)),
            _ => diags.warn(&at, format!("{} (model metadata)", super::walk::IGNORED)),
        }
        if matches!(key.as_str(), "input_cost_per_token" | "output_cost_per_token") {
            compat::note(diags, Section::ModelInfo, &key);
        }
    }
    // One of the two alone prices the other side at 0, as LiteLLM does. `Some(None)`:
    // written but invalid (already reported).
    let valid = |side: Option<Option<f64>>| side.map_or(Some(0.0), |v| v);
    if input.is_some() || output.is_some() {
        if let (Some(i), Some(o)) = (valid(input), valid(output)) {
            info.price = Some(crate::config::Price { input_per_token: i, output_per_token: o });
        }
    }
    info
}

/// A LiteLLM `*_cost_per_token` (USD per token), within the native bound.
fn cost_per_token(diags: &mut Diags<'_>, value: &Value, path: &str) -> Option<f64> {
    let per_token = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok(),
        _ => None,
    };
    let Some(per_token) = per_token else {
        diags.error(path, "must be a number: USD per token, e.g. 0.0000025");
        return None;
    };
    let checked = bounds::price_per_million(per_token * 1e6)
        .map_err(|_| format!("must be a price from 0 to {} (USD per token)", bounds::PRICE_PER_MILLION / 1e6));
    report(diags, path, checked).map(|_| per_token)
}

/// Reads `litellm_params`: where the deployment is and which key it uses.
pub(super) fn params_entry(
    diags: &mut Diags<'_>,
    value: &Value,
    path: &str,
    alias: &str,
    settings: &Settings,
    inline: &mut BTreeMap<String, Secret>,
) -> Read {
    // An entry keyrelay cannot serve is one warning, not one per parameter it has.
    if let Some(Value::String(model)) = value.get("model") {
        if let Some(reason) = unservable(model, settings) {
            diags.warn(&join_key(path, "model"), format!("this entry is not served: {reason}"));
            return Read::Unservable(format!("{model}: {reason}"));
        }
    }
    let errors_before = diags.errors.len();
    let (mut model, mut api_key, mut api_base, mut region) = (None, None, None, None);
    let (mut weight, mut rpm, mut tpm, mut order) = (None, None, None, None);
    let (mut api_version, mut organization, mut version_path) = (None, None, None);
    let mut options = OptionsDraft::default();
    for (key, v) in compat::entries(diags, value, path, Section::Params) {
        let at = join_key(path, &key);
        match key.as_str() {
            "model" => model = string(diags, v, &at).map(|m| (m, at)),
            // `api_key: null` or `""`: none written (LiteLLM falls back to its default).
            "api_key" if v.is_null() || v.as_str().is_some_and(|k| k.trim().is_empty()) => {}
            "api_key" => api_key = Some((v, at)),
            "api_base" => api_base = params::written(diags, v, &at, ParamField::ApiBase).map(|b| (b, at)),
            "api_version" => {
                api_version = params::written(diags, v, &at, ParamField::ApiVersion).map(|w| (w, at.clone()));
                version_path = Some(at);
            }
            "organization" => {
                organization = params::written(diags, v, &at, ParamField::Organization).map(|w| (w, at));
            }
            "rpm" => rpm = count::<u32>(diags, v, &at, 0, bounds::RPM),
            "tpm" => tpm = count::<u64>(diags, v, &at, 0, bounds::TPM),
            "weight" => weight = count::<u32>(diags, v, &at, 1, bounds::WEIGHT),
            "order" => order = count::<u32>(diags, v, &at, 0, bounds::ORDER),
            "region_name" => region = params::written(diags, v, &at, ParamField::Region).map(|w| (w, at)),
            _ if options.read_litellm(diags, &key, v, &at) => {}
            _ => compat::ignored(diags, Section::Params, &key, path),
        }
    }
    let options = options.finish(diags, path);
    let Some((mut model, model_path)) = model else {
        diags.error(path, "missing field `model` (e.g. gemini/gemini-2.5-flash)");
        return Read::Broken;
    };
    let mut model_secret = None;
    if let Some(name) = model.trim().strip_prefix("os.environ/").map(str::to_owned) {
        let Some(value) = model_from_secret(diags, &name, &model_path, inline) else {
            return Read::Broken;
        };
        if let Some(reason) = unservable(&value, settings) {
            diags.warn(&model_path, format!("this entry is not served: {reason}"));
            return Read::Unservable(format!("{value}: {reason}"));
        }
        model = value;
        model_secret =
            Some(SecretParam { field: ParamField::Model, name, origin: diags.origin(&model_path), implicit: false });
    }
    // As LiteLLM: an unprefixed model on a known provider's `api_base` is that provider.
    let written_base = match &api_base {
        Some((Written::Text(base), _)) => Some(base.clone()),
        _ => None,
    };
    let by_base = written_base.as_deref().filter(|_| !model.contains('/')).and_then(ProviderKind::infer_from_base);
    let split = match by_base {
        Some(provider) => Ok((provider, model.trim().to_owned())),
        None => split_model(&model),
    };
    let Some((provider, upstream)) = report(diags, &model_path, split) else {
        return Read::Broken;
    };
    // LiteLLM reads AZURE_API_BASE (and the like) for an entry without api_base: it is
    // looked up like a key, so a Secret can hold it.
    if api_base.is_none() && provider.default_base().is_none() {
        if let Some(name) = provider.spec().base_env {
            diags.warn(path, format!("no api_base: the secret {name} is used, as LiteLLM does for {provider}"));
            let param = SecretParam::implicit(ParamField::ApiBase, name, diags.origin(path));
            api_base = Some((Written::Secret(param), path.to_owned()));
        }
    }
    let base_path = api_base.as_ref().map_or_else(|| model_path.clone(), |(_, at)| at.clone());
    let mut from_secrets: Vec<SecretParam> = model_secret.into_iter().collect();
    let mut text = |field, written: Option<(Written, String)>| match written? {
        // An empty region is no region, as before.
        (Written::Text(value), _) if field == ParamField::Region && value.trim().is_empty() => None,
        (Written::Text(value), at) => report(diags, &at, params::checked(field, &value)),
        (Written::Secret(param), _) => {
            from_secrets.push(param);
            None
        }
    };
    let mut api_version = text(ParamField::ApiVersion, api_version);
    let organization = text(ParamField::Organization, organization);
    let region = text(ParamField::Region, region);
    // LiteLLM sends no api-version to other providers: the key is read past.
    if let Some(at) = version_path.filter(|_| !provider.takes_api_version()) {
        diags.warn(&at, format!("ignored: api_version applies to azure and azure_ai entries, not {provider}"));
        api_version = None;
        from_secrets.retain(|p| p.field != ParamField::ApiVersion);
    }
    // LiteLLM reads AZURE_API_VERSION for azure/ entries without api_version.
    let version_from_secret = from_secrets.iter().any(|p| p.field == ParamField::ApiVersion);
    if provider == ProviderKind::Azure && api_version.is_none() && !version_from_secret {
        from_secrets.push(SecretParam::implicit(ParamField::ApiVersion, "AZURE_API_VERSION", diags.origin(path)));
    }
    let base_secret = match &api_base {
        Some((Written::Secret(param), _)) => Some(param.clone()),
        _ => None,
    };
    let shaped_later = base_secret.is_some() || from_secrets.iter().any(|p| p.field == ParamField::ApiVersion);
    let (base_url, api_version, pending_base) = if shaped_later {
        // Part of the URL is in a secret: validate what is written now, shape it when
        // the secrets are read (each reload).
        let written = match (&api_base, &base_secret) {
            (_, Some(param)) => {
                from_secrets.insert(0, param.clone());
                Some(None)
            }
            (Some((Written::Text(base), at)), None) => {
                report(diags, at, validate::resolve_base(provider, Some(base))).map(Some)
            }
            (_, None) => report(diags, &model_path, validate::resolve_base(provider, None)).map(Some),
        };
        let pending = written.map(|base| PendingBase { base, api_version: api_version.clone() });
        (Some(http::Uri::from_static(params::UNRESOLVED_BASE)), None, pending)
    } else {
        let resolved =
            validate::resolve_deployment_base(provider, written_base.as_deref(), &upstream, api_version.as_deref());
        match report(diags, &base_path, resolved) {
            Some((base, version)) => (Some(base), version, None),
            None => (None, None, None),
        }
    };
    let base_secret = base_secret.map(|p| p.name);
    let key = match api_key {
        Some((v, at)) => key_ref(diags, v, &at, alias, inline).map(Some),
        // A local server that needs no key: nothing is sent (`check` shows it).
        None if !base_url.as_ref().map_or(provider.needs_key_anywhere(), |b| provider.needs_key(b)) => Some(None),
        None => match provider.implicit_key() {
            Some(name) => {
                let to = match (&base_secret, &base_url) {
                    (Some(secret), _) => format!(" and sent to the api_base in secret {secret}"),
                    (None, Some(b)) => format!(" and sent to {}", destination(b)),
                    (None, None) => String::new(),
                };
                let message = format!("no api_key: the secret {name} is used{to}, as LiteLLM does for {provider}");
                diags.warn(path, message);
                let origin = diags.origin(path);
                Some(Some(KeyRef { name: name.to_owned(), kind: KeyRefKind::Single, origin, implicit: true }))
            }
            None => {
                diags.error(path, "missing field `api_key` (write api_key: os.environ/NAME)");
                None
            }
        },
    };
    if diags.errors.len() != errors_before {
        return Read::Broken;
    }
    let (Some(base_url), Some(key)) = (base_url, key) else { return Read::Broken };
    Read::Served(Box::new(Entry {
        provider,
        model: upstream,
        base_url,
        base_path,
        key,
        weight: weight.unwrap_or(1),
        rpm,
        tpm,
        order: order.unwrap_or(0),
        region: region.filter(|r| !r.trim().is_empty()),
        api_version,
        organization,
        pending_base,
        from_secrets,
        options,
        mode: None,
        price: None,
    }))
}

/// The value of `model: os.environ/NAME`, looked up like a key (API Secret, secrets
/// dir, environment, then `environment_variables`) while the config is read: its
/// provider prefix decides how the entry is validated. Not a key: shown by `check`.
fn model_from_secret(
    diags: &mut Diags<'_>,
    name: &str,
    path: &str,
    inline: &BTreeMap<String, Secret>,
) -> Option<String> {
    report(diags, path, values::check_secret_name(name))?;
    let found = match diags.secrets.map(|s| s.value(name)) {
        Some(Ok(value)) => Ok(value),
        _ if inline.contains_key(name) => Ok(inline[name].expose().trim().to_owned()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err(format!("secret {name:?} cannot be read here (no secrets given)")),
    };
    diags.consulted.push((name.to_owned(), found.clone()));
    match found {
        Ok(value) if value.is_empty() || value.starts_with("os.environ/") => {
            diags.error(path, format!("model from secret {name:?} is empty or another reference"));
            None
        }
        Ok(value) => Some(value),
        Err(e) => {
            diags.error(path, format!("model from os.environ/{name}: {e}"));
            None
        }
    }
}

/// `os.environ/NAME` -> a reference to the secret `NAME`; anything else is a key
/// written into the file, sent as written (see `litellm_keys`).
fn key_ref(
    diags: &mut Diags<'_>,
    value: &Value,
    path: &str,
    alias: &str,
    inline: &mut BTreeMap<String, Secret>,
) -> Option<KeyRef> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(n) => n.to_string(),
        _ => {
            diags.error(path, "api_key must be a string of the form os.environ/NAME");
            return None;
        }
    };
    match text.trim().strip_prefix("os.environ/") {
        Some(name) => {
            report(diags, path, values::check_secret_name(name))?;
            let origin = diags.origin(path);
            Some(KeyRef { name: name.to_owned(), kind: KeyRefKind::Single, origin, implicit: false })
        }
        None => Some(litellm_keys::literal(diags, &text, path, alias, inline)),
    }
}

/// `gemini/gemini-2.5-flash` -> (gemini, `gemini-2.5-flash`); split at the first
/// `/`, so `openrouter/anthropic/claude-sonnet-4.6` keeps `anthropic/...` as the
/// upstream model. Without a prefix, the provider LiteLLM infers from the name
/// (`gpt-*` -> openai, `claude-*` -> anthropic), else an error naming the fix.
pub(crate) fn split_model(model: &str) -> Result<(ProviderKind, String), String> {
    let model = model.trim();
    let (provider, upstream) = match model.split_once('/') {
        None => match ProviderKind::infer_from_model(model) {
            Some(p) => (p, model),
            None => {
                return Err(format!(
                    "cannot tell which provider serves {model:?} (LiteLLM cannot either): write provider/model, \
                     e.g. openai/{model} for an OpenAI-compatible server at api_base"
                ))
            }
        },
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
