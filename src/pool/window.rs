//! Sliding one-minute counters (requests and tokens per minute), in one-second
//! buckets: cheap to update on every request and exact enough for rpm/tpm.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BUCKETS: usize = 60;
/// The span the counters cover.
pub const WINDOW: Duration = Duration::from_secs(BUCKETS as u64);

/// Counts of the last 60 seconds.
#[derive(Debug, Clone)]
pub struct MinuteWindow {
    buckets: [u64; BUCKETS],
    /// The absolute second of the newest bucket written.
    head: u64,
}

impl Default for MinuteWindow {
    fn default() -> Self {
        MinuteWindow { buckets: [0; BUCKETS], head: 0 }
    }
}

/// Seconds since the first call in this process; a monotonic clock for buckets.
fn second(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    now.saturating_duration_since(*EPOCH.get_or_init(Instant::now)).as_secs() + BUCKETS as u64
}

impl MinuteWindow {
    pub fn add(&mut self, now: Instant, n: u64) {
        let s = self.advance(now);
        let bucket = &mut self.buckets[(s % BUCKETS as u64) as usize];
        *bucket = bucket.saturating_add(n);
    }

    /// The total over the last minute.
    pub fn sum(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.total()
    }

    /// When enough of the current count ages out for the total to drop below `limit`.
    pub fn frees_below(&mut self, now: Instant, limit: u64) -> Option<Instant> {
        let s = self.advance(now);
        let mut total = self.total();
        for age in (0..BUCKETS as u64).rev() {
            if total < limit {
                return Some(now);
            }
            let bucket = (s.wrapping_sub(age)) % BUCKETS as u64;
            total = total.saturating_sub(self.buckets[bucket as usize]);
            if total < limit {
                // That bucket leaves the window BUCKETS - age seconds from its start.
                return Some(now + Duration::from_secs(BUCKETS as u64 - age));
            }
        }
        Some(now + WINDOW)
    }

    /// Token counts come from responses: a provider's absurd `usage` must not overflow.
    fn total(&self) -> u64 {
        self.buckets.iter().fold(0, |sum, &n| sum.saturating_add(n))
    }

    fn advance(&mut self, now: Instant) -> u64 {
        let s = second(now);
        if s > self.head {
            let stale = (s - self.head).min(BUCKETS as u64);
            for i in 1..=stale {
                self.buckets[((self.head + i) % BUCKETS as u64) as usize] = 0;
            }
            self.head = s;
        }
        self.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_expire_after_a_minute() {
        let t0 = Instant::now();
        let mut w = MinuteWindow::default();
        w.add(t0, 5);
        w.add(t0 + Duration::from_secs(30), 2);
        assert_eq!(w.sum(t0 + Duration::from_secs(31)), 7);
        assert_eq!(w.sum(t0 + Duration::from_secs(61)), 2);
        assert_eq!(w.sum(t0 + Duration::from_secs(200)), 0);
    }

    #[test]
    fn tells_when_capacity_frees() {
        let t0 = Instant::now();
        let mut w = MinuteWindow::default();
        w.add(t0, 3);
        assert_eq!(w.frees_below(t0, 5), Some(t0));
        let at = w.frees_below(t0, 3).expect("frees eventually");
        assert!(at > t0 + Duration::from_secs(58) && at <= t0 + Duration::from_secs(60), "{:?}", at - t0);
    }
}
