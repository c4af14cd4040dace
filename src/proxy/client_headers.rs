//! What of the client's request head reaches the upstream: the one policy for
//! forwarded headers and query parameters (DESIGN.md section 3).
//!
//! It is a deny-list. keyrelay is a transparent proxy by contract (unknown body
//! parameters pass through, and so must headers): what providers let clients set is
//! open-ended and grows (OpenAI's `openai-organization`, `openai-project`,
//! `openai-beta`; Anthropic's `anthropic-version`, `anthropic-beta`; OpenRouter's
//! `http-referer`, `x-title`; request ids, idempotency keys, SDK telemetry such as
//! `x-stainless-*` and `x-goog-api-client`), and an allow-list would drop a new one
//! silently, breaking a feature with no error to point at. What must not pass is a
//! short, closed set, removed here:
//! - credentials: the client's own key must never reach a provider next to ours;
//! - the client's identity and the path to it (`forwarded`, `x-forwarded-*`,
//!   `x-real-ip` and the CDN variants, `cookie`): a sidecar's upstream is a third
//!   party, and none of it is needed to serve a completion;
//! - keyrelay's own namespace (`x-keyrelay-*`): instructions to keyrelay, never
//!   forwarded, so a client cannot make an upstream see what looks like ours;
//! - hop-by-hop headers and those keyrelay sets itself (`host`, `content-length`,
//!   `accept-encoding`; auth after this policy ran).
//!
//! [`PROVIDER_DOCUMENTED`] lists the client-settable headers that must survive; the
//! tests hold the policy to it.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName};

use super::upstream::strip_hop_by_hop;
use crate::provider::CLIENT_CREDENTIAL_HEADERS;

/// Headers providers document as set by clients (or their official SDKs), passed on
/// as sent. A name ending in `-` stands for the prefix.
pub const PROVIDER_DOCUMENTED: [&str; 15] = [
    "content-type",
    "accept",
    "user-agent",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "x-client-request-id",
    "idempotency-key",
    "anthropic-version",
    "anthropic-beta",
    "http-referer",
    "x-title",
    "x-stainless-",
    "x-goog-api-client",
    "x-ms-client-request-id",
];

/// Exact names never forwarded, besides credentials and hop-by-hop headers.
const STRIPPED: [HeaderName; 10] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::ACCEPT_ENCODING,
    header::COOKIE,
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
];

/// Name prefixes never forwarded (header names are lowercase in `http`).
const STRIPPED_PREFIXES: [&str; 2] = ["x-forwarded-", "x-keyrelay-"];

/// Query parameters never forwarded: the ways a client can send a key in the URL.
/// Compared after percent-decoding, ignoring ASCII case.
const STRIPPED_PARAMS: [&str; 2] = ["key", "api_key"];

/// Whether a client header of this name may go upstream.
pub fn is_forwarded(name: &HeaderName) -> bool {
    let text = name.as_str();
    !CLIENT_CREDENTIAL_HEADERS.contains(name)
        && !STRIPPED.contains(name)
        && !STRIPPED_PREFIXES.iter().any(|p| text.starts_with(p))
}

/// The client's headers that go upstream, each value as sent, before keyrelay adds
/// its own (auth, `accept-encoding`, trace context).
pub fn forwarded_headers(client: &HeaderMap) -> HeaderMap {
    // Room for what keyrelay adds (auth, `accept-encoding`, trace context, `host`),
    // so that none of it regrows the map.
    let mut out = HeaderMap::with_capacity(client.len() + 8);
    for (name, value) in client {
        if is_forwarded(name) {
            out.append(name, value.clone());
        }
    }
    // Also drops whatever the client's `Connection` header names.
    strip_hop_by_hop(&mut out);
    out
}

/// The client's query without its credential parameters; every other parameter is
/// kept byte for byte, in order. `None` when nothing is left.
pub fn forwarded_query(query: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = query?.split('&').filter(|p| !p.is_empty() && !carries_key(p)).collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Whether a `name=value` pair names a credential parameter. Some servers also split
/// on `;`, so every `;`-separated part is checked.
fn carries_key(pair: &str) -> bool {
    pair.split(';').any(|part| {
        let name = part.split_once('=').map_or(part, |(name, _)| name);
        let decoded: Cow<'_, [u8]> = percent_encoding::percent_decode_str(name).into();
        STRIPPED_PARAMS.iter().any(|p| decoded.eq_ignore_ascii_case(p.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_headers_survive_the_policy() {
        for name in PROVIDER_DOCUMENTED {
            let name = if name.ends_with('-') { format!("{name}package-version") } else { name.to_owned() };
            assert!(is_forwarded(&HeaderName::from_bytes(name.as_bytes()).unwrap()), "{name} must be forwarded");
        }
    }

    #[test]
    fn identity_credentials_and_our_namespace_are_stripped() {
        for name in ["x-forwarded-for", "X-Forwarded-Host", "forwarded", "x-real-ip", "cookie", "x-keyrelay-priority"] {
            assert!(!is_forwarded(&HeaderName::from_bytes(name.as_bytes()).unwrap()), "{name}");
        }
        for name in &CLIENT_CREDENTIAL_HEADERS {
            assert!(!is_forwarded(name), "{name}");
        }
    }

    #[test]
    fn key_parameters_go_in_any_case_and_encoding() {
        let q = |s: &str| forwarded_query(Some(s));
        assert_eq!(q("alt=sse&key=a&KEY=b&%6bey=c&Api_Key=d&api%5Fkey=e&%4B%45%59&x=1;key=f"), Some("alt=sse".into()));
        assert_eq!(q("key=a"), None);
        assert_eq!(q("a=%20b+c&&keys=1&monkey=2&api-key=3"), Some("a=%20b+c&keys=1&monkey=2&api-key=3".into()));
        assert_eq!(forwarded_query(None), None);
    }
}
