//! LiteLLM's router-wide sections: `litellm_settings`, `router_settings` and
//! `environment_variables`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml::Value;

use super::bounds::{self, Zero};
use super::keylike::looks_like_key;
use super::lines::{join_index, join_key};
use super::litellm_compat::{self as compat, Section};
use super::model::Strategy;
use super::validate::{self, Diags, Named};
use super::walk::{count, entries, names, seconds, string};
use crate::secret::Secret;

/// Router-wide settings from `litellm_settings` and `router_settings` (the latter
/// wins when both set the same thing).
#[derive(Default)]
pub(crate) struct Settings {
    pub num_retries: Option<u32>,
    pub request_timeout: Option<Duration>,
    pub strategy: Option<Strategy>,
    pub allowed_fails: Option<u32>,
    pub cooldown: Option<Duration>,
    /// (alias, its path, one fallback)
    pub fallbacks: Vec<(String, String, Named)>,
    /// `custom_provider_map` providers: Python handlers, whose entries are not served.
    pub custom_providers: Vec<String>,
    /// `context_window_fallbacks`, the same shape: taken on a context-length error.
    pub context_window_fallbacks: Vec<(String, String, Named)>,
    /// `content_policy_fallbacks`, the same shape: taken on a content-policy refusal.
    pub content_policy_fallbacks: Vec<(String, String, Named)>,
    /// `redis_host`, `redis_port`, `redis_password`, `redis_url`.
    pub redis: super::shared::Litellm,
    /// `general_settings.background_health_checks`.
    pub background_health_checks: bool,
    /// `general_settings.health_check_interval` (seconds; LiteLLM's default is 300).
    pub health_check_interval: Option<Duration>,
}

/// LiteLLM's default `health_check_interval`.
const LITELLM_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(300);

impl Settings {
    /// The active health check interval these settings ask for: only with
    /// `background_health_checks: true`, as in LiteLLM.
    pub(crate) fn health_check_interval(&self) -> Option<Duration> {
        self.background_health_checks.then(|| self.health_check_interval.unwrap_or(LITELLM_HEALTH_CHECK_INTERVAL))
    }
}

/// `general_settings`: only the health checks mean something without LiteLLM's
/// database and UI.
pub(crate) fn general_settings(diags: &mut Diags<'_>, value: &Value, s: &mut Settings) {
    for (key, v) in compat::entries(diags, value, "general_settings", Section::GeneralSettings) {
        let at = join_key("general_settings", &key);
        match key.as_str() {
            "background_health_checks" => match v {
                Value::Bool(on) => s.background_health_checks = *on,
                _ => diags.error(&at, "must be true or false"),
            },
            "health_check_interval" => {
                let interval = seconds(diags, v, &at, bounds::HEALTH_CHECK_INTERVAL, Zero::Refused);
                match interval {
                    Some(d) if d < bounds::HEALTH_CHECK_FLOOR => diags.error(&at, "must be at least 0.1 seconds"),
                    Some(d) => s.health_check_interval = Some(d),
                    None => {}
                }
            }
            _ => compat::ignored(diags, Section::GeneralSettings, &key, "general_settings"),
        }
    }
    if s.health_check_interval.is_some() && !s.background_health_checks {
        let message = "has no effect without background_health_checks: true (as in LiteLLM): keys are not probed";
        diags.warn("general_settings.health_check_interval", message);
    }
}

/// LiteLLM's routing strategy names in ours.
pub(crate) fn map_strategy(name: &str) -> Option<Strategy> {
    match name {
        "simple-shuffle" => Some(Strategy::Weighted),
        "least-busy" => Some(Strategy::LeastBusy),
        "usage-based-routing" | "usage-based-routing-v2" => Some(Strategy::Usage),
        "latency-based-routing" => Some(Strategy::Latency),
        _ => None,
    }
}

pub(crate) fn litellm_settings(diags: &mut Diags<'_>, value: &Value, s: &mut Settings) {
    for (key, v) in compat::entries(diags, value, "litellm_settings", Section::LitellmSettings) {
        let at = join_key("litellm_settings", &key);
        match key.as_str() {
            "num_retries" => s.num_retries = count(diags, v, &at, 0, bounds::NUM_RETRIES).or(s.num_retries),
            "request_timeout" => s.request_timeout = timeout(diags, v, &at).or(s.request_timeout),
            "fallbacks" => global_fallbacks(diags, v, &at, &mut s.fallbacks),
            "context_window_fallbacks" => global_fallbacks(diags, v, &at, &mut s.context_window_fallbacks),
            "content_policy_fallbacks" => global_fallbacks(diags, v, &at, &mut s.content_policy_fallbacks),
            // keyrelay never rejects unknown request params: it passes them through.
            "drop_params" => {}
            "custom_provider_map" => {
                s.custom_providers.extend(custom_providers(v));
                compat::ignored(diags, Section::LitellmSettings, &key, "litellm_settings");
            }
            _ => compat::ignored(diags, Section::LitellmSettings, &key, "litellm_settings"),
        }
    }
}

pub(crate) fn router_settings(diags: &mut Diags<'_>, value: &Value, s: &mut Settings) {
    for (key, v) in compat::entries(diags, value, "router_settings", Section::RouterSettings) {
        let at = join_key("router_settings", &key);
        if s.redis.read(diags, &key, v, &at) {
            continue;
        }
        match key.as_str() {
            "routing_strategy" => {
                if let Some(name) = string(diags, v, &at) {
                    match map_strategy(name.trim()) {
                        Some(st) => s.strategy = Some(st),
                        None => diags.warn(
                            &at,
                            format!(
                                "routing_strategy {name:?} is not implemented by keyrelay; using {}",
                                validate::DEFAULT_STRATEGY
                            ),
                        ),
                    }
                }
            }
            "allowed_fails" => s.allowed_fails = count(diags, v, &at, 0, bounds::ALLOWED_FAILS).or(s.allowed_fails),
            "cooldown_time" => s.cooldown = seconds(diags, v, &at, bounds::COOLDOWN, Zero::Allowed).or(s.cooldown),
            "num_retries" => s.num_retries = count(diags, v, &at, 0, bounds::NUM_RETRIES).or(s.num_retries),
            "timeout" => s.request_timeout = timeout(diags, v, &at).or(s.request_timeout),
            "fallbacks" => global_fallbacks(diags, v, &at, &mut s.fallbacks),
            "context_window_fallbacks" => global_fallbacks(diags, v, &at, &mut s.context_window_fallbacks),
            "content_policy_fallbacks" => global_fallbacks(diags, v, &at, &mut s.content_policy_fallbacks),
            _ => compat::ignored(diags, Section::RouterSettings, &key, "router_settings"),
        }
    }
}

/// `custom_provider_map: [{provider: my-llm, custom_handler: module.instance}]`.
fn custom_providers(value: &Value) -> Vec<String> {
    let Value::Sequence(items) = value else { return Vec::new() };
    items.iter().filter_map(|item| item.get("provider")?.as_str().map(str::to_owned)).collect()
}

/// `request_timeout` / `timeout`: keyrelay's `server.timeouts.request`.
fn timeout(diags: &mut Diags<'_>, value: &Value, path: &str) -> Option<Duration> {
    seconds(diags, value, path, bounds::REQUEST_TIMEOUT, Zero::Refused)
}

/// `fallbacks: [{gpt-4o: [gpt-4o-mini, claude]}]`; `*` applies to every alias.
fn global_fallbacks(diags: &mut Diags<'_>, value: &Value, path: &str, out: &mut Vec<(String, String, Named)>) {
    let Value::Sequence(items) = value else {
        diags.error(path, "fallbacks must be a list of {model_name: [fallback model_names]}");
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let item_path = join_index(path, i);
        for (alias, list) in entries(diags, item, &item_path) {
            let alias_path = join_key(&item_path, &alias);
            for fb in names(diags, list, &alias_path) {
                out.push((alias.clone(), alias_path.clone(), fb));
            }
        }
    }
}

/// `environment_variables`: the last place a secret name is looked up. Values are
/// kept as [`Secret`]s and never shown; each one earns a warning, because anything
/// written here ends up in a ConfigMap in clear text.
pub(crate) fn environment(diags: &mut Diags<'_>, value: &Value) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    for (name, v) in entries(diags, value, "environment_variables") {
        let at = join_key("environment_variables", &name);
        if looks_like_key(&name) {
            diags.error(&at, "this looks like an API key, not a variable name: write `NAME: value` (not shown)");
            continue;
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                diags.error(&at, "environment variable values must be strings");
                continue;
            }
        };
        diags.warn(
            &at,
            format!("value of {name} is written into the config: keys in a ConfigMap are not secret, put it into a Secret instead"),
        );
        out.insert(name, Secret::new(text));
    }
    out
}
