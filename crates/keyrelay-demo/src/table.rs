//! The demo's per-key table, read straight from the live snapshot's endpoint state.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::traffic::ClientTally;
use keyrelay::pool::breaker::BreakerState;
use keyrelay::pool::{Availability, Snapshot};

/// Renders one frame of the table.
pub fn render(snapshot: &Snapshot, tally: &ClientTally, elapsed_secs: f64, phase: &str, events: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "keyrelay demo: {elapsed_secs:5.1}s  phase: {phase}   (snapshot generation {})",
        snapshot.generation
    );
    let _ = writeln!(
        out,
        "app saw: {} sent, {} ok, {} rate-limited (429), {} other errors",
        tally.sent.load(Ordering::Relaxed),
        tally.ok.load(Ordering::Relaxed),
        tally.rate_limited.load(Ordering::Relaxed),
        tally.other.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "\n{:<8} {:<28} {:<16} {:>8} {:>6} {:>14} {:>10} {:>9}  state",
        "model", "deployment", "key", "attempts", "ok", "429s absorbed", "remaining", "in flight"
    );
    let now = Instant::now();
    for route in snapshot.routes() {
        for endpoint in &route.endpoints {
            let c = &endpoint.state.counters;
            let view = endpoint.state.view(now);
            let state = match endpoint.availability(now) {
                Availability::Ready { .. } => "ready".to_owned(),
                Availability::Blocked { .. } if view.refused.is_some() => "refused by provider".to_owned(),
                Availability::Blocked { .. } if matches!(view.breaker, BreakerState::Open { .. }) => {
                    "breaker open".to_owned()
                }
                Availability::Blocked { until: Some(t) } if view.cooldown_until.is_some() => {
                    format!("cooling {:.1}s", t.saturating_duration_since(now).as_secs_f64())
                }
                Availability::Blocked { until: Some(t) } => {
                    format!("quota spent, resets in {:.1}s", t.saturating_duration_since(now).as_secs_f64())
                }
                Availability::Blocked { until: None } => "busy".to_owned(),
            };
            let remaining = view.remaining_requests.map_or_else(|| "-".to_owned(), |r| r.to_string());
            let _ = writeln!(
                out,
                "{:<8} {:<28} {:<16} {:>8} {:>6} {:>14} {:>10} {:>9}  {}",
                route.settings.alias,
                endpoint.deployment.name,
                endpoint.key_name(),
                c.attempts.load(Ordering::Relaxed),
                c.successes.load(Ordering::Relaxed),
                c.rate_limited.load(Ordering::Relaxed),
                remaining,
                view.in_flight,
                state,
            );
        }
    }
    if !events.is_empty() {
        out.push('\n');
    }
    for event in events {
        let _ = writeln!(out, "{event}");
    }
    out
}
