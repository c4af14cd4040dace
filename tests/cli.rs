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

/// Runs `check` like [`check`], but kills it and fails if it has not exited within
/// 20 s: the old reads blocked forever on a FIFO.
fn check_without_hanging(config: &std::path::Path, secrets: &std::path::Path) -> (i32, String, String) {
    use std::process::Stdio;
    let mut child = Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(config)
        .arg("--secrets-dir")
        .arg(secrets)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keyrelay check");
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("poll check").is_none() {
        if std::time::Instant::now() > until {
            let _ = child.kill();
            panic!("keyrelay check hung on {}", config.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("check output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mkfifo(path: &std::path::Path) {
    assert!(Command::new("mkfifo").arg(path).status().expect("mkfifo runs").success());
}

/// These used to pass `check` and then fail every request (an `Instant` overflow) or
/// panic `check` itself (a semaphore of u64::MAX permits).
#[test]
fn check_refuses_numbers_past_their_bounds_with_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "K", "test-key");
    let config = write(
        dir.path(),
        "c.yaml",
        "server:\n  timeouts:\n    request: 1e19\ndefaults:\n  cooldown: 1e19\n  queue:\n    max_waiting: 18446744073709551615\n    max_wait: 1e19\nmodels:\n  m:\n    deployments:\n      - provider: openai\n        model: x\n        keys: [K]\n",
    );
    let (code, stdout, stderr) = check(&config, Some(dir.path()));
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    for expected in [
        "c.yaml:3: server.timeouts.request: must be at most 6h",
        "c.yaml:5: defaults.cooldown: must be at most 1h",
        "c.yaml:7: defaults.queue.max_waiting: must be at most 100000",
        "c.yaml:8: defaults.queue.max_wait: must be at most 1h",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
}

/// Made-up keys the old name check let through, each once echoed as "not found".
const PASTED: [&str; 3] = [
    "3f9a1c7e5b2d8f4a6c0e9b7d5f3a1c8e",
    "pplx-4f8e2a9c1b7d3e6f0a5c8b2d9e1f4a7c3b6d0e8f2a5c",
    "123e4567-e89b-12d3-a456-426614174000",
];

#[test]
fn check_refuses_keys_pasted_as_secret_names_without_showing_them() {
    let dir = tempfile::tempdir().unwrap();
    let native = write(
        dir.path(),
        "native.yaml",
        &format!(
            "models:\n  m:\n    deployments:\n      - provider: openai\n        model: x\n        keys: [{}, {}]\n        keys_from: {}\n",
            PASTED[0], PASTED[1], PASTED[2]
        ),
    );
    let litellm = write(
        dir.path(),
        "litellm.yaml",
        &format!("model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n      api_key: os.environ/{}\n", PASTED[0]),
    );
    for (config, paths) in [
        (
            &native,
            &[
                "native.yaml:6: models.m.deployments[0].keys[0]",
                "native.yaml:6: models.m.deployments[0].keys[1]",
                "native.yaml:7: models.m.deployments[0].keys_from",
            ][..],
        ),
        (&litellm, &["litellm.yaml:5: model_list[0].litellm_params.api_key"][..]),
    ] {
        let (code, stdout, stderr) = check(config, Some(dir.path()));
        assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
        for path in paths {
            assert!(stderr.contains(&format!("{path}: this looks like an API key")), "missing {path} in:\n{stderr}");
        }
        for key in PASTED {
            for piece in (0..=key.len() - 8).map(|i| &key[i..i + 8]) {
                assert!(!stdout.contains(piece) && !stderr.contains(piece), "{piece:?} shown:\n{stdout}\n{stderr}");
            }
        }
    }
}

/// LiteLLM sends `OPENAI_API_KEY` for `openai/...` entries without `api_key`, to
/// whatever `api_base` says: `check` shows where each key goes, and refuses plain
/// http to a host that is not loopback.
#[test]
fn check_says_which_key_goes_to_which_host() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "OPENAI_API_KEY", "test-key");
    write(dir.path(), "VLLM_TOKEN", "test-key");
    let entry =
        |base: &str| format!("  - model_name: m\n    litellm_params:\n      model: openai/x\n      api_base: {base}\n");
    let good = write(
        dir.path(),
        "good.yaml",
        &format!(
            "model_list:\n{}  - model_name: vllm\n    litellm_params:\n      model: hosted_vllm/llama\n      api_base: http://vllm.default.svc:8000/v1\n      api_key: os.environ/VLLM_TOKEN\n",
            entry("https://gateway.example.com/v1")
        ),
    );
    let (code, stdout, stderr) = check(&good, Some(dir.path()));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stdout.contains("keys: OPENAI_API_KEY (implied: no api_key written) -> sent to https://gateway.example.com\n"),
        "{stdout}"
    );
    assert!(stdout.contains("keys: VLLM_TOKEN -> sent to http://vllm.default.svc:8000 (plain http)\n"), "{stdout}");
    assert!(stderr.contains("the secret OPENAI_API_KEY is used and sent to https://gateway.example.com"), "{stderr}");
    assert!(
        stderr.contains("secret \"VLLM_TOKEN\" is sent over plain http to http://vllm.default.svc:8000"),
        "{stderr}"
    );

    let bad = write(dir.path(), "bad.yaml", &format!("model_list:\n{}", entry("http://203.0.113.7:8000/v1")));
    let (code, stdout, stderr) = check(&bad, Some(dir.path()));
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("bad.yaml:3: model_list[0].litellm_params: no api_key is written, so OPENAI_API_KEY"),
        "{stderr}"
    );
    assert!(stderr.contains("http://203.0.113.7:8000"), "{stderr}");
}

#[test]
fn check_refuses_fifos_and_oversized_files_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    mkfifo(&secrets.join("FIFO_KEY"));
    std::fs::File::create(secrets.join("HUGE_KEY")).unwrap().set_len(100 << 20).unwrap();
    std::fs::create_dir(secrets.join("DIR_KEY")).unwrap();
    let config = write(
        dir.path(),
        "c.yaml",
        "models:\n  m:\n    deployments:\n      - provider: openai\n        model: x\n        keys: [FIFO_KEY, HUGE_KEY, DIR_KEY]\n",
    );
    let (code, stdout, stderr) = check_without_hanging(&config, &secrets);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let path = |name: &str| secrets.join(name).display().to_string();
    for expected in [
        format!(
            "secret \"FIFO_KEY\" could not be read: {} is a FIFO (named pipe), not a regular file",
            path("FIFO_KEY")
        ),
        format!("secret \"HUGE_KEY\" could not be read: {} is larger than the limit of 64 KiB", path("HUGE_KEY")),
        format!("secret \"DIR_KEY\" could not be read: {} is a directory, not a regular file", path("DIR_KEY")),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }

    let fifo_config = dir.path().join("fifo.yaml");
    mkfifo(&fifo_config);
    let (code, _, stderr) = check_without_hanging(&fifo_config, &secrets);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot read config file") && stderr.contains("FIFO"), "{stderr}");

    let huge_config = dir.path().join("huge.yaml");
    std::fs::File::create(&huge_config).unwrap().set_len(2 << 20).unwrap();
    let (code, _, stderr) = check_without_hanging(&huge_config, &secrets);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("larger than the limit of 1 MiB"), "{stderr}");
}

#[test]
fn check_shows_an_api_base_read_from_a_secret_and_does_not_count_it_as_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    write(&secrets, "AZURE_KEY_EU", "azure-value-should-not-print\n");
    write(&secrets, "AZURE_BASE_EU", "https://team-eu.openai.azure.com/\n");
    let config = write(
        dir.path(),
        "proxy-config.yaml",
        "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: azure/gpt-4o-eu\n      api_key: os.environ/AZURE_KEY_EU\n      api_base: os.environ/AZURE_BASE_EU\n",
    );
    let (code, stdout, stderr) = check(&config, Some(&secrets));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    for expected in [
        "https://team-eu.openai.azure.com",
        "sent to https://team-eu.openai.azure.com",
        "api_base <- secret AZURE_BASE_EU",
        "1 key reference(s)",
    ] {
        assert!(stdout.contains(expected), "missing {expected} in:\n{stdout}");
    }
    assert!(!stdout.contains("should-not-print") && !stderr.contains("should-not-print"));

    // Not a URL: the field, the secret and the value are named; exit 1.
    write(&secrets, "AZURE_BASE_EU", "team-eu.openai.azure.com\n");
    let (code, stdout, stderr) = check(&config, Some(&secrets));
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains(":6: model_list[0].litellm_params.api_base")
            && stderr.contains("AZURE_BASE_EU")
            && stderr.contains("team-eu.openai.azure.com"),
        "{stderr}"
    );
}

fn check_strict(config: &std::path::Path, secrets: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("check")
        .arg("--strict")
        .arg("--config")
        .arg(config)
        .arg("--secrets-dir")
        .arg(secrets)
        .output()
        .expect("run keyrelay check --strict");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A LiteLLM file as users write them: a written key, a bedrock entry, YAML 1.1
/// numbers, `null`s and a section written twice.
const MIGRATED: &str = "\
litellm_settings:
  num_retries: 1
model_list:
  - model_name: fast
    litellm_params:
      model: groq/llama-3.3-70b-versatile
      api_key: gsk_written_into_the_file_value
      api_base: null
      rpm: 20_000
      tpm: \"1_000_000\"
  - model_name: claude
    litellm_params:
      model: bedrock/anthropic.claude-3
    rpm: 100
general_settings:
  # models live in this file
litellm_settings:
  num_retries: 3
  request_timeout: 12.5
";

#[test]
fn check_warns_about_a_migrated_litellm_file_and_strict_makes_the_warnings_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let config = write(dir.path(), "proxy-config.yaml", MIGRATED);

    let (code, stdout, stderr) = check(&config, Some(&secrets));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let path = config.display().to_string();
    for expected in [
        format!("warning: {path}:1: litellm_settings: written twice: line 17 counts, line 1 is ignored"),
        format!("warning: {path}:7: model_list[0].litellm_params.api_key: api_key is written into the config"),
        format!(
            "warning: {path}:13: model_list[1].litellm_params.model: this entry is not served: provider \"bedrock\""
        ),
    ] {
        assert!(stderr.contains(&expected), "missing {expected:?} in:\n{stderr}");
    }
    for expected in [
        "rpm 20000, tpm 1000000",
        "retries 3",
        "request timeout 12s 500ms",
        "inline-key:fast#1 (written in the file)",
        "not served (requests get 501): bedrock/anthropic.claude-3",
        "LiteLLM compatibility",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let report_line = |key: &str| stdout.lines().find(|l| l.contains(key)).unwrap_or_default().to_owned();
    assert!(report_line("model_list[].litellm_params.api_key").contains("honoured"), "{stdout}");
    assert!(report_line("litellm_settings.request_timeout").contains("approximated"), "{stdout}");
    assert!(stdout.ends_with(&format!("{path}: OK\n")), "{stdout}");
    assert!(!stdout.contains("gsk_written") && !stderr.contains("gsk_written"));

    let (code, stdout, stderr) = check_strict(&config, &secrets);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("error (--strict):") && stderr.contains("which --strict makes errors"), "{stderr}");
    assert!(!stdout.contains(": OK"), "{stdout}");
}

#[test]
fn check_strict_passes_a_file_without_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    write(&secrets, "GROQ_KEY", "gsk-value");
    let config = write(
        dir.path(),
        "proxy-config.yaml",
        "model_list:\n  - model_name: m\n    litellm_params: {model: groq/llama, api_key: os.environ/GROQ_KEY}\n",
    );
    let (code, stdout, stderr) = check_strict(&config, &secrets);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
}

#[test]
fn check_says_a_litellm_file_without_model_list_keeps_its_models_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "proxy-config.yaml",
        "general_settings:\n  master_key: sk-1234\n  store_model_in_db: true\nlitellm_settings:\n  drop_params: true\n",
    );
    let (code, stdout, stderr) = check(&config, None);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.starts_with("1 error(s)"), "{stderr}");
    assert!(stderr.contains("without model_list") && stderr.contains("LiteLLM's database"), "{stderr}");
}
