//! The Helm chart and the plain manifests: `helm lint --strict`, `helm template` with
//! default and non-default values, and `kubernetes-validate --strict` of every
//! rendered object, every file in manifests/ and injected Pods, against Kubernetes
//! 1.29 (the first with native sidecars) and the newest version kubernetes-validate
//! ships. helm and kubernetes-validate come from `./scripts/test`; without them these
//! tests fail (they never skip), saying so.

#[path = "support/k8s_tools.rs"]
mod k8s_tools;
#[path = "support/webhook.rs"]
mod webhook_process;

use std::path::PathBuf;
use std::process::Command;

use k8s_tools::{parse_all, repo, run_validate, tool, validate_strict};
use serde::Deserialize;
use serde_json::{json, Value};

const RELEASE: &str = "kr";
const NAMESPACE: &str = "keyrelay";

/// A named set of `--set` values and what it must render.
struct Case<'a> {
    name: &'a str,
    set: &'a [&'a str],
}

/// The one value the chart requires (no image is published).
const REPOSITORY: &str = "image.repository=registry.example/platform/keyrelay";

const DEFAULT: Case<'static> = Case { name: "default", set: &[REPOSITORY] };
const CERT_MANAGER: Case<'static> = Case { name: "cert-manager", set: &[REPOSITORY, "certManager.enabled=true"] };
const CERT_MANAGER_ISSUER: Case<'static> = Case {
    name: "cert-manager-cluster-issuer",
    set: &[
        REPOSITORY,
        "certManager.enabled=true",
        "certManager.issuerRef.name=corp-ca",
        "certManager.issuerRef.kind=ClusterIssuer",
    ],
};
const PLAIN_SIDECAR: Case<'static> = Case {
    name: "plain-sidecar",
    set: &[
        REPOSITORY,
        "sidecar.mode=container",
        "replicaCount=1",
        "exampleConfig.enabled=true",
        "webhook.failurePolicy=Ignore",
        "webhook.timeoutSeconds=10",
        "webhook.objectSelector.matchLabels.llm=yes",
        "sidecar.defaultConfigMap=shared-llm-config",
        "sidecar.defaultSecret=shared-llm-keys",
        "sidecar.image.repository=registry.example/keyrelay",
        "sidecar.image.tag=9.9.9",
        "sidecar.apiWatch=true",
        "sidecar.sharedState.url=redis://redis.keyrelay.svc:6379/0",
        "sidecar.sharedState.passwordSecret=keyrelay-redis",
    ],
};

fn helm(case: &Case, command: &str) -> std::process::Output {
    let mut cmd = Command::new(tool("helm"));
    cmd.arg(command);
    if command == "template" {
        cmd.args([RELEASE, "--namespace", NAMESPACE]);
    }
    cmd.arg(chart_dir());
    if command == "lint" {
        cmd.args(["--strict", "--namespace", NAMESPACE]);
    }
    for value in case.set {
        cmd.args(["--set", value]);
    }
    cmd.output().expect("run helm")
}

/// `helm template` for a case, as parsed objects (and the raw text).
fn render(case: &Case) -> (String, Vec<Value>) {
    let out = helm(case, "template");
    assert!(out.status.success(), "helm template ({}) failed:\n{}", case.name, String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let objects = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    (text, objects)
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn one<'a>(objects: &'a [Value], wanted: &str) -> &'a Value {
    let found = kind(objects, wanted);
    assert_eq!(found.len(), 1, "expected one {wanted}, found {}", found.len());
    found[0]
}

fn webhook_env<'a>(objects: &'a [Value], name: &str) -> Option<&'a str> {
    let container = &one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

#[test]
fn helm_lint_strict_passes_for_every_value_set() {
    for case in [&DEFAULT, &CERT_MANAGER, &CERT_MANAGER_ISSUER, &PLAIN_SIDECAR] {
        let out = helm(case, "lint");
        let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && output.contains("0 chart(s) failed"), "helm lint ({}):\n{output}", case.name);
    }
}

#[test]
fn every_rendered_object_validates_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut expected = 0;
    for case in [&DEFAULT, &CERT_MANAGER, &CERT_MANAGER_ISSUER, &PLAIN_SIDECAR] {
        let (text, objects) = render(case);
        let path = dir.path().join(format!("{}.yaml", case.name));
        std::fs::write(&path, text).unwrap();
        files.push(path);
        expected += objects.iter().filter(|o| !is_cert_manager(o)).count();
    }
    validate_strict(&files, expected);
}

#[test]
fn every_file_in_manifests_validates_strictly() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let objects: usize = files.iter().map(|f| parse_all(&std::fs::read_to_string(f).unwrap()).len()).sum();
    validate_strict(&files, objects);
}

#[test]
fn injected_pods_validate_strictly_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for mode in [keyrelay::k8s::SidecarMode::Native, keyrelay::k8s::SidecarMode::Container] {
        for api_watch in [false, true] {
            let pod = injected_pod(mode, api_watch);
            let names: Vec<&str> =
                pod["spec"]["volumes"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
            // In API-watch mode the automatic token volume is swapped for the sidecar's own.
            let token = if api_watch { "keyrelay-api-token" } else { "kube-api-access-q8x2z" };
            assert_eq!(names.len(), 4, "{names:?}");
            assert!(names.contains(&token) && names.contains(&"keyrelay-secrets"), "{names:?}");
            let path = dir.path().join(format!("{mode:?}-{api_watch}.json"));
            std::fs::write(&path, serde_json::to_vec_pretty(&pod).unwrap()).unwrap();
            files.push(path);
        }
    }
    validate_strict(&files, 4);
}

#[test]
fn the_injected_sidecar_carries_the_otel_variables_and_its_pod() {
    let pod = injected_pod(keyrelay::k8s::SidecarMode::Native, false);
    let sidecar = &pod["spec"]["initContainers"][0];
    assert_eq!(sidecar["name"], "keyrelay");
    let env = sidecar["env"].as_array().unwrap();
    let var = |name: &str| env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{name}: {env:?}"));
    // The pod's annotations win over the chart's values; the rest are the chart's.
    assert_eq!(var("OTEL_EXPORTER_OTLP_ENDPOINT")["value"], "http://otel-collector.observability:4317");
    assert_eq!(var("OTEL_EXPORTER_OTLP_PROTOCOL")["value"], "grpc");
    assert_eq!(var("OTEL_TRACES_SAMPLER")["value"], "parentbased_traceidratio");
    assert_eq!(var("OTEL_TRACES_SAMPLER_ARG")["value"], "0.5");
    let field = |name: &str| var(name)["valueFrom"]["fieldRef"]["fieldPath"].clone();
    assert_eq!(field("KEYRELAY_POD_NAME"), "metadata.name");
    assert_eq!(field("KEYRELAY_POD_NAMESPACE"), "metadata.namespace");
    assert_eq!(
        var("OTEL_RESOURCE_ATTRIBUTES")["value"],
        "k8s.pod.name=$(KEYRELAY_POD_NAME),k8s.namespace.name=$(KEYRELAY_POD_NAMESPACE),deployment.environment=prod"
    );
    assert_eq!(pod["metadata"]["labels"]["keyrelay.dev/injected"], "true", "what the PodMonitor selects");
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "9901");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

#[test]
fn telemetry_values_flow_into_the_webhook() {
    let set = [
        REPOSITORY,
        "sidecar.telemetry.otlpEndpoint=https://otel.example:4318",
        "sidecar.telemetry.protocol=http/protobuf",
        "sidecar.telemetry.sampler=parentbased_traceidratio",
        "sidecar.telemetry.samplerArg=0.25",
        "sidecar.telemetry.resourceAttributes.team=llm",
        "monitoring.scrapeAnnotations=false",
    ];
    let (_, objects) = render(&Case { name: "telemetry", set: &set });
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_OTEL_ENDPOINT"), Some("https://otel.example:4318"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_OTEL_PROTOCOL"), Some("http/protobuf"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_OTEL_SAMPLER"), Some("parentbased_traceidratio"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_OTEL_SAMPLER_ARG"), Some("0.25"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_OTEL_RESOURCE_ATTRIBUTES"), Some("team=llm"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_SCRAPE_ANNOTATIONS"), Some("false"));
    let (_, defaults) = render(&DEFAULT);
    assert_eq!(webhook_env(&defaults, "KEYRELAY_SIDECAR_OTEL_ENDPOINT"), None, "no endpoint unless one is set");
}

#[test]
fn the_chart_refuses_to_render_without_an_image_repository() {
    let out = helm(&Case { name: "no-image", set: &[] }, "template");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rendered without an image");
    assert!(stderr.contains("image.repository is not set") && stderr.contains("scripts/build-image"), "{stderr}");
}

#[test]
fn strict_validation_really_rejects_unknown_fields() {
    // Guards the guard: a typo in a template must fail, not pass as an extra field.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.yaml");
    let mut pod = injected_pod(keyrelay::k8s::SidecarMode::Native, false);
    pod["spec"]["initContainers"][0]["readinesProbe"] = json!({});
    std::fs::write(&path, serde_json::to_vec(&pod).unwrap()).unwrap();
    let (ok, output) = run_validate(&[path]);
    assert!(!ok && output.contains("readinesProbe"), "{output}");
}

#[test]
fn default_values_generate_a_ca_and_trust_it_in_the_webhook_configuration() {
    let (_, objects) = render(&DEFAULT);
    assert!(!serde_json::to_string(&objects).unwrap().contains("\"subPath"), "no subPath mounts anywhere");
    let secret = one(&objects, "Secret");
    let webhook_config = one(&objects, "MutatingWebhookConfiguration");
    let hook = &webhook_config["webhooks"][0];
    assert_eq!(hook["admissionReviewVersions"], json!(["v1"]));
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["timeoutSeconds"], 5);
    assert_eq!(hook["reinvocationPolicy"], "IfNeeded");
    assert_eq!(hook["rules"][0]["resources"], json!(["pods"]));
    assert_eq!(hook["rules"][0]["operations"], json!(["CREATE"]));
    assert_eq!(hook["namespaceSelector"]["matchLabels"]["keyrelay.dev/injection"], "enabled");
    let excluded = &hook["namespaceSelector"]["matchExpressions"][0];
    assert_eq!(excluded["operator"], "NotIn");
    assert_eq!(excluded["values"], json!([NAMESPACE, "kube-system"]));
    assert_eq!(hook["clientConfig"]["service"]["path"], "/mutate");
    assert_eq!(hook["clientConfig"]["caBundle"], secret["data"]["ca.crt"]);
    assert!(kind(&objects, "Certificate").is_empty() && kind(&objects, "Issuer").is_empty());

    let service = one(&objects, "Service");
    assert_eq!(hook["clientConfig"]["service"]["name"], service["metadata"]["name"]);
    let deployment = one(&objects, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["secret"]["secretName"], secret["metadata"]["name"]);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let security = &pod["containers"][0]["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsUser"], 65532);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(one(&objects, "PodDisruptionBudget")["spec"]["minAvailable"], 1);
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_MODE"), Some("native"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_API_WATCH"), Some("false"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_IMAGE"), Some("registry.example/platform/keyrelay:0.1.0"));
    let resources: k8s_openapi::api::core::v1::ResourceRequirements =
        serde_json::from_str(webhook_env(&objects, "KEYRELAY_SIDECAR_RESOURCES").unwrap()).unwrap();
    assert_eq!(resources.requests.unwrap()["memory"].0, "64Mi");
    for object in &objects {
        let labels = &object["metadata"]["labels"];
        for label in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
        ] {
            assert!(labels[label].is_string(), "{label} missing on {}", object["kind"]);
        }
    }
}

#[tokio::test]
async fn the_generated_certificate_is_served_by_the_real_webhook() {
    let (_, objects) = render(&DEFAULT);
    let secret = one(&objects, "Secret");
    let data = |key: &str| decode_base64(secret["data"][key].as_str().unwrap());
    let service = one(&objects, "Service")["metadata"]["name"].as_str().unwrap().to_owned();
    let dns = format!("{service}.{NAMESPACE}.svc");
    assert_eq!(healthz_over_tls(&data("tls.crt"), &data("tls.key"), &data("ca.crt"), &dns).await, 200);
}

#[test]
fn cert_manager_values_issue_the_certificate_and_inject_the_ca() {
    for case in [&CERT_MANAGER, &CERT_MANAGER_ISSUER] {
        let (_, objects) = render(case);
        assert!(kind(&objects, "Secret").is_empty(), "{}: cert-manager writes the Secret", case.name);
        let webhook_config = one(&objects, "MutatingWebhookConfiguration");
        assert!(webhook_config["webhooks"][0]["clientConfig"].get("caBundle").is_none());
        let serving = kind(&objects, "Certificate").into_iter().find(|c| c["spec"]["isCA"] != true).unwrap().clone();
        let secret_name = serving["spec"]["secretName"].as_str().unwrap();
        assert_eq!(
            webhook_config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
            format!("{NAMESPACE}/{}", serving["metadata"]["name"].as_str().unwrap())
        );
        let deployment = one(&objects, "Deployment");
        assert_eq!(deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"], secret_name);
        let service = one(&objects, "Service")["metadata"]["name"].as_str().unwrap();
        assert!(serving["spec"]["dnsNames"].as_array().unwrap().contains(&json!(format!("{service}.{NAMESPACE}.svc"))));
        if case.name == CERT_MANAGER_ISSUER.name {
            assert_eq!(
                serving["spec"]["issuerRef"],
                json!({"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
            );
            assert!(kind(&objects, "Issuer").is_empty());
        } else {
            assert_eq!(kind(&objects, "Issuer").len(), 2, "self-signed root + CA issuer");
        }
    }
}

#[test]
fn plain_sidecar_values_flow_into_the_webhook() {
    let (_, objects) = render(&PLAIN_SIDECAR);
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_MODE"), Some("container"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_IMAGE"), Some("registry.example/keyrelay:9.9.9"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_DEFAULT_CONFIG"), Some("shared-llm-config"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_DEFAULT_SECRET"), Some("shared-llm-keys"));
    assert_eq!(webhook_env(&objects, "KEYRELAY_SIDECAR_API_WATCH"), Some("true"));
    let env: Value = serde_json::from_str(webhook_env(&objects, "KEYRELAY_SIDECAR_ENV").unwrap()).unwrap();
    let env = env.as_array().unwrap();
    assert!(env.contains(&json!({"name": "KEYRELAY_SHARED_URL", "value": "redis://redis.keyrelay.svc:6379/0"})));
    let password = json!({"secretKeyRef": {"name": "keyrelay-redis", "key": "password"}});
    assert!(env.contains(&json!({"name": "KEYRELAY_SHARED_PASSWORD", "valueFrom": password})), "{env:?}");
    let hook = &one(&objects, "MutatingWebhookConfiguration")["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Ignore");
    assert_eq!(hook["timeoutSeconds"], 10);
    assert_eq!(hook["objectSelector"]["matchLabels"]["llm"], "yes");
    assert!(kind(&objects, "PodDisruptionBudget").is_empty(), "no PDB for a single replica");
    assert_eq!(one(&objects, "ConfigMap")["metadata"]["name"], "keyrelay-example-config");
}

#[test]
fn the_schema_rejects_unknown_and_invalid_values() {
    for set in [
        "bogus=1",
        "sidecar.mode=sideways",
        "webhook.failurePolicy=Maybe",
        "sidecar.imagee.tag=x",
        "webhook.timeoutSeconds=60",
        "sidecar.apiWatch=maybe",
        "sidecar.sharedState.url=memcached://x",
        "sidecar.telemetry.otlpEndpoint=http://x/$(KEYRELAY_SHARED_PASSWORD)",
        "sidecar.telemetry.sampler=sometimes",
        "sidecar.telemetry.resourceAttributes.k8s\\.pod\\.name=other",
        "monitoring.podMonitor.enabled=maybe",
    ] {
        let out = helm(&Case { name: "bad", set: &[REPOSITORY, set] }, "template");
        assert!(!out.status.success(), "--set {set} was accepted");
    }
}

#[test]
fn example_configs_pass_keyrelay_check() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let secret_manifest = parse_all(&std::fs::read_to_string(repo().join("manifests/secret.yaml")).unwrap());
    for (name, value) in secret_manifest[0]["stringData"].as_object().unwrap() {
        assert!(value.as_str().unwrap().contains("fake"), "placeholder values must be obviously fake");
        std::fs::write(secrets.join(name), value.as_str().unwrap()).unwrap();
    }
    // The chart's example also uses a Gemini key.
    std::fs::write(secrets.join("GEMINI_API_KEY"), "fake").unwrap();
    let manifest = parse_all(&std::fs::read_to_string(repo().join("manifests/configmap.yaml")).unwrap());
    let (_, chart) = render(&PLAIN_SIDECAR);
    for (label, config_map) in
        [("manifests/configmap.yaml", &manifest[0]), ("chart exampleConfig", one(&chart, "ConfigMap"))]
    {
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config_map["data"]["config.yaml"].as_str().unwrap()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_keyrelay"))
            .arg("check")
            .arg("--config")
            .arg(&path)
            .arg("--secrets-dir")
            .arg(&secrets)
            .output()
            .unwrap();
        assert!(out.status.success(), "{label}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn the_hand_written_sidecar_matches_what_the_injector_adds() {
    let deployment = &parse_all(&std::fs::read_to_string(repo().join("manifests/deployment.yaml")).unwrap())[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let written = pod["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == "keyrelay").unwrap();
    let settings = keyrelay::k8s::InjectSettings {
        image: written["image"].as_str().unwrap().to_owned(),
        env: serde_json::from_value(written["env"].clone()).unwrap(),
        ..Default::default()
    };
    // configmap.yaml has a `kubernetes:` section: API-watch mode.
    assert_eq!(*written, serde_json::to_value(settings.container(true)).unwrap());
    let app = &pod["containers"][0];
    for wanted in settings.app_env() {
        let found = app["env"].as_array().unwrap().iter().find(|e| e["name"] == wanted.name.as_str()).unwrap();
        assert_eq!(found["value"].as_str(), wanted.value.as_deref());
    }
    let mut volumes = keyrelay::k8s::sidecar::volumes("chat-llm-config", "chat-llm-keys").to_vec();
    volumes.push(keyrelay::k8s::sidecar::api_token_volume());
    assert_eq!(pod["volumes"], serde_json::to_value(volumes).unwrap());
    // The ServiceAccount can read the key Secret: only keyrelay gets its token.
    assert_eq!(pod["automountServiceAccountToken"], false);
    for container in pod["containers"].as_array().unwrap() {
        assert!(container.get("volumeMounts").is_none(), "{container}");
    }
}

fn chart_dir() -> PathBuf {
    repo().join("charts/keyrelay")
}

fn is_cert_manager(object: &Value) -> bool {
    object["apiVersion"].as_str().is_some_and(|v| v.starts_with("cert-manager.io/"))
}

fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// A ReplicaSet-style pod, as the ServiceAccount admission plugin hands it on, after
/// the injector's patch.
fn injected_pod(mode: keyrelay::k8s::SidecarMode, api_watch: bool) -> Value {
    let token_mount = json!([{"name": "kube-api-access-q8x2z", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]);
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "chat-5d9c7", "generateName": "chat-", "annotations": {
            "keyrelay.dev/inject": "true", "keyrelay.dev/config": "chat-llm-config", "keyrelay.dev/secret": "chat-llm-keys",
            "keyrelay.dev/api-watch": api_watch.to_string(),
            "keyrelay.dev/otel-endpoint": "http://otel-collector.observability:4317", "keyrelay.dev/otel-protocol": "grpc"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "chat:1", "volumeMounts": token_mount}],
            "containers": [{"name": "chat", "image": "chat:1", "env": [{"name": "A", "value": "b"}], "volumeMounts": token_mount}],
            "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "kube-api-access-q8x2z", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}}]
        }
    });
    let telemetry = keyrelay::k8s::TelemetrySettings {
        endpoint: Some("http://otel-collector.observability:4318".to_owned()),
        sampler: Some("parentbased_traceidratio".to_owned()),
        sampler_arg: Some("0.5".to_owned()),
        resource_attributes: Some("deployment.environment=prod".to_owned()),
        ..Default::default()
    };
    let settings = keyrelay::k8s::InjectSettings { mode, telemetry, ..Default::default() };
    let mutation = keyrelay::k8s::mutate(&serde_json::from_value(pod.clone()).unwrap(), &settings).unwrap();
    json_patch::patch(&mut pod, &mutation.patch).unwrap();
    pod
}

/// Starts `keyrelay webhook` with the given PEM files and GETs /healthz over TLS,
/// trusting only `ca` and checking the certificate against `dns`.
async fn healthz_over_tls(cert: &[u8], key: &[u8], ca: &[u8], dns: &str) -> u16 {
    use http_body_util::{BodyExt, Empty};
    use rustls::pki_types::pem::PemObject;

    let ca = rustls::pki_types::CertificateDer::from_pem_slice(ca).unwrap();
    let webhook = webhook_process::Webhook::start(cert, key, ca, &[]);
    let tcp = tokio::net::TcpStream::connect(webhook.addr).await.unwrap();
    let server_name = rustls::pki_types::ServerName::try_from(dns.to_owned()).unwrap();
    let tls = webhook.connector().connect(server_name, tcp).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("/healthz").header("host", dns).body(Empty::<bytes::Bytes>::new()).unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    status
}
