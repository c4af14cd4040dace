//! The last 15 minutes of one endpoint, for `/status/history` and the `/ui` charts: a
//! fixed ring of [`BUCKETS`] slots of [`BUCKET`] each, so memory per key is constant
//! ([`History::BYTES`]: 7,712 bytes on 64-bit Linux) however much traffic passes, and a key that
//! goes quiet costs nothing to keep.
//!
//! Buckets count from the ring's own origin (an `Instant`), never from the wall
//! clock: which bucket a moment falls in depends only on the instants the caller
//! passes, so tests drive it with made-up instants. A slot remembers its bucket
//! number; one written for a bucket that has left the window is reset before reuse,
//! and readers skip slots older than the window.
//!
//! Lives in the endpoint's state, so it survives reloads with the rest of it. Fed by
//! the request path where it records attempts, answers, failures and usage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::provider::ratelimit::RateLimitReport;

/// One slot's span.
pub const BUCKET: Duration = Duration::from_secs(15);
/// Slots kept: `BUCKETS x BUCKET` = 15 minutes.
pub const BUCKETS: usize = 60;

/// Latency classes: class `i` holds answers up to `10 ms x 2^(i/2)`; the last one
/// everything slower (about 29 s and up). A percentile is reported as its class's
/// upper bound, so within a factor of 1.41.
const LATENCY_CLASSES: usize = 24;
const LATENCY_BASE_MS: f64 = 10.0;

/// A quota figure the provider did not report in that bucket.
const UNREPORTED: u64 = u64::MAX;

/// Totals of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Bucket number since the origin; `u32::MAX`: never written. 2^32 buckets of
    /// 15 s is over 2,000 years.
    bucket: u32,
    requests: u32,
    rate_limited: u32,
    failures: u32,
    refused: u32,
    input_tokens: u64,
    output_tokens: u64,
    /// In units of 10^-9 USD.
    cost_nanos: u64,
    /// The provider's last report in the bucket (`UNREPORTED` if none).
    remaining_requests: u64,
    limit_requests: u64,
    remaining_tokens: u64,
    limit_tokens: u64,
    latency: [u16; LATENCY_CLASSES],
}

impl Slot {
    const EMPTY: Slot = Slot {
        bucket: u32::MAX,
        requests: 0,
        rate_limited: 0,
        failures: 0,
        refused: 0,
        input_tokens: 0,
        output_tokens: 0,
        cost_nanos: 0,
        remaining_requests: UNREPORTED,
        limit_requests: UNREPORTED,
        remaining_tokens: UNREPORTED,
        limit_tokens: UNREPORTED,
        latency: [0; LATENCY_CLASSES],
    };
}

#[derive(Debug)]
struct Ring {
    origin: Instant,
    slots: [Slot; BUCKETS],
}

impl Ring {
    fn bucket_of(&self, at: Instant) -> u32 {
        let since = at.saturating_duration_since(self.origin).as_millis() / BUCKET.as_millis();
        u32::try_from(since).unwrap_or(u32::MAX - 1)
    }

    /// The slot for `at`, reset first if it still holds an older bucket.
    fn slot(&mut self, at: Instant) -> &mut Slot {
        let bucket = self.bucket_of(at);
        let slot = &mut self.slots[bucket as usize % BUCKETS];
        if slot.bucket != bucket {
            // A late record for a bucket already overwritten by a newer one is dropped
            // into that newer one rather than erasing it.
            if slot.bucket == u32::MAX || slot.bucket < bucket {
                *slot = Slot { bucket, ..Slot::EMPTY };
            }
        }
        slot
    }
}

// The memory per key the README states: checked when compiling.
const _: () = assert!(History::BYTES < 8 * 1024);

/// One endpoint's recent past, plus its lifetime cost.
#[derive(Debug)]
pub struct History {
    ring: Mutex<Ring>,
    /// Lifetime cost in 10^-9 USD (`keyrelay_cost_usd_total`, `/status`).
    cost_nanos_total: AtomicU64,
}

impl Default for History {
    fn default() -> Self {
        History::starting_at(Instant::now())
    }
}

/// One bucket as served, oldest first in [`History::series`].
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub requests: u32,
    pub rate_limited: u32,
    pub failures: u32,
    pub refused: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub latency_p50: Option<Duration>,
    pub latency_p95: Option<Duration>,
    pub remaining_requests: Option<u64>,
    pub limit_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub limit_tokens: Option<u64>,
}

/// The window as served: [`BUCKETS`] points, the last one the bucket under way.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub points: Vec<Point>,
    /// How far into its bucket the last point is (its requests per minute are
    /// over this span, not a whole bucket).
    pub current_elapsed: Duration,
}

impl History {
    /// What one endpoint's history holds in memory, in bytes.
    pub const BYTES: usize = std::mem::size_of::<History>();

    pub fn starting_at(origin: Instant) -> Self {
        History {
            ring: Mutex::new(Ring { origin, slots: [Slot::EMPTY; BUCKETS] }),
            cost_nanos_total: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // Plain counters: a panic elsewhere cannot leave them inconsistent.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An attempt went out.
    pub fn on_attempt(&self, at: Instant) {
        let mut ring = self.lock();
        let slot = ring.slot(at);
        slot.requests = slot.requests.saturating_add(1);
    }

    /// A response head arrived after `latency`, with the provider's quota report.
    pub fn on_answer(&self, at: Instant, latency: Duration, quota: Quota) {
        let mut ring = self.lock();
        let slot = ring.slot(at);
        let class = latency_class(latency);
        slot.latency[class] = slot.latency[class].saturating_add(1);
        let set = |field: &mut u64, value: Option<u64>| {
            if let Some(v) = value {
                *field = v.min(UNREPORTED - 1);
            }
        };
        set(&mut slot.remaining_requests, quota.remaining_requests);
        set(&mut slot.limit_requests, quota.limit_requests);
        set(&mut slot.remaining_tokens, quota.remaining_tokens);
        set(&mut slot.limit_tokens, quota.limit_tokens);
    }

    /// A 429 from this key (absorbed by a retry, or passed on when none was left).
    pub fn on_rate_limited(&self, at: Instant) {
        let mut ring = self.lock();
        let slot = ring.slot(at);
        slot.rate_limited = slot.rate_limited.saturating_add(1);
    }

    /// A 5xx, connect error or timeout.
    pub fn on_failure(&self, at: Instant) {
        let mut ring = self.lock();
        let slot = ring.slot(at);
        slot.failures = slot.failures.saturating_add(1);
    }

    /// The provider refused the key itself.
    pub fn on_refused(&self, at: Instant) {
        let mut ring = self.lock();
        let slot = ring.slot(at);
        slot.refused = slot.refused.saturating_add(1);
    }

    /// A response's usage and what it cost (`None`: no price known).
    pub fn on_usage(&self, at: Instant, input: u64, output: u64, cost_usd: Option<f64>) {
        let nanos = cost_usd.map_or(0, usd_to_nanos);
        self.cost_nanos_total.fetch_add(nanos, Ordering::Relaxed);
        let mut ring = self.lock();
        let slot = ring.slot(at);
        slot.input_tokens = slot.input_tokens.saturating_add(input);
        slot.output_tokens = slot.output_tokens.saturating_add(output);
        slot.cost_nanos = slot.cost_nanos.saturating_add(nanos);
    }

    /// Everything this endpoint cost since its state was created, in USD.
    pub fn cost_usd_total(&self) -> f64 {
        nanos_to_usd(self.cost_nanos_total.load(Ordering::Relaxed))
    }

    /// The window ending at `now`, oldest bucket first; buckets without traffic are
    /// zeros.
    pub fn series(&self, now: Instant) -> Series {
        let ring = self.lock();
        let current = ring.bucket_of(now);
        // Before the origin there was nothing: those buckets are zeros too.
        let points = (0..BUCKETS as u32)
            .rev()
            .map(|back| match current.checked_sub(back) {
                Some(bucket) if ring.slots[bucket as usize % BUCKETS].bucket == bucket => {
                    point(&ring.slots[bucket as usize % BUCKETS])
                }
                _ => point(&Slot::EMPTY),
            })
            .collect();
        let into_current = now.saturating_duration_since(ring.origin).as_millis() % BUCKET.as_millis();
        let current_elapsed = Duration::from_millis(u64::try_from(into_current).unwrap_or(0));
        Series { points, current_elapsed }
    }
}

/// The provider's rate-limit figures from one response.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quota {
    pub remaining_requests: Option<u64>,
    pub limit_requests: Option<u64>,
    pub remaining_tokens: Option<u64>,
    pub limit_tokens: Option<u64>,
}

impl From<&RateLimitReport> for Quota {
    fn from(report: &RateLimitReport) -> Self {
        Quota {
            remaining_requests: report.remaining_requests,
            limit_requests: report.limit_requests,
            remaining_tokens: report.remaining_tokens,
            limit_tokens: report.limit_tokens,
        }
    }
}

fn point(slot: &Slot) -> Point {
    let reported = |v: u64| (v != UNREPORTED).then_some(v);
    Point {
        requests: slot.requests,
        rate_limited: slot.rate_limited,
        failures: slot.failures,
        refused: slot.refused,
        input_tokens: slot.input_tokens,
        output_tokens: slot.output_tokens,
        cost_usd: nanos_to_usd(slot.cost_nanos),
        latency_p50: percentile(&slot.latency, 0.50),
        latency_p95: percentile(&slot.latency, 0.95),
        remaining_requests: reported(slot.remaining_requests),
        limit_requests: reported(slot.limit_requests),
        remaining_tokens: reported(slot.remaining_tokens),
        limit_tokens: reported(slot.limit_tokens),
    }
}

fn class_bound(class: usize) -> Duration {
    let ms = LATENCY_BASE_MS * 2f64.powf(class as f64 / 2.0);
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX)
}

fn latency_class(latency: Duration) -> usize {
    (0..LATENCY_CLASSES - 1).find(|&c| latency <= class_bound(c)).unwrap_or(LATENCY_CLASSES - 1)
}

/// The upper bound of the class holding the `q` quantile, `None` without samples.
fn percentile(classes: &[u16; LATENCY_CLASSES], q: f64) -> Option<Duration> {
    let total: u64 = classes.iter().map(|&n| u64::from(n)).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (class, &n) in classes.iter().enumerate() {
        seen += u64::from(n);
        if seen >= rank {
            return Some(class_bound(class));
        }
    }
    Some(class_bound(LATENCY_CLASSES - 1))
}

fn usd_to_nanos(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        // `as` saturates at u64::MAX.
        (usd * 1e9).round() as u64
    } else {
        0
    }
}

fn nanos_to_usd(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn memory_per_key_is_fixed_and_small() {
        eprintln!("history per key: {} bytes", History::BYTES);
        let h = History::starting_at(Instant::now());
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            h.on_attempt(t0 + Duration::from_secs(i));
        }
        // Nothing grows: the ring is an array, the series always BUCKETS long.
        assert_eq!(h.series(t0 + Duration::from_secs(10_000)).points.len(), BUCKETS);
    }

    #[test]
    fn records_land_in_their_bucket_by_the_instants_given() {
        let t0 = Instant::now();
        let h = History::starting_at(t0);
        h.on_attempt(t0);
        h.on_attempt(t0 + BUCKET - Duration::from_millis(1));
        h.on_attempt(t0 + BUCKET);
        h.on_rate_limited(t0 + BUCKET);
        let s = h.series(t0 + BUCKET + 3 * S);
        let n = s.points.len();
        assert_eq!(n, BUCKETS);
        assert_eq!(s.points[n - 2].requests, 2);
        assert_eq!(s.points[n - 1].requests, 1);
        assert_eq!(s.points[n - 1].rate_limited, 1);
        assert_eq!(s.current_elapsed, 3 * S);
        assert!(s.points[..n - 2].iter().all(|p| p.requests == 0));
    }

    #[test]
    fn the_window_rolls_over_and_old_slots_are_reset() {
        let t0 = Instant::now();
        let h = History::starting_at(t0);
        h.on_attempt(t0);
        h.on_usage(t0, 10, 5, Some(0.5));
        // Still inside the window at its far edge.
        let edge = t0 + BUCKET * (BUCKETS as u32 - 1);
        assert_eq!(h.series(edge).points[0].requests, 1);
        // One bucket later it has left the window, though its slot was not rewritten.
        let out = edge + BUCKET;
        assert!(h.series(out).points.iter().all(|p| p.requests == 0 && p.input_tokens == 0));
        // Writing into the same slot a full turn later starts from zero.
        h.on_attempt(t0 + BUCKET * BUCKETS as u32);
        let s = h.series(t0 + BUCKET * BUCKETS as u32);
        assert_eq!(s.points[BUCKETS - 1].requests, 1);
        assert_eq!(s.points[BUCKETS - 1].cost_usd, 0.0);
        assert_eq!(h.cost_usd_total(), 0.5, "the lifetime total keeps what the window dropped");
    }

    #[test]
    fn a_late_record_does_not_erase_a_newer_bucket() {
        let t0 = Instant::now();
        let h = History::starting_at(t0);
        let later = t0 + BUCKET * BUCKETS as u32;
        h.on_attempt(later);
        h.on_attempt(t0);
        assert_eq!(h.series(later).points[BUCKETS - 1].requests, 2);
        // Instants before the origin count in the first bucket.
        let early = History::starting_at(t0 + S);
        early.on_attempt(t0);
        assert_eq!(early.series(t0 + S).points[BUCKETS - 1].requests, 1);
    }

    #[test]
    fn percentiles_quota_and_cost_per_bucket() {
        let t0 = Instant::now();
        let h = History::starting_at(t0);
        for ms in [20u64, 20, 20, 20, 20, 20, 20, 20, 20, 900] {
            h.on_answer(t0, Duration::from_millis(ms), Quota::default());
        }
        let quota = Quota { remaining_requests: Some(7), limit_requests: Some(10), ..Quota::default() };
        h.on_answer(t0 + S, Duration::from_millis(20), quota);
        h.on_usage(t0, 1000, 500, Some(0.0025));
        h.on_usage(t0, 1, 1, None);
        let p = h.series(t0 + 2 * S).points.pop().unwrap_or_else(|| panic!("no point"));
        let p50 = p.latency_p50.unwrap_or_default();
        assert!(p50 >= Duration::from_millis(20) && p50 < Duration::from_millis(29), "{p50:?}");
        let p95 = p.latency_p95.unwrap_or_default();
        assert!(p95 >= Duration::from_millis(900) && p95 < Duration::from_millis(1300), "{p95:?}");
        assert_eq!((p.remaining_requests, p.limit_requests, p.remaining_tokens), (Some(7), Some(10), None));
        assert_eq!((p.input_tokens, p.output_tokens), (1001, 501));
        assert!((p.cost_usd - 0.0025).abs() < 1e-12);
        assert!((h.cost_usd_total() - 0.0025).abs() < 1e-12);
        assert_eq!(h.series(t0 + 2 * S).points[0].latency_p50, None);
    }

    #[test]
    fn outside_numbers_saturate() {
        let t0 = Instant::now();
        let h = History::starting_at(t0);
        h.on_usage(t0, u64::MAX, u64::MAX, Some(f64::MAX));
        h.on_usage(t0, u64::MAX, 1, Some(f64::NAN));
        h.on_answer(t0, Duration::MAX, Quota { remaining_requests: Some(u64::MAX), ..Quota::default() });
        let p = h.series(t0).points.pop().unwrap_or_else(|| panic!("no point"));
        assert_eq!(p.input_tokens, u64::MAX);
        assert!(p.latency_p95.is_some());
        assert_eq!(p.remaining_requests, Some(u64::MAX - 1));
        // Far-future instants neither panic nor wrap.
        h.on_attempt(t0 + Duration::from_secs(u64::from(u32::MAX) * 100));
    }
}
