//! Property tests of selection: whatever the endpoints' state, a request is never
//! sent to an endpoint that is cooling down, out of quota, refused or at its cap
//! while another has capacity; weights are honoured; and a session sticks to one
//! endpoint of the group that takes its requests, whatever the priorities and regions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::Strategy as Generator;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::select::{for_strategy, CandidateView};
use super::session::weighted_score;
use super::{Availability, Pick, Snapshot};
use crate::config::{self, ResolvedSecrets, SecretSource, Strategy};
use crate::provider::ratelimit::RateLimitReport;
use crate::secret::Secret;

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
    Snapshot::build(&loaded.config, &ResolvedSecrets::read(&loaded.config, &SecretSource::new(None, inline)), None)
        .expect("snapshot")
}

/// One deployment (one key each) for [`grouped_snapshot`]: weight, `order`, and
/// whether its region is the sidecar's.
type Placement = (u32, u32, bool);

/// A route over deployments with weights, priorities and regions; the sidecar runs in
/// `here` when `local` is set.
fn grouped_snapshot(strategy: Strategy, local: bool, placements: &[Placement]) -> Snapshot {
    let server = if local { "server:\n  region: here\n" } else { "" };
    let mut yaml = format!("{server}models:\n  m:\n    strategy: {strategy}\n    deployments:\n");
    let mut inline = BTreeMap::new();
    for (i, (weight, order, near)) in placements.iter().enumerate() {
        let region = if *near { "here" } else { "far" };
        yaml.push_str(&format!(
            "      - {{ name: d{i}, provider: openai, model: x, keys: [PROP_KEY_{i}], weight: {weight}, order: {order}, region: {region} }}\n"
        ));
        inline.insert(format!("PROP_KEY_{i}"), Secret::new(format!("value-{i}")));
    }
    let loaded = config::load_str(&yaml, std::path::Path::new("prop.yaml")).expect("valid config");
    Snapshot::build(&loaded.config, &ResolvedSecrets::read(&loaded.config, &SecretSource::new(None, inline)), None)
        .expect("snapshot")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_session_sticks_to_the_weighted_winner_of_the_first_group(
        strategy in 0usize..5,
        local in any::<bool>(),
        placements in prop::collection::vec((1u32..6, 0u32..3, any::<bool>()), 1..7),
        session in "[a-z0-9-]{1,24}",
        seed in any::<u64>(),
    ) {
        let snap = grouped_snapshot(STRATEGIES[strategy], local, &placements);
        let route = snap.route("m").unwrap();
        let group = |e: &super::Endpoint| (e.deployment.priority, local && e.deployment.region.as_deref() != Some("here"));
        let first_group = route.endpoints.iter().map(|e| group(e)).min().unwrap();
        let winner = route
            .endpoints
            .iter()
            .filter(|e| group(e) == first_group)
            .max_by(|a, b| {
                let score = |e: &super::Endpoint| weighted_score(&session, &e.id, e.deployment.weight);
                score(a).total_cmp(&score(b))
            })
            .unwrap();
        let mut rng = SmallRng::seed_from_u64(seed);
        let pick = Pick { now: Instant::now(), region: local.then_some("here"), session: Some(&session), demand: Default::default() };
        for _ in 0..6 {
            let chosen = route.candidates(|_| true, &pick, &mut rng);
            prop_assert_eq!(chosen.len(), route.endpoints.len());
            prop_assert!(Arc::ptr_eq(&chosen[0], winner), "led with {:?}, not {:?}", chosen[0].id, winner.id);
            let groups: Vec<_> = chosen.iter().map(|e| group(e)).collect();
            prop_assert!(groups[1..].windows(2).all(|w| w[0] <= w[1]), "the rest stays grouped: {:?}", groups);
        }
    }

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
        let pick = Pick { now, region: None, session: None, demand: Default::default() };
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
            let pick = Pick { now: Instant::now(), region: None, session: None, demand: Default::default() };
            let first = &route.candidates(|_| true, &pick, &mut rng)[0];
            let i = route.endpoints.iter().position(|e| Arc::ptr_eq(e, first)).unwrap();
            firsts[i] += 1;
        }
        let expected: Vec<u32> = weights.iter().map(|w| w * 3).collect();
        prop_assert_eq!(firsts, expected);
    }
}

/// Through the route itself: remote endpoints get no session while a local one has
/// capacity, and the local ones share sessions by weight. Fixed session ids and a
/// deterministic hash: the counts are the same on every run.
#[test]
fn sessions_spread_by_weight_over_the_local_group_only() {
    let snap =
        grouped_snapshot(Strategy::RoundRobin, true, &[(5, 0, false), (1, 0, true), (5, 0, false), (3, 0, true)]);
    let route = snap.route("m").unwrap();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut counts = [0u32; 4];
    for i in 0..4000 {
        let session = format!("user-{i}");
        let pick =
            Pick { now: Instant::now(), region: Some("here"), session: Some(&session), demand: Default::default() };
        let first = &route.candidates(|_| true, &pick, &mut rng)[0];
        counts[route.endpoints.iter().position(|e| Arc::ptr_eq(e, first)).unwrap()] += 1;
    }
    assert_eq!((counts[0], counts[2]), (0, 0), "a remote endpoint took sessions: {counts:?}");
    assert!(counts[1].abs_diff(1000) < 100 && counts[3].abs_diff(3000) < 100, "not 1:3 by weight: {counts:?}");
}
