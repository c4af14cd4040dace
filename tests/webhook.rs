//! `keyrelay webhook`, the real binary: a generated CA and serving certificate, real
//! AdmissionReview requests over TLS (HTTP/1.1 and HTTP/2), the returned JSON patch
//! applied to the Pod the way the API server does, and the result inspected.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[path = "support/webhook.rs"]
mod webhook_process;

use webhook_process::Webhook;

const BIN: &str = env!("CARGO_BIN_EXE_keyrelay");
const STARTUP: Duration = Duration::from_secs(60);

const SERVICE_DNS: &str = "keyrelay-webhook.keyrelay.svc";

/// A CA and a serving certificate for the webhook Service's DNS name, as the chart
/// (or cert-manager) would make them; returns the client's trust root.
fn certs() -> (String, String, rustls::pki_types::CertificateDer<'static>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "keyrelay test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_params = CertificateParams::new(vec![SERVICE_DNS.to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    (leaf.pem(), leaf_key.serialize_pem(), ca_cert.der().clone())
}

fn start(extra_args: &[&str]) -> Webhook {
    let (cert, key, ca) = certs();
    Webhook::start(cert.as_bytes(), key.as_bytes(), ca, extra_args)
}

struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Webhook {
    /// One request on a fresh TLS connection that checks the certificate against the CA
    /// and the Service's DNS name, as the API server does.
    async fn request(&self, method: &str, path: &str, body: Vec<u8>, http2: bool) -> Answer {
        let alpn: &[u8] = if http2 { b"h2" } else { b"http/1.1" };
        self.request_offering(Some(alpn), method, path, body, http2).await
    }

    /// [`Webhook::request`] offering `alpn` in the handshake (`None`: no ALPN at all,
    /// so the server learns the protocol from the first bytes).
    async fn request_offering(
        &self,
        alpn: Option<&[u8]>,
        method: &str,
        path: &str,
        body: Vec<u8>,
        http2: bool,
    ) -> Answer {
        let mut config = (*self.tls).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(SERVICE_DNS).unwrap(), tcp)
            .await
            .expect("TLS handshake with the webhook");
        assert_eq!(tls.get_ref().1.alpn_protocol(), alpn);
        let request = http::Request::builder()
            .method(method)
            .uri(format!("https://{SERVICE_DNS}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = if http2 {
            let (mut sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        } else {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
            tokio::spawn(connection);
            sender.send_request(request).await.unwrap()
        };
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer { status, body }
    }

    async fn review(&self, pod: &Value) -> Value {
        let answer = self.request("POST", "/mutate", serde_json::to_vec(&admission_review(pod)).unwrap(), false).await;
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        answer.json()
    }
}

const UID: &str = "0c9a8d74-9cb7-44dd-b98e-09fd62def2f4";

fn admission_review(pod: &Value) -> Value {
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": UID,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "team-a",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

/// A pod as the ServiceAccount admission plugin hands it to webhooks: generateName, an
/// init container, two app containers (one with its own OPENAI_BASE_URL), and the
/// automatic token volume mounted into each container.
fn app_pod(annotations: Value) -> Value {
    let token = json!([{"name": "kube-api-access-x1", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]);
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"generateName": "chat-7d9f8b6c5d-", "namespace": "team-a", "labels": {"app": "chat"}, "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "chat:1.4", "args": ["migrate"], "volumeMounts": token}],
            "containers": [
                {"name": "chat", "image": "chat:1.4", "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                 "env": [{"name": "LOG_LEVEL", "value": "info"}], "volumeMounts": token},
                {"name": "worker", "image": "chat:1.4", "args": ["worker"],
                 "env": [{"name": "OPENAI_BASE_URL", "value": "http://gateway.internal/v1"}], "volumeMounts": token}
            ],
            "volumes": [{"name": "kube-api-access-x1", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}],
            "restartPolicy": "Always",
            "serviceAccountName": "chat"
        }
    })
}

fn injected_annotations() -> Value {
    json!({"keyrelay.dev/inject": "true", "keyrelay.dev/config": "chat-llm-config", "keyrelay.dev/secret": "chat-llm-keys"})
}

/// Decodes the base64 JSON patch and applies it, as the API server does.
fn apply(pod: &Value, review: &Value) -> Value {
    let response = &review["response"];
    assert_eq!(response["uid"], UID);
    assert_eq!(response["allowed"], true, "{review}");
    assert_eq!(response["patchType"], "JSONPatch");
    let encoded = response["patch"].as_str().expect("patch is a base64 string");
    let raw = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    patched
}

fn find<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} in {list}"))
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

#[tokio::test]
async fn injects_a_native_sidecar_and_a_second_pass_changes_nothing() {
    let webhook = start(&[]);
    let pod = app_pod(injected_annotations());
    let review = webhook.review(&pod).await;
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let patched = apply(&pod, &review);
    let spec = &patched["spec"];

    let init = spec["initContainers"].as_array().unwrap();
    assert_eq!(init.len(), 2);
    let sidecar = &init[0];
    assert_eq!(sidecar["name"], "keyrelay", "the sidecar starts before the app's init containers");
    assert_eq!(sidecar["restartPolicy"], "Always");
    assert_eq!(sidecar["image"], "registry.test/keyrelay:t1");
    let args = sidecar["args"].as_array().unwrap();
    for expected in
        ["run", "/etc/keyrelay/config/config.yaml", "/etc/keyrelay/secrets", "127.0.0.1:4000", "0.0.0.0:9901"]
    {
        assert!(args.contains(&json!(expected)), "{expected} not in {args:?}");
    }
    // Started = serving (a bad config is waited out with 503s), ready = configured.
    for (probe, path) in [("startupProbe", "/healthz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(sidecar[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(sidecar[probe]["httpGet"]["port"], 9901, "{probe}");
    }
    let security = &sidecar["securityContext"];
    assert_eq!(
        *security,
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "readOnlyRootFilesystem": true,
               "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
               "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert!(sidecar["resources"]["requests"]["memory"].is_string());
    let mounts = sidecar["volumeMounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2);
    for mount in mounts {
        assert!(mount.get("subPath").is_none() && mount.get("subPathExpr").is_none(), "{mount}");
        assert_eq!(mount["readOnly"], true);
    }
    assert_eq!(find(&spec["volumes"], "keyrelay-config")["configMap"]["name"], "chat-llm-config");
    assert_eq!(find(&spec["volumes"], "keyrelay-secrets")["secret"]["secretName"], "chat-llm-keys");
    assert!(find(&spec["volumes"], "kube-api-access-x1").is_object(), "existing volumes are kept");
    assert!(spec.get("automountServiceAccountToken").is_none(), "no API-watch mode unless asked");

    let chat = find(&spec["containers"], "chat");
    assert_eq!(env(chat, "OPENAI_BASE_URL"), Some("http://127.0.0.1:4000/v1"));
    assert_eq!(env(chat, "ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:4000"));
    assert_eq!(env(chat, "LOG_LEVEL"), Some("info"));
    let worker = find(&spec["containers"], "worker");
    assert_eq!(env(worker, "OPENAI_BASE_URL"), Some("http://gateway.internal/v1"), "an explicit value wins");
    assert_eq!(env(worker, "ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:4000"));
    assert_eq!(env(find(&spec["initContainers"], "migrate"), "OPENAI_BASE_URL"), Some("http://127.0.0.1:4000/v1"));
    assert_eq!(patched["metadata"]["annotations"]["keyrelay.dev/status"], "injected");
    // What the patch must not touch.
    let mut labels = pod["metadata"]["labels"].clone();
    labels["keyrelay.dev/injected"] = json!("true");
    assert_eq!(patched["metadata"]["labels"], labels, "only the label the chart's PodMonitor selects is added");
    assert_eq!(patched["metadata"]["annotations"]["prometheus.io/port"], "9901");
    assert_eq!(spec["serviceAccountName"], "chat");

    // The API server reinvokes webhooks (reinvocationPolicy IfNeeded): nothing changes.
    let again = webhook.review(&patched).await;
    assert_eq!(again["response"]["allowed"], true);
    assert!(again["response"].get("patch").is_none(), "second pass patched: {again}");
    assert!(again["response"].get("patchType").is_none());
}

#[tokio::test]
async fn container_mode_from_the_flag_adds_a_plain_sidecar_over_http2() {
    let webhook = start(&["--sidecar-mode", "container", "--sidecar-port", "4100"]);
    let pod = app_pod(injected_annotations());
    let answer = webhook.request("POST", "/mutate", serde_json::to_vec(&admission_review(&pod)).unwrap(), true).await;
    assert_eq!(answer.status, 200);
    let patched = apply(&pod, &answer.json());
    let sidecar = find(&patched["spec"]["containers"], "keyrelay");
    assert!(sidecar.get("restartPolicy").is_none());
    assert_eq!(patched["spec"]["initContainers"].as_array().unwrap().len(), 1);
    assert_eq!(env(find(&patched["spec"]["containers"], "chat"), "OPENAI_BASE_URL"), Some("http://127.0.0.1:4100/v1"));
    assert_eq!(patched["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"], "chat");
}

#[tokio::test]
async fn a_client_offering_no_alpn_is_served_in_the_protocol_it_speaks() {
    let webhook = start(&[]);
    let pod = app_pod(injected_annotations());
    for http2 in [false, true] {
        let review = serde_json::to_vec(&admission_review(&pod)).unwrap();
        let answer = webhook.request_offering(None, "POST", "/mutate", review, http2).await;
        assert_eq!(answer.status, 200, "HTTP/2: {http2}: {}", String::from_utf8_lossy(&answer.body));
        assert_eq!(answer.json()["response"]["uid"], UID, "HTTP/2: {http2}");
    }
}

#[tokio::test]
async fn pods_without_the_annotation_are_allowed_untouched() {
    let webhook = start(&[]);
    // The last one is no valid Pod: it did not ask, so it is not even decoded.
    let mut broken = app_pod(json!({"other": "x"}));
    broken["metadata"]["labels"] = json!(["not", "a", "map"]);
    broken["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("eighty");
    for pod in
        [app_pod(json!(null)), app_pod(json!({"keyrelay.dev/inject": "false", "keyrelay.dev/config": "c"})), broken]
    {
        let review = webhook.review(&pod).await;
        assert_eq!(review["response"]["uid"], UID);
        assert_eq!(review["response"]["allowed"], true, "{review}");
        assert!(review["response"].get("patch").is_none(), "{review}");
    }
}

#[tokio::test]
async fn conflicting_pods_are_refused_naming_the_conflict_but_no_value() {
    let webhook = start(&[]);
    let refusal = |review: &Value| {
        assert_eq!(review["response"]["uid"], UID);
        assert_eq!(review["response"]["allowed"], false, "{review}");
        assert_eq!(review["response"]["status"]["code"], 403);
        let message = review["response"]["status"]["message"].as_str().unwrap().to_owned();
        assert!(!message.contains("sk-secret-looking"), "error replies never quote field values: {message}");
        message
    };
    let mut host = app_pod(injected_annotations());
    host["spec"]["hostNetwork"] = json!(true);
    let message = refusal(&webhook.review(&host).await);
    assert!(message.contains("hostNetwork") && message.contains("keyrelay.dev/allow-host-network"), "{message}");
    host["metadata"]["annotations"]["keyrelay.dev/allow-host-network"] = json!("true");
    let opted_in = webhook.review(&host).await;
    assert!(apply(&host, &opted_in)["spec"]["initContainers"][0]["name"] == "keyrelay");
    assert!(opted_in["response"]["warnings"][0].as_str().unwrap().contains("node"), "{opted_in}");

    let mut port = app_pod(injected_annotations());
    port["spec"]["containers"][1]["name"] = json!("sk-secret-looking");
    port["spec"]["containers"][1]["ports"] = json!([{"containerPort": 9901}]);
    let message = refusal(&webhook.review(&port).await);
    assert!(message.contains("spec.containers[1]") && message.contains("9901"), "{message}");

    let mut named = app_pod(injected_annotations());
    named["spec"]["containers"][1]["name"] = json!("keyrelay");
    named["spec"]["containers"][1]["image"] = json!("sk-secret-looking:1");
    let message = refusal(&webhook.review(&named).await);
    assert!(message.contains("container named keyrelay"), "{message}");

    // Annotations are written by whoever creates pods: one that would make kubelet
    // copy the Redis password into the trace endpoint is refused, not injected.
    let mut otel = app_pod(injected_annotations());
    otel["metadata"]["annotations"]["keyrelay.dev/otel-endpoint"] =
        json!("http://sk-secret-looking.example/$(KEYRELAY_SHARED_PASSWORD)");
    let message = refusal(&webhook.review(&otel).await);
    assert!(message.contains("keyrelay.dev/otel-endpoint") && message.contains("'$'"), "{message}");
    otel["metadata"]["annotations"]["keyrelay.dev/otel-endpoint"] = json!("http://otel.observability:4318");
    let patched = apply(&otel, &webhook.review(&otel).await);
    let sidecar = &patched["spec"]["initContainers"][0];
    let endpoint = sidecar["env"].as_array().unwrap().iter().find(|e| e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT");
    assert_eq!(endpoint.unwrap()["value"], "http://otel.observability:4318");

    let mut bad = app_pod(injected_annotations());
    bad["spec"]["containers"][0]["ports"][0]["containerPort"] = json!("sk-secret-looking");
    let review = webhook.review(&bad).await;
    assert_eq!(review["response"]["status"]["code"], 400, "{review}");
    let message = review["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("spec.containers[0].ports[0].containerPort"), "{message}");
    assert!(!message.contains("sk-secret-looking"), "error replies never quote field values: {message}");
}

#[tokio::test]
async fn api_watch_mode_gives_the_token_to_the_sidecar_only() {
    let webhook = start(&["--sidecar-api-watch", "true"]);
    const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
    let mounts_token =
        |c: &Value| c["volumeMounts"].as_array().into_iter().flatten().any(|m| m["mountPath"] == TOKEN_DIR);
    let pod = app_pod(injected_annotations());
    let patched = apply(&pod, &webhook.review(&pod).await);
    let spec = &patched["spec"];
    assert_eq!(spec["automountServiceAccountToken"], false);
    let volumes: Vec<&str> = spec["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(volumes, ["keyrelay-config", "keyrelay-secrets", "keyrelay-api-token"]);
    let sidecar = find(&spec["initContainers"], "keyrelay");
    let token = sidecar["volumeMounts"].as_array().unwrap().iter().find(|m| m["mountPath"] == TOKEN_DIR).unwrap();
    assert_eq!(token["name"], "keyrelay-api-token");
    for (list, name) in [("containers", "chat"), ("containers", "worker"), ("initContainers", "migrate")] {
        assert!(!mounts_token(find(&spec[list], name)), "{name} still mounts a token: {patched}");
    }
    let sources = &find(&spec["volumes"], "keyrelay-api-token")["projected"]["sources"];
    assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "namespace");
    let again = webhook.review(&patched).await;
    assert!(again["response"].get("patch").is_none(), "second pass patched: {again}");

    // The pod's annotation overrides the injector's default.
    let mut annotations = injected_annotations();
    annotations["keyrelay.dev/api-watch"] = json!("false");
    let pod = app_pod(annotations);
    let patched = apply(&pod, &webhook.review(&pod).await);
    assert!(patched["spec"].get("automountServiceAccountToken").is_none());
    assert!(mounts_token(find(&patched["spec"]["containers"], "chat")));
}

#[tokio::test]
async fn an_annotated_pod_without_a_secret_name_is_refused_with_the_reason() {
    let webhook = start(&[]);
    let review = webhook.review(&app_pod(json!({"keyrelay.dev/inject": "true", "keyrelay.dev/config": "c"}))).await;
    let response = &review["response"];
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    assert!(response["status"]["message"].as_str().unwrap().contains("keyrelay.dev/secret"), "{review}");
}

#[tokio::test]
async fn garbage_gets_an_error_response_and_the_server_keeps_serving() {
    let webhook = start(&[]);
    let inputs: [&[u8]; 4] = [
        b"\x00\x01 definitely not json",
        b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\"}",
        b"{\"request\": {\"uid\": 5}}",
        b"[]",
    ];
    for input in inputs {
        let answer = webhook.request("POST", "/mutate", input.to_vec(), false).await;
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
        let json = answer.json();
        assert_eq!(json["response"]["allowed"], false);
        assert_eq!(json["response"]["status"]["code"], 400);
    }
    // Just over the 4 MiB limit: the server has read (almost) all of it when it answers,
    // so closing the connection cannot reset the response away.
    let too_big = vec![b' '; (4 << 20) + 16];
    assert_eq!(webhook.request("POST", "/mutate", too_big, false).await.status, 413);
    assert_eq!(webhook.request("GET", "/mutate", Vec::new(), false).await.status, 405);
    assert_eq!(webhook.request("GET", "/nope", Vec::new(), false).await.status, 404);
    assert_eq!(webhook.request("GET", "/healthz", Vec::new(), true).await.status, 200);
    // Still serving real reviews.
    let pod = app_pod(injected_annotations());
    let patched = apply(&pod, &webhook.review(&pod).await);
    assert_eq!(patched["spec"]["initContainers"][0]["name"], "keyrelay");
}

#[tokio::test]
async fn sigterm_stops_the_webhook_with_exit_code_0() {
    let mut webhook = start(&[]);
    assert_eq!(webhook.request("GET", "/healthz", Vec::new(), false).await.status, 200);
    let pid = webhook.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = std::time::Instant::now() + STARTUP;
    let status = loop {
        if let Some(status) = webhook.child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "webhook still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn an_unusable_certificate_stops_startup_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("tls.key"), "not a key").unwrap();
    let out = Command::new(BIN)
        .arg("webhook")
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tls.crt") && stderr.contains("no PEM certificate"), "{stderr}");
}
