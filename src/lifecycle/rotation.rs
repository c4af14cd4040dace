//! Which value each key serves while its new value is checked: the decision table of
//! the rotation pre-flight, pure (time is passed in), so it is tested without sockets.
//!
//! One entry per endpoint (alias, deployment, key name) whose Secret holds a value that
//! does not serve yet. The value that serves is the previous snapshot's (the snapshot
//! holds it; this table never does): it is dropped from memory once the new value is
//! decided to serve, or when the Secret goes back to it.

use std::collections::HashMap;
use std::time::Instant;

use crate::pool::{EndpointId, Rotation};
use crate::provider::probe::Verdict;
use crate::provider::refusal::KeyRefusal;

/// The state of one changed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The new value's probe is under way.
    Probing,
    /// The provider refused the new value: the old one serves on.
    Rejected(KeyRefusal),
    /// The new value may serve: at the next build it replaces the old one.
    Switch,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Fingerprint of the value in the Secret (the one being decided on).
    candidate: u64,
    stage: Stage,
    since: Instant,
}

/// What the snapshot being built should do with a changed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Serve the new value.
    New,
    /// Serve the previous value, for this reason.
    Previous(Rotation),
    /// Serve the previous value and probe the new one: a change not seen before.
    Probe,
}

/// How a finished probe changes its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// The probe belongs to a value no longer in the Secret: ignored.
    Stale,
    /// The new value serves from the next build (the `keyrelay_key_rotations_total` outcome).
    Switch(&'static str),
    /// The old value serves on.
    Rejected(KeyRefusal),
}

#[derive(Debug, Default)]
pub(crate) struct Rotations {
    entries: HashMap<EndpointId, Entry>,
}

impl Rotations {
    /// A build found `id` with `candidate` in the Secret and another value serving.
    pub(crate) fn decide(&mut self, id: &EndpointId, candidate: u64, now: Instant) -> Decision {
        match self.entries.get(id) {
            Some(e) if e.candidate == candidate => match e.stage {
                Stage::Probing => Decision::Previous(Rotation::Pending { since: e.since }),
                Stage::Rejected(reason) => Decision::Previous(Rotation::Rejected { reason, at: e.since }),
                Stage::Switch => {
                    self.entries.remove(id);
                    Decision::New
                }
            },
            // New, or the Secret changed again: the value serving stays the fallback
            // and the latest one is what gets probed.
            _ => {
                self.entries.insert(id.clone(), Entry { candidate, stage: Stage::Probing, since: now });
                Decision::Probe
            }
        }
    }

    /// The probe of `candidate` for `id` answered `verdict`; `timed_out`: it found no
    /// answer within the bound (then the new value serves: the user meant it).
    pub(crate) fn settle(&mut self, id: &EndpointId, candidate: u64, verdict: Verdict, now: Instant) -> Settled {
        let Some(e) = self.entries.get_mut(id).filter(|e| e.candidate == candidate && e.stage == Stage::Probing) else {
            return Settled::Stale;
        };
        let (stage, settled) = match verdict {
            Verdict::Accepted => (Stage::Switch, Settled::Switch("accepted")),
            Verdict::Inconclusive => (Stage::Switch, Settled::Switch("unverified")),
            Verdict::Unreachable => (Stage::Switch, Settled::Switch("unreachable")),
            Verdict::Refused(reason) => (Stage::Rejected(reason), Settled::Rejected(reason)),
        };
        e.stage = stage;
        e.since = now;
        settled
    }

    /// Forgets every entry `keep` says no longer applies (the key is gone, or its
    /// Secret went back to the serving value), after a snapshot was stored. `keep`
    /// also learns whether the entry is still deciding (else it waits to switch).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&EndpointId, bool) -> bool) {
        self.entries.retain(|id, e| keep(id, e.stage != Stage::Switch));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(key: &str) -> EndpointId {
        EndpointId { alias: "m".into(), deployment: "d".into(), key_name: key.into() }
    }

    #[test]
    fn a_change_is_probed_once_and_the_old_value_serves_until_it_answers() {
        let (mut r, t0, k) = (Rotations::default(), Instant::now(), id("K"));
        assert_eq!(r.decide(&k, 2, t0), Decision::Probe);
        assert_eq!(r.decide(&k, 2, t0), Decision::Previous(Rotation::Pending { since: t0 }), "no second probe");
        assert_eq!(r.settle(&k, 2, Verdict::Accepted, t0), Settled::Switch("accepted"));
        assert_eq!(r.decide(&k, 2, t0), Decision::New);
        assert_eq!(r.len(), 0, "nothing of the old value is held after the switch");
    }

    #[test]
    fn a_refused_value_keeps_the_old_one_until_the_secret_changes_again() {
        let (mut r, t0, k) = (Rotations::default(), Instant::now(), id("K"));
        r.decide(&k, 2, t0);
        assert_eq!(r.settle(&k, 2, Verdict::Refused(KeyRefusal::Invalid), t0), Settled::Rejected(KeyRefusal::Invalid));
        let rejected = Decision::Previous(Rotation::Rejected { reason: KeyRefusal::Invalid, at: t0 });
        assert_eq!(r.decide(&k, 2, t0), rejected);
        assert_eq!(r.decide(&k, 2, t0), rejected, "a rejected value is not probed again and again");
        assert_eq!(r.decide(&k, 3, t0), Decision::Probe, "the next rotation is probed");
        assert_eq!(r.settle(&k, 2, Verdict::Accepted, t0), Settled::Stale, "the old probe no longer decides");
        assert_eq!(r.settle(&k, 3, Verdict::Accepted, t0), Settled::Switch("accepted"));
        assert_eq!(r.decide(&k, 3, t0), Decision::New);
    }

    #[test]
    fn unreachable_and_unverifiable_values_switch() {
        let (mut r, t0) = (Rotations::default(), Instant::now());
        r.decide(&id("A"), 2, t0);
        r.decide(&id("B"), 2, t0);
        assert_eq!(r.settle(&id("A"), 2, Verdict::Unreachable, t0), Settled::Switch("unreachable"));
        assert_eq!(r.settle(&id("B"), 2, Verdict::Inconclusive, t0), Settled::Switch("unverified"));
        assert_eq!((r.decide(&id("A"), 2, t0), r.decide(&id("B"), 2, t0)), (Decision::New, Decision::New));
    }

    #[test]
    fn removed_or_reverted_keys_are_forgotten() {
        let (mut r, t0) = (Rotations::default(), Instant::now());
        r.decide(&id("gone"), 2, t0);
        r.decide(&id("reverted"), 2, t0);
        r.decide(&id("pending"), 2, t0);
        r.retain(|id, _| &*id.key_name == "pending");
        assert_eq!(r.len(), 1);
        assert_eq!(r.decide(&id("reverted"), 2, t0), Decision::Probe, "a later change is a new rotation");
    }
}
