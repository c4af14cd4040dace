//! The waiting room of an alias: when no endpoint has capacity, requests wait here,
//! first come first served, for the earliest reset, instead of failing at once.
//!
//! Bounded twice: by how many may wait (more get 429 at once) and by how long one
//! waits (then 429 with `retry-after`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::QueueSettings;

/// How often a waiter re-checks when no reset time is known (in-flight caps free
/// up as requests end).
const RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct WaitQueue {
    slots: Arc<Semaphore>,
    /// Tokio's mutex is fair: waiters get their turn in arrival order.
    turn: Arc<Mutex<()>>,
    settings: QueueSettings,
}

/// A request's place in the queue; holding it keeps later waiters behind.
#[derive(Debug)]
pub struct Place {
    _slot: OwnedSemaphorePermit,
    _turn: OwnedMutexGuard<()>,
    /// When this request stops waiting.
    pub give_up_at: Instant,
}

impl WaitQueue {
    pub fn new(settings: QueueSettings) -> Self {
        WaitQueue { slots: Arc::new(Semaphore::new(settings.max_waiting)), turn: Arc::new(Mutex::new(())), settings }
    }

    /// Joins the queue and waits for the front. `None` if the queue is full or the
    /// turn did not come before `deadline`.
    pub async fn join(&self, deadline: Instant) -> Option<Place> {
        let slot = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        let give_up_at = deadline.min(Instant::now() + self.settings.max_wait);
        let turn = tokio::time::timeout_at(give_up_at, Arc::clone(&self.turn).lock_owned()).await.ok()?;
        Some(Place { _slot: slot, _turn: turn, give_up_at })
    }
}

impl Place {
    /// Sleeps until `ready_at` (the earliest known reset; `None`: re-check soon) and
    /// returns true to say "look again". Returns false at once if that moment is
    /// past the time to give up: waiting for it would only delay the 429.
    pub async fn wait_for(&self, ready_at: Option<std::time::Instant>) -> bool {
        let now = Instant::now();
        let wake = ready_at.map_or(now + RECHECK, |at| Instant::from_std(at).max(now));
        if wake > self.give_up_at {
            return false;
        }
        tokio::time::sleep_until(wake).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bounded_and_first_come_first_served() {
        let q = WaitQueue::new(QueueSettings { max_waiting: 2, max_wait: Duration::from_secs(5) });
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = q.join(deadline).await.expect("first gets the turn");
        let q = Arc::new(q);
        let q2 = Arc::clone(&q);
        let second = tokio::spawn(async move { q2.join(deadline).await.is_some() });
        tokio::task::yield_now().await;
        assert!(q.join(deadline).await.is_none(), "third finds the queue full");
        drop(first);
        assert!(second.await.unwrap(), "second gets the turn after the first leaves");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_wait() {
        let q = WaitQueue::new(QueueSettings { max_waiting: 4, max_wait: Duration::from_secs(2) });
        let place = q.join(Instant::now() + Duration::from_secs(60)).await.unwrap();
        let far = std::time::Instant::now() + Duration::from_secs(30);
        let started = Instant::now();
        assert!(!place.wait_for(Some(far)).await, "a reset after max_wait is not waited for");
        assert_eq!(Instant::now(), started, "and no time was spent waiting");
        let near = std::time::Instant::now() + Duration::from_secs(1);
        assert!(place.wait_for(Some(near)).await);
        assert!(Instant::now() >= started + Duration::from_secs(1));
    }
}
