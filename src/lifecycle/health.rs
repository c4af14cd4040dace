//! Active health checks: every key of an alias with `health_check_interval` is probed
//! once per interval, at an offset of its own within the interval (so a pool of keys
//! is not probed in one burst), never twice at once. What a probe finds goes into the
//! endpoint's own state: refused and out-of-credit keys are taken out as a refused
//! request would take them out, an unreachable one opens its breaker, and an accepted
//! probe puts the key back.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::{probe, Lifecycle};
use crate::pool::{Endpoint, EndpointId};
use crate::provider::probe::Verdict;

/// The loop looks at the serving snapshot at least this often (new keys, new
/// intervals), even when no probe is due sooner.
const LOOK_AGAIN: Duration = Duration::from_secs(1);

/// When one key is probed next.
struct Slot {
    next: Instant,
    interval: Duration,
    /// Set while its probe is under way.
    busy: Arc<AtomicBool>,
}

pub(super) async fn run(lifecycle: Arc<Lifecycle>, mut stop: watch::Receiver<bool>) {
    let mut slots: HashMap<EndpointId, Slot> = HashMap::new();
    loop {
        let snapshot = lifecycle.store.load_full();
        let now = Instant::now();
        let mut seen = HashSet::new();
        for route in snapshot.routes() {
            let Some(interval) = route.settings.health_check_interval else { continue };
            for endpoint in &route.endpoints {
                seen.insert(endpoint.id.clone());
                let slot = slots.entry(endpoint.id.clone()).or_insert_with(|| Slot {
                    next: later(now, offset(&endpoint.id, interval)),
                    interval,
                    busy: Arc::default(),
                });
                if slot.interval != interval {
                    // A reload changed it: the new interval from now, at the key's offset.
                    slot.interval = interval;
                    slot.next = slot.next.min(later(now, offset(&endpoint.id, interval)));
                }
                if now < slot.next || slot.busy.swap(true, Ordering::AcqRel) {
                    continue;
                }
                slot.next = later(now, interval);
                let busy = Arc::clone(&slot.busy);
                let (lifecycle, snapshot, endpoint) =
                    (Arc::clone(&lifecycle), Arc::clone(&snapshot), Arc::clone(endpoint));
                // The answer must come within the interval (and the rotation bound), so
                // probes of one key never overlap.
                let deadline = later(now, interval.min(snapshot.server.key_probe_timeout));
                tokio::spawn(async move {
                    let verdict =
                        probe::once(&lifecycle.client, &snapshot, &endpoint.deployment, &endpoint.auth, deadline).await;
                    lifecycle.count_probe("health", verdict);
                    apply(&endpoint, verdict, interval);
                    busy.store(false, Ordering::Release);
                });
            }
        }
        slots.retain(|id, _| seen.contains(id));
        drop(snapshot);
        let wake = slots.values().map(|s| s.next).fold(later(now, LOOK_AGAIN), Instant::min);
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// What a health probe's verdict does to the key.
fn apply(endpoint: &Endpoint, verdict: Verdict, interval: Duration) {
    let now = std::time::Instant::now();
    let (key, deployment) = (endpoint.key_name(), &endpoint.deployment.name);
    match verdict {
        Verdict::Accepted => {
            if endpoint.state.refusal().is_some() {
                tracing::info!(%key, %deployment, "health check: the provider accepts the key again; back in rotation");
            }
            endpoint.state.probe_accepted();
        }
        Verdict::Refused(reason) => {
            if endpoint.state.refusal() != Some(reason) {
                tracing::warn!(%key, %deployment, reason = reason.as_str(), "health check: the provider refuses the key; taken out");
            }
            endpoint.state.probe_refused(reason, now);
        }
        // Until the next probe: by then it answers, or stays out.
        Verdict::Unreachable => endpoint.state.probe_unreachable(interval, now),
        Verdict::Inconclusive => {}
    }
}

/// Where in its interval a key is probed: fixed per key, spread over the interval.
fn offset(id: &EndpointId, interval: Duration) -> Duration {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    interval.mul_f64((h.finish() % 1000) as f64 / 1000.0)
}

fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_keys_within_the_interval() {
        let interval = Duration::from_secs(60);
        let offsets: HashSet<u64> = (0..20)
            .map(|i| EndpointId { alias: "m".into(), deployment: "d".into(), key_name: format!("K{i}").into() })
            .map(|id| offset(&id, interval).as_millis() as u64)
            .inspect(|&ms| assert!(ms < 60_000))
            .collect();
        assert!(offsets.len() > 15, "{offsets:?}");
    }
}
