//! Shared helpers for the integration tests (`mod support;` in each test file).
#![allow(dead_code, unused_imports)]

pub mod atomic_writer;
pub mod daemon;
pub mod fake_kube;
pub mod harness;
pub mod redis;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use harness::{get, read, Proxy, Reply};
pub use keyrelay::mock::*;

/// Polls `f` every 10 ms until it returns true; panics with `what` after `deadline`.
/// Tests wait for events this way, never with a fixed sleep.
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < until, "timed out after {deadline:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An address that asks the OS for a free port.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
