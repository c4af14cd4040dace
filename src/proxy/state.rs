//! What every request handler shares, built once by `runtime` and held by the app
//! port's service.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::body_budget::BodyBudget;
use crate::http::lanes::ProxyClient;
use crate::pool::Snapshot;
use crate::telemetry::metrics::ProxyMetrics;

pub struct ProxyState {
    /// The current routing snapshot; each request loads it exactly once.
    pub store: Arc<ArcSwap<Snapshot>>,
    pub client: ProxyClient,
    /// Bytes of request bodies in memory, bounded by `server.max_buffered_bodies`.
    pub body_budget: Arc<BodyBudget>,
    /// Request-path metrics, also registered with the admin port's `/metrics`.
    pub metrics: Arc<ProxyMetrics>,
}
