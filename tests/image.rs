//! The image users build: `scripts/build-image` (static binary, `FROM scratch`, podman)
//! is run as is, into a private podman store (vfs driver in a temp dir), and the image's
//! own filesystem is used through `podman create` + `podman mount`: as uid 65532 under
//! `chroot`, `keyrelay --version` runs, and a `keyrelay run` whose upstream is named by
//! a host name only the image's `/etc/hosts` knows routes a request to the mock
//! provider. No container runtime is needed, and no base image is pulled.
//!
//! Static glibc reads `/etc/hosts` by itself, so a request that routes would not show
//! that keyrelay resolves in-process. The image's `/etc/nsswitch.conf` therefore names
//! a hosts service that does not exist, and a statically linked `getaddrinfo` probe
//! shows that glibc resolves the name before that file is there and cannot after; the
//! request is sent after, so only keyrelay's own resolver (src/http/resolve.rs) can
//! have found the upstream.
//!
//! The only difference from the users' image is `KEYRELAY_IMAGE_PROFILE=image-test`:
//! an unoptimised build instead of `dist` (see Cargo.toml), to keep CI's time.
//! podman comes from `./scripts/test`; without it, or if it cannot build here, the test
//! fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::daemon::Daemon;
use support::*;

const UPSTREAM_HOST: &str = "llm-upstream.keyrelay.test";

/// podman with a store of its own, so the test needs no system configuration, cannot
/// collide with another run, and leaves nothing behind.
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

/// A statically linked C program that asks glibc's `getaddrinfo` for a name: what
/// keyrelay would get if it resolved through libc.
fn build_getaddrinfo_probe(dir: &Path) -> PathBuf {
    let source = dir.join("probe.c");
    std::fs::write(
        &source,
        r#"#include <netdb.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
  struct addrinfo hints, *found;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  int rc = argc == 2 ? getaddrinfo(argv[1], NULL, &hints, &found) : EAI_NONAME;
  if (rc != 0) { printf("unresolved: %s\n", gai_strerror(rc)); return 1; }
  printf("resolved\n");
  return 0;
}
"#,
    )
    .unwrap();
    let probe = dir.join("getaddrinfo-probe");
    // The same C toolchain and static libc the image's binary is linked with.
    let out = Command::new("cc").arg("-static").arg("-o").arg(&probe).arg(&source).output().expect("run cc");
    assert!(out.status.success(), "cc -static failed:\n{}", String::from_utf8_lossy(&out.stderr));
    probe
}

fn glibc_resolves(root: &Path, host: &str) -> bool {
    let out = chroot_as_nonroot(root).args(["/test/getaddrinfo-probe", host]).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.starts_with("resolved") || printed.starts_with("unresolved"), "{out:?}");
    out.status.success()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scratch_image_runs_as_65532_and_resolves_its_upstream_in_process() {
    let version = Command::new("podman").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "podman is not installed: run ./scripts/test, which installs it (apt-get install podman)"
    );
    let podman = Podman::new();
    let info = podman.run(&["info"]);
    assert!(info.status.success(), "podman cannot run here:\n{}", String::from_utf8_lossy(&info.stderr));

    // The users' recipe; only the cargo profile differs.
    let image = "localhost/keyrelay:image-test";
    let mut build = Command::new(repo().join("scripts/build-image"));
    // Without the variables cargo sets for a test (ring's build script tracks
    // CARGO_MANIFEST_DIR), so the test and a user's shell share one build.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests =
            ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_", "CARGO_TARGET_TMPDIR"];
        if set_for_tests.iter().any(|prefix| name.starts_with(prefix)) {
            build.env_remove(&*name);
        }
    }
    let build = build
        .arg(image)
        .env("KEYRELAY_IMAGE_PROFILE", "image-test")
        .env("PODMAN_ARGS", podman.args.join(" "))
        .output()
        .expect("run scripts/build-image");
    assert!(build.status.success(), "scripts/build-image failed:\n{}", String::from_utf8_lossy(&build.stderr));
    assert_eq!(String::from_utf8_lossy(&build.stdout).lines().last(), Some(image));

    let inspect: serde_json::Value = serde_json::from_str(&podman.ok(&["image", "inspect", image])).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/keyrelay"]));
    let size: u64 = podman.ok(&["image", "inspect", "--format", "{{.Size}}", image]).parse().unwrap();
    eprintln!("image {image}: {size} bytes ({:.1} MiB)", size as f64 / 1048576.0);

    let container = podman.ok(&["create", image]);
    let root = PathBuf::from(podman.ok(&["mount", &container]));
    let mounted = Mounted { podman: &podman, container, root };
    let root = &mounted.root;
    let names = |dir: &Path| {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    assert_eq!(names(root), ["etc", "keyrelay"], "the image holds the binary and /etc, nothing else");
    assert_eq!(names(&root.join("etc")), ["group", "passwd"]);

    let out = chroot_as_nonroot(root).args(["/keyrelay", "--version"]).output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && printed.contains(env!("CARGO_PKG_VERSION")), "{printed}{out:?}");

    // The devices every OCI runtime creates in a container's /dev. The static binary
    // needs /dev/random and /dev/urandom: its randomness (rand's ThreadRng) falls back
    // to them, as getrandom finds no libc `getrandom` through dlsym in a static binary.
    std::fs::create_dir_all(root.join("dev")).unwrap();
    for (name, minor) in [("null", "3"), ("random", "8"), ("urandom", "9")] {
        let node = root.join("dev").join(name);
        let out =
            Command::new("mknod").args(["-m", "0666"]).arg(&node).args(["c", "1", minor]).output().expect("run mknod");
        assert!(out.status.success(), "mknod /dev/{name}: {}", String::from_utf8_lossy(&out.stderr));
    }

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
        "models:\n  m:\n    deployments:\n      - provider: openai-compatible\n        model: up\n        api_base: http://{UPSTREAM_HOST}:{port}/v1\n        keys: [OPENAI_KEY]\n        send_keys_over_http: true\n"
    );
    std::fs::write(test_dir.join("config.yaml"), config).unwrap();

    // glibc finds the name in /etc/hosts on its own, until nsswitch.conf sends hosts
    // lookups to a service that does not exist; keyrelay does not read that file.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::copy(build_getaddrinfo_probe(scratch.path()), test_dir.join("getaddrinfo-probe")).unwrap();
    assert!(glibc_resolves(root, UPSTREAM_HOST), "static glibc reads /etc/hosts without NSS modules");
    std::fs::write(root.join("etc/nsswitch.conf"), "hosts: nothing\n").unwrap();
    assert!(!glibc_resolves(root, UPSTREAM_HOST), "with that nsswitch.conf, libc resolves no name");

    let chroot = scratch.path().join("keyrelay-in-image");
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
