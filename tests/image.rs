//! The image users build: `scripts/build-image` (static release binary, `FROM scratch`,
//! podman) is run as is, into a private podman store (vfs driver in a temp dir), and
//! the image's own filesystem is used through `podman create` + `podman mount`: as uid
//! 65532 under `chroot`, `keyrelay --version` runs, and a `keyrelay run` whose upstream
//! is named by a host name only the image's `/etc/hosts` knows routes a request to the
//! mock provider. No container runtime is needed, and no base image is pulled.
//!
//! podman comes from `./scripts/test`. Without it the test fails; if podman is there
//! but cannot run at all here (no storage it can use), the test says so and stops.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::daemon::Daemon;
use support::*;

const UPSTREAM_HOST: &str = "llm-upstream.keyrelay.test";

/// podman with a store of its own, so the test needs no system configuration and
/// leaves nothing behind.
struct Podman {
    args: Vec<String>,
    _store: tempfile::TempDir,
}

impl Podman {
    fn new() -> Podman {
        let store = tempfile::tempdir().unwrap();
        let args = vec![
            format!("--root={}", store.path().join("root").display()),
            format!("--runroot={}", store.path().join("run").display()),
            "--storage-driver=vfs".to_owned(),
            "--cgroup-manager=cgroupfs".to_owned(),
            "--events-backend=file".to_owned(),
        ];
        Podman { args, _store: store }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("podman").args(&self.args).args(args).output().expect("run podman")
    }

    /// stdout of a podman command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "podman {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// The container's filesystem, unmounted and removed when dropped.
struct Mounted<'a> {
    podman: &'a Podman,
    container: String,
    root: PathBuf,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = self.podman.run(&["umount", &self.container]);
        let _ = self.podman.run(&["rm", "--force", &self.container]);
    }
}

fn chroot_as_nonroot(root: &Path) -> Command {
    let mut command = Command::new("chroot");
    command.arg("--userspec=65532:65532").arg(root);
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scratch_image_runs_as_65532_and_resolves_its_upstream_by_name() {
    let version = Command::new("podman").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "podman is not installed: run ./scripts/test, which installs it (apt-get install podman)"
    );
    let podman = Podman::new();
    let info = podman.run(&["info"]);
    if !info.status.success() {
        // The only skip: podman is installed but cannot start here at all.
        eprintln!(
            "SKIPPED tests/image.rs: podman cannot run on this machine:\n{}",
            String::from_utf8_lossy(&info.stderr)
        );
        return;
    }

    // The users' recipe, unchanged.
    let image = "localhost/keyrelay:image-test";
    let build = Command::new(repo().join("scripts/build-image"))
        .arg(image)
        .env("PODMAN_ARGS", podman.args.join(" "))
        .output()
        .expect("run scripts/build-image");
    assert!(build.status.success(), "scripts/build-image failed:\n{}", String::from_utf8_lossy(&build.stderr));

    let inspect: serde_json::Value = serde_json::from_str(&podman.ok(&["image", "inspect", image])).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/keyrelay"]));
    let size = inspect[0]["Size"].as_u64().unwrap();
    eprintln!("image {image}: {size} bytes ({:.1} MiB)", size as f64 / 1048576.0);

    let container = podman.ok(&["create", image]);
    let root = PathBuf::from(podman.ok(&["mount", &container]));
    let mounted = Mounted { podman: &podman, container, root };
    let root = &mounted.root;
    let mut files: Vec<String> =
        std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["etc", "keyrelay"], "the image holds the binary and /etc/passwd, nothing else");

    let out = chroot_as_nonroot(root).args(["/keyrelay", "--version"]).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && printed.contains(env!("CARGO_PKG_VERSION")), "{printed}{out:?}");

    // What kubelet would mount: a resolv.conf (its name server answers nothing here;
    // /etc/hosts comes first) and a hosts file naming the upstream.
    let mock = MockProvider::start(MockConfig::new().key("sk-image", KeyLimit::unlimited())).await.unwrap();
    let port = mock.addr().port();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").unwrap();
    std::fs::write(root.join("etc/hosts"), format!("127.0.0.1 localhost\n127.0.0.1 {UPSTREAM_HOST}\n")).unwrap();
    let test_dir = root.join("test");
    std::fs::create_dir_all(test_dir.join("secrets")).unwrap();
    std::fs::write(test_dir.join("secrets/OPENAI_KEY"), "sk-image").unwrap();
    let config = format!(
        "models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: http://{UPSTREAM_HOST}:{port}/v1\n        keys: [OPENAI_KEY]\n"
    );
    std::fs::write(test_dir.join("config.yaml"), config).unwrap();
    let wrapper = tempfile::tempdir().unwrap();
    let chroot = wrapper.path().join("keyrelay-in-image");
    std::fs::write(
        &chroot,
        format!("#!/bin/sh\nexec chroot --userspec=65532:65532 '{}' /keyrelay \"$@\"\n", root.display()),
    )
    .unwrap();
    std::fs::set_permissions(&chroot, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let daemon = Daemon::spawn_bin(&chroot, Path::new("/test/config.yaml"), Path::new("/test/secrets"), &[]);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let request = http::Request::post(format!("http://{}/v1/chat/completions", daemon.proxy))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let reply = read(support::harness::http_client().request(request).await.unwrap()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(mock.requests_for_key("sk-image"), 1, "the request reached the upstream named {UPSTREAM_HOST}");
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
