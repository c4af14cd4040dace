//! The one HTTP server loop every listener uses (app port, admin port, webhook, mock):
//! accept with back-off, a cap on open connections, optional TLS, HTTP/1.1 and HTTP/2
//! on one port, timeouts for peers that send nothing, never finish a request head or
//! sit idle, and a bounded drain on shutdown. Plus the body type and the small
//! response helpers the handlers share. And the outbound side: [`client`], the pooled
//! HTTPS client builder, [`lanes`], the request path's client over several such pools,
//! [`tls_profiles`], the clients for deployments that check certificates their own
//! way, and [`resolve`], the in-process name resolver outbound clients connect through.
//!
//! It owns connections, never requests: what a request means is the handler's
//! business. Nothing here reads snapshots; of config it knows only the
//! `TlsProfile` value a deployment's client is built from.

mod activity;
pub mod body;
pub mod client;
mod connection;
pub mod lanes;
mod protocol;
pub mod resolve;
mod serve;
pub mod tls_profiles;
mod upstream_io;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use body::{full, text, typed, BoxBody, BoxError};
pub use serve::serve;

/// How one listener treats its connections. Built by the caller from its own config
/// (`server:` for the app and admin ports, flags for the webhook, defaults for the mock).
#[derive(Clone)]
pub struct Settings {
    /// Names the listener in logs (`app`, `admin`, `webhook`, `mock`).
    pub name: &'static str,
    /// Open connections allowed at once; past it, new connections are closed at once,
    /// so a flood of one listener cannot take the process's file descriptors.
    pub max_connections: usize,
    /// A new connection must complete its TLS handshake and its first request head
    /// (HTTP/1 headers, or an HTTP/2 HEADERS frame) within this; an HTTP/1
    /// keep-alive connection, its next head within this from its first byte.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (HTTP/2 with a
    /// GOAWAY). `None`: idle connections stay (the mock: a test's pooled connection
    /// must not vanish under it).
    pub idle_timeout: Option<Duration>,
    /// HTTP/2 PINGs this often detect a peer that vanished mid-stream; unanswered
    /// within the same time again, the connection is closed. `None`: no pings.
    pub keep_alive_interval: Option<Duration>,
    /// After shutdown, how long open requests (streams too) may take to finish before
    /// their connections are cut.
    pub drain_grace: Duration,
    /// Serve HTTPS: each connection does its handshake (within `header_read_timeout`)
    /// before HTTP; ALPN in the acceptor's config decides HTTP/2.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Counters the caller can read while the listener runs.
    pub stats: Arc<ConnectionStats>,
}

impl Settings {
    /// Defaults for a listener called `name`: 1024 connections, 10 s for a request
    /// head, 90 s idle, pings every 30 s, 30 s to drain, plain TCP.
    pub fn new(name: &'static str) -> Self {
        Settings {
            name,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(90)),
            keep_alive_interval: Some(Duration::from_secs(30)),
            drain_grace: Duration::from_secs(30),
            tls: None,
            stats: Arc::default(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("drain_grace", &self.drain_grace)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// What a listener has done with its connections so far.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    accepted: AtomicU64,
    refused: AtomicU64,
    open: AtomicUsize,
}

impl ConnectionStats {
    /// Connections accepted and served (refused ones excluded).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections closed at once because `max_connections` were open.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}
