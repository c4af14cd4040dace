//! The accept loop: cap, back-off, and the drain on shutdown. Connection tasks live in
//! a `JoinSet` owned by [`serve`], so dropping its future (the mock aborts its task)
//! closes every connection too, and none outlives the drain grace.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::connection::{self, Builders, Shared};
use super::{ConnectionStats, Settings};

/// Accept errors (usually out of file descriptors) are retried after this, doubling
/// up to [`MAX_BACKOFF`]; the pending connection waits in the kernel's backlog.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning per this per listener and kind (accept errors, refusals).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Serves `listener` with `service` until `shutdown` resolves; then stops accepting,
/// lets open requests finish for up to `settings.drain_grace`, and cuts the rest.
pub async fn serve<S, B>(listener: TcpListener, settings: Settings, service: S, shutdown: impl Future<Output = ()>)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let name = settings.name;
    let (grace, stats, cap) = (settings.drain_grace, Arc::clone(&settings.stats), settings.max_connections);
    let permits = Arc::new(Semaphore::new(cap.min(Semaphore::MAX_PERMITS)));
    let shared = Arc::new(Shared { builders: Builders::new(&settings), settings, service });
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut backoff = Backoff::default();
    let mut accept_errors = Throttle::default();
    let mut refusals = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    backoff = Backoff::default();
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        // Closed at once: a flood must not take descriptors from other listeners.
                        drop(stream);
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        if let Some(refused) = refusals.hit() {
                            tracing::warn!(listener = name, max_connections = cap, refused,
                                "connection limit reached: closing new connections");
                        }
                        continue;
                    };
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    let open = Open::new(&stats);
                    let (shared, drain) = (Arc::clone(&shared), drain_rx.clone());
                    connections.spawn(async move {
                        let _open = open;
                        connection::run(stream, shared, drain, permit).await;
                    });
                }
                Err(e) => {
                    let pause = backoff.next();
                    if let Some(errors) = accept_errors.hit() {
                        tracing::warn!(listener = name, error = %e, errors, retry_in_ms = millis(pause),
                            "accept failed");
                    }
                    tokio::time::sleep(pause).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!(listener = name, error = %e, "connection task panicked");
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = drain_tx.send(true);
    let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    match drained {
        Ok(()) => tracing::info!(listener = name, "all connections drained"),
        Err(_) => tracing::warn!(
            listener = name,
            grace_ms = millis(grace),
            open = connections.len(),
            "grace period over with requests still open"
        ),
    }
    // Dropping the set cuts whatever is still open.
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Counts a connection as open until its task ends or is cut.
struct Open(Arc<ConnectionStats>);

impl Open {
    fn new(stats: &Arc<ConnectionStats>) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Open(Arc::clone(stats))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pause before the next `accept` after an error: doubling, capped.
#[derive(Debug)]
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(FIRST_BACKOFF)
    }
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = self.0;
        self.0 = self.0.saturating_mul(2).min(MAX_BACKOFF);
        pause
    }
}

/// Lets one log line through per [`LOG_EVERY`], counting the events in between.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    events: u64,
}

impl Throttle {
    /// Counts an event; `Some(events since the last line)` when a line is due.
    fn hit(&mut self) -> Option<u64> {
        self.events = self.events.saturating_add(1);
        let now = Instant::now();
        if self.last.is_some_and(|last| now.saturating_duration_since(last) < LOG_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_up_to_its_cap() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u64> = (0..10).map(|_| millis(backoff.next())).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_log_counts_what_it_held_back() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.hit(), Some(1), "the first event is logged");
        for _ in 0..99 {
            assert_eq!(throttle.hit(), None);
        }
        tokio::time::advance(LOG_EVERY).await;
        assert_eq!(throttle.hit(), Some(100), "the next line carries the 99 held back and itself");
        assert_eq!(throttle.hit(), None);
    }
}
