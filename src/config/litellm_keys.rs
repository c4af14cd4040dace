//! `api_key` values written into a LiteLLM file. LiteLLM sends them as written, so
//! keyrelay does too (a warning, not an error: README and DESIGN.md section 2 promise
//! that), holding the value as a [`Secret`] under a name derived from the entry.

use std::collections::BTreeMap;

use super::keylike::looks_like_key;
use super::model::{KeyRef, KeyRefKind};
use super::validate::Diags;
use super::values::check_secret_name;
use crate::secret::Secret;

/// Names of keys written into the file start with this: `inline-key:gpt-4o#1` is the
/// first entry of alias `gpt-4o` with a written key, `#2` the second, in file order.
/// It is what metrics, `x-keyrelay-key` and `/status` show, and it stays the same
/// across reloads while the alias's entries keep their order (so their state carries
/// over). It can never be a secret name (`:` is not allowed in one).
pub(crate) const INLINE_PREFIX: &str = "inline-key:";

/// What local servers take as "no key" and LiteLLM users write to satisfy SDKs:
/// nothing secret about them, so they earn no warning.
const PLACEHOLDERS: [&str; 9] = ["none", "dummy", "na", "n/a", "fake-key", "sk-no-key", "no-key", "empty", "null"];

/// A reference to a key written into the file as `text` at `path`, for the entry of
/// `alias`; its value goes into `inline` (the config's inline secrets).
pub(crate) fn literal(
    diags: &mut Diags<'_>,
    text: &str,
    path: &str,
    alias: &str,
    inline: &mut BTreeMap<String, Secret>,
) -> KeyRef {
    let name = (1..)
        .map(|n| format!("{INLINE_PREFIX}{alias}#{n}"))
        .find(|name| !inline.contains_key(name))
        .unwrap_or_else(|| format!("{INLINE_PREFIX}{alias}"));
    if let Some(reference) = unexpanded_reference(text) {
        let spelling = match check_secret_name(reference) {
            Ok(()) => format!("`api_key: os.environ/{reference}`"),
            Err(_) => "`api_key: os.environ/NAME`".to_owned(),
        };
        diags.warn(
            path,
            format!(
                "api_key is not expanded: LiteLLM sends this text as written, and so does keyrelay (as {name}); \
                 to read a variable or Secret write {spelling}"
            ),
        );
    } else if !is_placeholder(text) {
        diags.warn(
            path,
            format!(
                "api_key is written into the config (the value is not shown): it is sent as written, as {name}, but \
                 a ConfigMap is not secret; put it into a Secret and write `api_key: os.environ/NAME`"
            ),
        );
    }
    inline.insert(name.clone(), Secret::new(text));
    KeyRef { name, kind: KeyRefKind::Literal, origin: diags.origin(path), implicit: false }
}

fn is_placeholder(text: &str) -> bool {
    let text = text.trim();
    PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(text))
}

/// The variable named by shell, Python or template syntax that LiteLLM does not
/// expand: `${VAR}`, `$VAR`, `{{VAR}}`, `env("VAR")`, `os.environ["VAR"]`,
/// `os.getenv("VAR")`, `os.environ.get("VAR")`. Only names that could be a variable
/// (never a key) are returned, so a message may show them.
pub(crate) fn unexpanded_reference(text: &str) -> Option<&str> {
    let text = text.trim();
    let inner = text
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| text.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")))
        .or_else(|| {
            ["env(", "os.getenv(", "os.environ.get(", "getenv("]
                .iter()
                .find_map(|p| text.strip_prefix(p))
                .and_then(|r| r.strip_suffix(')'))
        })
        .or_else(|| text.strip_prefix("os.environ[").and_then(|r| r.strip_suffix(']')))
        .or_else(|| text.strip_prefix('$'))?;
    let inner = inner.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    // `${VAR:-default}` and `env("VAR", "default")`: the name is what comes first.
    let name = inner.split([':', ',', ' ']).next().unwrap_or_default().trim_matches(|c| c == '"' || c == '\'');
    let is_variable = !name.is_empty()
        && !looks_like_key(name)
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    is_variable.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_in_other_syntaxes_are_recognised() {
        for text in [
            "${OPENAI_API_KEY}",
            "$OPENAI_API_KEY",
            "{{ OPENAI_API_KEY }}",
            "env(\"OPENAI_API_KEY\")",
            "env('OPENAI_API_KEY')",
            "os.environ[\"OPENAI_API_KEY\"]",
            "os.getenv('OPENAI_API_KEY')",
            "os.environ.get(\"OPENAI_API_KEY\")",
            "${OPENAI_API_KEY:-x}",
        ] {
            assert_eq!(unexpanded_reference(text), Some("OPENAI_API_KEY"), "{text}");
        }
        for text in ["sk-proj-Q3vX9kLm2PzT8wRb5NcY7dHf1JgK4sAe", "none", "$", "${}", "$ab-c", "${sk-abc}"] {
            assert_eq!(unexpanded_reference(text), None, "{text}");
        }
    }

    #[test]
    fn placeholders_ignore_case() {
        for p in ["none", "NONE", "Dummy", "na", "fake-key", "sk-no-key", " none "] {
            assert!(is_placeholder(p), "{p}");
        }
        assert!(!is_placeholder("sk-1234"));
    }
}
