//! What a response cost: its usage times its model's price per input and output
//! token. The price comes from the deployment's config (native `price:`, LiteLLM
//! `model_info.input_cost_per_token` / `output_cost_per_token`), else from the small
//! built-in table of the providers' common models ([`builtin`]); without either the
//! cost is unknown, shown as such, never guessed.
//!
//! Owns the built-in table and the lookup: the request path asks [`price_for`] once per
//! answered body and records the result in the endpoint's history, the trace and the
//! access log. The [`Price`] value itself is config's (a validated config value).

mod builtin;

use crate::config::{Deployment, Price};
use crate::provider::ProviderKind;

pub use builtin::BUILTIN_PRICES_AS_OF;

/// Where a price came from, for `/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    Config,
    BuiltIn,
}

impl PriceSource {
    pub fn as_str(self) -> &'static str {
        match self {
            PriceSource::Config => "config",
            PriceSource::BuiltIn => "built-in",
        }
    }
}

/// The price of `model` (the model sent upstream) at `deployment`: its configured one,
/// else the built-in one for its provider.
pub fn price_for(deployment: &Deployment, model: &str) -> Option<(Price, PriceSource)> {
    if let Some(price) = deployment.price {
        return Some((price, PriceSource::Config));
    }
    builtin::lookup(deployment.provider, model).map(|p| (p, PriceSource::BuiltIn))
}

/// The built-in price of `model` at `provider`, if the table has it.
pub fn builtin_price(provider: ProviderKind, model: &str) -> Option<Price> {
    builtin::lookup(provider, model)
}
