//! Fuzzing `review()` with property tests: arbitrary bytes, damaged real reviews,
//! arbitrary JSON where the Pod and its fields go, deep nesting, huge numbers, and
//! structured pods built from the names the injector cares about. Whatever comes in,
//! nothing panics and the answer is an AdmissionReview; no refusal or warning quotes a
//! value from the request; a pod that did not ask is allowed untouched; an admitted
//! patch applies and a second pass over its result changes nothing.

use base64::Engine as _;
use proptest::prelude::*;
use proptest::strategy::Strategy as Generator;
use serde_json::{json, Map, Value};

use super::*;
use crate::k8s::sidecar::SidecarMode;

/// Every string value the generators invent carries this, so a reply that quotes one
/// is caught. Keys and fixed names do not.
const MARK: &str = "zq-";

const UID: &str = "3f1c0f5e-0000-4000-8000-00000000fuzz";

fn review_of(object: Value, operation: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "fuzz",
            "operation": operation,
            "userInfo": {"username": "fuzzer"},
            "object": object,
        }
    }))
    .unwrap_or_default()
}

/// What every answer must be: an `admission.k8s.io/v1` AdmissionReview with a
/// response, whose refusal message and warnings quote nothing marked.
fn check_reply(result: Result<Reply, WebhookError>) -> Result<Value, TestCaseError> {
    let reply = result.unwrap_or_else(WebhookError::into_reply);
    let json: Value = serde_json::from_slice(&reply.body).map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
    prop_assert_eq!(&json["apiVersion"], "admission.k8s.io/v1");
    prop_assert_eq!(&json["kind"], "AdmissionReview");
    let response = &json["response"];
    prop_assert!(response["allowed"].is_boolean(), "{}", json);
    if response["allowed"] == false {
        let code = response["status"]["code"].as_u64().unwrap_or_default();
        prop_assert!((400..600).contains(&code), "a refusal has an error code: {}", json);
        let message = response["status"]["message"].as_str().unwrap_or_default();
        prop_assert!(!message.is_empty(), "a refusal says why: {}", json);
        prop_assert!(!message.contains(MARK), "a refusal quotes the request: {}", message);
    }
    for warning in response["warnings"].as_array().into_iter().flatten() {
        prop_assert!(!warning.as_str().unwrap_or_default().contains(MARK), "a warning quotes the request: {}", warning);
    }
    Ok(json)
}

fn marked() -> impl Generator<Value = String> {
    "[a-zA-Z0-9 ._/:-]{0,12}".prop_map(|s| format!("{MARK}{s}"))
}

/// Any JSON, with numbers at the edges of every numeric type.
fn any_json() -> impl Generator<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![4000i64, 9901, 0, -1, 65535, 65536, i64::from(i32::MAX) + 1]).prop_map(Value::from),
        marked().prop_map(Value::String),
        prop::sample::select(vec!["true", "false", "keyrelay", "TCP", "UDP", "Always"]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// Keys the webhook reads, and others.
fn key() -> impl Generator<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "metadata", "annotations", "name", "generateName", "spec", "containers", "initContainers",
            "ports", "containerPort", "hostPort", "protocol", "env", "envFrom", "volumes", "volumeMounts",
            "hostNetwork", "automountServiceAccountToken", "projected", "sources", "serviceAccountToken",
            "restartPolicy", "image", "value", "keyrelay.dev/inject", "keyrelay.dev/config", "keyrelay.dev/secret",
            "keyrelay.dev/status", "keyrelay.dev/api-watch", "keyrelay.dev/allow-host-network",
        ]).prop_map(str::to_owned),
        1 => "[a-z]{1,8}",
    ]
}

/// `value` inside `depth` arrays and objects, as text: a `Value` that deep would
/// overflow the test's own stack when serialised or dropped.
fn nested(value: &Value, depth: usize) -> String {
    let open: String = (0..depth).map(|level| if level % 2 == 0 { "[" } else { "{\"x\":" }).collect();
    let close: String = (0..depth).rev().map(|level| if level % 2 == 0 { "]" } else { "}" }).collect();
    format!("{open}{value}{close}")
}

/// `template`, serialised, with the string `"@"` replaced by raw JSON text.
fn splice(template: &Value, raw: &str) -> String {
    serde_json::to_string(template).unwrap_or_default().replacen("\"@\"", raw, 1)
}

/// A `"true"`/`"false"` annotation, usually valid; `weight_true` of 10 ask for it.
fn flag(weight_true: u32) -> impl Generator<Value = Option<Value>> {
    prop_oneof![
        weight_true => Just(Some(Value::from("true"))),
        (10 - weight_true) => prop_oneof![
            6 => Just(None),
            3 => prop::sample::select(vec!["false", " TRUE "]).prop_map(|v| Some(Value::from(v))),
            1 => marked().prop_map(|v| Some(Value::String(v))),
            1 => any_json().prop_map(Some),
        ],
    ]
}

fn port() -> impl Generator<Value = Value> {
    let number = prop_oneof![
        30 => prop::sample::select(vec![4000i64, 9901, 8080, 4100, 9911]),
        1 => any::<i64>(),
    ];
    (number, prop::option::of(prop::sample::select(vec!["TCP", "UDP", "SCTP"])), prop::bool::weighted(0.1)).prop_map(
        |(number, protocol, host)| {
            let mut port = json!({"containerPort": number});
            if let Some(protocol) = protocol {
                port["protocol"] = json!(protocol);
            }
            if host {
                port["hostPort"] = json!(number);
            }
            port
        },
    )
}

fn container() -> impl Generator<Value = Value> {
    let name = prop_oneof![
        1 => Just("keyrelay".to_owned()),
        15 => "[a-z]{1,6}".prop_map(|s| format!("{MARK}{s}")),
    ];
    let env = prop::option::of(prop::collection::vec(
        (prop::sample::select(vec!["OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OTHER"]), marked())
            .prop_map(|(name, value)| json!({"name": name, "value": value})),
        0..3,
    ));
    let mounts = prop::option::of(prop::collection::vec(
        prop::sample::select(vec!["kube-api-access-ab12c", "data", "keyrelay-config"])
            .prop_map(|name| json!({"name": name, "mountPath": format!("/mnt/{name}")})),
        0..3,
    ));
    let restart = prop::option::of(Just("Always"));
    (name, prop::collection::vec(port(), 0..2), env, any::<bool>(), mounts, restart).prop_map(
        |(name, ports, env, env_from, mounts, restart)| {
            let mut c = json!({"name": name, "image": format!("{MARK}image"), "ports": ports});
            if let Some(env) = env {
                c["env"] = json!(env);
            }
            if env_from {
                c["envFrom"] = json!([{"configMapRef": {"name": format!("{MARK}cm")}}]);
            }
            if let Some(mounts) = mounts {
                c["volumeMounts"] = json!(mounts);
            }
            if let Some(restart) = restart {
                c["restartPolicy"] = json!(restart);
            }
            c
        },
    )
}

fn volume() -> impl Generator<Value = Value> {
    prop::sample::select(vec![
        json!({"name": "kube-api-access-ab12c", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}),
        json!({"name": "data", "emptyDir": {}}),
        json!({"name": "keyrelay-config", "emptyDir": {}}),
        json!({"name": "keyrelay-api-token", "emptyDir": {}}),
    ])
}

/// A Pod made of what the injector looks at, most of it valid.
fn pod() -> impl Generator<Value = Value> {
    let status = prop::option::weighted(0.2, prop::sample::select(vec!["injected", "x"]));
    let annotations = (flag(8), flag(3), flag(3), status).prop_flat_map(|(inject, api_watch, host, status)| {
        let name =
            |valid: &'static str| prop::option::weighted(0.9, prop_oneof![9 => Just(valid.to_owned()), 1 => marked()]);
        let names = (name("llm-config"), name("llm-keys"));
        names.prop_map(move |(config, secret)| {
            let mut map = Map::new();
            let mut put = |key: &str, value: Option<Value>| {
                if let Some(value) = value {
                    map.insert(key.to_owned(), value);
                }
            };
            put("keyrelay.dev/inject", inject.clone());
            put("keyrelay.dev/api-watch", api_watch.clone());
            put("keyrelay.dev/allow-host-network", host.clone());
            put("keyrelay.dev/status", status.map(Value::from));
            put("keyrelay.dev/config", config.map(Value::from));
            put("keyrelay.dev/secret", secret.map(Value::from));
            Value::Object(map)
        })
    });
    let spec = (
        prop::collection::vec(container(), 1..4),
        prop::option::of(prop::collection::vec(container(), 0..3)),
        prop::option::of(prop::collection::vec(volume(), 0..3)),
        prop::option::weighted(0.2, any::<bool>()),
        prop::option::weighted(0.2, any::<bool>()),
    );
    (annotations, spec).prop_map(|(annotations, (containers, init, volumes, host_network, automount))| {
        let mut spec = json!({"containers": containers});
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                spec[key] = value;
            }
        };
        put("initContainers", init.map(Value::from));
        put("volumes", volumes.map(Value::from));
        put("hostNetwork", host_network.map(Value::from));
        put("automountServiceAccountToken", automount.map(Value::from));
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": format!("{MARK}app-"), "annotations": annotations}, "spec": spec})
    })
}

fn settings() -> impl Generator<Value = InjectSettings> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(plain, moved, api_watch)| InjectSettings {
        mode: if plain { SidecarMode::Container } else { SidecarMode::Native },
        port: if moved { 4100 } else { 4000 },
        admin_port: if moved { 9911 } else { 9901 },
        api_watch,
        ..InjectSettings::default()
    })
}

fn asked(pod: &Value) -> bool {
    crate::k8s::inject::asks_for_injection(pod["metadata"]["annotations"]["keyrelay.dev/inject"].as_str())
}

/// The admitted pod: the patch applied as the API server would.
fn patched(pod: &Value, json: &Value) -> Result<Option<Value>, TestCaseError> {
    let Some(encoded) = json["response"]["patch"].as_str() else { return Ok(None) };
    let raw =
        base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let patch: json_patch::Patch = serde_json::from_slice(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut pod = pod.clone();
    json_patch::patch(&mut pod, &patch).map_err(|e| TestCaseError::fail(format!("patch does not apply: {e}")))?;
    Ok(Some(pod))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_an_admission_review(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_reply(review(&bytes, &InjectSettings::default()))?;
    }

    #[test]
    fn damaged_reviews_get_an_admission_review(
        pod in pod(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut body = review_of(pod, "CREATE");
        for (at, byte) in flips {
            let at = at.index(body.len());
            body[at] = byte;
        }
        body.truncate(cut.index(body.len() + 1));
        check_reply(review(&body, &InjectSettings::default()))?;
    }

    #[test]
    fn arbitrary_json_anywhere_gets_an_admission_review(
        value in any_json(),
        depth in prop::sample::select(vec![0usize, 1, 20, 127, 128, 300, 2000]),
        place in 0usize..6,
        operation in prop::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT"]),
    ) {
        let value = nested(&value, depth);
        let inject = json!({"keyrelay.dev/inject": "true", "keyrelay.dev/config": "c", "keyrelay.dev/secret": "k"});
        let object = match place {
            0 => value,
            1 => splice(&json!({"metadata": {"annotations": "@"}, "spec": {"containers": []}}), &value),
            2 => splice(&json!({"metadata": {"annotations": inject}, "spec": "@"}), &value),
            3 => splice(&json!({"metadata": {"annotations": inject}, "spec": {"containers": ["@"]}}), &value),
            4 => splice(&json!({"metadata": {"annotations": inject},
                "spec": {"containers": [{"name": "app", "ports": [{"containerPort": "@"}]}]}}), &value),
            _ => splice(&json!({"metadata": "@", "spec": {"containers": [{"name": "app"}]}}), &value),
        };
        let body = splice(&serde_json::from_slice(&review_of(json!("@"), operation)).unwrap_or_default(), &object);
        check_reply(review(body.as_bytes(), &InjectSettings::default()))?;
    }

    #[test]
    fn structured_pods_are_answered_consistently(pod in pod(), settings in settings()) {
        let json = check_reply(review(&review_of(pod.clone(), "CREATE"), &settings))?;
        let response = &json["response"];
        prop_assert_eq!(&response["uid"], UID);
        if !asked(&pod) {
            prop_assert_eq!(&response["allowed"], true, "a pod that did not ask is allowed: {}", json);
            prop_assert!(response.get("patch").is_none(), "and left untouched: {}", json);
            return Ok(());
        }
        if response["allowed"] != true {
            return Ok(());
        }
        let Some(admitted) = patched(&pod, &json)? else { return Ok(()) };
        let typed: Result<k8s_openapi::api::core::v1::Pod, _> = serde_json::from_value(admitted.clone());
        prop_assert!(typed.is_ok(), "the admitted pod is a Pod: {:?}", typed.err());
        // Reinvocation: injecting an injected pod changes nothing.
        let again = check_reply(review(&review_of(admitted.clone(), "CREATE"), &settings))?;
        prop_assert_eq!(&again["response"]["allowed"], true, "{}", again);
        prop_assert!(again["response"].get("patch").is_none(), "second pass patched {} into {}", admitted, again);
    }
}
