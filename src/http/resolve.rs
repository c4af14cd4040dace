//! Name resolution for every outbound connection keyrelay makes by host name: the
//! upstream providers, the OTLP/HTTP collector (same client) and a Redis cluster.
//!
//! The image is a statically linked glibc binary in a `FROM scratch` filesystem, where
//! `getaddrinfo` has no NSS modules to load. So names are resolved in-process, as a
//! pod expects: `/etc/hosts` first, then the name servers, search list and `ndots` of
//! `/etc/resolv.conf` (the file kubelet writes into every container). Answers are
//! cached by their TTL, so the request path does not ask the DNS for every connection.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hickory_resolver::config::{ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use hyper_util::client::legacy::connect::dns::Name;

/// A cheap-to-clone handle on one resolver (its cache is shared by the clones).
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<TokioResolver>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// The resolver could not answer for a name.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {reason}")]
pub struct ResolveError {
    host: String,
    reason: String,
}

impl Resolver {
    /// Reads `/etc/resolv.conf` now. Without a readable one, names are answered from
    /// `/etc/hosts` alone (said once in the log), never from a public resolver.
    pub fn from_system() -> Resolver {
        let mut builder = TokioResolver::builder_tokio().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read /etc/resolv.conf; host names resolve from /etc/hosts only");
            let no_servers = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
            TokioResolver::builder_with_config(no_servers, TokioRuntimeProvider::default())
        });
        // Always `/etc/hosts` first, whatever resolv.conf's options say.
        builder.options_mut().use_hosts_file = ResolveHosts::Always;
        // Only DNS-over-TLS/QUIC settings make building fail, and those transports are
        // not compiled in (no `__tls` feature), so this never panics.
        let resolver = builder.build().expect("a resolver over UDP/TCP name servers always builds");
        Resolver { inner: Arc::new(resolver) }
    }

    /// Every address of `host`, with `port`.
    pub async fn lookup(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let failed = |reason: String| ResolveError { host: host.to_owned(), reason };
        let found = self.inner.lookup_ip(host).await.map_err(|e| failed(e.to_string()))?;
        let addrs: Vec<SocketAddr> = found.iter().map(|ip| SocketAddr::new(ip, port)).collect();
        if addrs.is_empty() {
            return Err(failed("no addresses".to_owned()));
        }
        Ok(addrs)
    }
}

/// What hyper-util's `HttpConnector` calls for a host name (IP literals never get here).
impl tower_service::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = self.clone();
        // The connector puts the URI's port on each address afterwards.
        Box::pin(async move { resolver.lookup(name.as_str(), 0).await.map(Vec::into_iter) })
    }
}

/// What a Redis cluster connection calls for its nodes' names.
impl redis::io::AsyncDNSResolver for Resolver {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        host: &'b str,
        port: u16,
    ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            let addrs = self.lookup(host, port).await.map_err(|e| {
                redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))
            })?;
            Ok(Box::new(addrs.into_iter()) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}
