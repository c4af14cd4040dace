//! Sending one probe: the request [`crate::provider::probe`] builds, over the same
//! upstream client (and per-deployment TLS profile) requests use, with a deadline.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::config::Deployment;
use crate::http::client::UpstreamBody;
use crate::http::lanes::ProxyClient;
use crate::pool::Snapshot;
use crate::provider::probe::{self, Verdict};
use crate::provider::Auth;
use crate::proxy::outbound::OutboundBody;

/// Enough of an error body to classify it; the rest is not read.
const BODY_PREFIX: usize = 8 * 1024;

/// Waits between probes of a rotation that found the provider unreachable.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Probes `auth` at `deployment` once, giving up at `deadline`.
pub(crate) async fn once(
    client: &ProxyClient,
    snapshot: &Snapshot,
    deployment: &Deployment,
    auth: &Auth,
    deadline: Instant,
) -> Verdict {
    let Ok(uri) = probe::probe_uri(deployment.provider, &deployment.base_url, deployment.api_version.as_deref()) else {
        return Verdict::Inconclusive;
    };
    let mut request = Request::new(UpstreamBody::new(OutboundBody::new(Vec::<Bytes>::new(), None)));
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.headers_mut() = probe::probe_headers(deployment.provider, auth);
    let client = snapshot.tls_client(&deployment.options.tls).unwrap_or(client);
    let exchange = async {
        let response = client.request(request).await.ok()?;
        let status = response.status();
        let mut body = response.into_body();
        let mut prefix = Vec::new();
        while prefix.len() < BODY_PREFIX {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let room = BODY_PREFIX - prefix.len();
                        prefix.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                _ => break,
            }
        }
        Some(probe::verdict(status, &prefix))
    };
    match tokio::time::timeout_at(deadline, exchange).await {
        Ok(Some(verdict)) => verdict,
        _ => Verdict::Unreachable,
    }
}

/// Probes until the provider answers or `deadline` passes (then: unreachable), a
/// little longer apart each time, so a provider's blip does not decide a rotation.
pub(crate) async fn until_answered(
    client: &ProxyClient,
    snapshot: &Snapshot,
    deployment: &Deployment,
    auth: &Auth,
    deadline: Instant,
    mut attempted: impl FnMut(Verdict),
) -> Verdict {
    let mut wait = RETRY_FIRST;
    loop {
        let verdict = once(client, snapshot, deployment, auth, deadline).await;
        attempted(verdict);
        if verdict != Verdict::Unreachable || Instant::now() >= deadline {
            return verdict;
        }
        let next = Instant::now().checked_add(wait).map_or(deadline, |t| t.min(deadline));
        tokio::time::sleep_until(next).await;
        if Instant::now() >= deadline {
            return Verdict::Unreachable;
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}
