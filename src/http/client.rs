//! The outbound side of HTTP: the pooled HTTPS client every upstream request goes
//! through (the request path, key probes, OTLP exports), built on hyper-rustls with the
//! compiled-in Mozilla roots and keyrelay's own resolver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::Full;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::resolve::Resolver;
use super::BoxError;

pub use super::upstream_io::Connector;

/// A pooled upstream client (keep-alive, HTTP/2 when the server offers it by ALPN)
/// sending bodies of type `B`.
pub type HttpsClient<B> = Client<Connector, B>;

/// The client for whole in-memory bodies (the OTLP exporter's).
pub type UpstreamClient = HttpsClient<Full<Bytes>>;

/// The body the request path's client sends: an attempt's body (the proxy's
/// `OutboundBody`: shared slices of the client's buffer, then the rest of a streamed
/// multipart form), boxed once per attempt so the clients kept per TLS profile in the
/// snapshot need not name the proxy's type.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// Builds a client. Upstream certificates are checked as [`verified_tls`] says.
pub fn client<B>(connect_timeout: Duration, extra_ca: Option<&Path>) -> Result<HttpsClient<B>, CaError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Ok(pooled(connector(connect_timeout, verified_tls(extra_ca)?)))
}

/// Upstream certificates checked against the Mozilla roots compiled in (no CA bundle
/// needed in the image) plus, if given, the PEM bundle `extra_ca` (a corporate proxy's
/// CA, a self-hosted model server's).
pub fn verified_tls(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, CaError> {
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
    Ok(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

/// How upstream connections are made: TCP with `TCP_NODELAY`, then TLS checked as
/// `tls` says, offering HTTP/2 and HTTP/1.1 by ALPN (plain `http://` allowed for
/// local servers). Host names go through keyrelay's own resolver.
pub fn connector(connect_timeout: Duration, tls: rustls::ClientConfig) -> Connector {
    let mut http = HttpConnector::new_with_resolver(Resolver::from_system());
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    Connector::new(
        HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http),
    )
}

/// A keep-alive pool over `connector`.
pub fn pooled<B>(connector: Connector) -> HttpsClient<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(90)).build(connector)
}

/// The extra CA bundle could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot use CA bundle {}: {reason}", .path.display())]
pub struct CaError {
    pub path: PathBuf,
    pub reason: String,
}
