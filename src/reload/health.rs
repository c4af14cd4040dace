//! Process health as the reloader leaves it and the probes read it: ready, draining,
//! the last reload error, a pending restart note and the recent reloads. Written here
//! (by the reloader and `runtime`), only read by `admin`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Process health as probes see it.
#[derive(Debug, Default)]
pub struct Health {
    /// Set once the first good snapshot serves.
    ready: AtomicBool,
    /// Set on SIGTERM: readiness goes false so endpoints stop sending traffic.
    draining: AtomicBool,
    /// The last reload error, shown on `/readyz` while the previous snapshot serves.
    last_error: Mutex<Option<String>>,
    /// Reloads rejected since start (`keyrelay_config_reload_failures_total`).
    /// Counted once per distinct bad content, not per re-scan.
    reload_failures: AtomicU64,
    /// Settings changed in the config that only a restart applies (listen address...),
    /// shown on `/readyz` until the config matches the running process again.
    restart_note: Mutex<Option<String>>,
    /// Whether replicas' shared state (Redis) is reachable, and why not.
    pub shared: Arc<crate::shared::Status>,
    /// The last few reloads and how they ended, for `/status` and `/ui`.
    reloads: ReloadLog,
}

impl Health {
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }

    pub fn set_last_error(&self, error: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// The last reload error, if the last reload attempt failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A rejected reload: counts it and keeps its errors for `/readyz`.
    /// The count goes up last: whoever sees it (a probe, `/metrics`) finds the errors
    /// already in place.
    pub fn record_reload_failure(&self, errors: String) {
        self.reloads.push(None, false, &errors);
        self.set_last_error(Some(errors));
        self.reload_failures.fetch_add(1, Ordering::SeqCst);
    }

    /// A reload applied: `generation` serves now.
    pub fn record_reload_applied(&self, generation: u64, summary: &str) {
        self.reloads.push(Some(generation), true, summary);
    }

    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::SeqCst)
    }

    pub fn set_restart_note(&self, note: Option<String>) {
        *self.restart_note.lock().unwrap_or_else(|e| e.into_inner()) = note;
    }

    /// The last few reloads, newest first.
    pub fn recent_reloads(&self) -> Vec<ReloadEvent> {
        self.reloads.recent()
    }

    /// What changed in the config but waits for a restart, if anything.
    pub fn restart_note(&self) -> Option<String> {
        self.restart_note.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reloads remembered for `/status`.
const RECENT_RELOADS: usize = 10;
/// A failed reload's errors are clipped to this for the log (all of them stay on
/// `/readyz` and in `reload.last_error`).
const RELOAD_MESSAGE_CHARS: usize = 400;

#[derive(Debug, Clone)]
pub struct ReloadEvent {
    pub at: Instant,
    /// The generation serving after it.
    pub generation: Option<u64>,
    pub ok: bool,
    pub message: String,
}

/// The last [`RECENT_RELOADS`] reloads, applied or rejected.
#[derive(Debug, Default)]
struct ReloadLog(Mutex<VecDeque<ReloadEvent>>);

impl ReloadLog {
    fn push(&self, generation: Option<u64>, ok: bool, message: &str) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == RECENT_RELOADS {
            log.pop_front();
        }
        let message: String = message.chars().take(RELOAD_MESSAGE_CHARS).collect();
        log.push_back(ReloadEvent { at: Instant::now(), generation, ok, message });
    }

    /// Newest first.
    pub fn recent(&self) -> Vec<ReloadEvent> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().rev().cloned().collect()
    }
}
