//! Sticky sessions by rendezvous (highest random weight) hashing: a session goes to
//! the available endpoint with the highest hash of (session, endpoint). When that
//! endpoint is unavailable only its sessions move, and they come back when it does.

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

/// FNV-1a: small, stable across Rust versions (unlike `DefaultHasher`).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        // A final avalanche so nearby inputs spread over the whole range.
        let mut x = self.0 ^ 0xcbf2_9ce4_8422_2325;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
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
        let without_c: Vec<EndpointId> = all.iter().filter(|e| e.key_name != "C").cloned().collect();
        let mut moved = 0;
        let mut counts = std::collections::HashMap::new();
        for i in 0..2000 {
            let s = format!("session-{i}");
            let before = pick(&all, &s);
            *counts.entry(before.key_name.clone()).or_insert(0) += 1;
            let after = pick(&without_c, &s);
            if before.key_name != "C" {
                assert_eq!(before, after, "a session not on C moved");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 300 && moved < 700, "C held {moved} of 2000 sessions");
        assert!(counts.values().all(|&n| n > 350), "uneven spread: {counts:?}");
    }
}
