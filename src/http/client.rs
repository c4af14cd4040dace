//! The outbound side of HTTP: the pooled HTTPS client every upstream request goes
//! through (the request path, key probes, OTLP exports), built on hyper-rustls with the
//! compiled-in Mozilla roots and keyrelay's own resolver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::resolve::Resolver;
use super::BoxError;

/// A pooled upstream client (keep-alive, HTTP/2 when the server offers it by ALPN,
/// plain `http://` allowed for local servers) sending bodies of type `B`.
/// Host names go through keyrelay's own resolver (`/etc/hosts`, `/etc/resolv.conf`).
pub type HttpsClient<B> = Client<HttpsConnector<HttpConnector<Resolver>>, B>;

/// The client for whole in-memory bodies (the OTLP exporter's).
pub type UpstreamClient = HttpsClient<Full<Bytes>>;

/// The body the request path's client sends: an attempt's body (the proxy's
/// `OutboundBody`: shared slices of the client's buffer, then the rest of a streamed
/// multipart form), boxed once per attempt so the clients kept per TLS profile in the
/// snapshot need not name the proxy's type.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// The request path's client (and the key probes').
pub type ProxyClient = HttpsClient<UpstreamBody>;

/// Builds a client. Upstream certificates are checked against the Mozilla roots
/// compiled in (no CA bundle needed in the image) plus, if given, the PEM bundle
/// `extra_ca` (a corporate proxy's CA, a self-hosted model server's).
pub fn client<B>(connect_timeout: Duration, extra_ca: Option<&Path>) -> Result<HttpsClient<B>, CaError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let failed = |reason: String| CaError { path: path.to_owned(), reason };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| failed(e.to_string()))?;
        let mut added = 0;
        for cert in certs {
            roots.add(cert.map_err(|e| failed(e.to_string()))?).map_err(|e| failed(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(failed("no certificates in the file".to_owned()));
        }
    }
    let tls = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(client_with_tls(connect_timeout, tls))
}

/// A pooled client checking upstream certificates as `tls` says.
pub fn client_with_tls<B>(connect_timeout: Duration, tls: rustls::ClientConfig) -> HttpsClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut http = HttpConnector::new_with_resolver(Resolver::from_system());
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(https)
}

/// The extra CA bundle could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use CA bundle {}: {reason}", .path.display())]
pub struct CaError {
    pub path: PathBuf,
    pub reason: String,
}
