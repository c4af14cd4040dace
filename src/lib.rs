//! keyrelay: a sidecar proxy that spreads LLM API traffic over pools of keys.
//!
//! The request path reads one [`pool::Snapshot`] (loaded once per request from an
//! `ArcSwap`), picks endpoints (deployment x key) from it, and forwards with failover.
//! `main.rs` only wires these modules together.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod cost;
pub mod http;
pub mod k8s;
pub mod lifecycle;
pub mod pool;
pub mod provider;
pub mod proxy;
pub mod reload;
pub mod runtime;
pub mod secret;
pub mod shared;
pub mod telemetry;
