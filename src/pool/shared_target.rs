//! The Redis a snapshot shares state through, with its secrets resolved. Part of the
//! snapshot (built with it, swapped with it); `crate::shared`'s task reads it from there.

use std::fmt;
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};

use crate::config::shared::parse_url;
use crate::config::{Config, Diagnostic, Origin, ResolvedSecrets, SharedAddress, SharedSettings, SharedValue};

/// Where to connect and how. `Debug` never shows the password.
#[derive(Clone)]
pub struct Target {
    pub info: ConnectionInfo,
    /// `redis://host:port/db` without credentials: for logs and `/status`.
    pub shown: String,
    /// Changes with anything that needs a new connection (the password included,
    /// as a digest).
    identity: String,
    pub key_prefix: String,
    pub timeout: Duration,
    pub sync_interval: Duration,
    pub cluster: bool,
}

impl PartialEq for Target {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
            && (self.key_prefix.as_str(), self.timeout, self.sync_interval)
                == (other.key_prefix.as_str(), other.timeout, other.sync_interval)
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target").field("redis", &self.shown).field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl Target {
    /// `None` when the config shares nothing. A secret it names that does not
    /// resolve, or a URL built from secrets that does not parse, is a config error.
    pub fn resolve(config: &Config, secrets: &ResolvedSecrets) -> Result<Option<Target>, Diagnostic> {
        let Some(settings) = config.shared_settings() else { return Ok(None) };
        let settings = settings.as_ref();
        let error = |origin: Origin, message: String| Diagnostic { file: config.source.clone(), origin, message };
        let value = |v: &SharedValue| -> Result<Option<String>, Diagnostic> {
            match v {
                SharedValue::Literal(s) => Ok(Some(s.expose().to_owned())),
                SharedValue::Named { key, optional } => match secrets.resolve(key) {
                    Ok(keys) => Ok(keys.into_iter().next().map(|k| k.secret.expose().to_owned())),
                    Err(_) if *optional => Ok(None),
                    Err(e) => Err(error(key.origin.clone(), e.to_string())),
                },
            }
        };
        let origin_of = |v: &SharedValue| match v {
            SharedValue::Named { key, .. } => key.origin.clone(),
            SharedValue::Literal(_) => Origin { line: None, path: "shared".into() },
        };
        let (url, at) = match &settings.address {
            SharedAddress::Url(u) => (value(u)?, origin_of(u)),
            SharedAddress::HostPort { host, port, tls } => {
                match settings.redis_url_fallback().map(|url| value(&url)).transpose()?.flatten() {
                    Some(url) => (Some(url), origin_of(host)),
                    None => {
                        let host_name = value(host)?;
                        let port = port.as_ref().map(&value).transpose()?.flatten().unwrap_or_else(|| "6379".into());
                        let tls = tls.as_ref().map(&value).transpose()?.flatten();
                        let scheme =
                            if tls.is_some_and(|t| t.trim().eq_ignore_ascii_case("true")) { "rediss" } else { "redis" };
                        (host_name.map(|h| format!("{scheme}://{}:{}", h.trim(), port.trim())), origin_of(host))
                    }
                }
            }
        };
        let Some(url) = url else {
            let message =
                "router_settings names a Redis but neither redis_url/redis_host nor REDIS_URL/REDIS_HOST is set";
            return Err(error(at, message.into()));
        };
        let mut info = parse_url(url.trim()).map_err(|e| error(at.clone(), format!("Redis address: {e}")))?;
        let password = settings.password.as_ref().map(&value).transpose()?.flatten();
        if let Some(password) = &password {
            let redis = info.redis_settings().clone().set_password(password.trim());
            info = info.set_redis_settings(redis);
        }
        Ok(Some(Self::new(info, password.as_deref(), settings)))
    }

    fn new(info: ConnectionInfo, password: Option<&str>, settings: &SharedSettings) -> Target {
        let (scheme, host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) => ("redis", host.as_str(), *port),
            ConnectionAddr::TcpTls { host, port, .. } => ("rediss", host.as_str(), *port),
            _ => ("redis+unix", "", 0),
        };
        let shown = format!("{scheme}://{host}:{port}/{}", info.redis_settings().db());
        let secret_digest = crate::secret::Secret::new(format!(
            "{}\0{}",
            info.redis_settings().username().unwrap_or_default(),
            info.redis_settings().password().or(password).unwrap_or_default()
        ))
        .shared_fingerprint();
        Target {
            identity: format!("{shown}\0{secret_digest}\0{}", settings.cluster),
            info,
            shown,
            key_prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            sync_interval: settings.sync_interval,
            cluster: settings.cluster,
        }
    }

    /// Whether reaching `other` needs a new connection.
    pub fn same_server(&self, other: &Target) -> bool {
        self.identity == other.identity
    }
}
