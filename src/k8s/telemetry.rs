//! The sidecar's OpenTelemetry environment: where its traces go (`OTEL_EXPORTER_OTLP_*`),
//! how many are kept (`OTEL_TRACES_SAMPLER[_ARG]`) and which pod they came from
//! (`OTEL_RESOURCE_ATTRIBUTES` with `k8s.pod.name` and `k8s.namespace.name`, taken from
//! the downward API and expanded by kubelet).
//!
//! The chart sets the defaults; a pod's `keyrelay.dev/otel-*` annotations override
//! them. Annotations are written by whoever may create pods, so each value is checked
//! (length, characters, form) and an invalid one refuses the pod, naming the annotation
//! and the rule, never echoing the value. No value may contain `$`: kubelet expands
//! `$(NAME)` in env values, and an endpoint like `http://x/$(KEYRELAY_SHARED_PASSWORD)`
//! would send the sidecar's secrets to whoever wrote it.

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};

use super::inject::InjectError;

pub const ENDPOINT_ANNOTATION: &str = "keyrelay.dev/otel-endpoint";
pub const PROTOCOL_ANNOTATION: &str = "keyrelay.dev/otel-protocol";
pub const SAMPLER_ANNOTATION: &str = "keyrelay.dev/otel-sampler";
pub const SAMPLER_ARG_ANNOTATION: &str = "keyrelay.dev/otel-sampler-arg";
pub const RESOURCE_ATTRIBUTES_ANNOTATION: &str = "keyrelay.dev/otel-resource-attributes";

/// The downward-API variables `OTEL_RESOURCE_ATTRIBUTES` refers to.
const POD_NAME_VAR: &str = "KEYRELAY_POD_NAME";
const POD_NAMESPACE_VAR: &str = "KEYRELAY_POD_NAMESPACE";
const RESOURCE_ATTRIBUTES_VAR: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// Attributes keyrelay sets itself; a pod cannot claim to be another.
const RESERVED_ATTRIBUTES: [&str; 2] = ["k8s.pod.name", "k8s.namespace.name"];

const MAX_ENDPOINT: usize = 512;
const MAX_ATTRIBUTES_TEXT: usize = 1024;
const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_PART: usize = 128;

/// The protocols keyrelay's exporter speaks.
pub const PROTOCOLS: [&str; 2] = ["http/protobuf", "grpc"];
/// The samplers keyrelay reads from `OTEL_TRACES_SAMPLER`.
pub use crate::telemetry::sampling::SAMPLERS;

/// What the sidecar's OTel variables say. `None`: the variable is not set (the
/// sidecar's own default, or a value from the chart's `sidecar.env`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    pub endpoint: Option<String>,
    pub protocol: Option<String>,
    pub sampler: Option<String>,
    pub sampler_arg: Option<String>,
    /// `key=value,...`, besides the pod's own attributes.
    pub resource_attributes: Option<String>,
}

/// Why a telemetry value was refused (the rule; the value is never repeated).
pub type Refusal = &'static str;

impl TelemetrySettings {
    /// These settings with the pod's annotations applied, each checked.
    pub fn for_pod(&self, pod: &Pod) -> Result<TelemetrySettings, InjectError> {
        let annotations = pod.metadata.annotations.as_ref();
        let pick =
            |key: &'static str, check: fn(&str) -> Result<(), Refusal>, current: &Option<String>| match annotations
                .and_then(|a| a.get(key))
                .map(|v| v.trim())
            {
                None | Some("") => Ok(current.clone()),
                Some(value) => match check(value) {
                    Ok(()) => Ok(Some(value.to_owned())),
                    Err(rule) => Err(InjectError::InvalidAnnotation(key, rule)),
                },
            };
        Ok(TelemetrySettings {
            endpoint: pick(ENDPOINT_ANNOTATION, check_endpoint, &self.endpoint)?,
            protocol: pick(PROTOCOL_ANNOTATION, check_protocol, &self.protocol)?,
            sampler: pick(SAMPLER_ANNOTATION, check_sampler, &self.sampler)?,
            sampler_arg: pick(SAMPLER_ARG_ANNOTATION, check_sampler_arg, &self.sampler_arg)?,
            resource_attributes: pick(
                RESOURCE_ATTRIBUTES_ANNOTATION,
                check_resource_attributes,
                &self.resource_attributes,
            )?,
        })
    }

    /// The sidecar's environment: `base` (the chart's `sidecar.env`) without the
    /// variables set here, then these, the downward-API ones before the attributes
    /// that refer to them. A plain `OTEL_RESOURCE_ATTRIBUTES` in `base` is kept, after
    /// the pod's attributes.
    pub fn env(&self, base: &[EnvVar]) -> Vec<EnvVar> {
        let mut attributes =
            "k8s.pod.name=$(KEYRELAY_POD_NAME),k8s.namespace.name=$(KEYRELAY_POD_NAMESPACE)".to_owned();
        let from_base = base.iter().find(|e| e.name == RESOURCE_ATTRIBUTES_VAR && e.value_from.is_none());
        let extra = [self.resource_attributes.as_deref(), from_base.and_then(|e| e.value.as_deref())];
        // Pairs naming the pod are keyrelay's (a base written like our output has them).
        let pairs = extra.into_iter().flatten().flat_map(|list| list.split(',')).map(str::trim);
        for pair in
            pairs.filter(|p| !p.is_empty() && !RESERVED_ATTRIBUTES.iter().any(|r| p.split('=').next() == Some(r)))
        {
            attributes.push(',');
            attributes.push_str(pair);
        }
        let mut ours = vec![field(POD_NAME_VAR, "metadata.name"), field(POD_NAMESPACE_VAR, "metadata.namespace")];
        let plain = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &self.endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", &self.protocol),
            ("OTEL_TRACES_SAMPLER", &self.sampler),
            ("OTEL_TRACES_SAMPLER_ARG", &self.sampler_arg),
        ];
        for (name, value) in plain {
            if let Some(value) = value {
                ours.push(EnvVar { name: name.to_owned(), value: Some(value.clone()), ..EnvVar::default() });
            }
        }
        ours.push(EnvVar { name: RESOURCE_ATTRIBUTES_VAR.to_owned(), value: Some(attributes), ..EnvVar::default() });
        let mut env: Vec<EnvVar> = base.iter().filter(|e| !ours.iter().any(|o| o.name == e.name)).cloned().collect();
        env.extend(ours);
        env
    }
}

fn field(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { api_version: Some("v1".to_owned()), field_path: path.to_owned() }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// Printable ASCII without spaces or `$` (see the module comment).
fn plain_ascii(value: &str) -> Result<(), Refusal> {
    if value.bytes().all(|b| b.is_ascii_graphic() && b != b'$') {
        Ok(())
    } else {
        Err("only printable ASCII without spaces or '$'")
    }
}

/// An `http://` or `https://` URL with a host, no credentials, at most 512 characters.
pub fn check_endpoint(value: &str) -> Result<(), Refusal> {
    if value.len() > MAX_ENDPOINT {
        return Err("at most 512 characters");
    }
    plain_ascii(value)?;
    let uri: http::Uri = value.parse().map_err(|_| "not a URL")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must start with http:// or https://");
    }
    match uri.authority() {
        Some(authority) if authority.as_str().contains('@') => Err("must not carry credentials"),
        Some(authority) if !authority.host().is_empty() => Ok(()),
        _ => Err("must name a host"),
    }
}

pub fn check_protocol(value: &str) -> Result<(), Refusal> {
    PROTOCOLS.contains(&value).then_some(()).ok_or("must be http/protobuf or grpc")
}

pub fn check_sampler(value: &str) -> Result<(), Refusal> {
    SAMPLERS.contains(&value).then_some(()).ok_or(
        "must be always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio",
    )
}

/// A ratio: a number from 0 to 1.
pub fn check_sampler_arg(value: &str) -> Result<(), Refusal> {
    let ratio: f64 = (value.len() <= 32).then(|| value.parse().ok()).flatten().ok_or("must be a number from 0 to 1")?;
    (ratio.is_finite() && (0.0..=1.0).contains(&ratio)).then_some(()).ok_or("must be a number from 0 to 1")
}

/// `key=value` pairs separated by commas: keys of letters, digits, `.`, `_`, `-`;
/// values also `/` and `:`; at most 32 pairs, 1024 characters; not keyrelay's own keys.
pub fn check_resource_attributes(value: &str) -> Result<(), Refusal> {
    const RULE: Refusal = "must be key=value pairs separated by commas (letters, digits, '.', '_', '-'; values also '/' and ':'), at most 32 pairs and 1024 characters";
    if value.len() > MAX_ATTRIBUTES_TEXT || value.split(',').count() > MAX_ATTRIBUTES {
        return Err(RULE);
    }
    let key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    for pair in value.split(',') {
        let (key, val) = pair.split_once('=').ok_or(RULE)?;
        let part_ok = |s: &str, extra: &[char]| {
            !s.is_empty() && s.len() <= MAX_ATTRIBUTE_PART && s.chars().all(|c| key_char(c) || extra.contains(&c))
        };
        if !part_ok(key, &[]) || !part_ok(val, &['/', ':']) {
            return Err(RULE);
        }
        if RESERVED_ATTRIBUTES.contains(&key) {
            return Err("must not set k8s.pod.name or k8s.namespace.name, which keyrelay sets from the pod");
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
