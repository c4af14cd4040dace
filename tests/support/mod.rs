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
pub use keyrelay_mock::*;

/// Polls `f` every 10 ms until it returns true; panics with `what` after `deadline`.
/// Tests wait for events this way, never with a fixed sleep.
pub async fn eventually<F, Fut>(deadline: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_ok(deadline, what, || {
        let done = f();
        async move {
            if done.await {
                Ok(())
            } else {
                Err("not yet")
            }
        }
    })
    .await
}

/// [`eventually`] for a wait that yields what it waited for: polls `f` every 10 ms
/// until it returns `Ok`; after `deadline` panics with `what` and the last `Err` (what
/// was seen instead, so a failure shows the state it got stuck in).
pub async fn eventually_ok<T, E, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let until = Instant::now() + deadline;
    loop {
        let last = match f().await {
            Ok(found) => return found,
            Err(last) => last,
        };
        assert!(Instant::now() < until, "timed out after {deadline:?} waiting for: {what}; last seen: {last}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An address that asks the OS for a free port.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
