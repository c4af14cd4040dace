use std::collections::BTreeMap;

use super::*;

fn pod(annotations: &[(&str, &str)]) -> Pod {
    let mut pod = Pod::default();
    let map: BTreeMap<String, String> = annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    pod.metadata.annotations = Some(map);
    pod
}

fn chart() -> TelemetrySettings {
    TelemetrySettings {
        endpoint: Some("http://otel-collector.observability:4318".to_owned()),
        protocol: Some("http/protobuf".to_owned()),
        sampler: Some("parentbased_traceidratio".to_owned()),
        sampler_arg: Some("0.25".to_owned()),
        resource_attributes: Some("deployment.environment=prod".to_owned()),
    }
}

#[test]
fn annotations_override_the_chart_values() {
    let pod = pod(&[
        (ENDPOINT_ANNOTATION, "https://collector.tracing.svc:4317"),
        (PROTOCOL_ANNOTATION, "grpc"),
        (SAMPLER_ARG_ANNOTATION, "1"),
    ]);
    let settings = chart().for_pod(&pod).unwrap();
    assert_eq!(settings.endpoint.as_deref(), Some("https://collector.tracing.svc:4317"));
    assert_eq!(settings.protocol.as_deref(), Some("grpc"));
    assert_eq!(settings.sampler.as_deref(), Some("parentbased_traceidratio"), "not annotated: the chart's");
    assert_eq!(settings.sampler_arg.as_deref(), Some("1"));
}

#[test]
fn hostile_annotations_are_refused_without_echoing_them() {
    let long = format!("http://{}.example:4318", "a".repeat(600));
    let cases = [
        (ENDPOINT_ANNOTATION, "http://x:4318/$(KEYRELAY_SHARED_PASSWORD)"),
        (ENDPOINT_ANNOTATION, "file:///etc/keyrelay/secrets/OPENAI_API_KEY"),
        (ENDPOINT_ANNOTATION, "http://user:pass@evil.example:4318"),
        (ENDPOINT_ANNOTATION, "http://a b:4318"),
        (ENDPOINT_ANNOTATION, "http://x:4318\n- name: X"),
        (ENDPOINT_ANNOTATION, "/just/a/path"),
        (ENDPOINT_ANNOTATION, long.as_str()),
        (PROTOCOL_ANNOTATION, "http/json"),
        (SAMPLER_ANNOTATION, "jaeger_remote"),
        (SAMPLER_ARG_ANNOTATION, "1.5"),
        (SAMPLER_ARG_ANNOTATION, "NaN"),
        (RESOURCE_ATTRIBUTES_ANNOTATION, "k8s.pod.name=other"),
        (RESOURCE_ATTRIBUTES_ANNOTATION, "team=a,x=$(KEYRELAY_POD_NAME)"),
        (RESOURCE_ATTRIBUTES_ANNOTATION, "novalue"),
        (RESOURCE_ATTRIBUTES_ANNOTATION, "a=b c"),
    ];
    for (key, value) in cases {
        let err = chart().for_pod(&pod(&[(key, value)])).unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, InjectError::InvalidAnnotation(k, _) if k == key), "{key}={value:?}: {message}");
        assert!(message.contains(key), "{message}");
        assert!(!message.contains(value.trim()), "the value is never echoed: {message}");
    }
}

#[test]
fn env_carries_the_otel_variables_and_the_pod_from_the_downward_api() {
    let base = vec![
        EnvVar { name: "KEYRELAY_LOG_FORMAT".into(), value: Some("json".into()), ..EnvVar::default() },
        EnvVar { name: "OTEL_RESOURCE_ATTRIBUTES".into(), value: Some("team=llm".into()), ..EnvVar::default() },
        EnvVar { name: "OTEL_TRACES_SAMPLER".into(), value: Some("always_off".into()), ..EnvVar::default() },
    ];
    let env = chart().env(&base);
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "KEYRELAY_LOG_FORMAT",
            "KEYRELAY_POD_NAME",
            "KEYRELAY_POD_NAMESPACE",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
            "OTEL_RESOURCE_ATTRIBUTES",
        ],
        "the downward-API variables come before the value that refers to them"
    );
    let value = |name: &str| env.iter().find(|e| e.name == name).unwrap().clone();
    assert_eq!(value("KEYRELAY_POD_NAME").value_from.unwrap().field_ref.unwrap().field_path, "metadata.name");
    assert_eq!(value("KEYRELAY_POD_NAMESPACE").value_from.unwrap().field_ref.unwrap().field_path, "metadata.namespace");
    assert_eq!(value("OTEL_TRACES_SAMPLER").value.as_deref(), Some("parentbased_traceidratio"));
    assert_eq!(
        value("OTEL_RESOURCE_ATTRIBUTES").value.as_deref(),
        Some("k8s.pod.name=$(KEYRELAY_POD_NAME),k8s.namespace.name=$(KEYRELAY_POD_NAMESPACE),deployment.environment=prod,team=llm")
    );
    let unset = TelemetrySettings::default().env(&[]);
    assert_eq!(unset.len(), 3, "no endpoint: only the pod's attributes, for an endpoint set elsewhere");
}
