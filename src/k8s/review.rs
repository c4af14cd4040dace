//! One AdmissionReview in, one out: decode, decide with [`mutate`], encode. No I/O, so
//! the HTTP layer stays a thin shell and this is testable byte for byte.

use base64::Engine as _;
use http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use serde_json::Value;

use super::inject::{asks_for_injection, mutate, Decision, INJECT_ANNOTATION};
use super::sidecar::InjectSettings;

/// An HTTP answer: status and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// Everything that can go wrong at the webhook's HTTP boundary. [`WebhookError::into_reply`]
/// is the one place these become statuses; every body is an AdmissionReview whose
/// response is `allowed: false` with the reason, so the API server logs something useful.
/// No message quotes the request: a position or a field path says where it went wrong.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("not found: the webhook serves POST /mutate and GET /healthz")]
    NotFound,
    #[error("method not allowed: use POST /mutate")]
    MethodNotAllowed,
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("cannot read the request body")]
    BodyRead,
    #[error("malformed AdmissionReview: not JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    /// Not an `admission.k8s.io/v1` AdmissionReview; holds the path of the bad field.
    #[error("malformed AdmissionReview: unexpected value at {0}")]
    Malformed(String),
    #[error("malformed AdmissionReview: it has no request")]
    NoRequest,
}

impl WebhookError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::NotFound => StatusCode::NOT_FOUND,
            WebhookError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            WebhookError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::BodyRead
            | WebhookError::NotJson { .. }
            | WebhookError::Malformed(_)
            | WebhookError::NoRequest => StatusCode::BAD_REQUEST,
        }
    }

    pub fn into_reply(self) -> Reply {
        let status = self.status();
        let mut response = AdmissionResponse::invalid(self.to_string());
        response.result = response.result.with_code(status.as_u16());
        Reply { status, body: encode(response) }
    }
}

/// Answers one AdmissionReview body.
pub fn review(body: &[u8], settings: &InjectSettings) -> Result<Reply, WebhookError> {
    let mut envelope: Value = serde_json::from_slice(body).map_err(|e| {
        tracing::warn!(line = e.line(), column = e.column(), "rejected a malformed AdmissionReview");
        WebhookError::NotJson { line: e.line(), column: e.column() }
    })?;
    // The objects come out before the envelope is decoded: the Pod is only read if it
    // asks for injection, so a pod that did not ask is allowed however it looks, and
    // oldObject is never needed.
    let object = envelope.get_mut("request").and_then(Value::as_object_mut).and_then(|request| {
        request.remove("oldObject");
        request.remove("object")
    });
    let review: AdmissionReview<DynamicObject> = serde_path_to_error::deserialize(envelope).map_err(|e| {
        let path = e.path().to_string();
        tracing::warn!(path, "rejected a malformed AdmissionReview");
        WebhookError::Malformed(path)
    })?;
    let request: AdmissionRequest<DynamicObject> = review.try_into().map_err(|_| WebhookError::NoRequest)?;
    Ok(Reply { status: StatusCode::OK, body: encode(decide(&request, object, settings)) })
}

/// The admission decision for a decoded request and its raw object. Anything that is
/// not a Pod CREATE is allowed as is (the webhook configuration only sends those; this
/// is defence in depth).
fn decide(
    request: &AdmissionRequest<DynamicObject>,
    object: Option<Value>,
    settings: &InjectSettings,
) -> AdmissionResponse {
    let allow = AdmissionResponse::from(request);
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.operation != Operation::Create || request.sub_resource.is_some() {
        return allow;
    }
    let Some(object) = object else { return allow };
    let metadata = object.get("metadata");
    let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str);
    let asked = metadata.and_then(|m| m.get("annotations")).and_then(|a| a.get(INJECT_ANNOTATION));
    if !asks_for_injection(asked.and_then(Value::as_str)) {
        return allow;
    }
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let name = text("name").or(text("generateName")).unwrap_or_default().to_owned();
    let pod: Pod = match serde_path_to_error::deserialize(object) {
        Ok(pod) => pod,
        Err(e) => {
            let path = e.path().to_string();
            tracing::warn!(uid = %request.uid, namespace, pod = name, path, "cannot decode the Pod in an AdmissionReview");
            let message = format!("keyrelay: the pod asks for injection but is not a valid v1 Pod (at {path})");
            return refuse(allow, StatusCode::BAD_REQUEST, &message);
        }
    };
    match mutate(&pod, settings) {
        Ok(mutation) => {
            if mutation.decision != Decision::NotRequested {
                tracing::info!(uid = %request.uid, namespace, pod = name, decision = ?mutation.decision,
                    operations = mutation.patch.len(), "admitted");
            }
            let mut response = allow;
            if !mutation.warnings.is_empty() {
                response.warnings = Some(mutation.warnings);
            }
            if mutation.patch.is_empty() {
                return response;
            }
            match response.clone().with_patch(mutation.patch) {
                Ok(patched) => patched,
                Err(_) => refuse(response, StatusCode::INTERNAL_SERVER_ERROR, "keyrelay: cannot encode the patch"),
            }
        }
        Err(e) => {
            tracing::info!(uid = %request.uid, namespace, pod = name, reason = %e, "refused");
            refuse(allow, StatusCode::FORBIDDEN, &e.to_string())
        }
    }
}

fn refuse(response: AdmissionResponse, code: StatusCode, message: &str) -> AdmissionResponse {
    let mut response = response.deny(message);
    let reason = code.canonical_reason().unwrap_or("Forbidden").replace(' ', "");
    response.result = Status::failure(message, &reason).with_code(code.as_u16());
    response
}

/// Serialises the review. kube-core writes `patch` (`Vec<u8>`) as an array of numbers,
/// but the API's JSON form of `[]byte` is base64 (kube-rs issue 1781), so it is
/// re-encoded here.
fn encode(mut response: AdmissionResponse) -> Vec<u8> {
    let patch = response.patch.take();
    let mut value = serde_json::to_value(response.into_review()).unwrap_or(Value::Null);
    if let (Some(patch), Some(Value::Object(fields))) = (patch, value.get_mut("response")) {
        fields.insert("patch".to_owned(), Value::String(base64::engine::general_purpose::STANDARD.encode(patch)));
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
#[path = "review_proptests.rs"]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn body(object: Value, operation: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "team-a",
                "operation": operation,
                "userInfo": {"username": "admin"},
                "object": object,
                "dryRun": false
            }
        }))
        .unwrap()
    }

    fn annotated_pod() -> Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "app-", "annotations": {
                "keyrelay.dev/inject": "true", "keyrelay.dev/config": "cfg", "keyrelay.dev/secret": "keys"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        })
    }

    fn decode(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn patch_is_base64_json_patch_and_uid_is_echoed() {
        let reply = review(&body(annotated_pod(), "CREATE"), &InjectSettings::default()).unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        let json = decode(&reply);
        assert_eq!(json["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(json["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(json["response"]["allowed"], true);
        assert_eq!(json["response"]["patchType"], "JSONPatch");
        let raw =
            base64::engine::general_purpose::STANDARD.decode(json["response"]["patch"].as_str().unwrap()).unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
        assert!(!patch.is_empty());
    }

    #[test]
    fn updates_and_other_kinds_are_allowed_without_a_patch() {
        let json = decode(&review(&body(annotated_pod(), "UPDATE"), &InjectSettings::default()).unwrap());
        assert_eq!(json["response"]["allowed"], true);
        assert!(json["response"].get("patch").is_none());
    }

    #[test]
    fn refusals_carry_a_status_code_and_message() {
        let mut pod = annotated_pod();
        pod["metadata"]["annotations"].as_object_mut().unwrap().remove("keyrelay.dev/secret");
        let json = decode(&review(&body(pod, "CREATE"), &InjectSettings::default()).unwrap());
        assert_eq!(json["response"]["allowed"], false);
        assert_eq!(json["response"]["status"]["code"], 403);
        assert!(json["response"]["status"]["message"].as_str().unwrap().contains("keyrelay.dev/secret"));
    }

    #[test]
    fn garbage_and_empty_reviews_are_400_with_an_admission_body() {
        for input in [&b"not json"[..], b"{}", b"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\"}"]
        {
            let reply = match review(input, &InjectSettings::default()) {
                Ok(reply) => panic!("accepted {input:?}: {reply:?}"),
                Err(e) => e.into_reply(),
            };
            assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            let json = decode(&reply);
            assert_eq!(json["response"]["allowed"], false);
            assert_eq!(json["response"]["status"]["code"], 400);
        }
    }

    #[test]
    fn a_pod_is_decoded_only_if_it_asks_for_injection() {
        // Wrong types everywhere kube's Pod and ObjectMeta care about.
        let broken = |annotations: Value| {
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "x", "labels": ["sk-marker-label"], "annotations": annotations},
                "spec": {"containers": [{"name": "app", "ports": [{"containerPort": "sk-marker-port"}]}]}})
        };
        for annotations in [Value::Null, serde_json::json!({"other": 5}), serde_json::json!({"keyrelay.dev/inject": 1})]
        {
            let json = decode(&review(&body(broken(annotations), "CREATE"), &InjectSettings::default()).unwrap());
            assert_eq!(json["response"]["allowed"], true, "{json}");
            assert!(json["response"].get("patch").is_none());
        }
        for object in [serde_json::json!(null), serde_json::json!("a string"), serde_json::json!([1, 2])] {
            let json = decode(&review(&body(object, "CREATE"), &InjectSettings::default()).unwrap());
            assert_eq!(json["response"]["allowed"], true, "{json}");
        }

        let asked = broken(serde_json::json!({"keyrelay.dev/inject": "true", "note": "sk-marker-annotation"}));
        let json = decode(&review(&body(asked, "CREATE"), &InjectSettings::default()).unwrap());
        assert_eq!(json["response"]["allowed"], false);
        assert_eq!(json["response"]["status"]["code"], 400);
        let message = json["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("metadata.labels"), "{message}");
        assert!(!message.contains("sk-marker"), "error replies never quote field values: {message}");
    }

    #[test]
    fn envelope_errors_name_a_position_or_a_path_never_a_value() {
        let mut bad_operation: Value = serde_json::from_slice(&body(annotated_pod(), "CREATE")).unwrap();
        bad_operation["request"]["operation"] = Value::from("sk-marker-operation");
        let mut bad_uid = bad_operation.clone();
        bad_uid["request"]["operation"] = Value::from("CREATE");
        bad_uid["request"]["uid"] = serde_json::json!({"sk-marker": "sk-marker-uid"});
        let inputs = [
            (serde_json::to_vec(&bad_operation).unwrap(), "request.operation"),
            (serde_json::to_vec(&bad_uid).unwrap(), "request.uid"),
            (b"{\"request\": {\"uid\": \"sk-marker-truncated".to_vec(), "line 1"),
        ];
        for (input, place) in inputs {
            let reply = review(&input, &InjectSettings::default()).unwrap_err().into_reply();
            assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            let message = decode(&reply)["response"]["status"]["message"].as_str().unwrap().to_owned();
            assert!(message.contains(place), "{message}");
            assert!(!message.contains("sk-marker"), "error replies never quote field values: {message}");
        }
    }

    #[test]
    fn a_malformed_old_object_does_not_matter() {
        let mut json: Value = serde_json::from_slice(&body(annotated_pod(), "CREATE")).unwrap();
        json["request"]["oldObject"] = serde_json::json!({"metadata": 7});
        let reply = review(&serde_json::to_vec(&json).unwrap(), &InjectSettings::default()).unwrap();
        assert_eq!(decode(&reply)["response"]["patchType"], "JSONPatch");
    }
}
