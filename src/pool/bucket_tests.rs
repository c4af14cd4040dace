use proptest::prelude::*;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A provider enforcing `per_second` requests a second with no burst (GCRA, zero
/// tolerance); its 429 says `limit` (per minute), `remaining: 0` and the reset.
struct NoBurst {
    per_second: u32,
    next_slot: Option<Instant>,
}

impl NoBurst {
    fn admit(&mut self, at: Instant) -> Result<(), Box<RateLimitReport>> {
        if let Some(slot) = self.next_slot.filter(|&s| s > at) {
            return Err(Box::new(RateLimitReport {
                limit_requests: Some(u64::from(self.per_second) * 60),
                remaining_requests: Some(0),
                reset_requests: Some(slot - at),
                ..Default::default()
            }));
        }
        self.next_slot = Some(at + Duration::from_secs(1) / self.per_second);
        Ok(())
    }
}

/// Offers a request every `every` from `from` to `until` (when the model has room),
/// against `provider`; returns (sent, 429s) after `quiet_after`.
fn drive(
    model: &mut KeyModel,
    provider: &mut NoBurst,
    from: Instant,
    until: Instant,
    every: Duration,
    quiet_after: Instant,
) -> (u32, u32) {
    let (mut sent, mut limited) = (0, 0);
    let mut t = from;
    while t < until {
        if model.room_at(1, t) <= t {
            model.on_send(1, t);
            // The provider sees it 1 ms later, give or take.
            let arrives = t + ms(1);
            if let Err(report) = provider.admit(arrives) {
                model.on_rate_limited(&report, t, t + ms(20));
                if t >= quiet_after {
                    limited += 1;
                }
            }
            if t >= quiet_after {
                sent += 1;
            }
        }
        t += every;
    }
    (sent, limited)
}

#[test]
fn a_bucket_refills_and_tells_when_it_has_room() {
    let t0 = Instant::now();
    let mut b = Bucket::new(2.0, 10.0, t0);
    b.take(1.0, t0);
    b.take(1.0, t0);
    assert_eq!(b.room_at(1.0, t0), t0 + ms(100));
    assert!((b.level(t0 + ms(150)) - 1.5).abs() < 1e-9);
    assert_eq!(b.room_at(50.0, t0 + ms(150)), t0 + ms(200), "a request larger than the bucket waits for full");
    b.give_back(10.0, t0 + ms(150));
    assert_eq!(b.level(t0 + ms(150)), 2.0, "never past full");
}

#[test]
fn a_429_naming_the_limit_holds_the_key_until_its_bucket_has_room() {
    let t0 = Instant::now();
    let mut model = KeyModel::default();
    assert_eq!(model.requests_held_until(t0), None, "nothing known: the model holds nothing");
    let report = RateLimitReport {
        limit_requests: Some(1200),
        remaining_requests: Some(0),
        reset_requests: Some(ms(50)),
        ..RateLimitReport::default()
    };
    model.on_rate_limited(&report, t0, t0);
    let until = model.requests_held_until(t0).expect("drained by the 429");
    assert!(until > t0 && until <= t0 + ms(100), "room within a slot of 20/s: {:?}", until - t0);
    assert_eq!(model.requests_held_until(until), None, "room again at the time it named");
}

#[test]
fn a_burst_free_limit_is_learned_from_the_first_429s() {
    let t0 = Instant::now();
    let mut model = KeyModel::default();
    let mut provider = NoBurst { per_second: 20, next_slot: None };
    // 40 requests a second offered to a key that takes 20, evenly spaced.
    let (sent, limited) = drive(&mut model, &mut provider, t0, t0 + Duration::from_secs(20), ms(5), t0 + ms(500));
    // One probe for more (at most one per PROBE_AFTER) may be refused.
    assert!(limited <= 1, "{limited} 429s after the first half second");
    // 0.9 x 20/s over 19.5 s, on a 5 ms grid.
    assert!(sent >= 300, "it still uses the key: {sent}");
}

#[test]
fn a_lowered_limit_named_by_its_429_is_followed_at_once_and_a_raised_one_within_a_probe() {
    let t0 = Instant::now();
    let mut model = KeyModel::default();
    let mut provider = NoBurst { per_second: 20, next_slot: None };
    drive(&mut model, &mut provider, t0, t0 + Duration::from_secs(5), ms(10), t0);
    provider.per_second = 10;
    let lowered = t0 + Duration::from_secs(5);
    let (_, limited) =
        drive(&mut model, &mut provider, lowered, lowered + Duration::from_secs(10), ms(10), lowered + ms(500));
    assert_eq!(limited, 0, "the next 429's limit header is the new rate");
    let rate = model.requests.bucket(lowered + Duration::from_secs(10)).map(|b| b.rate);
    assert!(rate.is_some_and(|r| r <= 10.0), "{rate:?}");

    provider.per_second = 40;
    let raised = lowered + Duration::from_secs(10);
    let settled = raised + PROBE_AFTER + Duration::from_secs(1);
    let (sent, limited) = drive(&mut model, &mut provider, raised, settled + Duration::from_secs(10), ms(5), settled);
    assert!(limited <= 1, "{limited}");
    assert!(sent >= 300, "the probe found the raised limit: {sent} in 10 s");
}

#[test]
fn token_reservations_settle_to_what_was_used() {
    let t0 = Instant::now();
    let mut model = KeyModel::default();
    model.declare(None, Some(6_000), t0);
    assert_eq!(model.room_at(5_000, t0), t0);
    model.on_send(5_000, t0);
    assert!(model.room_at(5_000, t0) > t0, "the reservation holds the tokens");
    model.settle_tokens(5_000, Some(1_000), t0);
    assert_eq!(model.room_at(5_000, t0), t0, "the unused estimate came back");
    model.on_send(5_000, t0);
    model.settle_tokens(5_000, None, t0);
    assert_eq!(model.room_at(5_000, t0), t0, "a failed request gives all of it back");
    model.on_send(1_000, t0);
    model.settle_tokens(1_000, Some(4_000), t0);
    let level = model.tokens.bucket(t0).map(|b| b.level(t0));
    // 6,000 less the first request's 1,000 and this one's 4,000.
    assert_eq!(level, Some(1_000.0), "usage above the estimate is charged");
}

#[test]
fn reported_remaining_bounds_the_bucket_and_a_short_window_sets_the_rate() {
    let t0 = Instant::now();
    let mut model = KeyModel::default();
    let report = RateLimitReport {
        limit_requests: Some(12),
        remaining_requests: Some(11),
        reset_requests: Some(ms(1000)),
        ..Default::default()
    };
    model.on_report(&report, false, t0);
    let b = model.requests.bucket(t0).expect("a bucket");
    assert_eq!(b.capacity, 12.0);
    assert!((b.rate - RATE_MARGIN * 12.0).abs() < 1e-9, "12 per 1 s window: {}", b.rate);
    assert!((b.level(t0) - 11.0).abs() < 1e-9);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..Default::default() })]

    /// However requests arrive, the model never admits more than a declared limit
    /// allows: in any interval, capacity + rate x its length.
    #[test]
    fn never_admits_beyond_a_declared_limit(
        rpm in 1u32..600,
        gaps in proptest::collection::vec(0u64..2_000, 1..400),
    ) {
        let t0 = Instant::now();
        let mut model = KeyModel::default();
        model.declare(Some(rpm), None, t0);
        let mut t = t0;
        let mut admitted = Vec::new();
        for gap in gaps {
            t += ms(gap);
            if model.room_at(1, t) <= t {
                model.on_send(1, t);
                admitted.push(t);
            }
        }
        let (capacity, rate) = (f64::from(rpm), f64::from(rpm) / 60.0);
        for (i, start) in admitted.iter().enumerate() {
            for (j, end) in admitted.iter().enumerate().skip(i) {
                let allowed = capacity + rate * (*end - *start).as_secs_f64() + 1e-6;
                prop_assert!((j - i + 1) as f64 <= allowed, "{} in {:?}", j - i + 1, *end - *start);
            }
        }
    }

    /// A burst-free limit of any rate is learned within a few seconds, whatever the
    /// offered rate: no 429 after that.
    #[test]
    fn learns_any_burst_free_limit_within_seconds(per_second in 2u32..60, every_ms in 2u64..40) {
        let t0 = Instant::now();
        let mut model = KeyModel::default();
        let mut provider = NoBurst { per_second, next_slot: None };
        let until = t0 + Duration::from_secs(12);
        let (_, limited) = drive(&mut model, &mut provider, t0, until, ms(every_ms), t0 + Duration::from_secs(2));
        prop_assert_eq!(limited, 0);
    }
}
