//! The demo's per-key table, read straight from the live snapshot's endpoint state.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::traffic::ClientTally;
use crate::pool::Snapshot;

/// Renders one frame of the table.
pub fn render(snapshot: &Snapshot, tally: &ClientTally, elapsed_secs: f64, phase: &str) -> String {
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
        "\n{:<14} {:<28} {:<16} {:>8} {:>6} {:>14} {:>10} {:>9}  state",
        "model", "deployment", "key", "attempts", "ok", "429s absorbed", "cooldowns", "in flight"
    );
    let now = Instant::now();
    for route in snapshot.routes() {
        for endpoint in &route.endpoints {
            let c = &endpoint.state.counters;
            let state = match endpoint.state.cooldown_until() {
                Some(until) if until > now => format!("cooling {:.1}s", (until - now).as_secs_f64()),
                _ => "ready".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<14} {:<28} {:<16} {:>8} {:>6} {:>14} {:>10} {:>9}  {}",
                route.settings.alias,
                endpoint.deployment.name,
                endpoint.key_name(),
                c.attempts.load(Ordering::Relaxed),
                c.successes.load(Ordering::Relaxed),
                c.rate_limited.load(Ordering::Relaxed),
                c.cooldowns.load(Ordering::Relaxed),
                endpoint.state.in_flight(),
                state,
            );
        }
    }
    out
}
