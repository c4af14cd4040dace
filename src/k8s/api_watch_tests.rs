//! API-watch mode on pods as the API server hands them to the webhook: after the
//! ServiceAccount admission plugin gave every container the automatic token.

use serde_json::{json, Value};

use super::API_WATCH_ANNOTATION;
use crate::k8s::inject::tests::{annotated, container, inject, typed};
use crate::k8s::inject::{mutate, Decision, InjectError};
use crate::k8s::sidecar::{InjectSettings, SidecarMode, SERVICE_ACCOUNT_DIR};

fn token_mount() -> Value {
    json!({"name": "kube-api-access-x7k2p", "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": true})
}

/// What the ServiceAccount plugin leaves: its projected volume, mounted everywhere.
fn admitted_pod(api_watch: Option<&str>) -> Value {
    let mut pod = annotated(json!({
        "initContainers": [{"name": "migrate", "image": "m", "volumeMounts": [token_mount()]}],
        "containers": [
            {"name": "app", "image": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}, token_mount()]},
            {"name": "worker", "image": "w", "volumeMounts": [token_mount(), {"name": "mine", "mountPath": "/mine"}]}
        ],
        "volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}},
            {"name": "mine", "projected": {"sources": [{"serviceAccountToken": {"audience": "vault", "path": "t"}}]}}
        ]
    }));
    if let Some(value) = api_watch {
        pod["metadata"]["annotations"][API_WATCH_ANNOTATION] = json!(value);
    }
    pod
}

fn mounts_of(container: &Value) -> Vec<(&str, &str)> {
    let mounts = container["volumeMounts"].as_array().map(Vec::as_slice).unwrap_or_default();
    mounts.iter().map(|m| (m["name"].as_str().unwrap(), m["mountPath"].as_str().unwrap())).collect()
}

fn volume_names(pod: &Value) -> Vec<&str> {
    pod["spec"]["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect()
}

#[test]
fn only_the_sidecar_gets_a_service_account_token() {
    for mode in [SidecarMode::Native, SidecarMode::Container] {
        let settings = InjectSettings { mode, ..InjectSettings::default() };
        let (mutation, patched) = inject(&admitted_pod(Some("true")), &settings);
        assert_eq!(mutation.decision, Decision::Injected);
        assert_eq!(patched["spec"]["automountServiceAccountToken"], false, "{mode:?}");
        assert_eq!(
            volume_names(&patched),
            ["data", "mine", "keyrelay-config", "keyrelay-secrets", "keyrelay-api-token"]
        );
        assert_eq!(mounts_of(container(&patched, "containers", "app")), [("data", "/data")]);
        assert_eq!(mounts_of(container(&patched, "containers", "worker")), [("mine", "/mine")]);
        assert!(mounts_of(container(&patched, "initContainers", "migrate")).is_empty());
        let list = if mode == SidecarMode::Native { "initContainers" } else { "containers" };
        let sidecar = container(&patched, list, "keyrelay");
        assert_eq!(mounts_of(sidecar).last(), Some(&("keyrelay-api-token", SERVICE_ACCOUNT_DIR)));
        let token = patched["spec"]["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "keyrelay-api-token");
        let sources = &token.unwrap()["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(
            sources[1]["configMap"],
            json!({"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]})
        );
        assert_eq!(sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"], "metadata.namespace");

        let again = mutate(&typed(&patched), &settings).unwrap();
        assert_eq!(again.decision, Decision::AlreadyInjected);
        assert!(again.patch.is_empty(), "{mode:?}: {:?}", again.patch);
    }
}

#[test]
fn the_chart_default_applies_unless_the_annotation_overrides_it() {
    let on = InjectSettings { api_watch: true, ..InjectSettings::default() };
    let (_, patched) = inject(&admitted_pod(None), &on);
    assert_eq!(patched["spec"]["automountServiceAccountToken"], false);

    for (pod, settings) in [(admitted_pod(Some("false")), &on), (admitted_pod(None), &InjectSettings::default())] {
        let (_, patched) = inject(&pod, settings);
        assert!(patched["spec"].get("automountServiceAccountToken").is_none());
        assert!(volume_names(&patched).contains(&"kube-api-access-x7k2p"));
        assert!(!volume_names(&patched).contains(&"keyrelay-api-token"));
        assert_eq!(mounts_of(container(&patched, "initContainers", "keyrelay")).len(), 2);
    }
}

#[test]
fn an_explicit_token_request_or_a_bad_value_is_refused() {
    let mut pod = admitted_pod(Some("true"));
    pod["spec"]["automountServiceAccountToken"] = json!(true);
    let err = mutate(&typed(&pod), &InjectSettings::default()).unwrap_err();
    assert_eq!(err, InjectError::AutomountRequested);
    assert!(err.to_string().contains("automountServiceAccountToken"), "{err}");

    let err = mutate(&typed(&admitted_pod(Some("sure"))), &InjectSettings::default()).unwrap_err();
    assert_eq!(err, InjectError::NotABool(API_WATCH_ANNOTATION));
    assert!(!err.to_string().contains("sure"), "{err}");
}
