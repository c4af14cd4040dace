//! Built-in list prices of the providers' common models, so cost shows without any
//! config. Prices change: a deployment's configured price always wins, and a model
//! missing here has no cost rather than a wrong one.
//!
//! Source: each provider's public pricing page (openai.com/api/pricing,
//! anthropic.com/pricing, ai.google.dev/gemini-api/docs/pricing, groq.com/pricing,
//! api-docs.deepseek.com/quick_start/pricing), standard tier, text tokens, no
//! batch or cache discounts, as of the date below. Gemini 2.5 Pro is its price for
//! prompts up to 200k tokens.

use crate::config::Price;
use crate::provider::ProviderKind;

/// When the table was last checked against the pricing pages.
pub const BUILTIN_PRICES_AS_OF: &str = "2025-07-01";

/// Which providers serve a family's models under the same names.
const OPENAI: &[ProviderKind] = &[ProviderKind::OpenAi, ProviderKind::Azure];
const ANTHROPIC: &[ProviderKind] = &[ProviderKind::Anthropic];
const GEMINI: &[ProviderKind] = &[ProviderKind::Gemini];
const GROQ: &[ProviderKind] = &[ProviderKind::Groq];
const DEEPSEEK: &[ProviderKind] = &[ProviderKind::DeepSeek];

/// (providers, model, USD per million input tokens, per million output tokens).
/// A model matches its entry exactly or with a `-suffix` (a dated snapshot such as
/// `gpt-4o-2024-08-06`); the longest matching entry wins, so `gpt-4o-mini` is not
/// priced as `gpt-4o`.
const TABLE: &[(&[ProviderKind], &str, f64, f64)] = &[
    (OPENAI, "gpt-4o", 2.50, 10.00),
    (OPENAI, "gpt-4o-mini", 0.15, 0.60),
    (OPENAI, "gpt-4.1", 2.00, 8.00),
    (OPENAI, "gpt-4.1-mini", 0.40, 1.60),
    (OPENAI, "gpt-4.1-nano", 0.10, 0.40),
    (OPENAI, "o3", 2.00, 8.00),
    (OPENAI, "o3-mini", 1.10, 4.40),
    (OPENAI, "o4-mini", 1.10, 4.40),
    (OPENAI, "text-embedding-3-small", 0.02, 0.0),
    (OPENAI, "text-embedding-3-large", 0.13, 0.0),
    (ANTHROPIC, "claude-opus-4", 15.00, 75.00),
    (ANTHROPIC, "claude-sonnet-4", 3.00, 15.00),
    (ANTHROPIC, "claude-3-7-sonnet", 3.00, 15.00),
    (ANTHROPIC, "claude-3-5-haiku", 0.80, 4.00),
    (GEMINI, "gemini-2.5-pro", 1.25, 10.00),
    (GEMINI, "gemini-2.5-flash", 0.30, 2.50),
    (GEMINI, "gemini-2.5-flash-lite", 0.10, 0.40),
    (GEMINI, "gemini-2.0-flash", 0.10, 0.40),
    (GROQ, "llama-3.3-70b-versatile", 0.59, 0.79),
    (GROQ, "llama-3.1-8b-instant", 0.05, 0.08),
    (DEEPSEEK, "deepseek-chat", 0.27, 1.10),
    (DEEPSEEK, "deepseek-reasoner", 0.55, 2.19),
];

pub(super) fn lookup(provider: ProviderKind, model: &str) -> Option<Price> {
    let model = model.trim();
    TABLE
        .iter()
        .filter(|(providers, name, ..)| providers.contains(&provider) && matches(model, name))
        .max_by_key(|(_, name, ..)| name.len())
        .map(|&(_, _, input, output)| Price::per_million(input, output))
}

fn matches(model: &str, name: &str) -> bool {
    model.strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_entry_wins_and_dated_snapshots_match() {
        let mini = lookup(ProviderKind::OpenAi, "gpt-4o-mini-2024-07-18");
        assert_eq!(mini, Some(Price::per_million(0.15, 0.60)));
        assert_eq!(lookup(ProviderKind::OpenAi, "gpt-4o"), Some(Price::per_million(2.50, 10.00)));
        assert_eq!(lookup(ProviderKind::Azure, "gpt-4.1-nano"), Some(Price::per_million(0.10, 0.40)));
        assert_eq!(lookup(ProviderKind::Anthropic, "claude-sonnet-4-20250514"), Some(Price::per_million(3.0, 15.0)));
        assert_eq!(lookup(ProviderKind::OpenAi, "gpt-4o1"), None, "a name is matched whole");
        assert_eq!(lookup(ProviderKind::Groq, "gpt-4o"), None, "by provider");
        assert_eq!(lookup(ProviderKind::OpenAiCompatible, "gpt-4o"), None, "a self-hosted model has no list price");
    }

    #[test]
    fn every_entry_is_a_sane_price() {
        for (providers, name, input, output) in TABLE {
            assert!(!providers.is_empty() && !name.is_empty());
            assert!((0.0..=100.0).contains(input) && (0.0..=100.0).contains(output), "{name}");
        }
    }
}
