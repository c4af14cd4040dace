//! The webhook's serving certificate, re-read from disk when it changes.
//!
//! cert-manager renews the certificate in the Secret and kubelet updates the mounted
//! files; without a reload the webhook would keep serving the old certificate until
//! it expired and every pod creation in injected namespaces failed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// How often the files are checked. Renewal happens days before expiry, so a minute
/// is plenty and costs two small reads.
pub const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: no PEM certificate found ({detail})")]
    NoCertificate { path: PathBuf, detail: String },
    #[error("{path}: no usable PEM private key found ({detail})")]
    NoKey { path: PathBuf, detail: String },
    #[error("certificate and key do not fit together: {0}")]
    Mismatch(rustls::Error),
    #[error("TLS setup: {0}")]
    Config(rustls::Error),
}

/// The current certificate, swapped in place when the files change.
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<Loaded>,
}

struct Loaded {
    pem: (Vec<u8>, Vec<u8>),
    key: Arc<CertifiedKey>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths only: never the key material.
        f.debug_struct("ReloadingCert").field("cert", &self.cert_path).field("key", &self.key_path).finish()
    }
}

impl ReloadingCert {
    /// Loads both files; fails if either is unusable, so a bad Secret stops the
    /// rollout instead of starting a webhook that cannot handshake.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pem = (read(cert_path)?, read(key_path)?);
        let key = parse(&pem, cert_path, key_path, &provider)?;
        Ok(Arc::new(ReloadingCert {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: ArcSwap::from_pointee(Loaded { pem, key }),
        }))
    }

    /// A rustls server config (HTTP/2 and HTTP/1.1) that always uses the current cert.
    pub fn server_config(self: &Arc<Self>) -> Result<ServerConfig, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Re-reads the files; swaps only when they changed and still parse. Returns
    /// whether a new certificate is now served.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let pem = (read(&self.cert_path)?, read(&self.key_path)?);
        if pem == self.current.load().pem {
            return Ok(false);
        }
        let key = parse(&pem, &self.cert_path, &self.key_path, &self.provider)?;
        self.current.store(Arc::new(Loaded { pem, key }));
        Ok(true)
    }

    /// Checks for a renewed certificate every [`RELOAD_EVERY`], for the process life.
    pub async fn watch(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            match self.reload() {
                Ok(true) => tracing::info!(cert = %self.cert_path.display(), "serving a renewed TLS certificate"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "kept the previous TLS certificate"),
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.load().key))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn parse(
    (cert_pem, key_pem): &(Vec<u8>, Vec<u8>),
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate { path: cert_path.to_owned(), detail: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path.to_owned(), detail: "empty file".to_owned() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::NoKey { path: key_path.to_owned(), detail: e.to_string() })?;
    CertifiedKey::from_der(chain, key, provider).map(Arc::new).map_err(TlsError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    }

    #[test]
    fn a_renewed_certificate_is_swapped_in_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        write_pair(dir.path(), "one.test");
        let reloading = ReloadingCert::load(&cert, &key).unwrap();
        let first = Arc::clone(&reloading.current.load().key);
        assert!(!reloading.reload().unwrap(), "unchanged files are not re-parsed");

        write_pair(dir.path(), "two.test");
        assert!(reloading.reload().unwrap());
        let second = Arc::clone(&reloading.current.load().key);
        assert_ne!(first.cert, second.cert);

        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n").unwrap();
        assert!(reloading.reload().is_err());
        assert_eq!(reloading.current.load().key.cert, second.cert, "the previous certificate keeps serving");
        // A key that does not belong to the certificate is refused too.
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key, other.serialize_pem()).unwrap();
        assert!(matches!(reloading.reload(), Err(TlsError::Mismatch(_))));
    }

    #[test]
    fn debug_output_names_paths_not_key_material() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), "one.test");
        let reloading = ReloadingCert::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
        let debug = format!("{reloading:?}");
        assert!(debug.contains("tls.key") && !debug.contains("PRIVATE"), "{debug}");
    }
}
