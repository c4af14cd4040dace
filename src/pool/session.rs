//! Sticky sessions by weighted rendezvous (highest random weight) hashing: a session
//! goes to the available endpoint with the highest score of (session, endpoint). When
//! that endpoint is unavailable only its sessions move, and they come back when it
//! does. Scores are weighted so that sessions spread over endpoints as traffic does.

use std::hash::{BuildHasher, Hash, Hasher};

use super::EndpointId;

/// Fixed hasher keys: a session must map to the same endpoint in every process of
/// the pod's lifetime and across reloads.
const HASH: std::hash::BuildHasherDefault<Fnv> = std::hash::BuildHasherDefault::new();

/// The rendezvous score of `endpoint` for `session`.
pub fn score(session: &str, endpoint: &EndpointId) -> u64 {
    let mut h = HASH.build_hasher();
    session.hash(&mut h);
    endpoint.hash(&mut h);
    h.finish()
}

/// The weighted rendezvous score of `endpoint` for `session`: `weight / -ln(u)`, with
/// `u` the hash mapped into (0, 1). The highest score wins, and each endpoint then wins
/// a share of sessions proportional to its weight (Schindelhauer and Schomaker's
/// weighted rendezvous, the rule of Ceph's straw2 buckets). With equal weights the
/// order is the hash's, so adding weights moves no session of an unweighted pool.
pub fn weighted_score(session: &str, endpoint: &EndpointId, weight: u32) -> f64 {
    // The top 53 bits, centred in their interval: exact in an f64, never 0 or 1, so
    // `-ln(u)` is finite and positive.
    const SCALE: f64 = (1u64 << 53) as f64;
    let unit = ((score(session, endpoint) >> 11) as f64 + 0.5) / SCALE;
    f64::from(weight) / -unit.ln()
}

/// FNV-1a (small, stable across Rust versions, unlike `DefaultHasher`) with a final
/// avalanche so nearby inputs spread over the whole range.
#[derive(Default)]
struct Fnv(fnv::FnvHasher);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // Folding the offset basis in first keeps every score what it was before the
        // `fnv` crate replaced the hand-written loop: sticky sessions stay put on upgrade.
        let mut x = self.0.finish() ^ 0xcbf2_9ce4_8422_2325;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str) -> EndpointId {
        EndpointId { alias: "m".into(), deployment: "d".into(), key_name: key.into() }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_sessions() {
        let all: Vec<EndpointId> = ["A", "B", "C", "D"].iter().map(|k| id(k)).collect();
        let pick = |eps: &[EndpointId], s: &str| eps.iter().max_by_key(|e| score(s, e)).cloned().unwrap();
        let without_c: Vec<EndpointId> = all.iter().filter(|e| &*e.key_name != "C").cloned().collect();
        let mut moved = 0;
        let mut counts = std::collections::HashMap::new();
        for i in 0..2000 {
            let s = format!("session-{i}");
            let before = pick(&all, &s);
            *counts.entry(before.key_name.clone()).or_insert(0) += 1;
            let after = pick(&without_c, &s);
            if &*before.key_name != "C" {
                assert_eq!(before, after, "a session not on C moved");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 300 && moved < 700, "C held {moved} of 2000 sessions");
        assert!(counts.values().all(|&n| n > 350), "uneven spread: {counts:?}");
    }

    /// The session ids are fixed and the hash is deterministic, so the counts are the
    /// same on every run: the bounds only say how close to the weights they must be.
    #[test]
    fn sessions_spread_in_proportion_to_weight() {
        let weighted = [("A", 1u32), ("B", 2), ("C", 3), ("D", 4)];
        let mut counts = [0u32; 4];
        for i in 0..10_000 {
            let s = format!("session-{i}");
            let score = |&(key, weight): &(&str, u32)| weighted_score(&s, &id(key), weight);
            let best = (0..weighted.len()).max_by(|&a, &b| score(&weighted[a]).total_cmp(&score(&weighted[b])));
            counts[best.unwrap()] += 1;
        }
        for (count, (_, weight)) in counts.iter().zip(weighted) {
            let expected = 1000 * weight;
            assert!(count.abs_diff(expected) * 10 < expected, "expected about {expected}, got {counts:?}");
        }
    }

    #[test]
    fn equal_weights_rank_as_the_plain_hash_does() {
        for i in 0..500 {
            let s = format!("s{i}");
            let all: Vec<EndpointId> = ["A", "B", "C"].iter().map(|k| id(k)).collect();
            let by_hash = all.iter().max_by_key(|e| score(&s, e));
            let by_weight = all.iter().max_by(|a, b| weighted_score(&s, a, 2).total_cmp(&weighted_score(&s, b, 2)));
            assert_eq!(by_hash, by_weight);
        }
    }
}
