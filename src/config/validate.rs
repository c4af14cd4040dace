//! Checks shared by both formats, run on the drafts each format produces: names,
//! base URLs, fallbacks, duplicate keys. Every problem is collected; nothing stops
//! at the first error.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::time::Duration;

use crate::provider::ProviderKind;

use super::lines::LineIndex;
use super::model::{
    Config, CooldownBounds, Deployment, Diagnostic, KeyRef, ModelRoute, Origin, ServerSettings, Strategy,
};
use crate::secret::Secret;

/// A secret read while the config is read: its name and its value, or why it has none.
pub type Consulted = (String, Result<String, String>);

/// Collects errors and warnings for one file, resolving each field path to a line.
pub(crate) struct Diags<'a> {
    file: &'a Path,
    lines: &'a LineIndex,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// LiteLLM keys met while reading, for the compatibility report.
    pub seen: super::litellm_compat::Seen,
    /// Where `model: os.environ/NAME` is looked up while reading (the provider prefix
    /// it holds decides how the entry is validated); `None`: nowhere.
    pub secrets: Option<&'a super::secret::SecretSource>,
    /// The secrets read while reading and what each gave (its value or why not): part
    /// of what a reload hashes, so a change (or a late arrival) reloads.
    pub consulted: Vec<Consulted>,
}

impl<'a> Diags<'a> {
    pub fn new(file: &'a Path, lines: &'a LineIndex) -> Self {
        Self {
            file,
            lines,
            errors: Vec::new(),
            warnings: Vec::new(),
            seen: Default::default(),
            secrets: None,
            consulted: Vec::new(),
        }
    }

    pub fn origin(&self, path: &str) -> Origin {
        Origin { line: self.lines.line(path), path: path.to_owned() }
    }

    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        let d = self.diagnostic(path, message.into());
        self.errors.push(d);
    }

    pub fn warn(&mut self, path: &str, message: impl Into<String>) {
        let d = self.diagnostic(path, message.into());
        self.warnings.push(d);
    }

    fn diagnostic(&self, path: &str, message: String) -> Diagnostic {
        let origin = Origin { line: self.lines.line(path), path: super::keylike::redact_path(path) };
        Diagnostic { file: self.file.to_path_buf(), origin, message }
    }
}

/// A name written somewhere in the file (a fallback alias, a deployment name).
#[derive(Debug, Clone)]
pub(crate) struct Named {
    pub value: String,
    pub path: String,
}

/// One alias as read from either format, before the shared checks.
#[derive(Debug, Clone)]
pub(crate) struct RouteDraft {
    pub alias: String,
    pub strategy: Strategy,
    pub num_retries: u32,
    pub cooldown: Duration,
    pub cooldown_bounds: CooldownBounds,
    pub allowed_fails: u32,
    pub queue: super::model::QueueSettings,
    pub fallbacks: Vec<Named>,
    /// LiteLLM `context_window_fallbacks` / `content_policy_fallbacks` (native: none).
    pub context_window_fallbacks: Vec<Named>,
    pub content_policy_fallbacks: Vec<Named>,
    pub deployments: Vec<DeploymentDraft>,
    /// Reasons of the entries that cannot be served (LiteLLM only).
    pub unservable: Vec<String>,
    /// The alias's own required regions, with the path they were written at; `None`:
    /// the server's.
    pub required_regions: Option<(Vec<String>, String)>,
    /// The alias's own health check interval; `None`: the server's.
    pub health_check_interval: Option<Duration>,
}

/// A deployment whose `name` is still to be assigned (unless written explicitly).
#[derive(Debug, Clone)]
pub(crate) struct DeploymentDraft {
    pub explicit_name: Option<Named>,
    pub deployment: Deployment,
    /// Where the base URL comes from (`api_base`, else `provider`): the place to
    /// report keys that would travel over plain http.
    pub base_path: String,
    pub keys_over_http: KeysOverHttp,
}

/// Whether a deployment may send its keys over plain `http://` to a host that is not
/// loopback, where anyone on the network path can read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeysOverHttp {
    /// Native default: an error that names the opt-in.
    Refused,
    /// Native `send_keys_over_http: true`.
    OptedIn,
    /// LiteLLM has no such setting: a key the entry names itself (`api_key`) is sent,
    /// with a warning; LiteLLM's implied default key never is.
    WrittenKeysOnly,
}

/// Format-independent defaults (`defaults:` in native, LiteLLM's router defaults).
pub(crate) const DEFAULT_STRATEGY: Strategy = Strategy::Usage;
pub(crate) const DEFAULT_NUM_RETRIES: u32 = 2;
pub(crate) const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_ALLOWED_FAILS: u32 = 3;

/// `cooldown_floor` may be set from 10 ms (shorter would let a key that answers
/// `retry-after: 0` be hammered) to 1 min; `max_cooldown` from 1 s to 24 h.
pub(crate) const COOLDOWN_FLOOR_RANGE: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(60));
pub(crate) const MAX_COOLDOWN_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(24 * 3600));

/// Whether `d`, written at `path`, is within `(min, max)`; reports it if not.
pub(crate) fn in_range(diags: &mut Diags<'_>, path: &str, d: Duration, (min, max): (Duration, Duration)) -> bool {
    let ok = (min..=max).contains(&d);
    if !ok {
        diags.error(path, format!("{} is out of range: use {} to {}", show(d), show(min), show(max)));
    }
    ok
}

/// The checks between a section's `cooldown`, `cooldown_floor` and `max_cooldown`,
/// reported at the section `path`'s fields.
pub(crate) fn check_cooldown_bounds(diags: &mut Diags<'_>, path: &str, bounds: CooldownBounds, cooldown: Duration) {
    if bounds.floor > bounds.ceiling {
        diags.error(
            &super::lines::join_key(path, "cooldown_floor"),
            format!("cooldown_floor {} is longer than max_cooldown {}", show(bounds.floor), show(bounds.ceiling)),
        );
    }
    if cooldown > bounds.ceiling {
        diags.warn(
            &super::lines::join_key(path, "cooldown"),
            format!(
                "{} is longer than max_cooldown {}: keys rest that long at most",
                show(cooldown),
                show(bounds.ceiling)
            ),
        );
    }
}

fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The base URL a deployment talks to: `api_base` when given, else the provider's.
/// The result is absolute http(s) and has no trailing slash, so the proxy can append
/// the client's path after `/v1` without doubling slashes.
pub(crate) fn resolve_base(provider: ProviderKind, api_base: Option<&str>) -> Result<http::Uri, String> {
    let cloudflare;
    let raw = match (api_base.map(str::trim), provider.default_base()) {
        (Some(base), _) if !base.is_empty() => base,
        (_, Some(default)) => default,
        (_, None) if provider == ProviderKind::Cloudflare => {
            cloudflare = cloudflare_base()?;
            &cloudflare
        }
        (_, None) => {
            return Err(format!(
                "provider {provider} has no default URL: set api_base (e.g. https://my-endpoint.example.com/v1)"
            ));
        }
    };
    let trimmed = raw.trim_end_matches('/');
    let uri: http::Uri = trimmed.parse().map_err(|e| format!("api_base {trimmed:?} is not a valid URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("api_base {trimmed:?} must start with https:// or http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("api_base {trimmed:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("api_base {trimmed:?} must not carry a query string"));
    }
    Ok(uri)
}

/// [`resolve_base`], then the provider's own URL shape (Azure's deployment path and
/// `api-version`, Ollama's `/v1`, ...): the base and the `api-version` to send.
pub(crate) fn resolve_deployment_base(
    provider: ProviderKind,
    api_base: Option<&str>,
    upstream_model: &str,
    api_version: Option<&str>,
) -> Result<(http::Uri, Option<String>), String> {
    if let Some(version) = api_version {
        if !provider.takes_api_version() {
            return Err(format!("api_version applies to azure and azure_ai deployments, not {provider}"));
        }
        crate::provider::catalog::check_api_version(version)?;
    }
    let base = resolve_base(provider, api_base)?;
    crate::provider::deployment_base(provider, base, upstream_model, api_version)
}

/// Cloudflare Workers AI's OpenAI-compatible base for `CLOUDFLARE_ACCOUNT_ID`, which
/// LiteLLM reads from the environment when `api_base` is not written.
fn cloudflare_base() -> Result<String, String> {
    let account = std::env::var("CLOUDFLARE_ACCOUNT_ID").unwrap_or_default();
    let account = account.trim();
    if account.is_empty() || !account.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("cloudflare needs its account: set api_base \
                    (https://api.cloudflare.com/client/v4/accounts/<account id>/ai/v1) or CLOUDFLARE_ACCOUNT_ID"
            .to_owned());
    }
    Ok(format!("https://api.cloudflare.com/client/v4/accounts/{account}/ai/v1"))
}

/// Known provider names, for "unknown provider" messages.
pub(crate) fn known_providers() -> String {
    ProviderKind::all().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}

/// Runs the cross-alias checks and builds the runtime [`Config`]. `declared` holds
/// every alias written in the file, including ones whose definition had errors, so
/// that a broken alias does not also produce "unknown fallback" noise.
pub(crate) fn finish(
    diags: &mut Diags<'_>,
    source: &Path,
    server: ServerSettings,
    routes: Vec<RouteDraft>,
    declared: &BTreeSet<String>,
    inline_secrets: BTreeMap<String, Secret>,
) -> Config {
    let mut models = BTreeMap::new();
    for route in routes {
        let fallbacks = check_fallbacks(diags, &route.alias, &route.fallbacks, declared);
        let context_window_fallbacks = check_fallbacks(diags, &route.alias, &route.context_window_fallbacks, declared);
        let content_policy_fallbacks = check_fallbacks(diags, &route.alias, &route.content_policy_fallbacks, declared);
        for draft in &route.deployments {
            check_keys_over_http(diags, draft);
        }
        let deployments = assign_names(diags, route.deployments);
        for d in &deployments {
            check_duplicate_keys(diags, &d.keys);
        }
        let alias = route.alias.clone();
        let (required_regions, regions_path) = route
            .required_regions
            .unwrap_or_else(|| (server.required_regions.clone(), "server.required_regions".into()));
        check_required_regions(diags, &alias, &required_regions, &regions_path, &deployments);
        let health_check_interval = route.health_check_interval.or(server.health_check_interval);
        models.insert(
            alias.clone(),
            ModelRoute {
                alias,
                strategy: route.strategy,
                num_retries: route.num_retries,
                fallbacks,
                context_window_fallbacks,
                content_policy_fallbacks,
                cooldown: route.cooldown,
                cooldown_bounds: route.cooldown_bounds,
                allowed_fails: route.allowed_fails,
                queue: route.queue,
                deployments,
                required_regions,
                health_check_interval,
                unservable: route.unservable,
            },
        );
    }
    check_fallback_regions(diags, &models);
    Config { source: source.to_path_buf(), server, models, inline_secrets, kubernetes: None, shared: None }
}

/// A fallback of an alias with required regions must require a subset of them, or a
/// failed-over request would leave the regions the alias must stay in.
fn check_fallback_regions(diags: &mut Diags<'_>, models: &BTreeMap<String, ModelRoute>) {
    for (alias, model) in models {
        if model.required_regions.is_empty() {
            continue;
        }
        let all = model.fallbacks.iter().chain(&model.context_window_fallbacks).chain(&model.content_policy_fallbacks);
        for fallback in all {
            let Some(other) = models.get(fallback) else { continue };
            let inside = !other.required_regions.is_empty()
                && other.required_regions.iter().all(|r| model.required_regions.contains(r));
            if !inside {
                let message = format!(
                    "fallback {fallback:?} may use regions outside {}, which {alias:?} requires: \
                     give it required_regions within them",
                    model.required_regions.join(", ")
                );
                diags.error(&super::lines::join_key(&super::lines::join_key("models", alias), "fallbacks"), message);
            }
        }
    }
}

/// A required region set must leave the alias at least one deployment: otherwise
/// every request would be refused, which is a config mistake to say at load time.
fn check_required_regions(
    diags: &mut Diags<'_>,
    alias: &str,
    required: &[String],
    path: &str,
    deployments: &[Deployment],
) {
    if required.is_empty() || deployments.is_empty() {
        return;
    }
    let inside = |d: &Deployment| d.region.as_ref().is_some_and(|r| required.contains(r));
    if !deployments.iter().any(inside) {
        let message = format!(
            "model {alias:?} requires region {} but none of its deployments is there (set `region` on them)",
            required.join(" or ")
        );
        diags.error(path, message);
    }
}

/// Fallbacks must name other aliases of this file; repeats are dropped.
fn check_fallbacks(
    diags: &mut Diags<'_>,
    alias: &str,
    fallbacks: &[Named],
    declared: &BTreeSet<String>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for fb in fallbacks {
        if fb.value == alias {
            diags.error(&fb.path, format!("model {alias:?} cannot fall back to itself"));
        } else if !declared.contains(&fb.value) {
            let known = declared.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
            diags.error(&fb.path, format!("fallback {:?} is not a configured model (known: {known})", fb.value));
        } else if !out.contains(&fb.value) {
            out.push(fb.value.clone());
        }
    }
    out
}

/// Explicit names must be unique within the alias; automatic `provider/model` names
/// get `#2`, `#3`, ... when they collide.
fn assign_names(diags: &mut Diags<'_>, drafts: Vec<DeploymentDraft>) -> Vec<Deployment> {
    let mut taken: HashSet<String> = HashSet::new();
    for d in &drafts {
        if let Some(name) = &d.explicit_name {
            if !taken.insert(name.value.clone()) {
                diags.error(&name.path, format!("deployment name {:?} is used twice in this model", name.value));
            }
        }
    }
    let mut out = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let mut deployment = draft.deployment;
        match draft.explicit_name {
            Some(name) => deployment.name = name.value,
            None => {
                let base = format!("{}/{}", deployment.provider, deployment.upstream_model);
                let mut name = base.clone();
                let mut n = 2;
                while taken.contains(&name) {
                    name = format!("{base}#{n}");
                    n += 1;
                }
                taken.insert(name.clone());
                deployment.name = name;
            }
        }
        out.push(deployment);
    }
    out
}

/// A key over plain http to a host that is not loopback is readable by everyone on
/// the way; that needs the deployment to say so (see [`KeysOverHttp`]).
fn check_keys_over_http(diags: &mut Diags<'_>, draft: &DeploymentDraft) {
    let d = &draft.deployment;
    let to = d.key_destination();
    if d.keys.is_empty() {
        return;
    }
    if !is_plain_http_to_remote(&d.base_url) {
        if draft.keys_over_http == KeysOverHttp::OptedIn {
            let at = super::lines::join_key(parent_path(&draft.base_path), "send_keys_over_http");
            diags.warn(&at, format!("has no effect: keys go to {to}, which is https or loopback"));
        }
        return;
    }
    match draft.keys_over_http {
        KeysOverHttp::OptedIn => {}
        KeysOverHttp::Refused => diags.error(
            &draft.base_path,
            format!(
                "keys would be sent over plain http to {to}, which is not a loopback address: use https://, or \
                 set `send_keys_over_http: true` on this deployment if that network path is trusted \
                 (a cluster-internal service, say)"
            ),
        ),
        KeysOverHttp::WrittenKeysOnly => {
            for key in &d.keys {
                if key.implicit {
                    let message = format!(
                        "no api_key is written, so {name} (LiteLLM's default for {provider}) would be sent over \
                         plain http to {to}: write `api_key: os.environ/{name}` if that host should get it, \
                         or use https://",
                        name = key.name,
                        provider = d.provider,
                    );
                    diags.error(&key.origin.path, message);
                } else {
                    let message =
                        format!("secret {:?} is sent over plain http to {to}, which is not loopback", key.name);
                    diags.warn(&key.origin.path, message);
                }
            }
        }
    }
}

/// `http://` to anything but `localhost` or a loopback address.
pub(crate) fn is_plain_http_to_remote(base: &http::Uri) -> bool {
    if base.scheme_str() != Some("http") {
        return false;
    }
    let host = base.host().unwrap_or_default();
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.trim_end_matches('.').eq_ignore_ascii_case("localhost") {
        return false;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => !ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => !(ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())),
        Err(_) => true,
    }
}

/// `a.b[2].api_base` -> `a.b[2]`.
fn parent_path(path: &str) -> &str {
    path.rfind('.').map_or(path, |cut| &path[..cut])
}

/// The same secret twice in one deployment would double its share silently.
fn check_duplicate_keys(diags: &mut Diags<'_>, keys: &[KeyRef]) {
    let mut seen = HashSet::new();
    for key in keys {
        if !seen.insert(&key.name) {
            diags.error(&key.origin.path, format!("secret {:?} is listed twice in this deployment", key.name));
        }
    }
}

/// Turns a check's `Err(message)` into an error at `path`.
pub(crate) fn report<T>(diags: &mut Diags<'_>, path: &str, result: Result<T, String>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(message) => {
            diags.error(path, message);
            None
        }
    }
}

/// Parses a `mode` (LiteLLM's `model_info.mode` names), reporting unknown ones.
pub(crate) fn mode_named(diags: &mut Diags<'_>, name: &str, path: &str) -> Option<super::mode::Mode> {
    let parsed = super::mode::Mode::from_name(name.trim());
    if parsed.is_none() {
        let known: Vec<&str> = super::mode::Mode::ALL.iter().map(|m| m.as_str()).collect();
        diags.error(path, format!("unknown mode {name:?} (expected one of {})", known.join(", ")));
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_to_remote_hosts() {
        let remote = |url: &str| is_plain_http_to_remote(&url.parse().unwrap());
        for local in [
            "http://127.0.0.1:8000/v1",
            "http://127.9.9.9/v1",
            "http://localhost:11434/v1",
            "http://[::1]:8000",
            "http://[::ffff:127.0.0.1]:80",
            "https://10.0.0.1/v1",
            "http://LOCALHOST./v1",
        ] {
            assert!(!remote(local), "{local}");
        }
        for far in [
            "http://10.0.0.1:8000/v1",
            "http://vllm.default.svc:8000/v1",
            "http://[2001:db8::1]/v1",
            "http://0.0.0.0:80",
            "http://localhost.evil.example/v1",
        ] {
            assert!(remote(far), "{far}");
        }
    }

    #[test]
    fn base_urls() {
        let u = resolve_base(ProviderKind::Groq, None).unwrap();
        assert_eq!(u.to_string(), "https://api.groq.com/openai/v1");
        let u = resolve_base(ProviderKind::OpenAiCompatible, Some("http://vllm:8000/v1/")).unwrap();
        assert_eq!(u.to_string(), "http://vllm:8000/v1");
        assert!(resolve_base(ProviderKind::Azure, None).unwrap_err().contains("api_base"));
        assert!(resolve_base(ProviderKind::OpenAi, Some("ftp://x/v1")).is_err());
        assert!(resolve_base(ProviderKind::OpenAi, Some("/v1")).is_err());
        assert!(resolve_base(ProviderKind::OpenAi, Some("api.openai.com/v1")).is_err());
    }
}
