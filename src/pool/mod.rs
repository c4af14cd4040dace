//! Key pools: endpoints (deployment x key), their health, and how one is chosen.

mod endpoint;
pub mod select;
mod snapshot;

pub use endpoint::{Counters, Endpoint, EndpointId, EndpointState, InFlightGuard};
pub use snapshot::{Route, Snapshot};
