//! kubelet's AtomicWriter, reproduced step by step, plus a keyrelay started on two
//! such mounts (config and secrets) for the hot-reload tests.
//!
//! kubelet (pkg/volume/util/atomic_writer.go) updates a Secret or ConfigMap volume
//! like this, and keyrelay must see every update without ever reading half of one:
//!
//! 1. write the whole payload into a new hidden directory `..<timestamp>`;
//! 2. create the symlink `..data_tmp -> ..<timestamp>`;
//! 3. rename `..data_tmp` over `..data` (the atomic switch);
//! 4. create the visible symlinks `NAME -> ..data/NAME` that do not exist yet;
//! 5. remove visible names that are no longer in the payload;
//! 6. remove the previous `..<timestamp>` directory.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use keyrelay::reload::ReloadSettings;
use keyrelay::runtime::{Options, Running};

use super::harness::{http_client, Proxy};

/// One kubelet-managed volume directory.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    pub dir: PathBuf,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl AtomicWriter {
    /// Creates `dir` (if needed) and writes the first payload.
    pub fn create(dir: &Path, payload: &[(&str, &str)]) -> AtomicWriter {
        std::fs::create_dir_all(dir).expect("create volume dir");
        let writer = AtomicWriter { dir: dir.to_path_buf() };
        writer.write(payload);
        writer
    }

    /// Replaces the whole payload, in kubelet's order. Returns the instant of the
    /// `..data` rename, the moment the new content becomes visible.
    pub fn write(&self, payload: &[(&str, &str)]) -> Instant {
        let data = self.dir.join("..data");
        let old = std::fs::read_link(&data).ok();

        // 1. The new timestamped directory with the full payload (kubelet: 0644 files).
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let ts_name = format!("..{}_{:09}.{}{}", now.as_secs(), now.subsec_nanos(), std::process::id(), seq);
        let ts_dir = self.dir.join(&ts_name);
        std::fs::create_dir(&ts_dir).expect("create timestamped dir");
        for (name, content) in payload {
            std::fs::write(ts_dir.join(name), content).expect("write payload file");
        }

        // 2. `..data_tmp -> ..<timestamp>` (relative, as kubelet does).
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&ts_name, &tmp).expect("create ..data_tmp");

        // 3. The atomic switch.
        std::fs::rename(&tmp, &data).expect("rename ..data_tmp over ..data");
        let switched = Instant::now();

        // 4. Visible names for new files.
        for (name, _) in payload {
            let visible = self.dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                symlink(Path::new("..data").join(name), &visible).expect("create visible symlink");
            }
        }

        // 5. Visible names no longer in the payload.
        for entry in std::fs::read_dir(&self.dir).expect("list volume dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("..") && !payload.iter().any(|(n, _)| *n == name) {
                std::fs::remove_file(entry.path()).expect("remove stale visible name");
            }
        }

        // 6. The previous payload.
        if let Some(old) = old {
            std::fs::remove_dir_all(self.dir.join(old)).expect("remove previous timestamped dir");
        }
        switched
    }

    /// Where the visible `..data` link points now.
    pub fn current(&self) -> PathBuf {
        std::fs::read_link(self.dir.join("..data")).expect("..data exists")
    }
}

/// Waits (up to 60 s: generous, the wait ends as soon as it happens) until the
/// serving snapshot's generation is at least `at_least`.
pub async fn wait_generation(running: &Running, at_least: u64) {
    let mut rx = running.generations();
    tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|g| *g >= at_least))
        .await
        .unwrap_or_else(|_| panic!("generation {at_least} not reached within 60s"))
        .expect("reloader alive");
}

/// keyrelay on kubelet-style mounts: `<tmp>/config/config.yaml` and `<tmp>/secrets/*`.
pub struct Mounted {
    pub proxy: Proxy,
    pub config: AtomicWriter,
    pub secrets: AtomicWriter,
}

/// Short debounce; no periodic re-scan (a test that relied on it would be slow).
pub fn fast_settings() -> ReloadSettings {
    ReloadSettings { debounce: Duration::from_millis(20), rescan: Duration::from_secs(3600), ..Default::default() }
}

impl Mounted {
    pub async fn start(config: &str, secrets: &[(&str, &str)]) -> Mounted {
        Self::start_with(config, secrets, fast_settings()).await
    }

    pub async fn start_with(config: &str, secrets: &[(&str, &str)], settings: ReloadSettings) -> Mounted {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_writer = AtomicWriter::create(&dir.path().join("config"), &[("config.yaml", config)]);
        let secrets_writer = AtomicWriter::create(&dir.path().join("secrets"), secrets);
        let options = Options {
            config: config_writer.dir.join("config.yaml"),
            secrets_dir: Some(secrets_writer.dir.clone()),
            listen: Some("127.0.0.1:0".parse().expect("addr")),
            admin: Some("127.0.0.1:0".parse().expect("addr")),
            ..Default::default()
        };
        let running =
            Running::start_with(options, settings).await.unwrap_or_else(|e| panic!("keyrelay did not start: {e}"));
        Mounted { proxy: Proxy { running, dir, client: http_client() }, config: config_writer, secrets: secrets_writer }
    }

    /// The serving generation.
    pub fn generation(&self) -> u64 {
        self.proxy.running.store.load().generation
    }

    /// Waits until the serving generation is past `after`.
    pub async fn wait_generation_past(&self, after: u64) {
        wait_generation(&self.proxy.running, after + 1).await;
    }

    /// `/readyz` body (asserting it is 200).
    pub async fn readyz(&self) -> String {
        let r = self.proxy.admin_get("/readyz").await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }
}
