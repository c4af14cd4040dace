//! Prices in config: native `price:` (USD per million tokens) and LiteLLM's
//! `model_info` cost fields (USD per token) reach the deployment, within bounds, and
//! errors name their field.

use std::path::Path;

use super::Price;
use super::*;

fn price_of(text: &str) -> Option<Price> {
    let loaded = load_str(text, Path::new("c.yaml")).unwrap_or_else(|e| panic!("{e}"));
    loaded.config.models.values().next().and_then(|r| r.deployments[0].price)
}

fn errors_of(text: &str) -> String {
    match load_str(text, Path::new("c.yaml")) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => e.to_string(),
    }
}

const NATIVE: &str =
    "models:\n  m:\n    deployments:\n      - provider: openai\n        model: gpt-4o\n        keys: [K]\n";

#[test]
fn native_price_is_per_million_tokens_and_bounded() {
    assert_eq!(price_of(NATIVE), None, "no price written: the built-in table decides");
    let priced = format!("{NATIVE}        price: {{ input_per_million: 2.5, output_per_million: 10 }}\n");
    assert_eq!(price_of(&priced), Some(Price::per_million(2.5, 10.0)));
    let free = format!("{NATIVE}        price: {{ input_per_million: 0, output_per_million: 0 }}\n");
    assert_eq!(price_of(&free), Some(Price::per_million(0.0, 0.0)), "a free model is priced at 0");

    let bad = format!("{NATIVE}        price: {{ input_per_million: -1, output_per_million: 1e9 }}\n");
    let errors = errors_of(&bad);
    assert!(errors.contains("models.m.deployments[0].price.input_per_million"), "{errors}");
    assert!(errors.contains("models.m.deployments[0].price.output_per_million"), "{errors}");
    assert!(errors.contains("0 to 10000"), "{errors}");
    let unknown = format!("{NATIVE}        price: {{ input: 1, output_per_million: 1 }}\n");
    assert!(errors_of(&unknown).contains("unknown field `input`"), "{}", errors_of(&unknown));
}

const LITELLM: &str =
    "model_list:\n  - model_name: m\n    litellm_params: {model: openai/gpt-4o, api_key: os.environ/K}\n";

#[test]
fn litellm_model_info_costs_are_per_token_and_bounded() {
    let both = format!("{LITELLM}    model_info: {{input_cost_per_token: 0.0000025, output_cost_per_token: 1.0e-5}}\n");
    let price = price_of(&both).unwrap_or_else(|| panic!("no price"));
    assert!((price.input_per_token - 2.5e-6).abs() < 1e-15 && (price.output_per_token - 1e-5).abs() < 1e-15);
    let one = format!("{LITELLM}    model_info: {{output_cost_per_token: 0.000001}}\n");
    assert_eq!(price_of(&one).map(|p| p.input_per_token), Some(0.0), "the side not written costs 0, as in LiteLLM");

    let loaded = load_str(&both, Path::new("c.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        loaded.warnings.iter().all(|w| !w.to_string().contains("cost_per_token")),
        "read, so not reported as ignored: {:?}",
        loaded.warnings
    );

    let bad = format!("{LITELLM}    model_info: {{input_cost_per_token: 0.5, output_cost_per_token: nope}}\n");
    let errors = errors_of(&bad);
    assert!(errors.contains("model_list[0].model_info.input_cost_per_token"), "{errors}");
    assert!(errors.contains("model_list[0].model_info.output_cost_per_token"), "{errors}");
}
