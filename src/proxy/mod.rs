//! The request path: accept, read, route, select, forward with failover, relay.

mod attempt;
mod attempt_body;
pub mod body;
pub mod body_budget;
pub mod client_headers;
pub mod error;
mod exchange;
mod fallback_kind;
mod forward;
mod head;
pub mod inbound;
mod json_key;
pub mod multipart;
pub mod outbound;
mod per_deployment;
mod respond;
mod server;
mod serves;
mod state;
mod trace;
pub mod upstream;
mod usage;
mod usage_fields;

pub use server::serve;
pub use state::ProxyState;
