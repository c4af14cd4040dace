//! Which endpoints may serve a request: the provider must speak its API, and the
//! deployment's `mode` (LiteLLM `model_info.mode`) must serve the endpoint it names.

use super::error::ProxyError;
use super::inbound::{Api, Inbound};
use crate::config::Mode;
use crate::pool::{Endpoint, Route};
use crate::provider::ProviderKind;

/// Whether an endpoint may serve this request: its provider speaks the request's
/// API, and its deployment's `mode` serves the endpoint the path names.
pub(super) fn usable(inbound: &Inbound, endpoint: &Endpoint) -> bool {
    serves(&inbound.api, endpoint.deployment.provider) && Mode::serves(endpoint.deployment.mode, inbound.wants)
}

/// The 4xx for an alias none of whose deployments serves this request.
pub(super) fn no_deployment(inbound: &Inbound, chain: &[&Route]) -> ProxyError {
    let api_ok = chain.iter().flat_map(|r| &r.endpoints).any(|e| serves(&inbound.api, e.deployment.provider));
    match inbound.wants {
        Some(wanted) if api_ok => {
            let mut modes: Vec<&str> =
                chain.iter().flat_map(|r| &r.endpoints).filter_map(|e| e.deployment.mode.map(Mode::as_str)).collect();
            modes.sort_unstable();
            modes.dedup();
            ProxyError::NoDeploymentForMode {
                alias: inbound.alias.clone(),
                endpoint: wanted.endpoints(),
                modes: modes.join(", "),
            }
        }
        _ => ProxyError::NoDeploymentForApi { alias: inbound.alias.clone(), api: inbound.api.describe() },
    }
}

/// Whether a deployment of `provider` can serve requests of this API family.
fn serves(api: &Api, provider: ProviderKind) -> bool {
    match api {
        Api::OpenAi => true,
        Api::AnthropicMessages => provider == ProviderKind::Anthropic,
        Api::GeminiNative { .. } => provider == ProviderKind::Gemini,
    }
}
