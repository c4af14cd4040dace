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
use super::deployment_options::{DeploymentOptions, OptionsDraft};
use super::lines::{join_index, join_key};
use super::litellm_compat::{self as compat, Section};
use super::litellm_keys;
use super::litellm_settings::{environment, litellm_settings, router_settings, Settings};
use super::model::{
    destination, Config, Deployment, KeyRef, KeyRefKind, Mode, ParamField, PendingBase, SecretParam, ServerSettings,
};
use super::params::{self, Written};
use super::secret::Secret;
use super::validate::{self, report, DeploymentDraft, Diags, KeysOverHttp, Named, RouteDraft};
use super::values;
use super::walk::{count, entries, names, string};

/// One `model_list` entry after reading.
struct Entry {
    provider: ProviderKind,
    model: String,
    base_url: http::Uri,
    /// Where the base URL was written (`api_base`, else `model`).
    base_path: String,
    /// `None`: a local server that needs no key, and none is written.
    key: Option<KeyRef>,
    weight: u32,
    rpm: Option<u32>,
    tpm: Option<u64>,
    order: u32,
    region: Option<String>,
    api_version: Option<String>,
    organization: Option<String>,
    pending_base: Option<PendingBase>,
    /// Parameters written as `os.environ/NAME` (other than `api_key`).
    from_secrets: Vec<SecretParam>,
    options: DeploymentOptions,
    /// `model_info.mode`, set by `entry` after `params_entry`.
    mode: Option<Mode>,
}

impl Entry {
    /// Entries that agree on all of this are one deployment with several keys.
    fn merge_key(&self) -> impl PartialEq + '_ {
        // The secrets' names, not where each entry wrote them.
        let from: Vec<(ParamField, &str)> = self.from_secrets.iter().map(|p| (p.field, p.name.as_str())).collect();
        let params = (&self.api_version, &self.organization, &self.pending_base, from, &self.options, self.mode);
        (self.provider, &self.model, &self.base_url, self.weight, self.rpm, self.tpm, self.order, &self.region, params)
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
            "environment_variables" => {
                compat::note(diags, Section::Top, &key);
                inline = environment(diags, value);
            }
            "general_settings" => {
                for (key, _) in compat::entries(diags, value, "general_settings", Section::GeneralSettings) {
                    compat::ignored(diags, Section::GeneralSettings, &key, "general_settings");
                }
            }
            _ => compat::ignored(diags, Section::Top, &key, ""),
        }
    }
    if let Some(value) = router {
        router_settings(diags, value, &mut settings);
    }

    let mut declared = BTreeSet::new();
    // Per alias: its entries, the fallbacks written on them (kept even when an entry
    // is broken, so that they are checked too) and why entries cannot be served.
    let mut groups: Vec<Group> = Vec::new();
    match model_list {
        Some(Value::Sequence(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let path = join_index("model_list", i);
                let (alias, read, mut fallbacks) = entry(diags, item, &path, &settings, &mut inline);
                let Some(alias) = alias else { continue };
                declared.insert(alias.clone());
                let index = match groups.iter().position(|g| g.alias == alias) {
                    Some(index) => index,
                    None => {
                        groups.push(Group { alias, ..Group::default() });
                        groups.len() - 1
                    }
                };
                let group = &mut groups[index];
                match read {
                    Read::Served(entry) => group.entries.push(*entry),
                    Read::Unservable(reason) => group.unservable.push(reason),
                    Read::Broken => {}
                }
                group.fallbacks.append(&mut fallbacks);
            }
        }
        Some(Value::Sequence(_)) | Some(Value::Null) | None => {
            diags.error("model_list", "model_list is empty: no models configured")
        }
        Some(_) => diags.error("model_list", "model_list must be a list of {model_name, litellm_params} entries"),
    }

    let mut routes: Vec<RouteDraft> = groups.into_iter().map(|group| route(diags, group, &settings)).collect();
    type Field = fn(&mut RouteDraft) -> &mut Vec<Named>;
    let kinds: [(Vec<_>, Field); 3] = [
        (settings.fallbacks, |r| &mut r.fallbacks),
        (settings.context_window_fallbacks, |r| &mut r.context_window_fallbacks),
        (settings.content_policy_fallbacks, |r| &mut r.content_policy_fallbacks),
    ];
    let mut unknown = BTreeSet::new();
    for (list, field) in kinds {
        for (alias, alias_path, fb) in list {
            if alias == "*" {
                for r in routes.iter_mut().filter(|r| r.alias != fb.value) {
                    field(r).push(fb.clone());
                }
            } else if let Some(r) = routes.iter_mut().find(|r| r.alias == alias) {
                field(r).push(fb);
            } else if !declared.contains(&alias) && unknown.insert(alias_path.clone()) {
                // LiteLLM loads such a file (its router looks fallbacks up per request).
                let message =
                    format!("fallbacks given for {alias:?}, which is not a model_name in model_list: never used");
                diags.warn(&alias_path, message);
            }
        }
    }

    let mut server = ServerSettings::default();
    if let Some(t) = settings.request_timeout {
        server.request_timeout = t;
    }
    validate::finish(diags, source, server, routes, &declared, inline)
}

/// The `model_list` entries of one alias.
#[derive(Default)]
struct Group {
    alias: String,
    entries: Vec<Entry>,
    fallbacks: Vec<Named>,
    /// Why entries of this alias are not served (see `litellm_unsupported`).
    unservable: Vec<String>,
}

/// What reading one entry gave.
enum Read {
    Served(Box<Entry>),
    /// Not servable by keyrelay, for this reason: a warning, the rest loads.
    Unservable(String),
    /// Reported as errors.
    Broken,
}

/// Builds one alias from its entries, merging entries that differ only by key.
fn route(diags: &mut Diags<'_>, group: Group, settings: &Settings) -> RouteDraft {
    let Group { alias, entries: list, fallbacks, unservable } = group;
    let mut merged: Vec<(Entry, Vec<KeyRef>)> = Vec::new();
    for e in list {
        let Some(key) = e.key.clone() else {
            // Keyless: an identical keyless entry adds nothing.
            if !merged.iter().any(|(m, keys)| keys.is_empty() && m.merge_key() == e.merge_key()) {
                merged.push((e, Vec::new()));
            }
            continue;
        };
        match merged.iter_mut().find(|(m, keys)| !keys.is_empty() && m.merge_key() == e.merge_key()) {
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
                api_version: e.api_version,
                organization: e.organization,
                pending_base: e.pending_base,
                from_secrets: e.from_secrets,
                options: e.options,
                mode: e.mode,
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
        context_window_fallbacks: Vec::new(),
        content_policy_fallbacks: Vec::new(),
        deployments,
        unservable,
    }
}

/// Reads one `model_list` entry: its alias, the deployment, and its fallbacks. The
/// alias is returned even when the rest is broken, so that fallbacks to it are not
/// reported as unknown too.
fn entry(
    diags: &mut Diags<'_>,
    item: &Value,
    path: &str,
    settings: &Settings,
    inline: &mut BTreeMap<String, Secret>,
) -> (Option<String>, Read, Vec<Named>) {
    if !item.is_mapping() {
        diags.error(path, "a model_list entry must be a mapping with model_name and litellm_params");
        return (None, Read::Broken, Vec::new());
    }
    let errors_before = diags.errors.len();
    let (mut alias, mut params, mut fallbacks, mut mode) = (None, None, Vec::new(), None);
    // LiteLLM's own examples put rpm/tpm beside litellm_params; its router reads them
    // there first.
    let (mut rpm, mut tpm) = (None, None);
    for (key, value) in compat::entries(diags, item, path, Section::Entry) {
        let at = join_key(path, &key);
        match key.as_str() {
            "model_name" => alias = string(diags, value, &at).filter(|a| !a.trim().is_empty()),
            "litellm_params" => params = Some(value),
            "fallbacks" => fallbacks = names(diags, value, &at),
            "rpm" => rpm = count::<u32>(diags, value, &at, 0, bounds::RPM),
            "tpm" => tpm = count::<u64>(diags, value, &at, 0, bounds::TPM),
            "model_info" => mode = model_info(diags, value, &at),
            _ => compat::ignored(diags, Section::Entry, &key, path),
        }
    }
    if alias.is_none() && diags.errors.len() == errors_before {
        diags.error(path, "missing field `model_name` (the name clients send as `model`)");
    }
    let Some(params) = params else {
        diags.error(path, "missing field `litellm_params`");
        return (alias, Read::Broken, fallbacks);
    };
    let params_path = join_key(path, "litellm_params");
    let read = params_entry(diags, params, &params_path, alias.as_deref().unwrap_or("?"), settings, inline);
    if diags.errors.len() != errors_before {
        return (alias, Read::Broken, fallbacks);
    }
    let read = match read {
        Read::Served(mut e) => {
            e.rpm = rpm.or(e.rpm);
            e.tpm = tpm.or(e.tpm);
            e.mode = mode;
            Read::Served(e)
        }
        other => other,
    };
    (alias, read, fallbacks)
}

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

/// `model_info`: only `mode` changes routing (which endpoints the entry serves); the
/// rest is metadata. A mode keyrelay has no endpoint for is reported and ignored.
fn model_info(diags: &mut Diags<'_>, value: &Value, path: &str) -> Option<Mode> {
    let mut mode = None;
    for (key, v) in entries(diags, value, path) {
        let at = join_key(path, &key);
        match key.as_str() {
            "mode" => {
                let Some(name) = string(diags, v, &at) else { continue };
                mode = Mode::from_name(name.trim());
                if mode.is_none() {
                    let message = format!("mode {name:?} has no endpoint in keyrelay: the entry serves every endpoint");
                    diags.warn(&at, message);
                }
            }
            _ => diags.warn(&at, format!("{} (model metadata)", super::walk::IGNORED)),
        }
    }
    mode
}

/// Reads `litellm_params`: where the deployment is and which key it uses.
fn params_entry(
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
    diags.consulted.push(name.to_owned());
    let found = match diags.secrets.map(|s| s.value(name)) {
        Some(Ok(value)) => Ok(value),
        _ if inline.contains_key(name) => Ok(inline[name].expose().trim().to_owned()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err(format!("secret {name:?} cannot be read here (no secrets given)")),
    };
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
