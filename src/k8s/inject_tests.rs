//! Unit tests of the pure injector: apply the patch to the pod's JSON, look at the result.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use super::*;
use crate::k8s::sidecar::{InjectSettings, SidecarMode};

fn pod(annotations: Value, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "annotations": annotations}, "spec": spec})
}

fn annotated(spec: Value) -> Value {
    pod(
        json!({"keyrelay.dev/inject": "true", "keyrelay.dev/config": "llm-config", "keyrelay.dev/secret": "llm-keys"}),
        spec,
    )
}

fn typed(value: &Value) -> Pod {
    serde_json::from_value(value.clone()).unwrap()
}

/// Runs the injector and applies its patch, as the API server would.
fn inject(value: &Value, settings: &InjectSettings) -> (Mutation, Value) {
    let mutation = mutate(&typed(value), settings).unwrap();
    let mut patched = value.clone();
    json_patch::patch(&mut patched, &mutation.patch).unwrap();
    (mutation, patched)
}

fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

#[test]
fn unannotated_pods_get_no_patch() {
    let settings = InjectSettings::default();
    for annotations in [json!(null), json!({}), json!({"keyrelay.dev/inject": "false"}), json!({"other": "true"})] {
        let value = pod(annotations, json!({"containers": [{"name": "app", "image": "a"}]}));
        let mutation = mutate(&typed(&value), &settings).unwrap();
        assert_eq!(mutation.decision, Decision::NotRequested);
        assert!(mutation.patch.is_empty());
    }
}

#[test]
fn native_mode_adds_a_restartable_init_container_first_with_directory_mounts() {
    let spec = json!({
        "initContainers": [{"name": "migrate", "image": "m"}],
        "containers": [{"name": "app", "image": "a"}],
        "volumes": [{"name": "data", "emptyDir": {}}]
    });
    let (mutation, patched) = inject(&annotated(spec), &InjectSettings::default());
    assert_eq!(mutation.decision, Decision::Injected);
    let init = patched["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(init[0]["name"], "keyrelay");
    assert_eq!(init[1]["name"], "migrate");
    let sidecar = &init[0];
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["image"], sidecar::default_image());
    let args: Vec<&str> = sidecar["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(
        args,
        [
            "run",
            "--config",
            "/etc/keyrelay/config/config.yaml",
            "--secrets-dir",
            "/etc/keyrelay/secrets",
            "--listen",
            "127.0.0.1:4000",
            "--admin",
            "0.0.0.0:9901"
        ]
    );
    for mount in sidecar["volumeMounts"].as_array().unwrap() {
        assert!(mount.get("subPath").is_none(), "{mount}");
        assert_eq!(mount["readOnly"], true);
    }
    assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(sidecar["livenessProbe"]["httpGet"]["port"], 9901);
    let security = &sidecar["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sidecar["resources"]["requests"]["cpu"], "50m");

    let volumes = patched["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 3);
    assert_eq!(volumes[1], json!({"name": "keyrelay-config", "configMap": {"name": "llm-config", "optional": false}}));
    assert_eq!(
        volumes[2],
        json!({"name": "keyrelay-secrets", "secret": {"secretName": "llm-keys", "optional": false}})
    );
    // The regular init container starts after the native sidecar, so it can use it.
    assert_eq!(
        env_value(container(&patched, "initContainers", "migrate"), "OPENAI_BASE_URL"),
        Some("http://127.0.0.1:4000/v1")
    );
    assert_eq!(patched["metadata"]["annotations"]["keyrelay.dev/status"], "injected");
}

#[test]
fn every_app_container_gets_the_base_urls_unless_it_sets_them() {
    let spec = json!({"containers": [
        {"name": "app", "image": "a"},
        {"name": "worker", "image": "w", "env": [{"name": "OPENAI_BASE_URL", "value": "http://mine/v1"}]},
        {"name": "empty-env", "image": "e", "env": []},
        {"name": "from-secret", "image": "s", "env": [{"name": "ANTHROPIC_BASE_URL", "valueFrom": {"secretKeyRef": {"name": "x", "key": "y"}}}]}
    ]});
    let (_, patched) = inject(&annotated(spec), &InjectSettings::default());
    let app = container(&patched, "containers", "app");
    assert_eq!(env_value(app, "OPENAI_BASE_URL"), Some("http://127.0.0.1:4000/v1"));
    assert_eq!(env_value(app, "ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:4000"));
    let worker = container(&patched, "containers", "worker");
    assert_eq!(env_value(worker, "OPENAI_BASE_URL"), Some("http://mine/v1"));
    assert_eq!(worker["env"].as_array().unwrap().len(), 2);
    assert_eq!(
        env_value(container(&patched, "containers", "empty-env"), "ANTHROPIC_BASE_URL"),
        Some("http://127.0.0.1:4000")
    );
    let from_secret = container(&patched, "containers", "from-secret");
    assert_eq!(from_secret["env"].as_array().unwrap().iter().filter(|e| e["name"] == "ANTHROPIC_BASE_URL").count(), 1);
    // No initContainers/volumes before: both lists are created.
    assert_eq!(patched["spec"]["initContainers"].as_array().unwrap().len(), 1);
    assert_eq!(patched["spec"]["volumes"].as_array().unwrap().len(), 2);
}

#[test]
fn a_second_pass_changes_nothing_in_both_modes() {
    let spec = json!({"initContainers": [{"name": "i", "image": "i"}], "containers": [{"name": "app", "image": "a"}]});
    for mode in [SidecarMode::Native, SidecarMode::Container] {
        let settings = InjectSettings { mode, ..InjectSettings::default() };
        let (_, once) = inject(&annotated(spec.clone()), &settings);
        let again = mutate(&typed(&once), &settings).unwrap();
        assert_eq!(again.decision, Decision::AlreadyInjected);
        assert!(again.patch.is_empty(), "{mode:?}: {:?}", again.patch);
        // Even if the chart's mode changed in between, nothing is added twice.
        let other = InjectSettings {
            mode: if mode == SidecarMode::Native { SidecarMode::Container } else { SidecarMode::Native },
            ..InjectSettings::default()
        };
        assert!(mutate(&typed(&once), &other).unwrap().patch.is_empty());
    }
}

#[test]
fn a_container_added_after_injection_still_gets_the_env() {
    let (_, mut patched) =
        inject(&annotated(json!({"containers": [{"name": "app", "image": "a"}]})), &InjectSettings::default());
    patched["spec"]["containers"].as_array_mut().unwrap().push(json!({"name": "late", "image": "l"}));
    let (mutation, again) = inject(&patched, &InjectSettings::default());
    assert_eq!(mutation.decision, Decision::AlreadyInjected);
    assert_eq!(env_value(container(&again, "containers", "late"), "OPENAI_BASE_URL"), Some("http://127.0.0.1:4000/v1"));
    assert_eq!(again["spec"]["initContainers"].as_array().unwrap().len(), 1);
}

#[test]
fn container_mode_appends_a_plain_container_and_names_the_default_one() {
    let settings = InjectSettings { mode: SidecarMode::Container, ..InjectSettings::default() };
    let spec = json!({"initContainers": [{"name": "i", "image": "i"}], "containers": [{"name": "app", "image": "a"}]});
    let (_, patched) = inject(&annotated(spec), &settings);
    let containers = patched["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[1]["name"], "keyrelay");
    assert!(containers[1].get("restartPolicy").is_none());
    assert_eq!(patched["spec"]["initContainers"].as_array().unwrap().len(), 1);
    // Init containers run before a plain sidecar exists: they keep their env.
    assert!(container(&patched, "initContainers", "i").get("env").is_none());
    assert_eq!(patched["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"], "app");
}

#[test]
fn settings_flow_into_the_sidecar() {
    let settings = InjectSettings {
        image: "registry.example/keyrelay:9".into(),
        port: 4100,
        admin_port: 9911,
        env: vec![k8s_openapi::api::core::v1::EnvVar {
            name: "KEYRELAY_LOG_FORMAT".into(),
            value: Some("json".into()),
            ..Default::default()
        }],
        ..InjectSettings::default()
    };
    let (_, patched) = inject(&annotated(json!({"containers": [{"name": "app", "image": "a"}]})), &settings);
    let sidecar = container(&patched, "initContainers", "keyrelay");
    assert_eq!(sidecar["image"], "registry.example/keyrelay:9");
    assert_eq!(sidecar["readinessProbe"]["httpGet"]["port"], 9911);
    assert_eq!(env_value(sidecar, "KEYRELAY_LOG_FORMAT"), Some("json"));
    assert!(sidecar["args"].as_array().unwrap().contains(&json!("127.0.0.1:4100")));
    assert_eq!(
        env_value(container(&patched, "containers", "app"), "OPENAI_BASE_URL"),
        Some("http://127.0.0.1:4100/v1")
    );
}

#[test]
fn missing_or_bad_names_are_refused_unless_a_default_exists() {
    let spec = json!({"containers": [{"name": "app", "image": "a"}]});
    let only_inject = pod(json!({"keyrelay.dev/inject": "true"}), spec.clone());
    let err = mutate(&typed(&only_inject), &InjectSettings::default()).unwrap_err();
    assert_eq!(err, InjectError::MissingName(CONFIG_ANNOTATION, "ConfigMap"));
    assert!(err.to_string().contains("keyrelay.dev/config"));

    let defaults = InjectSettings {
        default_config: Some("shared-config".into()),
        default_secret: Some("shared-keys".into()),
        ..InjectSettings::default()
    };
    let (_, patched) = inject(&only_inject, &defaults);
    assert_eq!(patched["spec"]["volumes"][0]["configMap"]["name"], "shared-config");
    assert_eq!(patched["spec"]["volumes"][1]["secret"]["secretName"], "shared-keys");

    let bad = pod(
        json!({"keyrelay.dev/inject": "true", "keyrelay.dev/config": "Bad_Name", "keyrelay.dev/secret": "k"}),
        spec.clone(),
    );
    assert!(matches!(mutate(&typed(&bad), &defaults), Err(InjectError::InvalidName { .. })));
}

#[test]
fn a_clashing_volume_name_is_refused() {
    let spec = json!({"containers": [{"name": "app", "image": "a"}], "volumes": [{"name": "keyrelay-config", "emptyDir": {}}]});
    let err = mutate(&typed(&annotated(spec)), &InjectSettings::default()).unwrap_err();
    assert_eq!(err, InjectError::VolumeTaken("keyrelay-config".into()));
}

#[test]
fn a_hand_written_sidecar_is_left_alone() {
    let mut hand = InjectSettings::default().container();
    hand.image = Some("custom:1".into());
    let spec = json!({"initContainers": [hand], "containers": [{"name": "app", "image": "a",
        "env": [{"name": "OPENAI_BASE_URL", "value": "x"}, {"name": "ANTHROPIC_BASE_URL", "value": "y"}]}]});
    let mutation = mutate(&typed(&annotated(spec)), &InjectSettings::default()).unwrap();
    assert_eq!(mutation.decision, Decision::AlreadyInjected);
    assert!(mutation.patch.is_empty());
}

#[test]
fn env_from_and_host_network_produce_warnings() {
    let spec = json!({"hostNetwork": true, "containers": [{"name": "app", "image": "a", "envFrom": [{"configMapRef": {"name": "c"}}]}]});
    let mutation = mutate(&typed(&annotated(spec)), &InjectSettings::default()).unwrap();
    assert_eq!(mutation.warnings.len(), 2, "{:?}", mutation.warnings);
    assert!(mutation.warnings[0].contains("envFrom"));
    assert!(mutation.warnings[1].contains("hostNetwork"));
}

#[test]
fn annotation_keys_with_slashes_are_escaped_in_the_patch() {
    let (mutation, _) = inject(
        &annotated(json!({"containers": [Container { name: "app".into(), ..Default::default() }]})),
        &InjectSettings::default(),
    );
    let text = serde_json::to_string(&mutation.patch).unwrap();
    assert!(text.contains("/metadata/annotations/keyrelay.dev~1status"), "{text}");
}

#[test]
fn dns_subdomain_rule() {
    for good in ["a", "llm-keys", "keys.v2", "0abc"] {
        assert!(is_dns_subdomain(good), "{good}");
    }
    for bad in ["", "A", "-a", "a-", "a..b", "a_b", &"a".repeat(254)] {
        assert!(!is_dns_subdomain(bad), "{bad}");
    }
}
