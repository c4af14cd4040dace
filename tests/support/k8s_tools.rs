//! helm and kubernetes-validate for tests/k8s_manifests.rs: found where
//! ./scripts/test installs them, run in strict mode, their output checked line by line.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn parse_all(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// A tool installed by ./scripts/test (target/tools/bin first, then PATH).
pub fn tool(name: &str) -> PathBuf {
    let local = repo().join("target/tools/bin").join(name);
    if local.is_file() {
        return local;
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run ./scripts/test, which installs it into target/tools/bin")
        })
}

/// The newest Kubernetes version the installed kubernetes-validate has schemas for.
pub fn newest_kubernetes() -> String {
    let out = Command::new("python3")
        .args(["-c", "import kubernetes_validate.utils as u; print(u.latest_version())"])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "kubernetes-validate is not installed: run ./scripts/test, which installs it\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let version = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let minor: u32 = version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
    assert!(minor >= 33, "kubernetes-validate {version} is too old: need schemas for a current Kubernetes");
    version
}

pub fn run_validate(files: &[PathBuf]) -> (bool, String) {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", "1.29.0", "-k", &newest_kubernetes()])
        .args(files)
        .output()
        .expect("run python3 -m kubernetes_validate");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every object passes against both versions; only cert-manager's and prometheus-operator's
/// CRDs, which have no upstream schema, may be skipped (checked field by field in
/// tests/k8s_manifests.rs and tests/k8s_monitoring.rs).
pub fn validate_strict(files: &[PathBuf], objects: usize) {
    let (ok, output) = run_validate(files);
    assert!(ok, "kubernetes-validate --strict failed:\n{output}");
    for line in output.lines() {
        let expected = (line.starts_with("INFO") && line.contains(" passed "))
            || (line.starts_with("WARN")
                && (line.contains("cert-manager.io/v1") || line.contains("monitoring.coreos.com/v1")));
        assert!(expected, "unexpected kubernetes-validate output: {line}");
    }
    let newest = newest_kubernetes();
    let newest_minor = newest.rsplit_once('.').map_or(newest.as_str(), |(major_minor, _)| major_minor);
    for version in ["1.29", newest_minor] {
        let passed = output.lines().filter(|l| l.ends_with(&format!("against version {version}"))).count();
        assert_eq!(passed, objects, "objects validated against {version}:\n{output}");
    }
}
