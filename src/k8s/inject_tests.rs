//! Unit tests of the pure injector: apply the patch to the pod's JSON, look at the result.

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};

use super::*;
use crate::k8s::sidecar::{InjectSettings, SidecarMode};

pub(crate) fn pod(annotations: Value, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "annotations": annotations}, "spec": spec})
}

pub(crate) fn annotated(spec: Value) -> Value {
    pod(
        json!({"keyrelay.dev/inject": "true", "keyrelay.dev/config": "llm-config", "keyrelay.dev/secret": "llm-keys"}),
        spec,
    )
}

pub(crate) fn typed(value: &Value) -> Pod {
    serde_json::from_value(value.clone()).unwrap()
}

/// Runs the injector and applies its patch, as the API server would.
pub(crate) fn inject(value: &Value, settings: &InjectSettings) -> (Mutation, Value) {
    let mutation = mutate(&typed(value), settings).unwrap();
    let mut patched = value.clone();
    json_patch::patch(&mut patched, &mutation.patch).unwrap();
    (mutation, patched)
}

pub(crate) fn container<'a>(pod: &'a Value, list: &str, name: &str) -> &'a Value {
    pod["spec"][list].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap()
}

pub(crate) fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
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
    // A sidecar with a bad config keeps running (503s) until a good one: started
    // means serving, ready means configured.
    assert_eq!(sidecar["startupProbe"]["httpGet"]["path"], "/healthz");
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
    let err = mutate(&typed(&bad), &defaults).unwrap_err();
    assert_eq!(err, InjectError::InvalidName(CONFIG_ANNOTATION));
    assert!(!err.to_string().contains("Bad_Name"), "refusals never quote field values: {err}");
}

#[test]
fn a_clashing_volume_name_is_refused() {
    let spec = json!({"containers": [{"name": "app", "image": "a"}], "volumes": [{"name": "keyrelay-config", "emptyDir": {}}]});
    let err = mutate(&typed(&annotated(spec)), &InjectSettings::default()).unwrap_err();
    assert_eq!(err, InjectError::VolumeTaken("keyrelay-config"));
}

#[test]
fn a_container_named_keyrelay_that_was_not_injected_is_refused() {
    let mut hand = InjectSettings::default().container(false);
    hand.image = Some("custom:1".into());
    let app = json!({"name": "app", "image": "a"});
    for spec in [
        json!({"initContainers": [hand], "containers": [app]}),
        json!({"containers": [app, {"name": "keyrelay", "image": "someone-else:1"}]}),
    ] {
        let err = mutate(&typed(&annotated(spec.clone())), &InjectSettings::default()).unwrap_err();
        assert_eq!(err, InjectError::ContainerNameTaken);
        assert!(err.to_string().contains("named keyrelay"), "{err}");
        // Without the inject annotation the same pod is nobody's business.
        let plain = pod(json!({}), spec);
        assert_eq!(mutate(&typed(&plain), &InjectSettings::default()).unwrap().decision, Decision::NotRequested);
    }
}

#[test]
fn a_taken_sidecar_port_is_refused_naming_the_container_by_position() {
    let settings = InjectSettings::default();
    let refused = |spec: Value, settings: &InjectSettings| mutate(&typed(&annotated(spec)), settings).unwrap_err();
    let err = refused(
        json!({"containers": [{"name": "web", "image": "w"},
            {"name": "sk-private-name", "image": "a", "ports": [{"containerPort": 8080}, {"containerPort": 4000}]}]}),
        &settings,
    );
    assert_eq!(err, InjectError::PortTaken { list: "containers", index: 1, port: 4000, role: "app port" });
    let message = err.to_string();
    assert!(message.contains("spec.containers[1]") && message.contains("port 4000"), "{message}");
    assert!(!message.contains("sk-private-name"), "refusals never quote field values: {message}");

    // A regular init container runs next to a native sidecar, not before a plain one.
    let init = json!({"initContainers": [{"name": "i", "image": "i", "ports": [{"containerPort": 9901, "protocol": "TCP"}]}],
        "containers": [{"name": "app", "image": "a"}]});
    let err = refused(init.clone(), &settings);
    assert_eq!(err, InjectError::PortTaken { list: "initContainers", index: 0, port: 9901, role: "admin port" });
    let plain = InjectSettings { mode: SidecarMode::Container, ..InjectSettings::default() };
    assert_eq!(mutate(&typed(&annotated(init)), &plain).unwrap().decision, Decision::Injected);

    // UDP does not collide with the sidecar's TCP listeners; the configured ports count.
    let udp =
        json!({"containers": [{"name": "app", "image": "a", "ports": [{"containerPort": 4000, "protocol": "UDP"}]}]});
    assert_eq!(mutate(&typed(&annotated(udp)), &settings).unwrap().decision, Decision::Injected);
    let moved = InjectSettings { port: 4100, admin_port: 9911, ..InjectSettings::default() };
    let default_ports = json!({"containers": [{"name": "app", "image": "a", "ports": [{"containerPort": 4000}, {"containerPort": 9901}]}]});
    assert_eq!(mutate(&typed(&annotated(default_ports)), &moved).unwrap().decision, Decision::Injected);
    let err =
        refused(json!({"containers": [{"name": "app", "image": "a", "ports": [{"containerPort": 9911}]}]}), &moved);
    assert_eq!(err, InjectError::PortTaken { list: "containers", index: 0, port: 9911, role: "admin port" });
}

#[test]
fn host_network_pods_are_refused_unless_they_opt_in() {
    let spec = json!({"hostNetwork": true, "containers": [{"name": "app", "image": "a", "envFrom": [{"configMapRef": {"name": "c"}}]}]});
    let err = mutate(&typed(&annotated(spec.clone())), &InjectSettings::default()).unwrap_err();
    assert_eq!(err, InjectError::HostNetwork { port: 4000, admin_port: 9901 });
    assert!(err.to_string().contains("keyrelay.dev/allow-host-network"), "{err}");

    let mut opted_in = annotated(spec);
    opted_in["metadata"]["annotations"]["keyrelay.dev/allow-host-network"] = json!("true");
    let (mutation, _) = inject(&opted_in, &InjectSettings::default());
    assert_eq!(mutation.warnings.len(), 2, "{:?}", mutation.warnings);
    assert!(mutation.warnings[0].contains("spec.containers[0] uses envFrom"), "{:?}", mutation.warnings);
    assert!(mutation.warnings[1].contains("hostNetwork"));

    opted_in["metadata"]["annotations"]["keyrelay.dev/allow-host-network"] = json!("yes please");
    let err = mutate(&typed(&opted_in), &InjectSettings::default()).unwrap_err();
    assert_eq!(err, InjectError::NotABool(ALLOW_HOST_NETWORK_ANNOTATION));
    assert!(!err.to_string().contains("please"), "{err}");
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
