//! One AdmissionReview in, one out: decode, decide with [`mutate`], encode. No I/O, so
//! the HTTP layer stays a thin shell and this is testable byte for byte.

use base64::Engine as _;
use http::StatusCode;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, Status};
use serde_json::Value;

use super::inject::{mutate, Decision};
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
    /// The body is not an `admission.k8s.io/v1` AdmissionReview.
    #[error("malformed AdmissionReview: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("malformed AdmissionReview: it has no request")]
    NoRequest,
}

impl WebhookError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebhookError::NotFound => StatusCode::NOT_FOUND,
            WebhookError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            WebhookError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebhookError::BodyRead | WebhookError::Malformed(_) | WebhookError::NoRequest => StatusCode::BAD_REQUEST,
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
    let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).map_err(|e| {
        // Position only: the message may quote pod fields, which can hold env values.
        tracing::warn!(line = e.line(), column = e.column(), "rejected a malformed AdmissionReview");
        WebhookError::Malformed(e)
    })?;
    let request: AdmissionRequest<DynamicObject> = review.try_into().map_err(|_| WebhookError::NoRequest)?;
    Ok(Reply { status: StatusCode::OK, body: encode(decide(&request, settings)) })
}

/// The admission decision for a decoded request. Anything that is not a Pod CREATE is
/// allowed as is (the webhook configuration only sends those; this is defence in depth).
fn decide(request: &AdmissionRequest<DynamicObject>, settings: &InjectSettings) -> AdmissionResponse {
    let allow = AdmissionResponse::from(request);
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    if !is_pod || request.operation != Operation::Create || request.sub_resource.is_some() {
        return allow;
    }
    let Some(object) = &request.object else { return allow };
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let name = object.metadata.name.as_deref().or(object.metadata.generate_name.as_deref()).unwrap_or_default();
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(e) => {
            tracing::warn!(uid = %request.uid, namespace, pod = name, "cannot decode the Pod in an AdmissionReview");
            return refuse(allow, StatusCode::BAD_REQUEST, &format!("keyrelay: cannot read the Pod: {e}"));
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
                Err(e) => refuse(response, StatusCode::INTERNAL_SERVER_ERROR, &format!("keyrelay: {e}")),
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
    fn a_pod_that_does_not_decode_is_refused_not_panicked_on() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": 7}});
        let json = decode(&review(&body(pod, "CREATE"), &InjectSettings::default()).unwrap());
        assert_eq!(json["response"]["allowed"], false);
        assert_eq!(json["response"]["status"]["code"], 400);
    }
}
