//! A fixed-rate client for the demo: sends chat requests (every fourth one
//! streamed) at a steady rate and counts what the app would see.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// What the application saw.
#[derive(Debug, Default)]
pub struct ClientTally {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub rate_limited: AtomicU64,
    pub other: AtomicU64,
}

impl ClientTally {
    fn count(&self, status: u16) {
        let slot = match status {
            200..=299 => &self.ok,
            429 => &self.rate_limited,
            _ => &self.other,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends `rate` requests per second for `duration` to `url`, for model `alias`.
pub async fn run(url: String, alias: &str, rate: u32, duration: Duration, tally: Arc<ClientTally>) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let end = tokio::time::Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0u64;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        n += 1;
        let stream = n % 4 == 0;
        let body = format!(
            r#"{{"model":"{alias}","stream":{stream},"messages":[{{"role":"user","content":"demo request {n}"}}]}}"#
        );
        let Ok(request) = http::Request::post(&url)
            .header("content-type", "application/json")
            .header("authorization", "Bearer app-has-no-real-key")
            .body(Full::new(Bytes::from(body)))
        else {
            continue;
        };
        let client = client.clone();
        let tally = Arc::clone(&tally);
        tally.sent.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            match client.request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    // Drain the body (streams included) as an app would.
                    let _ = response.into_body().collect().await;
                    tally.count(status);
                }
                Err(_) => tally.count(0),
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
