//! Runs the real `keyrelay run` binary on port 0 and learns its addresses from its
//! JSON log, keeping every log line for tests that inspect them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running `keyrelay run`; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub proxy: String,
    pub admin: String,
    log: Option<JoinHandle<Vec<String>>>,
}

impl Daemon {
    /// Starts the binary with JSON logs at `RUST_LOG=info` and no inherited OTLP
    /// endpoint; `env` adds or overrides variables. Every log line is kept (see
    /// [`Daemon::wait`]). Panics if it does not log its addresses within 60 s (a
    /// loaded machine can take a while to start a debug binary).
    pub fn spawn(config: &Path, secrets: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::spawn_with(config, secrets, env, true)
    }

    /// Like [`Daemon::spawn`], but log lines are read and dropped: for long runs
    /// (benchmarks) that log a line per request.
    pub fn spawn_quiet(config: &Path, secrets: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::spawn_with(config, secrets, env, false)
    }

    /// Like [`Daemon::spawn_quiet`] with another build of keyrelay (benchmarks compare
    /// the code before a fix with the code after it).
    pub fn spawn_bin(bin: &Path, config: &Path, secrets: &Path, env: &[(&str, &str)]) -> Daemon {
        Self::spawn_from(bin, config, secrets, env, false)
    }

    fn spawn_with(config: &Path, secrets: &Path, env: &[(&str, &str)], keep_log: bool) -> Daemon {
        Self::spawn_from(Path::new(env!("CARGO_BIN_EXE_keyrelay")), config, secrets, env, keep_log)
    }

    fn spawn_from(bin: &Path, config: &Path, secrets: &Path, env: &[(&str, &str)], keep_log: bool) -> Daemon {
        let mut command = Command::new(bin);
        command
            .args(["run", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--secrets-dir")
            .arg(secrets)
            .env("KEYRELAY_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn keyrelay");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let log = std::thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Reading every line also keeps the process from blocking on a full pipe.
                if keep_log {
                    all.push(line.clone());
                }
                let _ = tx.send(line);
            }
            all
        });
        let mut daemon = Daemon { child, proxy: String::new(), admin: String::new(), log: Some(log) };
        loop {
            let line = rx.recv_timeout(Duration::from_secs(60)).expect("keyrelay logged its addresses");
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            let fields = &json["fields"];
            if let (Some(p), Some(a)) = (fields["proxy_addr"].as_str(), fields["admin_addr"].as_str()) {
                daemon.proxy = p.to_owned();
                daemon.admin = a.to_owned();
                return daemon;
            }
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs").success());
    }

    /// Blocks until the process exits; returns its status and every line it logged.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.wait().expect("wait for keyrelay");
        let log = self.log.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        (status, log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
