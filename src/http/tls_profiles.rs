//! Upstream clients for deployments that check certificates their own way
//! (`ssl_verify: <CA bundle>` or `ssl_verify: false`). They are built when a snapshot
//! is built, never on the request path, and reused by the next snapshot while the
//! bundle's content is unchanged (so reloads keep their connection pools).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::lanes::ProxyClient;
use crate::config::TlsProfile;

/// The clients of one snapshot, by profile, each with a hash of what it was built from.
pub type TlsClients = HashMap<TlsProfile, (u64, ProxyClient)>;

/// Builds (or takes from `previous`) a client for `profile`. `None` for the default
/// profile: the process's own client serves it.
pub fn client_for(
    profile: &TlsProfile,
    connect_timeout: Duration,
    previous: Option<&TlsClients>,
) -> Result<Option<(u64, ProxyClient)>, String> {
    let (fingerprint, tls) = match profile {
        TlsProfile::Default => return Ok(None),
        TlsProfile::NoVerify => {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let tls = rustls::ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth();
            (0, tls)
        }
        TlsProfile::CaBundle(path) => {
            let failed = |reason: String| format!("ssl_verify: cannot use CA bundle {}: {reason}", path.display());
            let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            pem.hash(&mut hasher);
            let fingerprint = hasher.finish();
            if let Some(kept) = previous.and_then(|p| p.get(profile)).filter(|(f, _)| *f == fingerprint) {
                return Ok(Some(kept.clone()));
            }
            let mut roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.map_err(|e| failed(e.to_string()))?).map_err(|e| failed(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(failed("no certificates in the file".to_owned()));
            }
            (fingerprint, rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
        }
    };
    if let Some(kept) = previous.and_then(|p| p.get(profile)).filter(|(f, _)| *f == fingerprint) {
        return Ok(Some(kept.clone()));
    }
    Ok(Some((fingerprint, ProxyClient::with_tls(connect_timeout, tls))))
}

/// `ssl_verify: false`: any certificate is accepted. Handshake signatures are still
/// checked (the peer must hold the key of the certificate it shows).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
