//! The HTTP client OTLP/HTTP exports go through: keyrelay's own pooled hyper-rustls
//! client (the one upstream requests use), so no second HTTP stack is linked in.
//!
//! The SDK's batch processor calls it from a plain thread; each request runs as a task
//! on the export runtime and the caller waits for its result.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry_http::{HttpClient, HttpError};
use tokio::runtime::Handle;

use crate::http::client::{self, UpstreamClient};

/// Collector answers are tiny; anything bigger is not read.
const RESPONSE_LIMIT: usize = 1024 * 1024;

pub(super) struct ExportClient {
    client: UpstreamClient,
    runtime: Handle,
    timeout: Duration,
    /// Set while exports fail, so a down collector is reported once, not per batch.
    failing: AtomicBool,
}

impl std::fmt::Debug for ExportClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportClient").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl ExportClient {
    /// `ca`: a PEM bundle trusted besides the built-in roots.
    pub(super) fn new(runtime: Handle, timeout: Duration, ca: Option<&Path>) -> Result<Self, client::CaError> {
        let client = client::client(timeout, ca)?;
        Ok(ExportClient { client, runtime, timeout, failing: AtomicBool::new(false) })
    }

    fn report(&self, outcome: Result<http::StatusCode, String>) {
        match outcome {
            Ok(status) if status.is_success() => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export works again");
                }
            }
            Ok(status) => self.report(Err(format!("the collector answered {status}"))),
            Err(reason) => {
                if self.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(%reason, "trace export failed");
                } else {
                    tracing::warn!(%reason, "trace export failed; spans are dropped until it works again");
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let exchange = async move {
            let response = client.request(request.map(Full::new)).await?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, RESPONSE_LIMIT).collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let timeout = self.timeout;
        let task = self.runtime.spawn(async move { tokio::time::timeout(timeout, exchange).await });
        let result = match task.await {
            Ok(Ok(result)) => result,
            Ok(Err(_elapsed)) => Err(format!("no answer within {timeout:?}").into()),
            Err(e) => Err(e.into()),
        };
        self.report(result.as_ref().map(Response::status).map_err(ToString::to_string));
        result
    }
}
