//! Telling a pasted API key from a secret name, so that a key written where its name
//! belongs is refused before it is echoed by `check`, a log line, `/readyz` or
//! `/status` (all of which show secret names).
//!
//! Secret names are words: `OPENAI_API_KEY_2`, `openai-key`, `team-a.key`. Keys are
//! a provider prefix and/or a long run of letters and digits mixed at random. Either
//! mark is enough; a false alarm costs a rename, a miss shows a key.

/// Prefixes that begin a key and never a name.
const KEY_PREFIXES: [&str; 9] = ["sk-", "sk_", "AIza", "eyJ", "github_pat_", "glpat-", "xoxb-", "xoxp-", "nvapi-"];

/// Key prefixes that a name may begin with too (`hf_token`, `xai-key`): a key only
/// when a long token follows.
const SHORT_PREFIXES: [&str; 21] = [
    "hf_", "gsk_", "csk-", "xai-", "pk-", "pplx-", "r8_", "fw_", "ghp_", "gho_", "ghs_", "ghu_", "ghr_", "tvly-",
    "lsv2_", "pa-", "jina_", "sess-", "AKIA", "key-", "api-",
];

/// True when `name` looks like key material rather than a name.
pub(crate) fn looks_like_key(name: &str) -> bool {
    if KEY_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return true;
    }
    if SHORT_PREFIXES.iter().any(|p| name.strip_prefix(p).is_some_and(|rest| longest_run(rest) >= 16)) {
        return true;
    }
    if is_uuid(name) {
        return true;
    }
    let random_run = name.split(|c: char| !c.is_ascii_alphanumeric()).any(|run| {
        let has_both = run.chars().any(|c| c.is_ascii_digit()) && run.chars().any(|c| c.is_ascii_alphabetic());
        has_both && (run.len() >= 32 || (run.len() >= 20 && mixing(run) >= 0.3))
    });
    if random_run {
        return true;
    }
    // base64url keys: long, all three classes, and mixed all along despite separators.
    let classes = [char::is_ascii_lowercase, char::is_ascii_uppercase, char::is_ascii_digit];
    name.len() >= 32 && classes.iter().all(|class| name.chars().any(|c| class(&c))) && mixing(name) >= 0.4
}

/// Text for a name in a message: the name itself, unless it looks like a key.
pub(crate) fn shown(name: &str) -> &str {
    if looks_like_key(name) {
        "<a name that looks like an API key, not shown>"
    } else {
        name
    }
}

/// A field path with every segment that looks like a key replaced: a key pasted as
/// a mapping key would otherwise be shown in the path of its diagnostic.
pub(crate) fn redact_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut segment_start = 0;
    for (i, c) in path.char_indices().chain(std::iter::once((path.len(), '.'))) {
        if matches!(c, '.' | '[' | ']') {
            let segment = &path[segment_start..i];
            out.push_str(if looks_like_key(segment) { "<redacted>" } else { segment });
            if i < path.len() {
                out.push(c);
            }
            segment_start = i + c.len_utf8();
        }
    }
    out
}

fn longest_run(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_alphanumeric()).map(str::len).max().unwrap_or(0)
}

/// The share of neighbouring letters and digits whose class (lower, upper, digit)
/// differs: about 0.6 for a random base62 token, 0.5 for hex, and low for words.
fn mixing(s: &str) -> f64 {
    fn class(c: char) -> Option<u8> {
        match c {
            'a'..='z' => Some(0),
            'A'..='Z' => Some(1),
            '0'..='9' => Some(2),
            _ => None,
        }
    }
    let (mut pairs, mut changes) = (0u32, 0u32);
    let mut previous = None;
    for c in s.chars() {
        let current = class(c);
        if let (Some(a), Some(b)) = (previous, current) {
            pairs += 1;
            changes += u32::from(a != b);
        }
        previous = current;
    }
    if pairs == 0 {
        return 0.0;
    }
    f64::from(changes) / f64::from(pairs)
}

/// `8-4-4-4-12` hex digits: some providers issue UUIDs as keys.
fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like real keys (made-up values).
    pub(crate) const KEY_SHAPES: [&str; 16] = [
        "sk-proj-Q3vX9kLm2PzT8wRb5NcY7dHf1JgK4sAe",
        "sk-ant-api03-Zx8Kq2LmV7pR4tW9yB3nC6dF1gH5jK0s-AbCdEfGh",
        "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",
        "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "gsk_Wq8Xk2Lp9Vz3Nt7Rb5Mc1Yd6Hf4Jg0Ks2Ae8Qw3Ez",
        "csk-x7k2m9p4v8t3w6r1y5n0q8s2d7f4g9h3j6k1l5z8",
        "xai-Rt7Yp2Kq9Lm4Vx8Nb3Zc6Wd1Hf5Jg0Ts7Ua2Qe9Io4",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
        "3f9a1c7e5b2d8f4a6c0e9b7d5f3a1c8e",
        "9e107d9d372bb6826bd81d3542a419d6f2a1c3b5d7e9f1a3c5b7d9e1f3a5c7b9",
        "Xk3pQ9vL2mT8wR4bN7cY1dHf6JgK0sAe",
        "123e4567-e89b-12d3-a456-426614174000",
        "pplx-4f8e2a9c1b7d3e6f0a5c8b2d9e1f4a7c3b6d0e8f2a5c",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "Ux8-kd_Ks9pQ2-vL7mT_3wR4bN-7cY1dHf6Jg",
    ];

    const NAMES: [&str; 20] = [
        "OPENAI_API_KEY",
        "OPENAI_API_KEY_2",
        "GEMINI_API_KEY",
        "AZURE_OPENAI_API_KEY_WESTEUROPE_PROD",
        "openai-key",
        "team-a.key",
        "llm-keys.team-a.key",
        "openrouter-api-key-for-staging-env",
        "hf_token",
        "hf_token_team_a",
        "xai-key",
        "gsk_pool",
        "OPENAIAPIKEY2024PRODUCTION",
        "Team_A_OpenAI_Key_2_Production_EU",
        "pool.txt",
        "KEYRELAY_TEST_ABSENT_KEY",
        "CEREBRAS_KEYS",
        "VLLM_TOKEN",
        "api-key-2",
        "key-for-gpt4o-mini-eu-west-1",
    ];

    #[test]
    fn pasted_keys_are_recognised() {
        for key in KEY_SHAPES {
            assert!(looks_like_key(key), "{key}");
        }
    }

    #[test]
    fn names_are_not() {
        for name in NAMES {
            assert!(!looks_like_key(name), "{name}");
            assert_eq!(shown(name), name);
        }
    }

    #[test]
    fn paths_lose_key_like_segments_only() {
        assert_eq!(redact_path("models.gpt-4o.deployments[1].keys[0]"), "models.gpt-4o.deployments[1].keys[0]");
        let path = format!("model_list[0].litellm_params.{}", KEY_SHAPES[9]);
        assert_eq!(redact_path(&path), "model_list[0].litellm_params.<redacted>");
        assert_eq!(redact_path(""), "");
        let jwt = format!("a.{}", KEY_SHAPES[14]);
        assert_eq!(redact_path(&jwt), "a.<redacted>.<redacted>.<redacted>");
    }

    #[test]
    fn mixing_separates_tokens_from_words() {
        assert!(mixing("Xk3pQ9vL2mT8wR4bN7cY1dHf6JgK0sAe") > 0.5);
        assert!(mixing("OPENAI_API_KEY") < 0.1);
        assert_eq!(mixing(""), 0.0);
    }
}
