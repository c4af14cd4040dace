//! The native format: raw serde types (unknown fields are errors) and their
//! conversion into drafts for the shared checks.
//!
//! Each section, alias and deployment is deserialized on its own, so a typo in one
//! deployment does not hide the errors of the others.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use crate::provider::ProviderKind;

use super::bounds::{self, Zero};
use super::deployment_options::{NativeFields, OptionsDraft};
use super::kubernetes;
use super::lines::{join_index, join_key};
use super::model::{Config, CooldownBounds, Deployment, KeyRef, KeyRefKind, QueueSettings, ServerSettings, Strategy};
use super::native_server::{self, server, RawServer};
use super::validate::{self, report, DeploymentDraft, Diags, KeysOverHttp, Named, RouteDraft};
use super::values::{self, de, NumOrText};

/// `queue:` in `defaults` or a model: the waiting room for requests that find no key
/// with capacity.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename = "queue")]
struct RawQueue {
    max_waiting: Option<u64>,
    max_wait: Option<NumOrText>,
    /// The share of each key's budget kept from low-priority requests (0 to 0.9).
    reserve: Option<f64>,
}

/// Routing settings an alias inherits unless it sets its own.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename = "defaults")]
struct RawDefaults {
    strategy: Option<String>,
    num_retries: Option<u64>,
    cooldown: Option<NumOrText>,
    cooldown_floor: Option<NumOrText>,
    max_cooldown: Option<NumOrText>,
    allowed_fails: Option<u64>,
    queue: Option<RawQueue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "model")]
struct RawModel {
    strategy: Option<String>,
    num_retries: Option<u64>,
    cooldown: Option<NumOrText>,
    cooldown_floor: Option<NumOrText>,
    max_cooldown: Option<NumOrText>,
    allowed_fails: Option<u64>,
    queue: Option<RawQueue>,
    fallbacks: Option<Vec<String>>,
    /// The only regions this alias may use (data residency), instead of the server's.
    required_regions: Option<Vec<String>>,
    health_check_interval: Option<NumOrText>,
    /// Kept raw: each deployment is deserialized on its own (see module doc).
    deployments: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "deployment")]
struct RawDeployment {
    name: Option<String>,
    provider: String,
    model: String,
    api_base: Option<String>,
    /// Azure's `api-version` (or `v1`/`preview` for its v1 API).
    api_version: Option<String>,
    keys: Option<Vec<String>>,
    keys_from: Option<String>,
    weight: Option<u64>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    region: Option<String>,
    max_inflight: Option<u64>,
    order: Option<u64>,
    /// Opt-in to sending this deployment's keys over plain `http://` to a host that
    /// is not loopback (a cluster-internal vLLM without TLS, say).
    send_keys_over_http: Option<bool>,
    /// Top-level members added to request bodies that lack them (`reasoning_effort`, ...).
    request_defaults: Option<Value>,
    extra_headers: Option<Value>,
    timeout: Option<Value>,
    stream_timeout: Option<Value>,
    max_retries: Option<Value>,
    /// `false`, or the path of a PEM CA bundle for this deployment only.
    ssl_verify: Option<Value>,
    /// The one kind of endpoint this deployment serves (LiteLLM's `model_info.mode`).
    mode: Option<String>,
    /// What its tokens cost; without it, the built-in price of the model, if any.
    price: Option<RawPrice>,
}

/// `price:`, in USD per million tokens as pricing pages write them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "price")]
struct RawPrice {
    input_per_million: f64,
    output_per_million: f64,
}

const LITELLM_TOP_LEVEL: [&str; 5] =
    ["litellm_settings", "router_settings", "general_settings", "environment_variables", "model_info"];

/// Resolved `defaults:` section.
struct Defaults {
    strategy: Strategy,
    num_retries: u32,
    cooldown: std::time::Duration,
    cooldown_bounds: CooldownBounds,
    allowed_fails: u32,
    queue: QueueSettings,
}

/// Converts a parsed native document. `root` is known to be a mapping.
pub(crate) fn load(diags: &mut Diags<'_>, root: &Mapping, source: &Path) -> Config {
    let (mut server_v, mut defaults_v, mut models_v, mut kubernetes_v) = (None, None, None, None);
    let mut shared_v = None;
    for (key, value) in root {
        let slot = match key.as_str() {
            Some("server") => &mut server_v,
            Some("defaults") => &mut defaults_v,
            Some("models") => &mut models_v,
            Some("kubernetes") => &mut kubernetes_v,
            Some("shared") => &mut shared_v,
            Some(k) => {
                let hint = if LITELLM_TOP_LEVEL.contains(&k) {
                    " (a LiteLLM config needs a top-level `model_list`)"
                } else {
                    ""
                };
                let shown = super::keylike::shown(k);
                diags.error(
                    k,
                    format!(
                        "unknown field `{shown}`, expected one of `server`, `defaults`, `models`, `kubernetes`, `shared`{hint}"
                    ),
                );
                continue;
            }
            None => {
                diags.error("", "top-level keys must be strings");
                continue;
            }
        };
        *slot = Some(value.clone());
    }

    let server = match server_v {
        Some(v) if !v.is_null() => {
            de::<RawServer>(diags, v, "server").map(|raw| server(diags, raw)).unwrap_or_default()
        }
        _ => ServerSettings::default(),
    };
    let raw_defaults = match defaults_v {
        Some(v) if !v.is_null() => de::<RawDefaults>(diags, v, "defaults").unwrap_or_default(),
        _ => RawDefaults::default(),
    };
    let mut defaults = Defaults {
        strategy: strategy(diags, raw_defaults.strategy.as_deref(), "defaults.strategy")
            .unwrap_or(validate::DEFAULT_STRATEGY),
        num_retries: limit(diags, "defaults", "num_retries", raw_defaults.num_retries, 0, bounds::NUM_RETRIES)
            .unwrap_or(validate::DEFAULT_NUM_RETRIES),
        cooldown: raw_defaults
            .cooldown
            .as_ref()
            .and_then(|c| bounds::duration_at(diags, "defaults.cooldown", c, bounds::COOLDOWN, Zero::Allowed))
            .unwrap_or(validate::DEFAULT_COOLDOWN),
        cooldown_bounds: CooldownBounds::default(),
        allowed_fails: limit(diags, "defaults", "allowed_fails", raw_defaults.allowed_fails, 0, bounds::ALLOWED_FAILS)
            .unwrap_or(validate::DEFAULT_ALLOWED_FAILS),
        queue: queue(diags, raw_defaults.queue.as_ref(), QueueSettings::default(), "defaults.queue"),
    };
    defaults.cooldown_bounds = cooldown_bounds(
        diags,
        (raw_defaults.cooldown.is_some(), raw_defaults.cooldown_floor.as_ref(), raw_defaults.max_cooldown.as_ref()),
        (defaults.cooldown, CooldownBounds::default()),
        "defaults",
    );

    let mut declared = BTreeSet::new();
    let mut routes = Vec::new();
    match models_v {
        Some(Value::Mapping(models)) if !models.is_empty() => {
            for (key, value) in models {
                let Some(alias) = key.as_str().map(str::to_owned) else {
                    diags.error("models", "model names (aliases) must be strings");
                    continue;
                };
                let path = join_key("models", &alias);
                if alias.trim().is_empty() {
                    diags.error(&path, "model name (alias) must not be empty");
                    continue;
                }
                declared.insert(alias.clone());
                if let Some(route) = model(diags, &alias, value, &path, &defaults) {
                    routes.push(route);
                }
            }
        }
        Some(Value::Mapping(_)) | Some(Value::Null) | None => {
            diags.error("models", "no models configured: `models` must map at least one alias to its deployments");
        }
        Some(_) => diags.error("models", "`models` must be a mapping from alias to model settings"),
    }
    let kubernetes = kubernetes_v.and_then(|v| kubernetes::load(diags, v));
    let shared = shared_v.and_then(|v| super::shared::native(diags, v));
    let mut config = validate::finish(diags, source, server, routes, &declared, BTreeMap::new());
    config.kubernetes = kubernetes;
    config.shared = shared;
    config
}

fn model(diags: &mut Diags<'_>, alias: &str, value: Value, path: &str, defaults: &Defaults) -> Option<RouteDraft> {
    if !value.is_mapping() {
        diags.error(path, "a model must be a mapping with at least `deployments`");
        return None;
    }
    let raw: RawModel = de(diags, value, path)?;
    let strategy = strategy(diags, raw.strategy.as_deref(), &join_key(path, "strategy")).unwrap_or(defaults.strategy);
    let cooldown = match &raw.cooldown {
        Some(c) => bounds::duration_at(diags, &join_key(path, "cooldown"), c, bounds::COOLDOWN, Zero::Allowed)
            .unwrap_or(defaults.cooldown),
        None => defaults.cooldown,
    };
    let cooldown_bounds = cooldown_bounds(
        diags,
        (raw.cooldown.is_some(), raw.cooldown_floor.as_ref(), raw.max_cooldown.as_ref()),
        (cooldown, defaults.cooldown_bounds),
        path,
    );
    let fallbacks_path = join_key(path, "fallbacks");
    let fallbacks = raw
        .fallbacks
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, value)| Named { value, path: join_index(&fallbacks_path, i) })
        .collect();

    let deployments_path = join_key(path, "deployments");
    let raw_deployments = raw.deployments.unwrap_or_default();
    if raw_deployments.is_empty() {
        diags.error(&deployments_path, format!("model {alias:?} needs at least one deployment"));
    }
    let deployments = raw_deployments
        .into_iter()
        .enumerate()
        .filter_map(|(i, v)| deployment(diags, v, &join_index(&deployments_path, i)))
        .collect();
    let required_regions = raw.required_regions.map(|regions| {
        let at = join_key(path, "required_regions");
        (native_server::required_regions(diags, &at, regions), at)
    });
    let health_check_interval = raw.health_check_interval.as_ref().and_then(|interval| {
        native_server::health_check_interval(diags, &join_key(path, "health_check_interval"), interval)
    });
    Some(RouteDraft {
        alias: alias.to_owned(),
        strategy,
        num_retries: limit(diags, path, "num_retries", raw.num_retries, 0, bounds::NUM_RETRIES)
            .unwrap_or(defaults.num_retries),
        cooldown,
        cooldown_bounds,
        allowed_fails: limit(diags, path, "allowed_fails", raw.allowed_fails, 0, bounds::ALLOWED_FAILS)
            .unwrap_or(defaults.allowed_fails),
        queue: queue(diags, raw.queue.as_ref(), defaults.queue, &join_key(path, "queue")),
        fallbacks,
        context_window_fallbacks: Vec::new(),
        content_policy_fallbacks: Vec::new(),
        deployments,
        unservable: Vec::new(),
        required_regions,
        health_check_interval,
    })
}

/// Applies a section's `cooldown_floor` and `max_cooldown` over `base`, and checks
/// them against each other and the section's `cooldown` when the section sets any.
fn cooldown_bounds(
    diags: &mut Diags<'_>,
    (cooldown_set, floor, ceiling): (bool, Option<&NumOrText>, Option<&NumOrText>),
    (cooldown, base): (std::time::Duration, CooldownBounds),
    path: &str,
) -> CooldownBounds {
    let mut bounds = base;
    let fields = [
        ("cooldown_floor", floor, validate::COOLDOWN_FLOOR_RANGE, &mut bounds.floor),
        ("max_cooldown", ceiling, validate::MAX_COOLDOWN_RANGE, &mut bounds.ceiling),
    ];
    let mut all_ok = true;
    for (name, value, range, slot) in fields {
        let Some(value) = value else { continue };
        let at = join_key(path, name);
        match report(diags, &at, values::parse_duration(value)) {
            Some(d) if validate::in_range(diags, &at, d, range) => *slot = d,
            _ => all_ok = false,
        }
    }
    if all_ok && (cooldown_set || floor.is_some() || ceiling.is_some()) {
        validate::check_cooldown_bounds(diags, path, bounds, cooldown);
    }
    bounds
}

/// Applies a `queue:` section over `base`.
fn queue(diags: &mut Diags<'_>, raw: Option<&RawQueue>, base: QueueSettings, path: &str) -> QueueSettings {
    let Some(raw) = raw else { return base };
    let mut q = base;
    if let Some(n) = raw.max_waiting {
        let at = join_key(path, "max_waiting");
        q.max_waiting = bounds::count_at(diags, &at, n, 0, bounds::MAX_WAITING).unwrap_or(q.max_waiting);
    }
    if let Some(wait) = &raw.max_wait {
        let at = join_key(path, "max_wait");
        q.max_wait = bounds::duration_at(diags, &at, wait, bounds::MAX_WAIT, Zero::Allowed).unwrap_or(q.max_wait);
    }
    if let Some(reserve) = raw.reserve {
        if (0.0..=0.9).contains(&reserve) {
            q.reserve_permille = (reserve * 1000.0).round() as u16;
        } else {
            diags.error(&join_key(path, "reserve"), "must be a share between 0 and 0.9 (of each key's budget)");
        }
    }
    q
}

fn deployment(diags: &mut Diags<'_>, value: Value, path: &str) -> Option<DeploymentDraft> {
    if !value.is_mapping() {
        diags.error(path, "a deployment must be a mapping with `provider`, `model` and `keys`");
        return None;
    }
    let raw: RawDeployment = de(diags, value, path)?;
    let errors_before = diags.errors.len();

    let provider_path = join_key(path, "provider");
    let provider = ProviderKind::from_name(raw.provider.trim());
    if provider.is_none() {
        diags.error(
            &provider_path,
            format!("unknown provider {:?} (known: {})", raw.provider, validate::known_providers()),
        );
    }
    if raw.model.trim().is_empty() {
        diags.error(&join_key(path, "model"), "upstream model must not be empty");
    }
    let base_path = if raw.api_base.is_some() { join_key(path, "api_base") } else { provider_path.clone() };
    let version = raw.api_version.as_deref().map(str::trim);
    let (version_path, model) = (join_key(path, "api_version"), raw.model.trim());
    let report_at = match provider {
        Some(p) if version.is_some() && !p.takes_api_version() => &version_path,
        _ => &base_path,
    };
    let based = provider.and_then(|p| {
        report(diags, report_at, validate::resolve_deployment_base(p, raw.api_base.as_deref(), model, version))
    });
    let (base_url, api_version) = match based {
        Some((base, version)) => (Some(base), version),
        None => (None, None),
    };

    let mut keys = Vec::new();
    let keys_path = join_key(path, "keys");
    for (i, name) in raw.keys.unwrap_or_default().into_iter().enumerate() {
        let at = join_index(&keys_path, i);
        if report(diags, &at, values::check_secret_name(&name)).is_some() {
            keys.push(KeyRef { name, kind: KeyRefKind::Single, origin: diags.origin(&at), implicit: false });
        }
    }
    if let Some(name) = raw.keys_from {
        let at = join_key(path, "keys_from");
        if report(diags, &at, values::check_secret_name(&name)).is_some() {
            keys.push(KeyRef { name, kind: KeyRefKind::Lines, origin: diags.origin(&at), implicit: false });
        }
    }
    let keyless = matches!((provider, &base_url), (Some(p), Some(b)) if !p.needs_key(b));
    if keys.is_empty() && !keyless && diags.errors.len() == errors_before {
        diags.error(path, "a deployment needs at least one key: set `keys` (secret names) and/or `keys_from`");
    }

    let weight: Option<u32> = limit(diags, path, "weight", raw.weight, 1, bounds::WEIGHT);
    let rpm: Option<u32> = limit(diags, path, "rpm", raw.rpm, 1, bounds::RPM);
    let tpm: Option<u64> = limit(diags, path, "tpm", raw.tpm, 1, bounds::TPM);
    let max_inflight: Option<u32> = limit(diags, path, "max_inflight", raw.max_inflight, 1, bounds::MAX_INFLIGHT);
    let order: Option<u32> = limit(diags, path, "order", raw.order, 0, bounds::ORDER);
    let mut options = OptionsDraft::default();
    let fields = NativeFields {
        request_defaults: raw.request_defaults.as_ref(),
        extra_headers: raw.extra_headers.as_ref(),
        timeout: raw.timeout.as_ref(),
        stream_timeout: raw.stream_timeout.as_ref(),
        max_retries: raw.max_retries.as_ref(),
        ssl_verify: raw.ssl_verify.as_ref(),
    };
    options.read_native(diags, path, fields);
    let options = options.finish(diags, path);
    let mode = raw.mode.as_deref().and_then(|m| validate::mode_named(diags, m, &join_key(path, "mode")));
    let price = raw.price.and_then(|p| {
        let at = join_key(path, "price");
        let input = report(diags, &join_key(&at, "input_per_million"), bounds::price_per_million(p.input_per_million));
        let output =
            report(diags, &join_key(&at, "output_per_million"), bounds::price_per_million(p.output_per_million));
        Some(crate::config::Price::per_million(input?, output?))
    });
    let explicit_name = match raw.name {
        Some(name) if name.trim().is_empty() => {
            diags.error(&join_key(path, "name"), "deployment name must not be empty");
            None
        }
        Some(name) => Some(Named { value: name, path: join_key(path, "name") }),
        None => None,
    };

    if diags.errors.len() != errors_before {
        return None;
    }
    let (provider, base_url) = (provider?, base_url?);
    let keys_over_http =
        if raw.send_keys_over_http == Some(true) { KeysOverHttp::OptedIn } else { KeysOverHttp::Refused };
    Some(DeploymentDraft {
        explicit_name,
        base_path,
        keys_over_http,
        deployment: Deployment {
            name: String::new(),
            provider,
            upstream_model: raw.model.trim().to_owned(),
            base_url,
            keys,
            weight: weight.unwrap_or(1),
            rpm,
            tpm,
            region: raw.region.filter(|r| !r.trim().is_empty()),
            max_inflight,
            priority: order.unwrap_or(0),
            api_version,
            organization: None,
            from_secrets: Vec::new(),
            pending_base: None,
            options,
            mode,
            price,
        },
    })
}

/// The count `field` of the section at `path`, checked against `min..=max`.
fn limit<T: TryFrom<u64>>(
    diags: &mut Diags<'_>,
    path: &str,
    field: &str,
    value: Option<u64>,
    min: u64,
    max: u64,
) -> Option<T> {
    bounds::count_at(diags, &join_key(path, field), value?, min, max)
}

/// Parses a native strategy name, reporting unknown ones.
fn strategy(diags: &mut Diags<'_>, name: Option<&str>, path: &str) -> Option<Strategy> {
    let name = name?;
    let parsed = Strategy::from_name(name.trim());
    if parsed.is_none() {
        diags.error(
            path,
            format!("unknown strategy {name:?} (expected one of round-robin, weighted, least-busy, latency, usage)"),
        );
    }
    parsed
}
