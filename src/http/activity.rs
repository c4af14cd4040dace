//! What one connection is doing, as far as its deadlines care: waiting for a request
//! head, serving requests, or idle between them. hyper has no timeout for a peer that
//! sends nothing before auto-detecting the protocol, none for HTTP/2 at all, and its
//! HTTP/1 header timeout also closes idle keep-alive connections; so the connection
//! task keeps one deadline itself, fed by three taps:
//!
//! - [`Watched`] (the socket): bytes arriving on an idle HTTP/1 connection start the
//!   next request head's clock;
//! - [`Tracked`] (the service): a request head is complete, one more request in flight;
//! - [`TrackedBody`] (the response body): the request is done once its body has been
//!   sent, or dropped (the peer went away).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::service::Service;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a connection's deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// No complete request head (or TLS handshake) within the header read timeout.
    NoRequest,
    /// No request in flight for the idle timeout.
    Idle,
}

#[derive(Debug)]
struct State {
    in_flight: usize,
    /// With nothing in flight: waiting for a head (since `since`) rather than idle.
    awaiting_head: bool,
    /// When the current wait (for a head, or idle) began.
    since: Instant,
    /// Learned from the first request. HTTP/2 peers send PINGs and window updates while
    /// idle, so their bytes do not mean a request head has begun.
    http2: bool,
    /// The deadline the watchdog sleeps until (`None`: it waits for one). Only a
    /// deadline earlier than this wakes it: a later one (or none) is found when this
    /// one passes. On a busy keep-alive connection every request moves the deadline
    /// later, and waking the connection task for each would poll it again for nothing.
    armed: Option<Instant>,
}

/// One connection's shared state; see the module doc.
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<State>,
    /// Woken on every change of deadline, so the watchdog never sleeps past one.
    changed: Notify,
    header_read_timeout: Duration,
    idle_timeout: Option<Duration>,
    /// How often the watchdog was woken for a change.
    #[cfg(test)]
    wakes: std::sync::atomic::AtomicUsize,
}

impl Activity {
    /// A new connection: its first request head is due within `header_read_timeout`.
    pub fn new(header_read_timeout: Duration, idle_timeout: Option<Duration>) -> Self {
        let state = State { in_flight: 0, awaiting_head: true, since: Instant::now(), http2: false, armed: None };
        Activity {
            state: Mutex::new(state),
            changed: Notify::new(),
            header_read_timeout,
            idle_timeout,
            #[cfg(test)]
            wakes: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A complete request head: the returned guard holds the request in flight.
    pub fn request_started(self: &Arc<Self>, version: Version) -> InFlight {
        let mut s = self.state();
        s.in_flight += 1;
        s.http2 |= version == Version::HTTP_2;
        drop(s);
        // No deadline now: the watchdog finds that when its current one passes.
        InFlight(Some(Arc::clone(self)))
    }

    fn request_finished(&self) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.awaiting_head = false;
            s.since = Instant::now();
            self.wake_if_sooner(s);
        }
    }

    fn bytes_read(&self) {
        let mut s = self.state();
        if s.in_flight == 0 && !s.awaiting_head && !s.http2 {
            s.awaiting_head = true;
            s.since = Instant::now();
            self.wake_if_sooner(s);
        }
    }

    /// Wakes the watchdog if the deadline is now earlier than the one it sleeps until.
    fn wake_if_sooner(&self, s: std::sync::MutexGuard<'_, State>) {
        let sooner = self.deadline_of(&s).is_some_and(|(at, _)| s.armed.is_none_or(|armed| at < armed));
        drop(s);
        if sooner {
            #[cfg(test)]
            self.wakes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.changed.notify_one();
        }
    }

    /// The current deadline, which the watchdog is about to sleep until.
    fn arm(&self) -> Option<(Instant, Expiry)> {
        let mut s = self.state();
        let deadline = self.deadline_of(&s);
        s.armed = deadline.map(|(at, _)| at);
        deadline
    }

    fn deadline(&self) -> Option<(Instant, Expiry)> {
        self.deadline_of(&self.state())
    }

    fn deadline_of(&self, s: &State) -> Option<(Instant, Expiry)> {
        if s.in_flight > 0 {
            return None;
        }
        // `checked_add`: a deadline too far to represent is no deadline.
        if s.awaiting_head {
            s.since.checked_add(self.header_read_timeout).map(|at| (at, Expiry::NoRequest))
        } else {
            self.idle_timeout.and_then(|idle| s.since.checked_add(idle)).map(|at| (at, Expiry::Idle))
        }
    }

    /// Resolves once the current deadline passes, following it as it moves.
    /// A wake for a change that came before the wait began is kept (`Notify` stores
    /// one), so none is lost between [`Activity::arm`] and the wait.
    pub async fn expired(&self) -> Expiry {
        loop {
            match self.arm() {
                None => self.changed.notified().await,
                Some((at, _)) => {
                    tokio::select! {
                        // The deadline may have moved later (or gone) meanwhile.
                        () = tokio::time::sleep_until(at) => match self.deadline() {
                            Some((now_at, expiry)) if now_at <= Instant::now() => return expiry,
                            _ => {}
                        },
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// A request in flight; dropping it ends the request.
#[derive(Debug)]
pub(super) struct InFlight(Option<Arc<Activity>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(activity) = self.0.take() {
            activity.request_finished();
        }
    }
}

pin_project_lite::pin_project! {
    /// The connection's socket, reporting arriving bytes to its [`Activity`].
    pub(super) struct Watched<I> {
        #[pin]
        io: I,
        activity: Arc<Activity>,
    }
}

impl<I> Watched<I> {
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Watched { io, activity }
    }
}

impl<I: AsyncRead> AsyncRead for Watched<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_read();
        }
        polled
    }
}

impl<I: AsyncWrite> AsyncWrite for Watched<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// The caller's service, counting its requests in flight on the [`Activity`].
#[derive(Debug, Clone)]
pub(super) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<S, ReqBody, B> Service<Request<ReqBody>> for Tracked<S>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = TrackedFuture<S::Future>;

    fn call(&self, request: Request<ReqBody>) -> Self::Future {
        let in_flight = self.activity.request_started(request.version());
        TrackedFuture { inner: self.inner.call(request), in_flight: Some(in_flight) }
    }
}

pin_project_lite::pin_project! {
    /// The handler's future; its response body takes over the in-flight guard.
    pub(super) struct TrackedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B, E> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TrackedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(response.map(|r| r.map(|body| TrackedBody { inner: body, in_flight })))
    }
}

pin_project_lite::pin_project! {
    /// A response body whose end (or drop) ends its request.
    pub(super) struct TrackedBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.in_flight.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(90);

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_request_expires_after_the_header_timeout() {
        let activity = Activity::new(HEAD, Some(IDLE));
        let started = Instant::now();
        assert_eq!(activity.expired().await, Expiry::NoRequest);
        assert_eq!(started.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_hold_the_connection_then_idle_starts() {
        let activity = Arc::new(Activity::new(HEAD, Some(IDLE)));
        let in_flight = activity.request_started(Version::HTTP_11);
        let watchdog = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.expired().await }
        });
        tokio::time::sleep(HEAD * 5).await;
        assert!(!watchdog.is_finished(), "expired while a request was in flight");
        let finished = Instant::now();
        drop(in_flight);
        assert_eq!(watchdog.await.unwrap(), Expiry::Idle);
        assert_eq!(finished.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_on_an_idle_http1_connection_starts_the_header_clock() {
        let activity = Arc::new(Activity::new(HEAD, Some(IDLE)));
        drop(activity.request_started(Version::HTTP_11));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first_byte = Instant::now();
        activity.bytes_read();
        assert_eq!(activity.expired().await, Expiry::NoRequest);
        assert_eq!(first_byte.elapsed(), HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn http2_frames_while_idle_do_not_shorten_or_extend_idle() {
        let activity = Arc::new(Activity::new(HEAD, Some(IDLE)));
        drop(activity.request_started(Version::HTTP_2));
        let idle_since = Instant::now();
        activity.bytes_read();
        assert_eq!(activity.expired().await, Expiry::Idle);
        assert_eq!(idle_since.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_wakes_the_watchdog_and_a_later_one_is_followed() {
        let activity = Arc::new(Activity::new(HEAD, Some(IDLE)));
        drop(activity.request_started(Version::HTTP_11));
        let watchdog = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.expired().await }
        });
        // Idle, armed for IDLE; a byte brings the deadline forward to HEAD from now.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let first_byte = Instant::now();
        activity.bytes_read();
        assert_eq!(watchdog.await.unwrap(), Expiry::NoRequest);
        assert_eq!(first_byte.elapsed(), HEAD);

        // Waiting for a head, armed for HEAD; a request and its end push the deadline
        // out to IDLE after that end, which is where it expires.
        let activity = Arc::new(Activity::new(HEAD, Some(IDLE)));
        let watchdog = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.expired().await }
        });
        tokio::time::sleep(HEAD / 2).await;
        drop(activity.request_started(Version::HTTP_11));
        let finished = Instant::now();
        assert_eq!(watchdog.await.unwrap(), Expiry::Idle);
        assert_eq!(finished.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn back_to_back_requests_do_not_wake_the_watchdog_each_time() {
        let activity = Arc::new(Activity::new(HEAD, Some(IDLE)));
        let watchdog = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move { activity.expired().await }
        });
        tokio::task::yield_now().await;
        for _ in 0..1000 {
            activity.bytes_read();
            let request = activity.request_started(Version::HTTP_11);
            tokio::time::sleep(Duration::from_millis(5)).await;
            drop(request);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // 6 s of requests, under one header timeout: nothing needed waking.
        let wakes = activity.wakes.load(std::sync::atomic::Ordering::Relaxed);
        assert!(wakes <= 2, "{wakes} wakes for 1000 requests");
        assert!(!watchdog.is_finished());
        let last = Instant::now();
        assert_eq!(watchdog.await.unwrap(), Expiry::Idle);
        assert_eq!(last.elapsed() + Duration::from_millis(1), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_idle_timeout_an_idle_connection_stays() {
        let activity = Arc::new(Activity::new(HEAD, None));
        drop(activity.request_started(Version::HTTP_11));
        assert!(tokio::time::timeout(IDLE * 100, activity.expired()).await.is_err());
    }
}
