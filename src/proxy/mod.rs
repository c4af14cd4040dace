//! The request path: accept, read, route, select, forward with failover, relay.

mod attempt_body;
pub mod body;
pub mod body_budget;
pub mod client_headers;
pub mod error;
mod exchange;
mod forward;
mod head;
pub mod inbound;
mod server;
pub mod tls_profiles;
mod trace;
pub mod upstream;
mod usage;

pub use server::{serve, ProxyState};
