//! The trace sampler, read from `OTEL_TRACES_SAMPLER(_ARG)` here (as the SDK reads them)
//! and handed to the SDK, so the request path can tell before it creates any span that
//! the sampler would drop the request.
//!
//! A dropped request still costs a span's worth of work in `tracing-opentelemetry`
//! (builder, attributes, ids, a sampler call at start): with `always_off`, the
//! recommended "configured but not sampling" setting, that was most of what a request
//! spent on telemetry. Where the decision does not depend on the trace id (`always_off`,
//! a parent-based sampler with a parent, a ratio of 0) the request path skips the spans
//! and only passes the trace context on, unsampled, as the SDK would have.

#[cfg(test)]
use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::Sampler;

/// The names `OTEL_TRACES_SAMPLER` may hold (the SDK's; any other is
/// `parentbased_always_on` with a warning).
pub const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// How a trace without a parent (or any trace, for a sampler that is not parent-based)
/// is decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    On,
    Off,
    /// Sampled when the trace id falls within this share of ids (the SDK's rule).
    Ratio(f64),
}

/// The sampler in effect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Follows a parent's decision when there is a parent (`parentbased_*`).
    pub parent_based: bool,
    pub root: Root,
}

impl Default for Sampling {
    /// The SDK's default: `parentbased_always_on`.
    fn default() -> Self {
        Sampling { parent_based: true, root: Root::On }
    }
}

impl Sampling {
    /// From the process environment.
    pub fn from_env() -> (Sampling, Option<String>) {
        let name = std::env::var("OTEL_TRACES_SAMPLER").ok();
        let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
        Self::parse(name.as_deref(), arg.as_deref())
    }

    /// `OTEL_TRACES_SAMPLER` and its argument, read as `opentelemetry_sdk` 0.33 reads them:
    /// a ratio that does not parse is 1.0, an unknown name is `parentbased_always_on`
    /// (each with a warning to log).
    pub fn parse(name: Option<&str>, arg: Option<&str>) -> (Sampling, Option<String>) {
        let Some(name) = name else { return (Sampling::default(), None) };
        let ratio = || match arg.and_then(|a| a.parse::<f64>().ok()) {
            Some(r) => (Root::Ratio(r), None),
            None => (Root::Ratio(1.0), Some(format!("OTEL_TRACES_SAMPLER_ARG {arg:?} is not a ratio: sampling all"))),
        };
        let (parent_based, (root, warning)) = match name {
            "always_on" => (false, (Root::On, None)),
            "always_off" => (false, (Root::Off, None)),
            "traceidratio" => (false, ratio()),
            "parentbased_always_on" => (true, (Root::On, None)),
            "parentbased_always_off" => (true, (Root::Off, None)),
            "parentbased_traceidratio" => (true, ratio()),
            other => {
                let warning = format!("OTEL_TRACES_SAMPLER {other:?} is not supported: using parentbased_always_on");
                (true, (Root::On, Some(warning)))
            }
        };
        (Sampling { parent_based, root }, warning)
    }

    /// The same sampler for the SDK.
    pub fn sdk_sampler(&self) -> Sampler {
        let root = match self.root {
            Root::On => Sampler::AlwaysOn,
            Root::Off => Sampler::AlwaysOff,
            Root::Ratio(r) => Sampler::TraceIdRatioBased(r),
        };
        if self.parent_based {
            Sampler::ParentBased(Box::new(root))
        } else {
            root
        }
    }

    /// Whether the sampler drops a trace whatever its id: `parent` is the sampled flag of
    /// a valid parent context, `None` for a root. `false` means the SDK decides.
    pub fn drops(&self, parent: Option<bool>) -> bool {
        match (self.parent_based, parent) {
            (true, Some(sampled)) => !sampled,
            _ => match self.root {
                Root::Off => true,
                // The SDK's bound is `ratio.max(0.0) * 2^63`: nothing is below 0 (NaN too).
                Root::Ratio(r) => r.is_nan() || r <= 0.0,
                Root::On => false,
            },
        }
    }

    /// Whether this sampler could ever keep a trace with this id and parent (test aid:
    /// never called on the request path).
    #[cfg(test)]
    fn sdk_keeps(&self, parent: Option<bool>, trace_id: TraceId) -> bool {
        use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceState};
        use opentelemetry::Context;
        use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};
        let cx = parent.map(|sampled| {
            let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
            let sc = SpanContext::new(trace_id, SpanId::from(7), flags, true, TraceState::default());
            Context::new().with_remote_span_context(sc)
        });
        let result = self.sdk_sampler().should_sample(cx.as_ref(), trace_id, "x", &SpanKind::Server, &[], &[]);
        result.decision != SamplingDecision::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_and_arguments_read_as_the_sdk_reads_them() {
        assert_eq!(Sampling::parse(None, None), (Sampling::default(), None));
        let off = Sampling::parse(Some("always_off"), None).0;
        assert_eq!(off, Sampling { parent_based: false, root: Root::Off });
        let ratio = Sampling::parse(Some("parentbased_traceidratio"), Some("0.25")).0;
        assert_eq!(ratio, Sampling { parent_based: true, root: Root::Ratio(0.25) });
        let (bad_arg, warning) = Sampling::parse(Some("traceidratio"), Some("lots"));
        assert_eq!(bad_arg.root, Root::Ratio(1.0));
        assert!(warning.is_some());
        for name in SAMPLERS {
            assert_eq!(Sampling::parse(Some(name), Some("0.5")).1, None, "{name} is understood");
        }
        let (unknown, warning) = Sampling::parse(Some("xray"), None);
        assert_eq!(unknown, Sampling::default());
        assert!(warning.unwrap().contains("xray"));
    }

    fn samplings() -> impl Strategy<Value = Sampling> {
        let names = prop::sample::select(SAMPLERS.iter().copied().chain(["bogus"]).collect::<Vec<_>>());
        let args = prop::sample::select(vec!["0", "0.0", "-1", "1e-9", "0.5", "1", "2", "NaN", "x", ""]);
        (names, prop::option::of(args)).prop_map(|(n, a)| Sampling::parse(Some(n), a).0)
    }

    proptest! {
        /// The fast path's promise: whenever it skips the spans, the SDK would have
        /// dropped the trace, whatever its id.
        #[test]
        fn a_trace_skipped_in_advance_is_one_the_sdk_drops(
            sampling in samplings(),
            parent in prop::option::of(any::<bool>()),
            id in 1u128..,
        ) {
            if sampling.drops(parent) {
                prop_assert!(!sampling.sdk_keeps(parent, TraceId::from(id)), "{sampling:?} {parent:?} {id:x}");
            }
        }

        /// And it skips every trace the SDK drops regardless of id, so "configured but
        /// not sampling" pays for no span at all.
        #[test]
        fn a_trace_the_sdk_always_drops_is_skipped(
            sampling in samplings(),
            parent in prop::option::of(any::<bool>()),
            ids in prop::collection::vec(1u128.., 64),
        ) {
            let always_dropped = ids.iter().all(|&id| !sampling.sdk_keeps(parent, TraceId::from(id)));
            let ratio_above_zero = matches!(sampling.root, Root::Ratio(r) if r > 0.0)
                && !(sampling.parent_based && parent.is_some());
            // A small ratio may drop 64 random ids by chance: only certain drops must be skipped.
            if always_dropped && !ratio_above_zero {
                prop_assert!(sampling.drops(parent), "{sampling:?} {parent:?}");
            }
        }
    }
}
