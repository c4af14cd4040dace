//! LiteLLM providers keyrelay cannot serve, and why. keyrelay forwards requests as
//! they are, with a key in a header; a provider that needs each request signed
//! (AWS SigV4, cloud OAuth tokens) or rewritten into its own format is out of reach.
//! Such an entry is a warning, not an error, so that the rest of a migrated file
//! still serves (DESIGN.md section 2); requests for an alias left with nothing to
//! serve get 501 naming the reason.
//!
//! Only consulted for prefixes the provider catalog (`ProviderKind::from_name`) does
//! not know, so a provider that gains support there leaves this list by itself.

/// Why signing is out of reach, shared by the AWS providers.
const AWS: &str = "needs AWS SigV4 request signing and translation to its own API, which keyrelay does not do";
const GOOGLE_CLOUD: &str =
    "needs Google Cloud OAuth tokens and translation to Vertex AI's own API, which keyrelay does not do";
const NOT_CHAT: &str = "serves only speech, transcription or images through its own API, not OpenAI's format";
const OWN_FORMAT: &str = "has its own request format, which keyrelay would have to translate (it forwards as is)";
const OWN_AUTH: &str =
    "needs credentials exchanged for short-lived tokens (not a static key), which keyrelay does not do";

/// Prefix, reason.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("bedrock", AWS),
    ("bedrock_converse", AWS),
    ("sagemaker", AWS),
    ("sagemaker_chat", AWS),
    ("vertex_ai", GOOGLE_CLOUD),
    ("vertex_ai_beta", GOOGLE_CLOUD),
    ("watsonx", OWN_AUTH),
    ("watsonx_text", OWN_AUTH),
    ("oci", "needs OCI request signing, which keyrelay does not do"),
    ("snowflake", OWN_AUTH),
    ("elevenlabs", NOT_CHAT),
    ("deepgram", NOT_CHAT),
    ("assemblyai", NOT_CHAT),
    ("stability", NOT_CHAT),
    ("recraft", NOT_CHAT),
    ("fal_ai", NOT_CHAT),
    ("runwayml", NOT_CHAT),
    ("replicate", OWN_FORMAT),
    ("palm", OWN_FORMAT),
    ("vertex_ai_anthropic", GOOGLE_CLOUD),
    ("aleph_alpha", OWN_FORMAT),
    ("nlp_cloud", OWN_FORMAT),
    ("petals", OWN_FORMAT),
    ("triton", OWN_FORMAT),
    ("predibase", OWN_FORMAT),
    ("clarifai", OWN_FORMAT),
    ("maritalk", OWN_FORMAT),
    ("baseten", OWN_FORMAT),
];

/// Why the entry `model` (LiteLLM's `provider/model`) cannot be served, when its
/// prefix is not a provider keyrelay knows. `custom_providers` are the `provider`
/// names of `litellm_settings.custom_provider_map` (Python handlers).
pub(crate) fn unservable_reason(prefix: &str, custom_providers: &[String], known: &str) -> String {
    if custom_providers.iter().any(|p| p == prefix) {
        return format!(
            "provider {prefix:?} is a custom_provider_map handler (Python code in LiteLLM), which keyrelay cannot run"
        );
    }
    match UNSUPPORTED.iter().find(|(p, _)| *p == prefix) {
        Some((_, reason)) => format!("provider {prefix:?} {reason}"),
        None => format!("unknown provider prefix {prefix:?}: keyrelay does not know how to reach it (known: {known})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderKind;

    #[test]
    fn reasons_name_the_provider_and_custom_handlers_come_first() {
        let custom = vec!["my-llm".to_owned()];
        assert!(unservable_reason("bedrock", &custom, "x").contains("SigV4"));
        assert!(unservable_reason("vertex_ai", &custom, "x").contains("Google Cloud"));
        assert!(unservable_reason("my-llm", &custom, "x").contains("custom_provider_map"));
        assert!(unservable_reason("nonesuch", &custom, "openai").contains("unknown provider prefix \"nonesuch\""));
    }

    /// This list is only reached for prefixes the catalog does not know; one that both
    /// know would be dead here and misleading to read.
    #[test]
    fn no_listed_prefix_is_in_the_catalog() {
        for (prefix, _) in UNSUPPORTED {
            assert!(ProviderKind::from_name(prefix).is_none(), "{prefix} is supported now: remove it here");
        }
    }
}
