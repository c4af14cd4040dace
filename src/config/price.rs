//! A price as config holds it: validated (finite, non-negative) USD per token.
//! `cost` looks prices up (configured, else built in); the type lives here because a
//! deployment's config carries one and config depends on nothing that computes costs.

/// USD per token, input and output. Both finite and non-negative (config bounds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_token: f64,
    pub output_per_token: f64,
}

impl Price {
    /// From USD per million tokens, as pricing pages write them.
    pub const fn per_million(input: f64, output: f64) -> Price {
        Price { input_per_token: input / 1e6, output_per_token: output / 1e6 }
    }

    /// The cost of `input` and `output` tokens, in USD.
    pub fn cost(&self, input: u64, output: u64) -> f64 {
        input as f64 * self.input_per_token + output as f64 * self.output_per_token
    }
}
