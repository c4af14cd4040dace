//! The request path's upstream client: a row of pooled clients ("lanes") in place of
//! one, so that at most [`STREAMS_PER_LANE`] requests at a time share an HTTP/2
//! connection.
//!
//! hyper's pool keeps one HTTP/2 connection per host and multiplexes every request
//! over it, and it never opens a second one (hyperium/hyper#2197): past the server's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (100 to 256 at the providers' front ends, 200 in
//! hyper's own server) requests wait inside that connection until a stream ends. With
//! 1,000 streams open through one sidecar to one provider, first chunks came after
//! 8.4 s (median) and 16.7 s (p99) instead of at once. Each lane has its own pool,
//! hence its own connection, and takes at most 100 requests, the least a server
//! should allow (RFC 9113, section 6.5.2). A request takes the first lane with room,
//! so below 100 requests at a time everything rides lane 0's connection, as with one
//! client. An HTTP/1.1 upstream opens a connection per concurrent request anyway;
//! lanes only split its idle connections into separate pools.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::client::{self, CaError, Connector, HttpsClient, UpstreamBody};

/// Requests one lane carries at a time.
pub const STREAMS_PER_LANE: usize = 100;

/// Lanes per client: 6,400 requests at a time before any waits in a connection. A
/// lane without traffic is a few hundred bytes (an empty pool); it has no connection.
const LANES: usize = 64;
const _: () = assert!(LANES > 0, "a client needs a lane");

/// The pooled client requests and key probes go through. Cloning shares the lanes.
#[derive(Clone)]
pub struct ProxyClient {
    lanes: Arc<[Lane; LANES]>,
}

struct Lane {
    client: HttpsClient<UpstreamBody>,
    /// Requests on this lane whose response has not ended (or been dropped).
    open: AtomicUsize,
}

/// A request's place on its lane, given back when its response body ends.
struct Lease {
    lanes: Arc<[Lane; LANES]>,
    index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(lane) = self.lanes.get(self.index) {
            lane.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// An upstream response body; its lane counts it until it ends or is dropped.
pub struct LaneBody {
    body: Incoming,
    _lease: Lease,
}

impl std::fmt::Debug for ProxyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let busy = self.lanes.iter().filter(|l| l.open.load(Ordering::Relaxed) > 0).count();
        f.debug_struct("ProxyClient").field("lanes", &self.lanes.len()).field("busy", &busy).finish()
    }
}

impl std::fmt::Debug for LaneBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneBody").field("lane", &self._lease.index).finish_non_exhaustive()
    }
}

impl ProxyClient {
    /// Checks upstream certificates as [`client::verified_tls`] says.
    pub fn verified(connect_timeout: Duration, extra_ca: Option<&std::path::Path>) -> Result<Self, CaError> {
        Ok(Self::new(client::connector(connect_timeout, client::verified_tls(extra_ca)?)))
    }

    /// Checks upstream certificates as `tls` says.
    pub fn with_tls(connect_timeout: Duration, tls: rustls::ClientConfig) -> Self {
        Self::new(client::connector(connect_timeout, tls))
    }

    fn new(connector: Connector) -> Self {
        let lane = |_| Lane { client: client::pooled(connector.clone()), open: AtomicUsize::new(0) };
        ProxyClient { lanes: Arc::new(std::array::from_fn(lane)) }
    }

    /// Sends `request` on the first lane with room (the least busy one when all are full).
    pub fn request(
        &self,
        request: Request<UpstreamBody>,
    ) -> impl Future<Output = Result<Response<LaneBody>, hyper_util::client::legacy::Error>> + Send + 'static {
        let (lease, lane) = self.lease();
        let sent = lane.client.request(request);
        async move { Ok(sent.await?.map(|body| LaneBody { body, _lease: lease })) }
    }

    /// A place on a lane, and that lane.
    fn lease(&self) -> (Lease, &Lane) {
        let lease = |index| Lease { lanes: Arc::clone(&self.lanes), index };
        for (index, lane) in self.lanes.iter().enumerate() {
            // Taken before it is checked, so two requests cannot both take the last place.
            if lane.open.fetch_add(1, Ordering::Relaxed) < STREAMS_PER_LANE {
                return (lease(index), lane);
            }
            lane.open.fetch_sub(1, Ordering::Relaxed);
        }
        // `LANES` is not zero (checked at compile time), so lane 0 exists.
        let (index, lane) = self
            .lanes
            .iter()
            .enumerate()
            .min_by_key(|(_, lane)| lane.open.load(Ordering::Relaxed))
            .unwrap_or((0, &self.lanes[0]));
        lane.open.fetch_add(1, Ordering::Relaxed);
        (lease(index), lane)
    }

    /// Requests open on each lane, for tests.
    #[cfg(test)]
    fn open(&self) -> Vec<usize> {
        self.lanes.iter().map(|l| l.open.load(Ordering::Relaxed)).collect()
    }
}

impl Body for LaneBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ProxyClient {
        ProxyClient::with_tls(Duration::from_secs(1), client::verified_tls(None).unwrap())
    }

    #[test]
    fn requests_fill_the_first_lane_with_room_and_give_their_place_back() {
        let client = client();
        let leases: Vec<Lease> = (0..STREAMS_PER_LANE * 2 + 1).map(|_| client.lease().0).collect();
        let open = client.open();
        assert_eq!(open[..3], [STREAMS_PER_LANE, STREAMS_PER_LANE, 1]);
        assert!(open[3..].iter().all(|&n| n == 0), "{open:?}");
        drop(leases);
        assert!(client.open().iter().all(|&n| n == 0), "{:?}", client.open());
    }

    #[test]
    fn a_place_freed_on_an_early_lane_is_taken_before_a_later_lane() {
        let client = client();
        let mut leases: Vec<Lease> = (0..STREAMS_PER_LANE + 5).map(|_| client.lease().0).collect();
        leases.swap_remove(0);
        let next = client.lease().0;
        assert_eq!(next.index, 0);
        assert_eq!(client.open()[..2], [STREAMS_PER_LANE, 5]);
    }

    #[test]
    fn with_every_lane_full_the_least_busy_one_takes_more() {
        let client = client();
        let mut leases: Vec<Lease> = (0..STREAMS_PER_LANE * LANES).map(|_| client.lease().0).collect();
        assert!(client.open().iter().all(|&n| n == STREAMS_PER_LANE));
        let freed = leases.iter().position(|l| l.index == 7).unwrap();
        leases.swap_remove(freed);
        leases.push(client.lease().0);
        leases.push(client.lease().0);
        let open = client.open();
        assert_eq!(open.iter().sum::<usize>(), STREAMS_PER_LANE * LANES + 1);
        assert!(open.iter().all(|&n| n <= STREAMS_PER_LANE + 1), "{open:?}");
    }
}
