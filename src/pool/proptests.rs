//! Property tests of selection: whatever the endpoints' state, a request is never
//! sent to an endpoint that is cooling down, out of quota, refused or at its cap
//! while another has capacity; and weights are honoured.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::Strategy as Generator;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::select::{for_strategy, CandidateView};
use super::{Availability, Pick, Snapshot};
use crate::config::{self, Secret, SecretSource, Strategy};
use crate::provider::ratelimit::RateLimitReport;

const STRATEGIES: [Strategy; 5] =
    [Strategy::RoundRobin, Strategy::Weighted, Strategy::LeastBusy, Strategy::Latency, Strategy::Usage];

/// What can be wrong with one endpoint.
#[derive(Debug, Clone, Copy)]
enum Condition {
    Healthy,
    CoolingDown,
    QuotaSpent,
    Refused,
    BreakerOpen,
    AtCap,
    PartlyUsed(u64),
}

fn condition() -> impl Generator<Value = Condition> {
    prop_oneof![
        3 => Just(Condition::Healthy),
        1 => Just(Condition::CoolingDown),
        1 => Just(Condition::QuotaSpent),
        1 => Just(Condition::Refused),
        1 => Just(Condition::BreakerOpen),
        1 => Just(Condition::AtCap),
        2 => (1u64..100).prop_map(Condition::PartlyUsed),
    ]
}

fn snapshot(strategy: Strategy, weights: &[u32]) -> Snapshot {
    let mut yaml = format!("models:\n  m:\n    strategy: {strategy}\n    deployments:\n");
    let mut inline = BTreeMap::new();
    for (i, w) in weights.iter().enumerate() {
        yaml.push_str(&format!(
            "      - {{ name: d{i}, provider: openai, model: x, keys: [PROP_KEY_{i}], weight: {w}, max_inflight: 1 }}\n"
        ));
        inline.insert(format!("PROP_KEY_{i}"), Secret::new(format!("value-{i}")));
    }
    let loaded = config::load_str(&yaml, std::path::Path::new("prop.yaml")).expect("valid config");
    Snapshot::build(&loaded.config, &SecretSource::new(None, inline), None).expect("snapshot")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn never_picks_an_endpoint_without_capacity(
        strategy in 0usize..5,
        conditions in prop::collection::vec(condition(), 1..7),
        seed in any::<u64>(),
    ) {
        let snap = snapshot(STRATEGIES[strategy], &vec![1; conditions.len()]);
        let route = snap.route("m").unwrap();
        let now = Instant::now();
        let mut guards = Vec::new();
        for (endpoint, c) in route.endpoints.iter().zip(&conditions) {
            let s = &endpoint.state;
            match c {
                Condition::Healthy => {}
                Condition::CoolingDown => {
                    let wait = crate::provider::ratelimit::Wait { duration: Duration::from_secs(30), clamped: false };
                    s.record_rate_limited(Some(wait), Duration::ZERO, Default::default(), now);
                }
                Condition::QuotaSpent => s.on_response(
                    &RateLimitReport { remaining_requests: Some(0), limit_requests: Some(10), reset_requests: Some(Duration::from_secs(30)), ..Default::default() },
                    Duration::from_millis(5), now),
                Condition::Refused => s.record_refused(crate::provider::refusal::KeyRefusal::Invalid, now),
                Condition::BreakerOpen => s.record_failure(1, Duration::from_secs(30), Default::default(), now),
                Condition::AtCap => guards.push(s.begin(now)),
                Condition::PartlyUsed(left) => s.on_response(
                    &RateLimitReport { remaining_requests: Some(*left), limit_requests: Some(100), reset_requests: Some(Duration::from_secs(30)), ..Default::default() },
                    Duration::from_millis(*left), now),
            }
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        let pick = Pick { now, region: None, session: None };
        let chosen = route.candidates(|_| true, &pick, &mut rng);
        let ready: Vec<&Arc<super::Endpoint>> =
            route.endpoints.iter().filter(|e| matches!(e.availability(now), Availability::Ready { .. })).collect();
        prop_assert_eq!(chosen.len(), ready.len(), "every endpoint with capacity is a candidate, no other");
        for e in &chosen {
            prop_assert!(matches!(e.availability(now), Availability::Ready { .. }), "picked {:?}", e.id);
        }
        let expected_ready = conditions.iter().filter(|c| matches!(c, Condition::Healthy | Condition::PartlyUsed(_))).count();
        prop_assert_eq!(ready.len(), expected_ready);
        if STRATEGIES[strategy] == Strategy::Usage && chosen.len() > 1 {
            let headroom = |e: &super::Endpoint| match e.availability(now) { Availability::Ready { headroom } => headroom, _ => -1.0 };
            let best = chosen.iter().map(|e| headroom(e)).fold(f64::MIN, f64::max);
            prop_assert!((headroom(&chosen[0]) - best).abs() < 1e-3, "usage must lead with the most headroom");
        }
    }

    #[test]
    fn every_strategy_returns_a_permutation(
        strategy in 0usize..5,
        raw in prop::collection::vec((1u32..10, 0u32..5, 0.0f64..1.0, prop::option::of(1u64..500)), 0..8),
        seed in any::<u64>(),
    ) {
        let views: Vec<CandidateView> = raw.iter().enumerate().map(|(index, (weight, in_flight, headroom, latency))| CandidateView {
            index, weight: *weight, in_flight: *in_flight, headroom: *headroom, latency: latency.map(Duration::from_millis),
        }).collect();
        let selector = for_strategy(STRATEGIES[strategy], views.len());
        let mut rng = SmallRng::seed_from_u64(seed);
        for _ in 0..3 {
            let mut order = selector.order(&views, &mut rng);
            order.sort_unstable();
            prop_assert_eq!(order, (0..views.len()).collect::<Vec<_>>());
        }
    }

    #[test]
    fn weighted_honours_weights_exactly_over_a_full_cycle(weights in prop::collection::vec(1u32..8, 1..6), seed in any::<u64>()) {
        let snap = snapshot(Strategy::Weighted, &weights);
        let route = snap.route("m").unwrap();
        let total: u32 = weights.iter().sum();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut firsts = vec![0u32; weights.len()];
        for _ in 0..total * 3 {
            let pick = Pick { now: Instant::now(), region: None, session: None };
            let first = &route.candidates(|_| true, &pick, &mut rng)[0];
            let i = route.endpoints.iter().position(|e| Arc::ptr_eq(e, first)).unwrap();
            firsts[i] += 1;
        }
        let expected: Vec<u32> = weights.iter().map(|w| w * 3).collect();
        prop_assert_eq!(firsts, expected);
    }
}
