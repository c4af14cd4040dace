//! Runtime configuration: validated, typed, and free of serde.
//!
//! Both file formats (native and LiteLLM) end up here. Nothing in this module can be
//! invalid: the validators in `native.rs` and `litellm.rs` reject everything that
//! would not make sense at run time, so the request path never re-checks config.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::mode::Mode;
use crate::provider::ProviderKind;

/// A fully validated configuration, ready to be turned into a routing snapshot.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (for messages).
    pub source: PathBuf,
    pub server: ServerSettings,
    /// Alias (the `model` a client sends) to its route.
    pub models: BTreeMap<String, ModelRoute>,
    /// LiteLLM `environment_variables`: the last place a secret name is looked up.
    pub inline_secrets: BTreeMap<String, crate::secret::Secret>,
    /// Native `kubernetes:`: also watch the Secret and ConfigMap through the API server,
    /// so a rotation lands in about a second instead of kubelet's 60-90 s file sync.
    pub kubernetes: Option<KubernetesSource>,
    /// Native `shared:` / LiteLLM `router_settings.redis_*`: the Redis through which
    /// replicas sharing keys share their limits (see `crate::shared`).
    pub shared: Option<SharedSettings>,
}

/// Where replicas share per-key state. Values that may come from a secret (the
/// password; in LiteLLM files also the host and URL) are resolved with the keys, when
/// a snapshot is built, so a rotated password or a fixed typo applies on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedSettings {
    /// The whole URL, or host and port to build one from (LiteLLM's `redis_host`).
    pub address: SharedAddress,
    pub password: Option<SharedValue>,
    /// Prefix of every Redis key keyrelay writes (`keyrelay` by default).
    pub key_prefix: String,
    /// The longest a request may wait for anything from Redis, and the budget of one
    /// sync round trip (50 ms by default).
    pub timeout: Duration,
    /// How often counts, cooldowns and leases are exchanged (100 ms by default).
    pub sync_interval: Duration,
    /// Redis Cluster: the URL names one seed node, the client finds the others.
    pub cluster: bool,
}

impl SharedSettings {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(50);
    pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);
    pub const DEFAULT_PREFIX: &'static str = "keyrelay";

    /// Every secret these settings may be read from (a change to one is a reload),
    /// including the [`redis_url_fallback`](Self::redis_url_fallback).
    pub fn secret_refs(&self) -> Vec<KeyRef> {
        let mut values = vec![self.password.clone()];
        match &self.address {
            SharedAddress::Url(url) => values.push(Some(url.clone())),
            SharedAddress::HostPort { host, port, tls } => {
                values.extend([Some(host.clone()), port.clone(), tls.clone()]);
            }
        }
        values
            .into_iter()
            .flatten()
            .chain(self.redis_url_fallback())
            .filter_map(|v| match v {
                SharedValue::Named { key, .. } => Some(key),
                SharedValue::Literal(_) => None,
            })
            .collect()
    }

    /// `REDIS_URL`, read before host and port when the host is itself only an optional
    /// variable (LiteLLM's `REDIS_HOST`): LiteLLM takes the URL first too.
    pub fn redis_url_fallback(&self) -> Option<SharedValue> {
        let SharedAddress::HostPort { host: SharedValue::Named { key: host, optional: true }, .. } = &self.address
        else {
            return None;
        };
        let key =
            KeyRef { name: "REDIS_URL".into(), kind: KeyRefKind::Single, origin: host.origin.clone(), implicit: false };
        Some(SharedValue::Named { key, optional: true })
    }
}

/// How the Redis address is given.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedAddress {
    /// `redis://[user:password@]host[:port][/db]` or `rediss://...` (TLS).
    Url(SharedValue),
    /// LiteLLM's `redis_host` + `redis_port` (default 6379); `tls` from `REDIS_SSL`.
    HostPort { host: SharedValue, port: Option<SharedValue>, tls: Option<SharedValue> },
}

/// A setting written into the file, or the name of a secret (file in the secrets dir,
/// then environment variable) that holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum SharedValue {
    Literal(crate::secret::Secret),
    /// `optional`: a name keyrelay looks up on its own (LiteLLM's `REDIS_*`
    /// variables), not one the file asked for: missing is no error.
    Named {
        key: KeyRef,
        optional: bool,
    },
}

/// The objects to watch through the Kubernetes API (`kubernetes:` section). Their data
/// goes through the same reload path as the mounted files, which stay the fallback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KubernetesSource {
    /// `None`: the pod's own namespace (the service account's namespace file), else
    /// the client's default.
    pub namespace: Option<String>,
    /// Secret whose `data` keys are secret names (looked up before the secrets dir).
    pub secret: Option<String>,
    /// ConfigMap whose `config.yaml` replaces the config file's text.
    pub config_map: Option<String>,
}

/// Process-level settings: addresses and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    /// TCP (+TLS) connect timeout for one upstream attempt.
    pub connect_timeout: Duration,
    /// The longest a client waits for response headers, all attempts included; also
    /// the longest silence tolerated between two chunks of a streamed response body.
    pub request_timeout: Duration,
    /// One upstream attempt's budget until response headers; `None` means the whole
    /// `request_timeout`. Shorter values let a hung key fail over sooner.
    pub attempt_timeout: Option<Duration>,
    /// How long a client may take to send its request body.
    pub client_body_timeout: Duration,
    /// Largest accepted request body, in bytes (larger: 413).
    pub body_limit: usize,
    /// Most bytes of request bodies held in memory at once, over all requests (past
    /// it: 503 with `retry-after`, instead of the process outgrowing its memory).
    pub max_buffered_bodies: usize,
    /// How long SIGTERM waits for in-flight requests (streams too) before exiting.
    pub shutdown_grace: Duration,
    /// Open connections on the app port; past it, new ones are closed at once.
    pub max_connections: usize,
    /// The same for the admin port (reachable from every pod, so kept small): a
    /// flood there cannot take the descriptors the app port needs.
    pub admin_max_connections: usize,
    /// Both ports: a connection's request head (for a new connection, its first byte
    /// included) must arrive within this, else it is closed.
    pub header_read_timeout: Duration,
    /// Both ports: a connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// The sidecar's region: deployments in the same region are preferred.
    pub region: Option<String>,
    /// The regions every alias may use unless it names its own (`[]`: any region).
    pub required_regions: Vec<String>,
    /// Active health checks of every key, unless an alias sets its own; `None`: off.
    pub health_check_interval: Option<Duration>,
    /// The longest a changed key value's pre-flight probe may take before the new
    /// value serves anyway (the provider being unreachable is no reason to keep the old).
    pub key_probe_timeout: Duration,
    /// Requests carrying this header stick to one endpoint per header value.
    pub session_header: http::HeaderName,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4000)),
            admin: SocketAddr::from(([0, 0, 0, 0], 9901)),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(300),
            attempt_timeout: None,
            client_body_timeout: Duration::from_secs(30),
            body_limit: 32 * 1024 * 1024,
            // The injected sidecar's memory limit is 256 MiB: half for bodies leaves
            // room for the process itself, connections and streamed responses.
            max_buffered_bodies: 128 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            max_connections: 1024,
            admin_max_connections: 64,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            region: None,
            required_regions: Vec::new(),
            health_check_interval: None,
            key_probe_timeout: Duration::from_secs(10),
            session_header: http::HeaderName::from_static("x-session-id"),
        }
    }
}

/// How endpoints of one alias are ordered for each request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    RoundRobin,
    Weighted,
    LeastBusy,
    Latency,
    Usage,
}

impl Strategy {
    /// The name used in the native config and in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::Weighted => "weighted",
            Strategy::LeastBusy => "least-busy",
            Strategy::Latency => "latency",
            Strategy::Usage => "usage",
        }
    }

    /// Parses a native strategy name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "round-robin" => Strategy::RoundRobin,
            "weighted" => Strategy::Weighted,
            "least-busy" => Strategy::LeastBusy,
            "latency" => Strategy::Latency,
            "usage" => Strategy::Usage,
            _ => return None,
        })
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to route requests for one alias.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRoute {
    pub alias: String,
    pub strategy: Strategy,
    /// Retries after the first attempt within this alias (so attempts = 1 + retries).
    pub num_retries: u32,
    /// Aliases tried in order once this alias is exhausted.
    pub fallbacks: Vec<String>,
    /// Aliases tried in order when a deployment says the prompt exceeds its context
    /// window (LiteLLM `context_window_fallbacks`): a 400 no retry on the same alias cures.
    pub context_window_fallbacks: Vec<String>,
    /// Aliases tried in order when a deployment refuses the content on policy grounds
    /// (LiteLLM `content_policy_fallbacks`).
    pub content_policy_fallbacks: Vec<String>,
    /// Cooldown after a 429 that carries no retry hint.
    pub cooldown: Duration,
    /// The least and the most any cooldown lasts, whatever a provider says.
    pub cooldown_bounds: CooldownBounds,
    /// Failures (5xx, connect errors, timeouts) within a minute that open an
    /// endpoint's circuit breaker for `cooldown`.
    pub allowed_fails: u32,
    /// Waiting room for requests that find no endpoint with capacity.
    pub queue: QueueSettings,
    pub deployments: Vec<Deployment>,
    /// The only regions requests of this alias may go to (`[]`: any): deployments
    /// elsewhere, or without a region, are never used, even when every allowed key
    /// is cooling down.
    pub required_regions: Vec<String>,
    /// How often each key of this alias is probed; `None`: no active health checks.
    pub health_check_interval: Option<Duration>,
    /// LiteLLM entries of this alias that keyrelay cannot serve, each with its reason
    /// (`bedrock` needs request signing, ...). When no deployment is left, requests
    /// get 501 with these reasons instead of an upstream answer.
    pub unservable: Vec<String>,
}

/// The least and the most a key rests, whatever a provider's hints say: one header
/// must neither lock a key out for years nor let requests hammer a key that keeps
/// answering 429 with `retry-after: 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownBounds {
    /// The shortest rest after a 429 without a hint, and the shortest time a breaker
    /// stays open. A provider's own hint is honoured down to a tenth of it. It doubles
    /// with each consecutive 429 from the same key.
    pub floor: Duration,
    /// The longest any rest, reset or retry hint counts for.
    pub ceiling: Duration,
}

impl Default for CooldownBounds {
    fn default() -> Self {
        CooldownBounds { floor: Duration::from_secs(1), ceiling: Duration::from_secs(3600) }
    }
}

/// When every endpoint of an alias is cooling down or out of quota, requests wait
/// (FIFO) for the earliest reset instead of failing at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Requests that may wait at once; more get 429 straight away.
    pub max_waiting: usize,
    /// The longest one request waits; then it gets 429 with `retry-after`.
    pub max_wait: Duration,
    /// The share of each key's budget (in thousandths) that low-priority requests must
    /// leave for the others (`queue.reserve`, a fraction up to 0.9).
    pub reserve_permille: u16,
}

impl QueueSettings {
    /// [`QueueSettings::reserve_permille`] as a fraction.
    pub fn reserve(&self) -> f64 {
        f64::from(self.reserve_permille) / 1000.0
    }
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings { max_waiting: 100, max_wait: Duration::from_secs(10), reserve_permille: 100 }
    }
}

/// One upstream model at one provider, reachable with one or more keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// Unique within its alias; shown in `x-keyrelay-deployment`. Defaults to
    /// `provider/model`.
    pub name: String,
    pub provider: ProviderKind,
    /// The `model` sent upstream.
    pub upstream_model: String,
    /// Replaces the client's `/v1` prefix, e.g. `https://api.groq.com/openai/v1`.
    pub base_url: http::Uri,
    pub keys: Vec<KeyRef>,
    pub weight: u32,
    /// Requests per minute allowed per key.
    pub rpm: Option<u32>,
    /// Tokens per minute allowed per key.
    pub tpm: Option<u64>,
    pub region: Option<String>,
    /// Most concurrent requests per key.
    pub max_inflight: Option<u32>,
    /// LiteLLM `order`: lower is preferred; higher priorities are used only when all
    /// lower ones are unavailable.
    pub priority: u32,
    /// LiteLLM `model_info.mode`: the one kind of endpoint this deployment serves, so
    /// an alias can hold an embedding and a chat model side by side. `None`: any.
    pub mode: Option<Mode>,
    /// What its tokens cost (native `price:`, LiteLLM `model_info` cost fields);
    /// `None`: the built-in table's price, if any ([`crate::cost`]).
    pub price: Option<crate::config::Price>,
    /// Request defaults, extra headers, timeouts, retries, TLS verification.
    pub options: super::DeploymentOptions,
    /// The `api-version` query parameter every request carries (Azure; replaces the
    /// client's). For Azure it is already resolved: `api_version`, else
    /// `AZURE_API_VERSION`, else LiteLLM's default.
    pub api_version: Option<String>,
    /// OpenAI `organization`: sent as the `OpenAI-Organization` header.
    pub organization: Option<String>,
    /// Parameters written as `os.environ/NAME`: their values live in secrets, which a
    /// validated config never reads, so the fields above hold placeholders until
    /// [`resolve_params`](crate::config::resolve_params) fills them in. Never keys.
    pub from_secrets: Vec<SecretParam>,
    /// Set when `api_base` or `api_version` comes from a secret: what was written, from
    /// which every resolution shapes `base_url` and `api_version` again.
    pub pending_base: Option<PendingBase>,
}

/// The written half of a base URL whose other half is in a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBase {
    /// `api_base` as written (validated, not yet shaped), or the provider's default;
    /// `None` when it comes from a secret.
    pub base: Option<http::Uri>,
    /// `api_version` as written, when it does not come from a secret.
    pub api_version: Option<String>,
}

/// A deployment parameter whose value is read from a secret (`api_base:
/// os.environ/UPSTREAM_BASE`), each time a snapshot is built, so a Secret update
/// changes it like a key rotation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretParam {
    pub field: ParamField,
    /// Secret name, looked up like a key's (API data, secrets dir, environment,
    /// `environment_variables`).
    pub name: String,
    /// Where it was written, e.g. `model_list[0].litellm_params.api_base`.
    pub origin: Origin,
    /// Not written: LiteLLM's default variable (`AZURE_API_BASE`, `AZURE_API_VERSION`).
    /// A missing implicit `api_version` means the provider's default version.
    pub implicit: bool,
}

impl SecretParam {
    pub(crate) fn implicit(field: ParamField, name: &str, origin: Origin) -> Self {
        SecretParam { field, name: name.to_owned(), origin, implicit: true }
    }
}

/// The deployment fields a secret may supply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParamField {
    /// Read while the config loads (it decides the provider); listed so that `check`
    /// shows where it came from.
    Model,
    ApiBase,
    ApiVersion,
    Organization,
    Region,
}

impl ParamField {
    /// The LiteLLM spelling, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ParamField::Model => "model",
            ParamField::ApiBase => "api_base",
            ParamField::ApiVersion => "api_version",
            ParamField::Organization => "organization",
            ParamField::Region => "region_name",
        }
    }
}

impl Deployment {
    /// Where this deployment's keys are sent: scheme and authority of the base URL
    /// (`https://api.groq.com`, `http://vllm.inference.svc:8000`).
    pub fn key_destination(&self) -> String {
        destination(&self.base_url)
    }
}

/// Scheme and authority of a base URL.
pub(crate) fn destination(base: &http::Uri) -> String {
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    format!("{}://{authority}", base.scheme_str().unwrap_or("https"))
}

/// Where a deployment's keys come from. Only names live in config; values are read
/// when a snapshot is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// Secret name: file `<secrets-dir>/NAME`, else environment variable `NAME`.
    pub name: String,
    /// `Single`: the whole secret is one key. `Lines`: one key per line (`keys_from`).
    pub kind: KeyRefKind,
    /// Where in the config file this reference was written.
    pub origin: Origin,
    /// Not written in the file: LiteLLM's default secret for the provider of an entry
    /// without `api_key` (`OPENAI_API_KEY` for `openai/...`). `check` says so.
    pub implicit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyRefKind {
    Single,
    Lines,
    /// A LiteLLM `api_key` written into the file: the value is held in
    /// [`Config::inline_secrets`] under a name derived from the entry
    /// (`inline-key:<model_name>#<n>`), never looked up in the secrets dir or the
    /// environment.
    Literal,
}

/// A place in the config file: the field path and, when known, its line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub line: Option<usize>,
    /// e.g. `models.gpt-4o.deployments[1].keys[0]` or `model_list[3].litellm_params.api_key`.
    pub path: String,
}

/// One problem found in a config file, pointing at the file, line and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.origin.line {
            write!(f, ":{line}")?;
        }
        if !self.origin.path.is_empty() {
            write!(f, ": {}", self.origin.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found in one config file (never just the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in configuration:\n{}", .0.len(), DisplayList(.0))]
pub struct ConfigErrors(pub Vec<Diagnostic>);

struct DisplayList<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in self.0 {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// A successfully loaded configuration plus what `check` should warn about
/// (ignored LiteLLM keys, keys written in plain text into the config, ...).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
    /// LiteLLM files: each key the file holds and what keyrelay does with it (empty
    /// for native files).
    pub compat: Vec<super::litellm_compat::CompatRow>,
}
