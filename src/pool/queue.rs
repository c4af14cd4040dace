//! The waiting room of an alias: when no endpoint has capacity, requests wait here
//! for the earliest reset, instead of failing at once: higher priorities first, first
//! come first served within one. Low priority never takes the last quarter of the
//! places, so a burst of background work cannot lock interactive requests out.
//!
//! Bounded twice: by how many may wait (more get 429 at once) and by how long one
//! waits (then 429 with `retry-after`).
//!
//! Only one request at a time sleeps for capacity: the one holding the turn. It holds
//! the turn while it waits, never while it tries an endpoint, so a slow upstream
//! answer to the front request does not keep the others from a key that is free. The
//! turn goes to the earliest arrival that asks for it, so a request that comes back
//! after a failed attempt keeps its place ahead of later ones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::state::Priority;
use crate::config::QueueSettings;

/// How often a waiter re-checks when no reset time is known (in-flight caps free
/// up as requests end).
const RECHECK: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct WaitQueue {
    slots: Arc<Semaphore>,
    turn: Arc<Turn>,
    settings: QueueSettings,
}

/// Who may wait for capacity now.
#[derive(Debug, Default)]
struct Turn {
    state: Mutex<TurnState>,
}

#[derive(Debug, Default)]
struct TurnState {
    /// Arrival order: the next place's ticket.
    next_ticket: u64,
    /// The place holding the turn.
    holder: Option<(Priority, u64)>,
    /// Places asking for the turn, by priority then ticket, with what wakes each.
    asking: BTreeMap<(Priority, u64), Arc<Notify>>,
}

impl Turn {
    fn lock(&self) -> MutexGuard<'_, TurnState> {
        // The state is plain values; a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TurnState {
    /// Wakes the earliest place asking, if the turn is free.
    fn wake_next(&self) {
        if self.holder.is_none() {
            if let Some((_, notify)) = self.asking.first_key_value() {
                notify.notify_one();
            }
        }
    }
}

/// A request's place in the queue, from its first wait to its answer.
#[derive(Debug)]
pub struct Place {
    _slot: OwnedSemaphorePermit,
    ticket: u64,
    priority: Priority,
    turn: Arc<Turn>,
    /// When this request stops waiting.
    pub give_up_at: Instant,
}

impl WaitQueue {
    pub fn new(settings: QueueSettings) -> Self {
        WaitQueue { slots: Arc::new(Semaphore::new(settings.max_waiting)), turn: Arc::new(Turn::default()), settings }
    }

    /// Takes a place in the queue, or `None` if it is full. Waiting for the turn
    /// happens in [`Place::wait_for`], bounded by `deadline` and `max_wait`.
    pub fn join(&self, deadline: Instant) -> Option<Place> {
        self.join_as(deadline, Priority::Normal)
    }

    /// [`WaitQueue::join`] for a request of `priority`.
    pub fn join_as(&self, deadline: Instant, priority: Priority) -> Option<Place> {
        let kept = self.settings.max_waiting / 4;
        if priority == Priority::Low && self.slots.available_permits() <= kept {
            return None;
        }
        let slot = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        let now = Instant::now();
        let give_up_at = now.checked_add(self.settings.max_wait).map_or(deadline, |max| deadline.min(max));
        let ticket = {
            let mut state = self.turn.lock();
            let ticket = state.next_ticket;
            state.next_ticket = ticket.wrapping_add(1);
            ticket
        };
        Some(Place { _slot: slot, ticket, priority, turn: Arc::clone(&self.turn), give_up_at })
    }

    /// Requests holding a place now.
    pub fn waiting(&self) -> usize {
        self.settings.max_waiting.saturating_sub(self.slots.available_permits())
    }

    /// Whether a request of higher priority than `priority` is waiting: then this one
    /// must not take capacity ahead of it, and queues instead.
    pub fn waiting_above(&self, priority: Priority) -> bool {
        let state = self.turn.lock();
        state.holder.is_some_and(|(p, _)| p < priority)
            || state.asking.keys().next().is_some_and(|&(p, _)| p < priority)
    }
}

impl Place {
    /// Waits for the turn, then, holding it, sleeps until `ready_at()` (the earliest
    /// known reset, asked once the turn is ours; `None`: re-check soon) and returns
    /// true to say "look again", releasing the turn for the attempt. Returns false,
    /// at once, if that moment is past the time to give up: waiting for it would only
    /// delay the 429.
    pub async fn wait_for(&self, ready_at: impl FnOnce() -> Option<std::time::Instant>) -> bool {
        let Some(_held) = self.take_turn().await else { return false };
        let now = Instant::now();
        let wake = ready_at().map_or(now + RECHECK, |at| Instant::from_std(at).max(now));
        if wake > self.give_up_at {
            return false;
        }
        tokio::time::sleep_until(wake).await;
        true
    }

    /// The turn, once every earlier arrival asking for it has had it; `None` at
    /// `give_up_at`.
    async fn take_turn(&self) -> Option<HeldTurn<'_>> {
        let notify = Arc::new(Notify::new());
        let key = (self.priority, self.ticket);
        self.turn.lock().asking.insert(key, Arc::clone(&notify));
        let mut asking = Asking { place: self, granted: false };
        loop {
            {
                let mut state = self.turn.lock();
                let first = state.asking.first_key_value().map(|(&key, _)| key);
                if state.holder.is_none() && first == Some(key) {
                    state.asking.remove(&key);
                    state.holder = Some(key);
                    asking.granted = true;
                    return Some(HeldTurn(self));
                }
            }
            // A wake-up sent before this wait starts is kept by the `Notify`.
            if tokio::time::timeout_at(self.give_up_at, notify.notified()).await.is_err() {
                return None;
            }
        }
    }
}

/// A place asking for the turn; dropped without it (timed out, or the client left)
/// it stops asking, and passes on a wake-up it may have swallowed.
struct Asking<'a> {
    place: &'a Place,
    granted: bool,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        if !self.granted {
            let mut state = self.place.turn.lock();
            state.asking.remove(&(self.place.priority, self.place.ticket));
            state.wake_next();
        }
    }
}

/// The turn, held while its place sleeps for capacity.
struct HeldTurn<'a>(&'a Place);

impl Drop for HeldTurn<'_> {
    fn drop(&mut self) {
        let mut state = self.0.turn.lock();
        state.holder = None;
        state.wake_next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(max_waiting: usize, max_wait_secs: u64) -> Arc<WaitQueue> {
        Arc::new(WaitQueue::new(QueueSettings {
            max_waiting,
            max_wait: Duration::from_secs(max_wait_secs),
            ..Default::default()
        }))
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(600)
    }

    /// A reset `secs` from now on the (paused) test clock.
    fn in_secs(secs: u64) -> Option<std::time::Instant> {
        Some((Instant::now() + Duration::from_secs(secs)).into_std())
    }

    #[tokio::test(start_paused = true)]
    async fn bounded() {
        let q = queue(2, 5);
        let first = q.join(far()).expect("room for two");
        let _second = q.join(far()).expect("room for two");
        assert!(q.join(far()).is_none(), "third finds the queue full");
        drop(first);
        assert!(q.join(far()).is_some(), "a place frees up when its request ends");
    }

    #[tokio::test(start_paused = true)]
    async fn the_turn_is_held_while_waiting_only_not_while_attempting() {
        let q = queue(4, 30);
        let (front, behind) = (q.join(far()).unwrap(), q.join(far()).unwrap());
        let started = Instant::now();
        let front_waits = front.wait_for(|| in_secs(2));
        let behind_waits = tokio::spawn(async move { behind.wait_for(|| in_secs(0)).await });
        assert!(front_waits.await);
        // `front` now tries an endpoint and its place stays alive meanwhile: the one
        // behind it gets the turn at once, not when that attempt ends.
        assert!(behind_waits.await.unwrap());
        assert_eq!(Instant::now(), started + Duration::from_secs(2), "no wait behind an attempt");
        drop(front);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_take_turns_in_arrival_order() {
        let q = queue(8, 60);
        let places: Vec<Arc<Place>> = (0..3).map(|_| Arc::new(q.join(far()).unwrap())).collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        // The latest arrival holds the turn first (the others were attempting).
        let holder = Arc::clone(&places[2]);
        let held = tokio::spawn(async move { holder.wait_for(|| in_secs(5)).await });
        tokio::task::yield_now().await;
        // Then the middle one asks, then the first one, back from a failed attempt.
        let mut tasks = Vec::new();
        for i in [1, 0] {
            let (place, order) = (Arc::clone(&places[i]), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                assert!(place.wait_for(|| in_secs(1)).await);
                order.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        assert!(held.await.unwrap());
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1], "the earliest arrival goes first");
    }

    #[tokio::test(start_paused = true)]
    async fn higher_priorities_take_the_turn_first_fifo_within_one() {
        let q = queue(8, 60);
        let holder = q.join(far()).unwrap();
        let held = tokio::spawn(async move { holder.wait_for(|| in_secs(5)).await });
        tokio::task::yield_now().await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in
            [("low1", Priority::Low), ("normal", Priority::Normal), ("low2", Priority::Low), ("high", Priority::High)]
        {
            let place = q.join_as(far(), priority).unwrap();
            let order = Arc::clone(&order);
            tasks.push(tokio::spawn(async move {
                assert!(place.wait_for(|| in_secs(1)).await);
                order.lock().unwrap().push(name);
            }));
            tokio::task::yield_now().await;
        }
        assert!(q.waiting_above(Priority::Normal), "a high one waits");
        assert!(held.await.unwrap());
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["high", "normal", "low1", "low2"]);
        assert!(!q.waiting_above(Priority::Low));
    }

    #[tokio::test(start_paused = true)]
    async fn low_priority_never_takes_the_last_quarter_of_the_places() {
        let q = queue(8, 60);
        let lows: Vec<Place> = (0..6).filter_map(|_| q.join_as(far(), Priority::Low)).collect();
        assert_eq!(lows.len(), 6, "two of eight places are kept");
        assert!(q.join_as(far(), Priority::High).is_some());
        assert!(q.join_as(far(), Priority::Normal).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_leaves_does_not_strand_the_turn() {
        let q = queue(8, 60);
        let (holder, leaver, stayer) = (q.join(far()).unwrap(), q.join(far()).unwrap(), q.join(far()).unwrap());
        let holds = tokio::spawn(async move { holder.wait_for(|| in_secs(3)).await });
        tokio::task::yield_now().await;
        let leaves = tokio::spawn(async move { leaver.wait_for(|| in_secs(0)).await });
        tokio::task::yield_now().await;
        let stays = tokio::spawn(async move { stayer.wait_for(|| in_secs(0)).await });
        tokio::task::yield_now().await;
        // The leaver is ahead of the stayer; it goes away while waiting.
        leaves.abort();
        assert!(leaves.await.is_err());
        assert!(holds.await.unwrap());
        assert!(stays.await.unwrap(), "the turn reached the next waiter");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_wait() {
        let q = queue(4, 2);
        let place = q.join(far()).unwrap();
        let started = Instant::now();
        assert!(!place.wait_for(|| in_secs(30)).await, "a reset after max_wait is not waited for");
        assert_eq!(Instant::now(), started, "and no time was spent waiting");
        assert!(place.wait_for(|| in_secs(1)).await);
        assert!(Instant::now() >= started + Duration::from_secs(1));

        // Waiting for the turn counts too.
        let q = queue(4, 60);
        let front = q.join(far()).unwrap();
        let behind = q.join(Instant::now() + Duration::from_secs(2)).unwrap();
        let front_waits = tokio::spawn(async move { front.wait_for(|| in_secs(10)).await });
        tokio::task::yield_now().await;
        let asked = Instant::now();
        assert!(!behind.wait_for(|| in_secs(0)).await, "the turn did not come before giving up");
        assert_eq!(Instant::now(), asked + Duration::from_secs(2));
        assert!(front_waits.await.unwrap());
    }
}
