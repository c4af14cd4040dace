//! The `keyrelay` binary itself: `check`, and `run` with its probes and SIGTERM drain.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use http_body_util::BodyExt;
use support::daemon::Daemon;
use support::*;
use tokio::sync::Notify;

const BIN: &str = env!("CARGO_BIN_EXE_keyrelay");
const LONG: Duration = Duration::from_secs(60);

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(config: &std::path::Path, secrets: Option<&std::path::Path>) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("check").arg("--config").arg(config).env_remove("KEYRELAY_SECRETS_DIR");
    if let Some(dir) = secrets {
        cmd.arg("--secrets-dir").arg(dir);
    }
    let out = cmd.output().expect("run keyrelay check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_the_routing_table_with_key_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    write(&secrets, "GROQ_1", "gsk-value-one-should-not-print\n");
    write(&secrets, "GROQ_2", "gsk-value-two-should-not-print");
    let config = write(
        dir.path(),
        "config.yaml",
        "models:\n  llama:\n    fallbacks: []\n    deployments:\n      - provider: groq\n        model: llama-3.3-70b-versatile\n        keys: [GROQ_1, GROQ_2]\n",
    );
    let (code, stdout, stderr) = check(&config, Some(&secrets));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    for expected in ["llama", "groq", "llama-3.3-70b-versatile", "GROQ_1", "GROQ_2", "https://api.groq.com/openai/v1"] {
        assert!(stdout.contains(expected), "missing {expected} in:\n{stdout}");
    }
    assert!(!stdout.contains("should-not-print") && !stderr.contains("should-not-print"));
}

#[test]
fn check_names_every_bad_field_with_its_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "broken.yaml",
        "models:\n  a:\n    deployments:\n      - provider: groq\n        model: x\n        keys: [K]\n        wieght: 3\n  b:\n    fallbacks: [missing-alias]\n    deployments:\n      - provider: not-a-provider\n        model: y\n        keys: [K]\n",
    );
    let (code, stdout, stderr) = check(&config, None);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("broken.yaml:7: models.a.deployments[0].wieght"), "{stderr}");
    assert!(stderr.contains("broken.yaml:11: models.b.deployments[0].provider"), "{stderr}");
    assert!(stderr.contains("missing-alias"), "{stderr}");
}

#[test]
fn check_reports_missing_and_empty_secrets_by_name_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    write(&secrets, "EMPTY_KEY", "\n");
    let config = write(
        dir.path(),
        "c.yaml",
        "models:\n  a:\n    deployments:\n      - provider: openai\n        model: gpt-4o\n        keys: [EMPTY_KEY, KEYRELAY_TEST_ABSENT_KEY]\n",
    );
    let (code, _, stderr) = check(&config, Some(&secrets));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("EMPTY_KEY") && stderr.contains("is empty"), "{stderr}");
    assert!(stderr.contains("KEYRELAY_TEST_ABSENT_KEY") && stderr.contains("c.yaml:6"), "{stderr}");
}

#[test]
fn shipped_example_configs_pass_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "GEMINI_API_KEY",
        "GEMINI_API_KEY_2",
        "OPENROUTER_API_KEY",
        "OPENROUTER_API_KEY_2",
        "GROQ_API_KEY",
        "GROQ_API_KEY_2",
        "CEREBRAS_API_KEY",
        "CEREBRAS_API_KEY_2",
        "CEREBRAS_API_KEY_3",
        "OPENAI_API_KEY",
        "OPENAI_API_KEY_2",
        "OPENAI_KEYS",
        "ANTHROPIC_API_KEY",
        "OPENAI_KEY_POOL",
        "AZURE_OPENAI_KEY",
        "CEREBRAS_KEYS",
        "VLLM_TOKEN",
    ];
    for name in names {
        write(dir.path(), name, "test-key-a\n");
    }
    for example in ["config/keyrelay.yaml", "config/litellm-proxy-config.yaml"] {
        let (code, stdout, stderr) = check(&root.join(example), Some(dir.path()));
        assert_eq!(code, 0, "{example}\nstdout: {stdout}\nstderr: {stderr}");
    }
}

#[tokio::test]
async fn sigterm_turns_readiness_off_drains_open_streams_and_exits_0() {
    let mock =
        MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited()).stream(3, Duration::from_millis(1)))
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    write(&secrets, "KA", "sk-a");
    let config = write(
        dir.path(),
        "config.yaml",
        &format!("models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {}\n        keys: [KA]\n", mock.base_url()),
    );
    let mut daemon = Daemon::spawn(&config, &secrets, &[]);
    let (proxy, admin) = (daemon.proxy.clone(), daemon.admin.clone());
    assert_eq!(get(&format!("http://{admin}/healthz")).await.status, 200);
    assert_eq!(get(&format!("http://{admin}/readyz")).await.status, 200);

    let gate = Arc::new(Notify::new());
    mock.push_fault(None, Fault::StreamGate(Arc::clone(&gate)));
    let client = support::harness::http_client();
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(format!("http://{proxy}/v1/chat/completions"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(br#"{"model":"m","stream":true}"#)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let _first = body.frame().await.expect("first chunk").unwrap();

    daemon.terminate();

    eventually(LONG, "readiness turns false", || async { get(&format!("http://{admin}/readyz")).await.status == 503 })
        .await;
    eventually(LONG, "the app port stops accepting", || async {
        tokio::net::TcpStream::connect(&proxy).await.is_err()
    })
    .await;
    assert!(daemon.child.try_wait().unwrap().is_none(), "exited while a stream was open");

    gate.notify_one();
    let rest = body.collect().await.expect("the open stream finishes").to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));

    let mut status = None;
    eventually(LONG, "process exits", || {
        status = daemon.child.try_wait().unwrap();
        std::future::ready(status.is_some())
    })
    .await;
    assert_eq!(status.unwrap().code(), Some(0));
}

#[test]
fn demo_runs_without_keys_or_network_and_absorbs_429s() {
    let out = Command::new(BIN).args(["demo", "--seconds", "3", "--rate", "30"]).output().expect("run demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    let final_table = stdout.split("final:").nth(1).expect("final table");
    for key in ["OPENAI_KEY_1", "OPENAI_KEY_2", "OPENAI_KEY_3", "429s absorbed"] {
        assert!(final_table.contains(key), "{key} missing from:\n{final_table}");
    }
    // Keys are used in proportion to their hidden limits (9, 6 and 3 per second).
    let attempts = |key: &str| -> u64 {
        let row = final_table.lines().find(|l| l.contains(key)).expect("key row");
        row.split_whitespace().nth(3).and_then(|n| n.parse().ok()).expect("attempts column")
    };
    assert!(attempts("OPENAI_KEY_1") > attempts("OPENAI_KEY_3"), "{final_table}");
    let app = final_table.lines().find(|l| l.starts_with("app saw:")).expect("app line");
    assert!(app.contains(" 0 rate-limited"), "{app}");
    assert!(!app.contains(" 0 ok"), "{app}");
    assert!(!stdout.contains("demo-key-"), "a key value was printed");
}
