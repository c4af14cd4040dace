//! Selection strategies behind one small trait.
//!
//! A strategy sees only what it needs about the endpoints that are available right
//! now and returns the order to try them in. Filtering (cooldown, capacity, API
//! kind) and preference (priority, region) happen outside, in [`super::Route`], so
//! every strategy gets them for free.

use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rand::{Rng, RngCore};

use crate::config::Strategy;

/// What a strategy may look at for one available endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CandidateView {
    /// Position of the endpoint in its route (stable for the snapshot's life).
    pub index: usize,
    pub weight: u32,
    pub in_flight: u32,
    /// EWMA of time to response headers; `None` before the first response.
    pub latency: Option<std::time::Duration>,
    /// Fraction (0..=1) of the tightest known quota left: configured rpm/tpm and the
    /// provider's reported remaining requests and tokens.
    pub headroom: f64,
}

/// Orders available endpoints, best first.
pub trait Select: Send + Sync + Debug {
    /// Returns positions into `candidates`, each exactly once.
    fn order(&self, candidates: &[CandidateView], rng: &mut dyn RngCore) -> Vec<usize>;
}

/// The selector for a strategy, sized for a route of `endpoints` endpoints.
pub fn for_strategy(strategy: Strategy, endpoints: usize) -> Box<dyn Select> {
    match strategy {
        Strategy::RoundRobin => Box::new(RoundRobin::default()),
        Strategy::Weighted => Box::new(SmoothWeighted::new(endpoints)),
        Strategy::LeastBusy => Box::new(LeastBusy),
        Strategy::Latency => Box::new(Latency),
        Strategy::Usage => Box::new(Usage),
    }
}

/// Random order, then a stable sort by `key`: ties are broken at random so equal
/// endpoints share the load instead of the first one taking it all.
fn shuffled_by<K: Ord>(
    candidates: &[CandidateView],
    rng: &mut dyn RngCore,
    key: impl Fn(&CandidateView) -> K,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    order.sort_by_key(|&pos| key(&candidates[pos]));
    order
}

/// Lowest latency (EWMA of time to headers) first. Endpoints with no sample yet come
/// first, so every endpoint gets measured.
#[derive(Debug, Default)]
pub struct Latency;

impl Select for Latency {
    fn order(&self, candidates: &[CandidateView], rng: &mut dyn RngCore) -> Vec<usize> {
        shuffled_by(candidates, rng, |c| c.latency.unwrap_or_default())
    }
}

/// Most headroom first: the endpoint with the largest share of its quota left (by
/// configured rpm/tpm and the provider's own rate-limit headers), ties by fewer in
/// flight, then at random. Spent endpoints never get here: the route filters them.
#[derive(Debug, Default)]
pub struct Usage;

impl Select for Usage {
    fn order(&self, candidates: &[CandidateView], rng: &mut dyn RngCore) -> Vec<usize> {
        // Headroom in thousandths, so float noise does not decide between equals.
        shuffled_by(candidates, rng, |c| (std::cmp::Reverse((c.headroom * 1000.0).round() as i64), c.in_flight))
    }
}

/// Each request starts one endpoint further along; retries continue around the ring.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl Select for RoundRobin {
    fn order(&self, candidates: &[CandidateView], _rng: &mut dyn RngCore) -> Vec<usize> {
        let n = candidates.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (start..n).chain(0..start).collect()
    }
}

/// nginx's smooth weighted round-robin: over any window of `sum(weights)` picks each
/// endpoint is chosen `weight` times, interleaved rather than in bursts.
#[derive(Debug)]
pub struct SmoothWeighted {
    current: Mutex<Vec<i64>>,
}

impl SmoothWeighted {
    pub fn new(endpoints: usize) -> Self {
        Self { current: Mutex::new(vec![0; endpoints]) }
    }
}

impl Select for SmoothWeighted {
    fn order(&self, candidates: &[CandidateView], _rng: &mut dyn RngCore) -> Vec<usize> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        for c in candidates {
            if let Some(w) = current.get_mut(c.index) {
                *w += i64::from(c.weight);
                total += i64::from(c.weight);
            }
        }
        let weight_of = |pos: usize| current.get(candidates[pos].index).copied().unwrap_or(i64::MIN);
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        // Highest current weight first; ties keep route order so results are stable.
        order.sort_by_key(|&pos| std::cmp::Reverse(weight_of(pos)));
        if let Some(&best) = order.first() {
            if let Some(w) = current.get_mut(candidates[best].index) {
                *w -= total;
            }
        }
        order
    }
}

/// Power of two choices on requests in flight: sample two, take the less busy, and
/// order the rest by in-flight count.
#[derive(Debug, Default)]
pub struct LeastBusy;

impl Select for LeastBusy {
    fn order(&self, candidates: &[CandidateView], rng: &mut dyn RngCore) -> Vec<usize> {
        let n = candidates.len();
        let mut order: Vec<usize> = (0..n).collect();
        if n < 2 {
            return order;
        }
        let a = rng.random_range(0..n);
        let b = (a + rng.random_range(1..n)) % n;
        let first = if candidates[b].in_flight < candidates[a].in_flight { b } else { a };
        order.swap(0, first);
        order[1..].sort_by_key(|&pos| candidates[pos].in_flight);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn views(weights: &[u32]) -> Vec<CandidateView> {
        weights
            .iter()
            .enumerate()
            .map(|(index, &weight)| CandidateView { index, weight, in_flight: 0, latency: None, headroom: 1.0 })
            .collect()
    }

    #[test]
    fn usage_prefers_headroom_and_spreads_ties() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut v = views(&[1, 1, 1]);
        v[0].headroom = 0.2;
        v[1].headroom = 0.9;
        v[2].headroom = 0.5;
        assert_eq!(Usage.order(&v, &mut rng), [1, 2, 0]);
        let v = views(&[1, 1, 1]);
        let mut firsts = [0; 3];
        for _ in 0..300 {
            firsts[Usage.order(&v, &mut rng)[0]] += 1;
        }
        assert!(firsts.iter().all(|&n| n > 60), "{firsts:?}");
    }

    #[test]
    fn latency_prefers_fast_and_unmeasured() {
        let mut rng = SmallRng::seed_from_u64(4);
        let mut v = views(&[1, 1, 1]);
        v[0].latency = Some(std::time::Duration::from_millis(300));
        v[1].latency = Some(std::time::Duration::from_millis(100));
        assert_eq!(Latency.order(&v, &mut rng), [2, 1, 0]);
    }

    #[test]
    fn round_robin_rotates_and_covers_all() {
        let rr = RoundRobin::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let v = views(&[1, 1, 1]);
        assert_eq!(rr.order(&v, &mut rng), [0, 1, 2]);
        assert_eq!(rr.order(&v, &mut rng), [1, 2, 0]);
        assert_eq!(rr.order(&v, &mut rng), [2, 0, 1]);
        assert!(rr.order(&[], &mut rng).is_empty());
    }

    #[test]
    fn smooth_weighted_honours_weights_and_interleaves() {
        let sw = SmoothWeighted::new(3);
        let mut rng = SmallRng::seed_from_u64(1);
        let v = views(&[5, 1, 1]);
        let firsts: Vec<usize> = (0..7).map(|_| sw.order(&v, &mut rng)[0]).collect();
        assert_eq!(firsts.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(firsts.iter().filter(|&&i| i == 1).count(), 1);
        // nginx's sequence for 5/1/1: a a b a c a a
        assert_eq!(firsts, [0, 0, 1, 0, 2, 0, 0]);
        for _ in 0..50 {
            let mut o = sw.order(&v, &mut rng);
            o.sort_unstable();
            assert_eq!(o, [0, 1, 2]);
        }
    }

    #[test]
    fn least_busy_prefers_idle() {
        let lb = LeastBusy;
        let mut rng = SmallRng::seed_from_u64(7);
        let mut v = views(&[1, 1]);
        v[0].in_flight = 10;
        for _ in 0..20 {
            assert_eq!(lb.order(&v, &mut rng)[0], 1);
        }
    }
}
