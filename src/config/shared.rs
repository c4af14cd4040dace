//! Shared state settings: the native `shared:` section and LiteLLM's
//! `router_settings.redis_*` (with the `REDIS_*` variables LiteLLM reads).
//!
//! Only the form is checked here; values that may come from secrets are resolved with
//! the keys when a snapshot is built (`crate::pool::shared_target`).

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use super::bounds::{self, Zero};
use super::model::{Config, KeyRef, KeyRefKind, SharedAddress, SharedSettings, SharedValue};
use super::validate::{report, Diags};
use super::values::{self, de, NumOrText};
use crate::secret::Secret;

/// A round trip to a Redis that takes longer than this is no help to a request.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const SYNC_INTERVAL_MIN: Duration = Duration::from_millis(10);
pub(crate) const SYNC_INTERVAL_MAX: Duration = Duration::from_secs(10);
pub(crate) const PREFIX_MAX_LEN: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename = "shared")]
struct RawShared {
    url: String,
    /// A secret name, as for keys.
    password: Option<String>,
    key_prefix: Option<String>,
    timeout: Option<NumOrText>,
    sync_interval: Option<NumOrText>,
    cluster: Option<bool>,
}

/// The native `shared:` section; `None` when absent, `null` or wrong.
pub(crate) fn native(diags: &mut Diags<'_>, value: Value) -> Option<SharedSettings> {
    if value.is_null() {
        return None;
    }
    let raw: RawShared = de(diags, value, "shared")?;
    let before = diags.errors.len();
    check_url(diags, "shared.url", raw.url.trim());
    let password = raw.password.and_then(|name| {
        let at = "shared.password";
        report(diags, at, values::check_secret_name(&name))?;
        Some(named(diags, name, at, false))
    });
    let mut s = defaults(SharedAddress::Url(SharedValue::Literal(Secret::new(raw.url.trim()))), password);
    if let Some(prefix) = raw.key_prefix {
        match check_prefix(&prefix) {
            Ok(()) => s.key_prefix = prefix,
            Err(e) => diags.error("shared.key_prefix", e),
        }
    }
    if let Some(t) = raw.timeout {
        s.timeout = bounds::duration_at(diags, "shared.timeout", &t, TIMEOUT, Zero::Refused).unwrap_or(s.timeout);
    }
    if let Some(i) = raw.sync_interval {
        let at = "shared.sync_interval";
        if let Some(d) = bounds::duration_at(diags, at, &i, SYNC_INTERVAL_MAX, Zero::Refused) {
            if d < SYNC_INTERVAL_MIN {
                diags.error(at, "must be at least 10ms");
            }
            s.sync_interval = d;
        }
    }
    s.cluster = raw.cluster.unwrap_or(false);
    (diags.errors.len() == before).then_some(s)
}

/// `router_settings.redis_*` as read one key at a time, then [`Litellm::finish`].
#[derive(Debug, Default)]
pub(crate) struct Litellm {
    url: Option<SharedValue>,
    host: Option<SharedValue>,
    port: Option<SharedValue>,
    password: Option<SharedValue>,
}

impl Litellm {
    /// Takes `router_settings.<key>` if it is one of ours; false for any other key.
    pub(crate) fn read(&mut self, diags: &mut Diags<'_>, key: &str, value: &Value, at: &str) -> bool {
        let slot = match key {
            "redis_url" => &mut self.url,
            "redis_host" => &mut self.host,
            "redis_port" => &mut self.port,
            "redis_password" => &mut self.password,
            _ => return false,
        };
        let text = match value {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Null => return true,
            _ => {
                diags.error(at, "expected a string or os.environ/NAME");
                return true;
            }
        };
        if let Some(name) = text.strip_prefix("os.environ/") {
            if report(diags, at, values::check_secret_name(name)).is_some() {
                *slot = Some(named(diags, name.to_owned(), at, false));
            }
            return true;
        }
        match key {
            "redis_url" => check_url(diags, at, &text),
            "redis_password" => diags.warn(
                at,
                "the Redis password is written into the config: keys in a ConfigMap are not secret, use os.environ/NAME",
            ),
            "redis_port" if text.parse::<u16>().map_or(true, |p| p == 0) => {
                diags.error(at, "must be a port number (1-65535)")
            }
            _ => {}
        }
        *slot = Some(SharedValue::Literal(Secret::new(text)));
        true
    }

    /// Sharing is on when the file names a Redis; the `REDIS_*` variables fill in
    /// what it leaves out, as LiteLLM's Redis client does (the file wins).
    pub(crate) fn finish(self, diags: &mut Diags<'_>) -> Option<SharedSettings> {
        if self.url.is_none() && self.host.is_none() && self.port.is_none() && self.password.is_none() {
            return None;
        }
        let env = |diags: &mut Diags<'_>, name: &str| named(diags, name.to_owned(), "router_settings", true);
        let address = match (self.url, self.host) {
            (Some(url), _) => SharedAddress::Url(url),
            (None, Some(host)) => {
                let port = self.port.or_else(|| Some(env(diags, "REDIS_PORT")));
                SharedAddress::HostPort { host, port, tls: Some(env(diags, "REDIS_SSL")) }
            }
            // Only the port or password in the file: the address from REDIS_URL, else
            // REDIS_HOST (resolved in that order when the snapshot is built).
            (None, None) => SharedAddress::HostPort {
                host: env(diags, "REDIS_HOST"),
                port: self.port.or_else(|| Some(env(diags, "REDIS_PORT"))),
                tls: Some(env(diags, "REDIS_SSL")),
            },
        };
        let password = self.password.or_else(|| Some(env(diags, "REDIS_PASSWORD")));
        Some(defaults(address, password))
    }
}

fn defaults(address: SharedAddress, password: Option<SharedValue>) -> SharedSettings {
    SharedSettings {
        address,
        password,
        key_prefix: SharedSettings::DEFAULT_PREFIX.to_owned(),
        timeout: SharedSettings::DEFAULT_TIMEOUT,
        sync_interval: SharedSettings::DEFAULT_SYNC_INTERVAL,
        cluster: false,
    }
}

fn named(diags: &Diags<'_>, name: String, at: &str, optional: bool) -> SharedValue {
    let origin = diags.origin(at);
    SharedValue::Named { key: KeyRef { name, kind: KeyRefKind::Single, origin, implicit: false }, optional }
}

/// Reports a URL that is not `redis://` or `rediss://`, without repeating it (it may
/// hold a password).
pub(crate) fn check_url(diags: &mut Diags<'_>, at: &str, url: &str) {
    if let Err(e) = parse_url(url) {
        diags.error(at, e);
    }
}

/// Checks a Redis URL; the message never contains it.
pub fn parse_url(url: &str) -> Result<redis::ConnectionInfo, String> {
    let usage = "must be redis://[user:password@]host[:port][/db] or rediss://... (TLS)";
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(usage.to_owned());
    }
    redis::IntoConnectionInfo::into_connection_info(url).map_err(|_| format!("not a valid Redis URL: {usage}"))
}

fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "-_.:/".contains(c);
    if prefix.is_empty() || prefix.len() > PREFIX_MAX_LEN || !prefix.chars().all(ok) {
        return Err(format!("must be 1 to {PREFIX_MAX_LEN} of letters, digits, '-', '_', '.', ':', '/'"));
    }
    Ok(())
}

impl Config {
    /// The Redis replicas share state through: the config's own `shared:` (or LiteLLM's
    /// `router_settings.redis_*`), else the chart's environment variables.
    pub fn shared_settings(&self) -> Option<Cow<'_, SharedSettings>> {
        match &self.shared {
            Some(settings) => Some(Cow::Borrowed(settings)),
            None => from_environment().map(Cow::Owned),
        }
    }
}

/// The chart's `sidecar.sharedState`: `KEYRELAY_SHARED_URL` (and the optional
/// `KEYRELAY_SHARED_PASSWORD`) point a sidecar whose config has no `shared:` at a Redis.
pub(crate) fn from_environment() -> Option<SharedSettings> {
    std::env::var_os("KEYRELAY_SHARED_URL")?;
    let named = |name: &str, optional| SharedValue::Named {
        key: KeyRef {
            name: name.into(),
            kind: KeyRefKind::Single,
            origin: super::model::Origin { line: None, path: format!("${name}") },
            implicit: false,
        },
        optional,
    };
    Some(SharedSettings {
        address: SharedAddress::Url(named("KEYRELAY_SHARED_URL", false)),
        password: Some(named("KEYRELAY_SHARED_PASSWORD", true)),
        key_prefix: SharedSettings::DEFAULT_PREFIX.to_owned(),
        timeout: SharedSettings::DEFAULT_TIMEOUT,
        sync_interval: SharedSettings::DEFAULT_SYNC_INTERVAL,
        cluster: false,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{load_str, SharedAddress, SharedValue};

    const MODELS: &str = "models:\n  m:\n    deployments:\n      - { provider: openai, model: x, keys: [K] }\n";
    const LIST: &str =
        "model_list:\n  - model_name: m\n    litellm_params: { model: openai/x, api_key: os.environ/K }\n";

    #[test]
    fn native_section_is_parsed_and_bounded() {
        let text =
            format!("shared:\n  url: rediss://redis.svc:6380/2\n  password: REDIS_PASSWORD\n  timeout: 20ms\n{MODELS}");
        let s = load_str(&text, Path::new("c.yaml")).unwrap().config.shared.unwrap();
        assert_eq!(s.timeout, std::time::Duration::from_millis(20));
        assert!(matches!(&s.password, Some(SharedValue::Named { key, .. }) if key.name == "REDIS_PASSWORD"));
        let defaults = format!("shared:\n  url: redis://r\n{MODELS}");
        let s = load_str(&defaults, Path::new("c.yaml")).unwrap().config.shared.unwrap();
        assert_eq!((s.timeout, s.key_prefix.as_str()), (std::time::Duration::from_millis(50), "keyrelay"));

        let bad = format!(
            "shared:\n  url: http://user:hunter2@r\n  timeout: 10m\n  key_prefix: 'a{{b}}'\n  sync_interval: 1ms\n{MODELS}"
        );
        let errors = load_str(&bad, Path::new("c.yaml")).unwrap_err().to_string();
        for field in ["shared.url", "shared.timeout", "shared.key_prefix", "shared.sync_interval"] {
            assert!(errors.contains(field), "{field}: {errors}");
        }
        assert!(!errors.contains("hunter2"), "{errors}");
    }

    #[test]
    fn litellm_router_settings_name_a_redis() {
        let text = format!("{LIST}router_settings:\n  redis_host: os.environ/REDIS_HOST\n  redis_port: 6380\n");
        let loaded = load_str(&text, Path::new("c.yaml")).unwrap();
        let s = loaded.config.shared.unwrap();
        let SharedAddress::HostPort { host, port, .. } = &s.address else { panic!("{:?}", s.address) };
        assert!(matches!(host, SharedValue::Named { key, optional: false } if key.name == "REDIS_HOST"));
        assert!(matches!(port, Some(SharedValue::Literal(p)) if p.expose() == "6380"));
        assert!(matches!(
            &s.password,
            Some(SharedValue::Named { key, optional: true }) if key.name == "REDIS_PASSWORD"
        ));
        assert!(!loaded.warnings.iter().any(|w| w.origin.path.contains("redis")), "{:?}", loaded.warnings);

        let url = format!("{LIST}router_settings:\n  redis_url: redis://r:6379/1\n  redis_password: pw\n");
        let loaded = load_str(&url, Path::new("c.yaml")).unwrap();
        assert!(matches!(loaded.config.shared.unwrap().address, SharedAddress::Url(_)));
        assert!(loaded.warnings.iter().any(|w| w.message.contains("Redis password")), "{:?}", loaded.warnings);

        let none = load_str(LIST, Path::new("c.yaml")).unwrap();
        assert!(none.config.shared.is_none());
        let bad = format!("{LIST}router_settings:\n  redis_url: memcached://x\n  redis_port: 70000\n");
        let errors = load_str(&bad, Path::new("c.yaml")).unwrap_err().to_string();
        assert!(errors.contains("router_settings.redis_url") && errors.contains("redis_port"), "{errors}");
    }
}
