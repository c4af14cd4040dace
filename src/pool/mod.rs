//! Key pools: endpoints (deployment x key), their health and quota state, and how one
//! is chosen for a request.

pub mod backoff;
pub mod breaker;
pub mod bucket;
#[cfg(test)]
mod build_proptests;
mod endpoint;
pub mod history;
#[cfg(test)]
mod proptests;
pub mod queue;
pub mod quota;
#[cfg(test)]
mod ratelimit_fuzz;
pub mod refused;
pub mod select;
pub mod session;
pub mod shared_target;
mod snapshot;
mod state;
pub mod wildcard;
pub mod window;

pub use endpoint::{Demand, Endpoint, EndpointId, Rotation};
pub use snapshot::{Changed, Choice, KeyValues, NewValues, Pick, Route, Snapshot};
pub use state::{
    Availability, Counters, EndpointState, ExchangeIn, ExchangeOut, Exclusion, Forecast, InFlightGuard, Limits,
    LinkSettings, Need, Priority, StateView, SyncSignal,
};
