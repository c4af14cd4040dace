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
use super::deployment_options::DeploymentOptions;
use super::lines::{join_index, join_key};
use super::litellm_compat::{self as compat, Section};
use super::litellm_params::{model_info, params_entry};
use super::litellm_settings::{environment, general_settings, litellm_settings, router_settings, Settings};
use super::mode::Mode;
use super::model::{Config, Deployment, KeyRef, ParamField, PendingBase, SecretParam, ServerSettings};
use super::validate::{self, DeploymentDraft, Diags, KeysOverHttp, Named, RouteDraft};
use super::walk::{count, entries, names, string};
use crate::secret::Secret;

/// One `model_list` entry after reading.
pub(super) struct Entry {
    pub(super) provider: ProviderKind,
    pub(super) model: String,
    pub(super) base_url: http::Uri,
    /// Where the base URL was written (`api_base`, else `model`).
    pub(super) base_path: String,
    /// `None`: a local server that needs no key, and none is written.
    pub(super) key: Option<KeyRef>,
    pub(super) weight: u32,
    pub(super) rpm: Option<u32>,
    pub(super) tpm: Option<u64>,
    pub(super) order: u32,
    pub(super) region: Option<String>,
    pub(super) api_version: Option<String>,
    pub(super) organization: Option<String>,
    pub(super) pending_base: Option<PendingBase>,
    /// Parameters written as `os.environ/NAME` (other than `api_key`).
    pub(super) from_secrets: Vec<SecretParam>,
    pub(super) options: DeploymentOptions,
    /// `model_info.mode`, set by `entry` after `params_entry`.
    pub(super) mode: Option<Mode>,
    /// `model_info`'s cost fields, set likewise.
    pub(super) price: Option<crate::config::Price>,
}

impl Entry {
    /// Entries that agree on all of this are one deployment with several keys.
    fn merge_key(&self) -> impl PartialEq + '_ {
        // The secrets' names, not where each entry wrote them.
        let from: Vec<(ParamField, &str)> = self.from_secrets.iter().map(|p| (p.field, p.name.as_str())).collect();
        let params =
            (&self.api_version, &self.organization, &self.pending_base, from, &self.options, self.mode, self.price);
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
            "general_settings" => general_settings(diags, value, &mut settings),
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

    let health_check_interval = settings.health_check_interval();
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
    server.health_check_interval = health_check_interval;
    let shared = std::mem::take(&mut settings.redis).finish(diags);
    let mut config = validate::finish(diags, source, server, routes, &declared, inline);
    config.shared = shared;
    config
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
pub(super) enum Read {
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
                price: e.price,
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
        // LiteLLM has no required region in its file (`allowed_model_region` belongs to
        // end users in its database): the server default applies.
        required_regions: None,
        health_check_interval: None,
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
    let (mut alias, mut params, mut fallbacks) = (None, None, Vec::new());
    let mut info = super::litellm_params::ModelInfo::default();
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
            "model_info" => info = model_info(diags, value, &at),
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
            e.mode = info.mode;
            e.price = info.price;
            Read::Served(e)
        }
        other => other,
    };
    (alias, read, fallbacks)
}
