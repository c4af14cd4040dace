//! The upstream side: the request sent to a chosen endpoint (the pooled HTTPS client
//! it goes through is `crate::http::client`'s).
//!
//! The upstream host always comes from config, never from the client (no SSRF via
//! `Host` or absolute URIs); what of the client's head goes along is decided in
//! `client_headers`, before the endpoint's key is set.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri};

use super::client_headers::{forwarded_headers, forwarded_query};
use super::inbound::{Api, Inbound};
use crate::http::client::UpstreamBody;
use crate::pool::Endpoint;

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most heads have none (a name `Connection` lists needs a `Connection`): one pass
    // over the names says so, where removing each name costs a hashed lookup.
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
}

/// The request for one attempt at `endpoint`, asking for `upstream_model` (the
/// deployment's, or what a wildcard alias made of the requested name).
pub fn request_for(
    inbound: &Inbound,
    endpoint: &Endpoint,
    upstream_model: &str,
) -> Result<Request<UpstreamBody>, http::Error> {
    let deployment = &endpoint.deployment;
    let uri = upstream_uri(&deployment.base_url, inbound, upstream_model, deployment.api_version.as_deref())?;
    let body = UpstreamBody::new(inbound.outbound_body(upstream_model, &deployment.options.body_defaults));

    let mut headers = forwarded_headers(&inbound.parts.headers);
    // Names keyrelay sets itself were refused when the config loaded; the key is
    // applied last, so no extra header can replace it.
    for (name, value) in &deployment.options.extra_headers {
        headers.insert(name, value.clone());
    }
    // Identity encoding keeps bodies readable for usage and retry hints.
    headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    endpoint.auth.apply(&mut headers, matches!(inbound.api, Api::GeminiNative { .. }));
    // LiteLLM `organization`: the deployment's, whatever the client sent.
    if let Some(org) = deployment.organization.as_deref().and_then(|o| HeaderValue::from_str(o).ok()) {
        headers.insert(HeaderName::from_static("openai-organization"), org);
    }

    let mut request = Request::builder().method(inbound.parts.method.clone()).uri(uri).body(body)?;
    *request.headers_mut() = headers;
    Ok(request)
}

/// `base` + the client's path after `/v1` + the client's query without credentials.
/// The path was checked on arrival (`inbound`): it cannot climb out of `base`.
/// Gemini-native paths go to the API root of the base (its `/openai` suffix dropped).
/// A deployment's `api-version` (Azure) leads the query and replaces the client's.
fn upstream_uri(
    base: &Uri,
    inbound: &Inbound,
    upstream_model: &str,
    api_version: Option<&str>,
) -> Result<Uri, http::Error> {
    let base_path = base.path().trim_end_matches('/');
    let mut query = forwarded_query(inbound.parts.uri.query());
    if let Some(version) = api_version {
        let client = query.as_deref().unwrap_or_default().split('&');
        let kept = client.filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("api-version"));
        let pairs: Vec<String> =
            std::iter::once(format!("api-version={version}")).chain(kept.map(str::to_owned)).collect();
        query = Some(pairs.join("&"));
    }
    // Pushed into one string with room for all of it: `format!` grew it piece by piece.
    let client_path = inbound.parts.uri.path();
    let room = base_path.len() + client_path.len() + upstream_model.len() + 16 + query.as_ref().map_or(0, String::len);
    let mut path_and_query = String::with_capacity(room);
    match &inbound.api {
        Api::GeminiNative { method } => {
            let root = base_path.strip_suffix("/openai").unwrap_or(base_path);
            for piece in [root, "/models/", upstream_model, ":", method.as_str()] {
                path_and_query.push_str(piece);
            }
        }
        Api::OpenAi | Api::AnthropicMessages => {
            path_and_query.push_str(base_path);
            path_and_query.push_str(client_path.strip_prefix("/v1").unwrap_or(client_path));
        }
    }
    if let Some(query) = query {
        path_and_query.push('?');
        path_and_query.push_str(&query);
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(path_and_query.parse()?);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed() {
        for name in &HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.insert("x-kept", HeaderValue::from_static("1"));
            h.append(name, HeaderValue::from_static("x-kept"));
            strip_hop_by_hop(&mut h);
            let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
            let expected: &[&str] = if name == header::CONNECTION { &[] } else { &["x-kept"] };
            assert_eq!(left, expected, "{name}");
        }
        let mut h = HeaderMap::new();
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
