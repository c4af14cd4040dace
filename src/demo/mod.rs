//! `keyrelay demo`: a self-contained showcase with no keys and no network.

use std::process::ExitCode;

/// Options of `keyrelay demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How long to send traffic, in seconds.
    #[arg(long, default_value_t = 12)]
    pub seconds: u64,
}

pub async fn run(_args: DemoArgs) -> ExitCode {
    ExitCode::FAILURE
}
