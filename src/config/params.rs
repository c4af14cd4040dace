//! `os.environ/NAME` in `litellm_params` strings other than `api_key` (`api_base`,
//! `api_version`, `organization`, `region_name`), as LiteLLM resolves every such string.
//!
//! The validated [`Config`] never reads a file: such a parameter is kept as a
//! [`SecretParam`] on its deployment (the field holds a placeholder), and
//! [`resolve_params`] fills the values in wherever keys are resolved (each reload, and
//! `check`), so a Secret update moves a deployment to a new URL the way it rotates a
//! key. These values are not keys: they are shown by `check`, never fingerprinted,
//! never counted as keys.

use serde_yaml::Value;

use super::keylike::looks_like_key;
use super::model::{Config, Deployment, Diagnostic, ParamField, PendingBase, SecretParam};
use super::resolved::ResolvedSecrets;
use super::secret::SecretError;
use super::validate::{self, is_plain_http_to_remote, report, Diags};
use super::values;
use super::walk::string;

/// The base URL of a deployment whose `api_base` is still to be read from its secret.
/// `.invalid` can never resolve (RFC 2606), should anything use it unresolved.
pub(crate) const UNRESOLVED_BASE: &str = "https://unresolved.invalid";

/// The longest value a parameter (written or from a secret) may have: ample for any
/// URL, version or organization id, and a bound on what one secret adds to a snapshot.
const MAX_PARAM_LEN: usize = 2048;

/// A string parameter as written: the value itself, or the secret that holds it.
#[derive(Debug, Clone)]
pub(crate) enum Written {
    Text(String),
    Secret(SecretParam),
}

/// Reads the string parameter `field` at `path`, which may be `os.environ/NAME`.
pub(crate) fn written(diags: &mut Diags<'_>, value: &Value, path: &str, field: ParamField) -> Option<Written> {
    let text = string(diags, value, path)?;
    match text.trim().strip_prefix("os.environ/") {
        Some(name) => {
            report(diags, path, values::check_secret_name(name))?;
            Some(Written::Secret(SecretParam {
                field,
                name: name.to_owned(),
                origin: diags.origin(path),
                implicit: false,
            }))
        }
        None => {
            if let Some(name) = super::litellm_keys::unexpanded_reference(&text) {
                let message = format!(
                    "{text:?} is not expanded (LiteLLM sends it as written too): write os.environ/{name} to read \
                     it from a secret or the environment"
                );
                diags.error(path, message);
                return None;
            }
            Some(Written::Text(text))
        }
    }
}

/// A written `api_version`, `organization` or `region_name` checked as one from a
/// secret would be. `api_base` goes through [`validate::resolve_base`] instead.
pub(crate) fn checked(field: ParamField, value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(format!("{} is empty", field.as_str()));
    }
    if value.len() > MAX_PARAM_LEN {
        return Err(format!("{} is longer than {MAX_PARAM_LEN} bytes", field.as_str()));
    }
    let fits = match field {
        // It goes into the query string as is.
        ParamField::ApiVersion => value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')),
        ParamField::Organization => http::HeaderValue::from_str(value).is_ok(),
        ParamField::Model | ParamField::ApiBase | ParamField::Region => true,
    };
    if !fits {
        let allowed = match field {
            ParamField::ApiVersion => "letters, digits, '-', '.', '_', like 2024-10-21 or v1",
            _ => "printable ASCII for an HTTP header",
        };
        return Err(format!("{} has characters that do not fit ({allowed}); the value is not shown", field.as_str()));
    }
    Ok(value.to_owned())
}

/// A config whose parameters from secrets hold their current values, and what `check`
/// and the reload log should warn about.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// Reads every parameter written as `os.environ/NAME` and puts its value where the
/// deployment uses it; a base URL is validated like a written one. Every problem is
/// returned, each at the field that names the secret; the config is not changed then.
pub fn resolve_params(config: &Config, secrets: &ResolvedSecrets) -> Result<Resolved, Vec<Diagnostic>> {
    let mut resolved = config.clone();
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    let diagnostic = |param: &SecretParam, message: String| Diagnostic {
        file: config.source.clone(),
        origin: param.origin.clone(),
        message,
    };
    for deployment in resolved.models.values_mut().flat_map(|m| m.deployments.iter_mut()) {
        let mut shape = Shape::default();
        for param in deployment.from_secrets.clone() {
            let value = match secrets.value(&param.name) {
                Ok(value) => value,
                // No AZURE_API_VERSION: LiteLLM's default version, as in LiteLLM.
                Err(SecretError::NotFound { .. } | SecretError::NotFoundNoDir { .. })
                    if param.implicit && param.field == ParamField::ApiVersion =>
                {
                    continue
                }
                Err(e) => {
                    errors.push(diagnostic(&param, e.to_string()));
                    continue;
                }
            };
            match apply(deployment, &param, &value, &mut shape) {
                Ok(()) => {}
                Err(message) => errors.push(diagnostic(&param, message)),
            }
        }
        let Some(pending) = deployment.pending_base.clone() else { continue };
        let Some(param) = shape.origin.or_else(|| deployment.from_secrets.first().cloned()) else { continue };
        let from = format!("{} from secret {:?}", param.field.as_str(), param.name);
        match reshape(deployment, &pending, shape.base, shape.api_version, &from) {
            Ok(Some(warning)) => warnings.push(diagnostic(&param, warning)),
            Ok(None) => {}
            Err(message) => errors.push(diagnostic(&param, message)),
        }
    }
    if errors.is_empty() {
        Ok(Resolved { config: resolved, warnings })
    } else {
        Err(errors)
    }
}

/// Values read for the parts of a base URL, shaped once all of a deployment's
/// parameters are read.
#[derive(Default)]
struct Shape {
    base: Option<String>,
    api_version: Option<String>,
    /// The parameter that errors about the URL point at.
    origin: Option<SecretParam>,
}

/// Sets one parameter's value (the base URL's parts are collected into `shape`).
fn apply(d: &mut Deployment, param: &SecretParam, value: &str, shape: &mut Shape) -> Result<(), String> {
    let from = format!("{} from secret {:?}", param.field.as_str(), param.name);
    match param.field {
        // Applied when the config was read; its value is in the reload digest.
        ParamField::Model => {}
        ParamField::ApiBase => {
            if value.len() > MAX_PARAM_LEN {
                return Err(format!("{from} is longer than {MAX_PARAM_LEN} bytes"));
            }
            shape.base = Some(value.to_owned());
            shape.origin = Some(param.clone());
        }
        ParamField::ApiVersion => {
            shape.api_version = Some(checked(param.field, value).map_err(|e| format!("{from}: {e}"))?);
            shape.origin.get_or_insert_with(|| param.clone());
        }
        ParamField::Organization => {
            d.organization = Some(checked(param.field, value).map_err(|e| format!("{from}: {e}"))?)
        }
        ParamField::Region => d.region = Some(checked(param.field, value).map_err(|e| format!("{from}: {e}"))?),
    }
    Ok(())
}

/// Builds the deployment's base URL and `api-version` from what was written and what
/// the secrets hold, checked like a written URL; `Ok(Some(_))` is a warning.
fn reshape(
    d: &mut Deployment,
    pending: &PendingBase,
    base: Option<String>,
    api_version: Option<String>,
    from: &str,
) -> Result<Option<String>, String> {
    let from_secret = base.is_some();
    let written = pending.base.as_ref().map(|b| b.to_string());
    let Some(raw) = base.or(written) else {
        return Err("api_base has no value".to_owned());
    };
    let version = api_version.or_else(|| pending.api_version.clone());
    let shaped = validate::resolve_deployment_base(d.provider, Some(&raw), &d.upstream_model, version.as_deref());
    let (base_url, version) = shaped.map_err(|e| {
        // A URL is not secret, but a key stored under the wrong name would be.
        if from_secret && looks_like_key(&raw) {
            format!("{from} is not a URL, and looks like an API key (not shown)")
        } else {
            format!("{from}: {e}")
        }
    })?;
    d.base_url = base_url;
    d.api_version = version;
    plain_http_check(d, from)
}

/// LiteLLM's rule for keys over plain http (see `KeysOverHttp::WrittenKeysOnly`),
/// applied to a URL that validation could not see: a key the entry names is sent with
/// a warning, LiteLLM's implied default key never is.
fn plain_http_check(d: &Deployment, from: &str) -> Result<Option<String>, String> {
    if !is_plain_http_to_remote(&d.base_url) {
        return Ok(None);
    }
    let to = d.key_destination();
    if let Some(implied) = d.keys.iter().find(|k| k.implicit) {
        return Err(format!(
            "{from}: no api_key is written, so {name} (LiteLLM's default for {provider}) would be sent over plain \
             http to {to}: write `api_key: os.environ/{name}` if that host should get it, or use https://",
            name = implied.name,
            provider = d.provider,
        ));
    }
    let names: Vec<&str> = d.keys.iter().map(|k| k.name.as_str()).collect();
    Ok(Some(format!("{from}: secret(s) {} are sent over plain http to {to}, which is not loopback", names.join(", "))))
}
