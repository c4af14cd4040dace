//! Starts the real `keyrelay webhook` binary over TLS on port 0 and reads the address
//! it logged. One launcher for every test that talks to the webhook (its own tests,
//! the hostile-peer tests and the chart's generated certificates).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

/// How long the binary may take to log its address (a loaded CI machine is slow).
const STARTUP: Duration = Duration::from_secs(60);

/// A running webhook; killed on drop so a failing test leaves no process behind.
pub struct Webhook {
    pub child: Child,
    pub addr: SocketAddr,
    /// Trusts only the CA the webhook was started with.
    pub tls: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Webhook {
    /// Writes `cert_pem` and `key_pem` as its serving certificate, starts it with
    /// `extra_args`, and returns once it listens. Clients trust `ca` only.
    pub fn start(cert_pem: &[u8], key_pem: &[u8], ca: CertificateDer<'static>, extra_args: &[&str]) -> Webhook {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("tls.crt"), cert_pem).expect("write tls.crt");
        std::fs::write(dir.path().join("tls.key"), key_pem).expect("write tls.key");
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyrelay"));
        command
            .arg("webhook")
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .args(["--listen", "127.0.0.1:0", "--sidecar-image", "registry.test/keyrelay:t1"])
            .args(extra_args)
            .env("KEYRELAY_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // The test's own environment must not change the webhook's settings.
        for (name, _) in
            std::env::vars().filter(|(n, _)| n.starts_with("KEYRELAY_SIDECAR_") || n.starts_with("KEYRELAY_WEBHOOK_"))
        {
            command.env_remove(name);
        }
        let mut child = command.spawn().expect("spawn keyrelay webhook");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Keeps draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).expect("a valid CA certificate");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut webhook = Webhook { child, addr: SocketAddr::from(([127, 0, 0, 1], 0)), tls: Arc::new(tls), _dir: dir };
        loop {
            let line = rx.recv_timeout(STARTUP).expect("keyrelay webhook logged its address");
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if let Some(addr) = json["fields"]["webhook_addr"].as_str() {
                webhook.addr = addr.parse().expect("a socket address");
                return webhook;
            }
        }
    }

    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
    }
}
