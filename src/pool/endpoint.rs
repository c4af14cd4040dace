//! An endpoint is one deployment reached with one key: the unit that is selected,
//! cooled down and counted.

use std::sync::Arc;
use std::time::Instant;

use super::state::{Availability, EndpointState, Limits, Need, Priority};
use crate::config::Deployment;
use crate::provider::refusal::KeyRefusal;
use crate::provider::Auth;

/// Identifies an endpoint across reloads: state carries over when all three match and
/// the key's value is unchanged. Shared strings: they are the endpoint's metric labels
/// too, which the request path clones for every request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointId {
    pub alias: Arc<str>,
    pub deployment: Arc<str>,
    pub key_name: Arc<str>,
}

/// One deployment x key. Immutable apart from its shared [`EndpointState`].
#[derive(Debug)]
pub struct Endpoint {
    pub id: EndpointId,
    pub deployment: Arc<Deployment>,
    pub auth: Auth,
    /// Process-local hash of the key value, to tell a rotated key from the old one.
    pub key_fingerprint: u64,
    /// [`crate::secret::Secret::shared_fingerprint`]: names the key in Redis.
    pub shared_fingerprint: String,
    pub state: Arc<EndpointState>,
    /// Set while the Secret holds a new value for this key that does not serve yet
    /// (see [`crate::lifecycle`]): the endpoint still sends the value it had.
    pub rotation: Option<Rotation>,
}

/// Why an endpoint serves its previous key value although the Secret changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The new value is being probed.
    Pending { since: Instant },
    /// The provider refused the new value: the old one serves on until the Secret
    /// changes again.
    Rejected { reason: KeyRefusal, at: Instant },
}

impl Rotation {
    /// The word `/status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Rotation::Pending { .. } => "pending",
            Rotation::Rejected { .. } => "rejected",
        }
    }
}

impl Endpoint {
    pub fn key_name(&self) -> &str {
        &self.id.key_name
    }

    /// The configured per-key limits of this endpoint's deployment.
    pub fn limits(&self) -> Limits {
        let d = &self.deployment;
        Limits { rpm: d.rpm, tpm: d.tpm, max_inflight: d.max_inflight }
    }

    /// What `demand` asks of this endpoint's key: its tokens by this key's
    /// calibration, and the share low priority must leave (`reserve`).
    pub fn need(&self, demand: &Demand, reserve: f64) -> Need {
        Need {
            tokens: self.state.estimate_tokens(demand.prompt_bytes, demand.max_tokens),
            prompt_bytes: demand.prompt_bytes,
            priority: demand.priority,
            reserve,
        }
    }

    /// Whether this endpoint has capacity now (see [`EndpointState::availability`]).
    pub fn availability(&self, now: Instant) -> Availability {
        self.state.availability(&self.limits(), now)
    }
}

/// What a request brings that decides how much of a key it takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// The request body's size.
    pub prompt_bytes: u64,
    /// `max_tokens`, `max_completion_tokens` or `max_output_tokens`, if set.
    pub max_tokens: Option<u64>,
    pub priority: Priority,
}
