//! What can sit in a mounted directory or a config edit, and must neither hang,
//! exhaust nor leak: a FIFO or a 100 MiB file as a secret, a key pasted where its
//! name belongs, and a config that would send LiteLLM's implied key over plain http.
//! Each arrives by a reload while a good snapshot serves; the reload must fail visibly
//! on `/readyz`, the old snapshot keeps serving, and SIGTERM still ends the process.

mod support;

use std::path::Path;
use std::time::Duration;

use support::daemon::Daemon;
use support::*;

const LONG: Duration = Duration::from_secs(20);

fn native(base: &str, keys: &str) -> String {
    format!("models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: {base}\n        keys: [{keys}]\n")
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Polls `/readyz` until its body contains `needle`; returns that body.
async fn readyz_until(url: &str, what: &str, needle: &str) -> String {
    eventually_ok(LONG, what, || async {
        let reply = get(url).await;
        let body = reply.text();
        if reply.status == 200 && body.contains(needle) {
            Ok(body)
        } else {
            Err(format!("/readyz:\n{body}"))
        }
    })
    .await
}

/// A mock with key `sk-a`, and a temp dir holding `config.yaml` (one deployment on
/// the mock, key name `KA`) and `secrets/KA`.
async fn mock_and_files() -> (MockProvider, tempfile::TempDir) {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("KA"), "sk-a").unwrap();
    std::fs::write(dir.path().join("config.yaml"), native(&mock.base_url(), "KA")).unwrap();
    (mock, dir)
}

/// A plain `open` of a FIFO waits for a writer forever: the reload hung with `/readyz`
/// clean, and SIGTERM then never finished (the drain waits for the reload task).
#[tokio::test]
async fn a_fifo_secret_fails_the_reload_visibly_and_sigterm_still_exits() {
    let (_mock, dir) = mock_and_files().await;
    let (config, secrets) = (dir.path().join("config.yaml"), dir.path().join("secrets"));
    let mut daemon = Daemon::spawn(&config, &secrets, &[]);
    let readyz = format!("http://{}/readyz", daemon.admin);

    mkfifo(&secrets.join("KA"));
    let body = readyz_until(&readyz, "/readyz reports the FIFO", "FIFO").await;
    assert!(body.contains("\"KA\"") && body.contains(&secrets.join("KA").display().to_string()), "{body}");
    let client = support::harness::http_client();
    let request = http::Request::post(format!("http://{}/v1/chat/completions", daemon.proxy))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(br#"{"model":"m","messages":[]}"#)))
        .unwrap();
    let reply = read(client.request(request).await.unwrap()).await;
    assert_eq!((reply.status.as_u16(), reply.header("x-keyrelay-key")), (200, "KA"), "the old snapshot serves");

    daemon.terminate();
    let mut status = None;
    eventually(LONG, "keyrelay exits after SIGTERM", || {
        status = daemon.child.try_wait().unwrap();
        std::future::ready(status.is_some())
    })
    .await;
    assert_eq!(status.unwrap().code(), Some(0));
}

/// kubelet's layout (`NAME -> ..data/NAME`) pointing at a FIFO, and a sparse 100 MiB
/// file: both refused at once by type and size, by name and path, and never read.
#[tokio::test]
async fn secrets_behind_symlinks_are_checked_by_type_and_size() {
    let mock = MockProvider::start(MockConfig::new().key("sk-a", KeyLimit::unlimited())).await.unwrap();
    let proxy = Proxy::start_with_dir(&native(&mock.base_url(), "KA"), |dir| {
        std::fs::create_dir(dir.join("..data")).unwrap();
        std::fs::write(dir.join("..data/KA"), "sk-a").unwrap();
        std::os::unix::fs::symlink("..data/KA", dir.join("KA")).unwrap();
    })
    .await;
    let secrets = proxy.secrets_dir();
    let readyz = proxy.admin_url("/readyz");

    mkfifo(&secrets.join("..data/KA"));
    proxy.running.request_reload();
    let body = readyz_until(&readyz, "/readyz reports the FIFO behind the symlink", "FIFO").await;
    assert!(body.contains("secret \"KA\" could not be read"), "{body}");

    std::fs::remove_file(secrets.join("..data/KA")).unwrap();
    std::fs::File::create(secrets.join("..data/KA")).unwrap().set_len(100 << 20).unwrap();
    proxy.running.request_reload();
    let body = readyz_until(&readyz, "/readyz reports the 100 MiB secret", "larger than the limit of 64 KiB").await;
    assert!(body.contains("\"KA\""), "{body}");
    assert_eq!(proxy.chat("m").await.header("x-keyrelay-key"), "KA", "the old snapshot serves");
    tokio::time::timeout(LONG, proxy.running.shutdown()).await.expect("shutdown completes");
}

/// Made-up keys the old name check let through (lowercase hex, a UUID, a prefix it
/// did not know); each was echoed as "secret ... not found".
const PASTED: [&str; 4] = [
    "3f9a1c7e5b2d8f4a6c0e9b7d5f3a1c8e",
    "123e4567-e89b-12d3-a456-426614174000",
    "9e107d9d372bb6826bd81d3542a419d6f2a1c3b5d7e9f1a3c5b7d9e1f3a5c7b9",
    "pplx-4f8e2a9c1b7d3e6f0a5c8b2d9e1f4a7c3b6d0e8f2a5c",
];

fn assert_no_piece(what: &str, haystack: &str) {
    for key in PASTED {
        for i in 0..=key.len() - 8 {
            let piece = &key[i..i + 8];
            assert!(!haystack.contains(piece), "{what} shows {piece:?} of a pasted key:\n{haystack}");
        }
    }
}

#[tokio::test]
async fn keys_pasted_as_secret_names_never_reach_readyz_status_or_logs() {
    let (mock, dir) = mock_and_files().await;
    let (config, secrets) = (dir.path().join("config.yaml"), dir.path().join("secrets"));
    let daemon = Daemon::spawn(&config, &secrets, &[]);
    let admin = format!("http://{}", daemon.admin);

    std::fs::write(&config, native(&mock.base_url(), &format!("{}, {}, {}", PASTED[0], PASTED[1], PASTED[2]))).unwrap();
    let body = readyz_until(&format!("{admin}/readyz"), "the native reload fails", "deployments[0].keys[2]").await;
    assert!(body.contains("looks like an API key"), "{body}");
    assert_no_piece("/readyz", &body);
    assert_no_piece("/status", &get(&format!("{admin}/status")).await.text());

    let litellm = format!(
        "model_list:\n  - model_name: m\n    litellm_params: {{ model: openai/x, api_base: {}, api_key: os.environ/{} }}\n",
        mock.base_url(),
        PASTED[3]
    );
    std::fs::write(&config, litellm).unwrap();
    let body = readyz_until(&format!("{admin}/readyz"), "the LiteLLM reload fails", "litellm_params.api_key").await;
    assert_no_piece("/readyz", &body);
    assert_no_piece("/status", &get(&format!("{admin}/status")).await.text());

    daemon.terminate();
    let (status, log) = daemon.wait();
    assert_eq!(status.code(), Some(0));
    let log = log.join("\n");
    assert!(log.contains("looks like an API key"), "the rejections were logged:\n{log}");
    assert_no_piece("the log", &log);
}

/// `openai/x` with no `api_key` means LiteLLM's `OPENAI_API_KEY`: to a plain-http
/// host that is not loopback, that is refused; to loopback, it is what gets sent.
#[tokio::test]
async fn the_implied_litellm_key_never_goes_over_plain_http_to_a_remote_host() {
    let mock = MockProvider::start(MockConfig::new().key("sk-openai", KeyLimit::unlimited())).await.unwrap();
    let proxy =
        Proxy::start(&native(&mock.base_url(), "KA"), &[("KA", "sk-openai"), ("OPENAI_API_KEY", "sk-openai")]).await;
    let config = proxy.dir.path().join("config.yaml");
    let readyz = proxy.admin_url("/readyz");
    let entry = |base: &str| {
        format!("model_list:\n  - model_name: m\n    litellm_params: {{ model: openai/up, api_base: {base} }}\n")
    };

    // A public address (TEST-NET-3, never contacted): a private one is a local server,
    // which gets no key at all.
    std::fs::write(&config, entry("http://203.0.113.1:9/v1")).unwrap();
    proxy.running.request_reload();
    let body = readyz_until(&readyz, "the reload is refused", "http://203.0.113.1:9").await;
    for needle in ["model_list[0].litellm_params", "OPENAI_API_KEY", "api_key: os.environ/OPENAI_API_KEY"] {
        assert!(body.contains(needle), "{needle} missing:\n{body}");
    }
    assert_eq!(proxy.chat("m").await.header("x-keyrelay-key"), "KA", "the old snapshot serves");

    let before = *proxy.running.generations().borrow();
    // Written, the key goes to the loopback mock (unwritten, a local server gets none).
    let written = format!("{}, api_key: os.environ/OPENAI_API_KEY", mock.base_url());
    std::fs::write(&config, entry(&written)).unwrap();
    proxy.running.request_reload();
    let mut generations = proxy.running.generations();
    tokio::time::timeout(LONG, generations.wait_for(|g| *g > before)).await.expect("reload applies").unwrap();
    let reply = proxy.chat("m").await;
    assert_eq!((reply.status.as_u16(), reply.header("x-keyrelay-key")), (200, "OPENAI_API_KEY"), "{}", reply.text());
    tokio::time::timeout(LONG, proxy.running.shutdown()).await.expect("shutdown completes");
}
