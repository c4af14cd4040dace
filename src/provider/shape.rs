//! The base URL a deployment's requests go to, for providers whose URL is more than
//! `api_base`: Azure's per-deployment paths and `api-version`, Ollama's `/v1`,
//! Cloudflare's OpenAI-compatible path. Computed once at load, so `check` shows the
//! URL that requests will use.

use super::catalog::{Shape, AZURE_DEFAULT_API_VERSION};
use super::ProviderKind;

/// `(base, api-version)`: the base that replaces the client's `/v1`, and the
/// `api-version` query parameter every request carries (Azure), if any.
pub type ApiVersion = Option<String>;

/// Shapes `base` (already absolute, no trailing slash) for `provider` serving
/// `upstream_model`. `api_version` is what the config says (`api_version`, else
/// LiteLLM's `AZURE_API_VERSION`); Azure falls back to LiteLLM's default.
pub fn deployment_base(
    provider: ProviderKind,
    base: http::Uri,
    upstream_model: &str,
    api_version: Option<&str>,
) -> Result<(http::Uri, ApiVersion), String> {
    let path = base.path().trim_end_matches('/').to_owned();
    let (path, version) = match provider.spec().shape {
        Shape::Plain => (path, None),
        Shape::Ollama if path.ends_with("/v1") => (path, None),
        Shape::Ollama => (format!("{path}/v1"), None),
        Shape::Cloudflare => match path.strip_suffix("/ai/run") {
            Some(account) => (format!("{account}/ai/v1"), None),
            None => (path, None),
        },
        Shape::AzureAi => {
            let foundry = base.host().is_some_and(|h| h.to_ascii_lowercase().ends_with(".services.ai.azure.com"));
            let path = if foundry && !path.ends_with("/models") && !path.contains("/openai/") {
                format!("{path}/models")
            } else {
                path
            };
            (path, api_version.map(str::to_owned))
        }
        Shape::Azure => azure(&path, upstream_model, api_version)?,
    };
    let mut parts = base.into_parts();
    let path = if path.is_empty() { "/".to_owned() } else { path };
    parts.path_and_query = Some(path.parse().map_err(|e| format!("cannot build the URL path {path:?} ({e})"))?);
    let uri = http::Uri::from_parts(parts).map_err(|e| format!("cannot build the URL ({e})"))?;
    Ok((uri, version))
}

/// Azure OpenAI: `{root}/openai/deployments/<deployment>` with `?api-version=`, or
/// the v1 API (`api_version: v1`, `latest` or `preview`) at `{root}/openai/v1`, where
/// the model goes in the body and only `preview` is sent as `api-version`, as the
/// OpenAI SDK does for Azure's v1 API. An `api_base` that already names a deployment
/// (`.../openai/deployments/x`) is used as written.
fn azure(path: &str, deployment: &str, api_version: Option<&str>) -> Result<(String, ApiVersion), String> {
    // LiteLLM's `azure/o_series/<deployment>` (and `gpt5_series/`) only marks the model
    // family (for parameter mapping): the deployment is the rest.
    let deployment =
        ["o_series/", "gpt5_series/"].iter().find_map(|p| deployment.strip_prefix(p)).unwrap_or(deployment);
    if path.contains("/openai/deployments/") {
        return Ok((path.to_owned(), api_version.map(str::to_owned)));
    }
    let root = path.strip_suffix("/openai/v1").or_else(|| path.strip_suffix("/openai")).unwrap_or(path);
    match api_version {
        Some("v1") | Some("latest") => Ok((format!("{root}/openai/v1"), None)),
        Some("preview") => Ok((format!("{root}/openai/v1"), Some("preview".to_owned()))),
        version => {
            let safe = !deployment.is_empty()
                && deployment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !safe {
                return Err(format!(
                    "azure deployment name {deployment:?} can only have letters, digits, `-`, `_` and `.` \
                     (it becomes the URL path /openai/deployments/<deployment>)"
                ));
            }
            let version = version.unwrap_or(AZURE_DEFAULT_API_VERSION);
            Ok((format!("{root}/openai/deployments/{deployment}"), Some(version.to_owned())))
        }
    }
}
