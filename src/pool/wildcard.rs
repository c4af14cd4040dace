//! Wildcard aliases (`*`, `openai/*`, `claude-*`), as LiteLLM's pattern routing reads
//! them: each `*` stands for any text, and what it matched replaces the `*`s of the
//! deployment's model in order (`model_name: openai/*` with `model: openai/*` sends
//! `openai/gpt-4o` upstream as `gpt-4o`; a model without `*` is sent as written).
//!
//! Exact aliases are looked up first. Among patterns that match, the one with the
//! most literal (non-`*`) characters wins, then the one with fewer `*`, then the
//! alias that sorts first: LiteLLM orders patterns by length, so `openai/gpt-4*`
//! beats `openai/*`, which beats `*`.

use std::borrow::Cow;

/// Requested names longer than this match no pattern (model names are short; the
/// cost of matching stays bounded whatever a client sends).
const MAX_MATCHED_LEN: usize = 512;

/// A parsed wildcard alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The text between the `*`s: one more than the number of `*`.
    literals: Vec<String>,
}

impl Pattern {
    /// `None` for an alias without `*`: it is matched exactly.
    pub fn parse(alias: &str) -> Option<Pattern> {
        alias.contains('*').then(|| Pattern { literals: alias.split('*').map(str::to_owned).collect() })
    }

    /// What each `*` matched, if `requested` matches the whole pattern. Each literal
    /// is matched at its earliest place (linear time, no backtracking).
    pub fn captures<'r>(&self, requested: &'r str) -> Option<Vec<&'r str>> {
        if requested.len() > MAX_MATCHED_LEN {
            return None;
        }
        let (first, rest) = self.literals.split_first()?;
        let (last, middle) = rest.split_last()?;
        let mut tail = requested.strip_prefix(first.as_str())?;
        let mut captures = Vec::with_capacity(rest.len());
        for literal in middle {
            let at = tail.find(literal.as_str())?;
            captures.push(&tail[..at]);
            tail = &tail[at + literal.len()..];
        }
        captures.push(tail.strip_suffix(last.as_str())?);
        Some(captures)
    }

    /// Sort key: the most specific pattern first.
    pub fn specificity(&self) -> (std::cmp::Reverse<usize>, usize) {
        let literal_len = self.literals.iter().map(String::len).sum();
        (std::cmp::Reverse(literal_len), self.literals.len())
    }
}

/// The model sent upstream for a deployment whose model is `template`: as written
/// without `*`; else each `*` replaced by the next capture (LiteLLM's
/// `set_deployment_model_name`: more captures than `*` sends the requested name whole).
pub fn upstream_model<'t>(template: &'t str, captures: &[&str], requested: &str) -> Cow<'t, str> {
    if !template.contains('*') {
        return Cow::Borrowed(template);
    }
    if captures.len() > template.matches('*').count() {
        return Cow::Owned(requested.to_owned());
    }
    let mut model = template.to_owned();
    for capture in captures {
        model = model.replacen('*', capture, 1);
    }
    Cow::Owned(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps<'r>(pattern: &str, requested: &'r str) -> Option<Vec<&'r str>> {
        Pattern::parse(pattern).unwrap().captures(requested)
    }

    #[test]
    fn patterns_match_whole_names() {
        assert_eq!(caps("*", "gpt-4o"), Some(vec!["gpt-4o"]));
        assert_eq!(caps("openai/*", "openai/gpt-4o"), Some(vec!["gpt-4o"]));
        assert_eq!(caps("openai/*", "gpt-4o"), None);
        assert_eq!(caps("claude-*", "claude-sonnet-4"), Some(vec!["sonnet-4"]));
        assert_eq!(caps("claude-*", "xclaude-sonnet"), None);
        assert_eq!(caps("*-mini", "gpt-4o-mini-2024"), None);
        assert_eq!(caps("*meta.llama3*", "hello-meta.llama3-70b"), Some(vec!["hello-", "-70b"]));
        assert_eq!(caps("a*a", "a"), None, "literals do not overlap");
        assert_eq!(caps("openai/*", &format!("openai/{}", "x".repeat(600))), None);
    }

    #[test]
    fn upstream_model_follows_litellm() {
        assert_eq!(upstream_model("*", &["gpt-4o"], "gpt-4o"), "gpt-4o");
        assert_eq!(upstream_model("claude-sonnet-4", &["x"], "claude-x"), "claude-sonnet-4");
        assert_eq!(upstream_model("fo::*::static::*", &["a", "b"], "r"), "fo::a::static::b");
        assert_eq!(
            upstream_model("meta.llama3*", &["hello-", "-70b"], "hello-meta.llama3-70b"),
            "hello-meta.llama3-70b"
        );
        assert_eq!(upstream_model("x-*", &["a", "b"], "whole"), "whole");
    }

    #[test]
    fn longer_literals_are_more_specific() {
        let mut patterns = ["*", "openai/*", "openai/gpt-4*", "*/*"].map(|p| (Pattern::parse(p).unwrap(), p));
        patterns.sort_by_key(|(p, alias)| (p.specificity(), *alias));
        assert_eq!(patterns.map(|(_, a)| a), ["openai/gpt-4*", "openai/*", "*/*", "*"]);
    }
}
