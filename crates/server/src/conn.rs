//! Serving connections: the accept loop and the limits every connection lives under, so that
//! no client, however slow or silent, can hold the server.
//!
//! - **How many**: at most `max_connections` at once. A new connection beyond that makes
//!   room by closing the connection that has been idle longest (no call in flight: a client
//!   still sending its first request's headers is idle too); when every connection has a call
//!   in flight, the new one is closed at once.
//! - **How long**: a TLS handshake must finish within `handshake_timeout`; an HTTP/1 request's
//!   headers must arrive within `header_timeout`; a request body may go `body_timeout` without
//!   a byte before the call fails; a connection with no call in flight is closed after
//!   `idle_timeout`.
//! - **How large**: an API call's request body (the registry's `/v2/` uploads aside) may be
//!   `max_request_bytes`; a larger one fails with gRPC's `RESOURCE_EXHAUSTED`, or over REST
//!   with 413 and the API's JSON error.
//! - **Stopping**: [`serve`] stops accepting when its shutdown future completes, lets calls in
//!   flight finish for up to `shutdown_grace` (idle connections are closed at once), then
//!   closes whatever is left and returns.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

/// What [`serve`] serves: a service answering every request (routing, the layers every call
/// passes), cloned once per connection. Generic rather than a boxed service or a `Router`
/// with its layers inside, so that a call pays for no box and no clone on its way in.
pub(crate) trait App:
    Service<
        Request,
        Response = axum::http::Response<Self::Body>,
        Error = Infallible,
        Future = Self::Answering,
    > + Clone
    + Send
    + Sync
    + 'static
{
    /// The body of an answer.
    type Body: http_body::Body<Data = bytes::Bytes, Error = axum::Error> + Send + 'static;
    /// The future of an answer.
    type Answering: Future<Output = Result<axum::http::Response<Self::Body>, Infallible>>
        + Send
        + 'static;
}

impl<S, B> App for S
where
    S: Service<Request, Response = axum::http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes, Error = axum::Error> + Send + 'static,
{
    type Body = B;
    type Answering = S::Future;
}

/// The limits of every connection (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) handshake_timeout: Duration,
    pub(crate) header_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
    /// The largest request body of an API call (the registry's `/v2/` uploads aside).
    pub(crate) max_request_bytes: usize,
}

/// How long an idle connection is given to close by itself once the server stops.
const IDLE_AT_SHUTDOWN: Duration = Duration::from_millis(300);

/// Serves `app` on `listener` (through `tls` when given) under `limits` until `shutdown`
/// completes; then stops as the module docs say.
pub(crate) async fn serve<A: App>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: A,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let tracker = Arc::new(Tracker::new());
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let tcp = match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        // Out of file descriptors, say: go on once some are back.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(conn) = tracker.open(limits.max_connections) else {
                    tracing::debug!("every connection has a call in flight; a new one is closed");
                    continue;
                };
                // Small gRPC and REST answers go out at once rather than waiting on the
                // peer's ACK.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::warn!(error = %e, "cannot set TCP_NODELAY");
                }
                let served = connection(tcp, tls.clone(), app.clone(), limits, conn, stopping.clone());
                let tracker = tracker.clone();
                connections.spawn(async move {
                    let id = served.await;
                    tracker.close(id);
                });
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "closing connections still busy after the grace period"
        );
        connections.shutdown().await;
    }
}

/// One connection, from its TLS handshake to its end; returns its id.
async fn connection<A: App>(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    app: A,
    limits: Limits,
    conn: Arc<Conn>,
    stopping: watch::Receiver<bool>,
) -> u64 {
    match tls {
        None => serve_io(tcp, app, limits, &conn, stopping).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp));
            let stream = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(stream)) => Some(stream),
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        None
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        None
                    }
                },
                () = conn.close.cancelled() => None,
            };
            if let Some(stream) = stream {
                serve_io(stream, app, limits, &conn, stopping).await;
            }
        }
    }
    conn.id
}

/// HTTP/1.1 or HTTP/2 (gRPC) on `io` until the client is done, the connection is closed for
/// the server's sake (idle, room for another, stopping), or the server stops.
async fn serve_io<I, A: App>(
    io: I,
    app: A,
    limits: Limits,
    conn: &Arc<Conn>,
    stopping: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(Calls {
        app,
        conn: conn.clone(),
        limits,
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    // Answers ready together go out together (see `coalesce`).
    let io = crate::coalesce::Coalesced::new(crate::request_line::RequestLine::new(io));
    let mut serving = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
    // The timers and signals that may end the connection are watched by a task of their own,
    // so that serving, woken for every frame, polls one token besides the connection.
    let watchdog = tokio::spawn(watch(conn.clone(), limits.idle_timeout, stopping));
    let _watchdog = AbortOnDrop(watchdog);
    let mut graceful = false;
    loop {
        tokio::select! {
            biased;
            _ = serving.as_mut() => return,
            () = conn.attention.cancelled(), if !graceful => {
                if !conn.stopping.load(Ordering::SeqCst) {
                    return;
                }
                graceful = true;
                serving.as_mut().graceful_shutdown();
            }
            () = conn.close.cancelled(), if graceful => return,
        }
    }
}

/// Ends a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches one connection for what ends it: idle past `idle` (or, once the server stops,
/// past [`IDLE_AT_SHUTDOWN`]), closed to make room, the server stopping. Closing is
/// `close` (and `attention`); stopping is `stopping` set and `attention`, for a graceful end.
async fn watch(conn: Arc<Conn>, idle: Duration, mut stopping: watch::Receiver<bool>) {
    let mut stopped = false;
    loop {
        if !stopped && *stopping.borrow() {
            stopped = true;
            conn.stopping.store(true, Ordering::SeqCst);
            conn.attention.cancel();
        }
        let limit = if stopped { IDLE_AT_SHUTDOWN } else { idle };
        tokio::select! {
            () = conn.idle_for(limit) => break,
            () = conn.close.cancelled() => break,
            changed = stopping.changed(), if !stopped => {
                if changed.is_err() {
                    // The server is gone: as stopping.
                    stopped = true;
                    conn.stopping.store(true, Ordering::SeqCst);
                    conn.attention.cancel();
                }
            }
        }
    }
    conn.close.cancel();
    conn.attention.cancel();
}

/// The open connections, for the cap and the choice of which to close.
struct Tracker {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Tracker {
    fn new() -> Self {
        Self {
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A new connection, if there is room for it (made by closing the longest idle one when
    /// there are `max` already).
    fn open(&self, max: usize) -> Option<Arc<Conn>> {
        let mut open = self.open.lock().ok()?;
        if open.len() >= max {
            let longest_idle = open
                .values()
                .filter(|c| c.in_flight.load(Ordering::SeqCst) == 0)
                .min_by_key(|c| c.last_active.load(Ordering::SeqCst))
                .map(|c| c.id)?;
            if let Some(closed) = open.remove(&longest_idle) {
                closed.close.cancel();
            }
        }
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::SeqCst),
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(activity()),
            close: CancellationToken::new(),
            attention: CancellationToken::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        open.insert(conn.id, conn.clone());
        Some(conn)
    }

    fn close(&self, id: u64) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&id);
        }
    }
}

/// A number that grows with every connection opened and every call ended: the order of
/// activity across connections, without reading a clock for every call.
fn activity() -> u64 {
    static ACTIVITY: AtomicU64 = AtomicU64::new(0);
    ACTIVITY.fetch_add(1, Ordering::Relaxed)
}

/// One open connection.
struct Conn {
    id: u64,
    /// Calls whose answer is not yet sent in full.
    in_flight: AtomicUsize,
    /// The [`activity`] of the connection's opening or of the last call on it to end.
    last_active: AtomicU64,
    /// Cancelled to close the connection at once.
    close: CancellationToken,
    /// Cancelled when the connection must end (`close`) or, with `stopping`, end gracefully:
    /// the one signal serving polls.
    attention: CancellationToken,
    /// Set when the server stops.
    stopping: std::sync::atomic::AtomicBool,
}

impl Conn {
    /// Completes once the connection has had no call in flight, and none ended, for `limit`
    /// (found within half of `limit` more: it looks every half).
    async fn idle_for(&self, limit: Duration) {
        let mut seen = self.last_active.load(Ordering::SeqCst);
        let mut quiet = 0;
        while quiet < 2 {
            tokio::time::sleep(limit / 2).await;
            let now = self.last_active.load(Ordering::SeqCst);
            if self.in_flight.load(Ordering::SeqCst) == 0 && now == seen {
                quiet += 1;
            } else {
                quiet = 0;
            }
            seen = now;
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
}

/// A call in flight on its connection, until its answer has been sent (or dropped).
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let conn = &self.0;
        conn.last_active.store(activity(), Ordering::SeqCst);
        conn.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The app as one connection's service: request bodies that stall fail, and the call counts
/// as in flight until its answer's body is sent.
#[derive(Clone)]
struct Calls<A> {
    app: A,
    conn: Arc<Conn>,
    limits: Limits,
}

impl<A: App> Service<Request<Incoming>> for Calls<A> {
    type Response = axum::http::Response<Answer<A::Body>>;
    type Error = Infallible;
    type Future = CallFuture<A>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.conn.begin();
        let limits = self.limits;
        let grpc = yc_api_runtime::rest::is_grpc(request.headers());
        let upload = request.uri().path().starts_with("/v2/");
        // An HTTP/1.1 body the app may leave unread (a refusal answered at once): shared, so
        // that it can be read to its end before the answer goes out.
        let shared = (request.version() < axum::http::Version::HTTP_2
            && !http_body::Body::is_end_stream(request.body()))
        .then(|| Arc::new(Mutex::new(None)));
        let request = request.map(|body| {
            let body = TimeoutBody::new(body, limits.body_timeout);
            // gRPC is HTTP/2: its body is never shared, and is wrapped once.
            if grpc && shared.is_none() {
                return Body::new(GrpcBody {
                    body,
                    frames: Frames::default(),
                    limits,
                });
            }
            let body = match &shared {
                Some(shared) => {
                    if let Ok(mut slot) = shared.lock() {
                        *slot = Some(Box::pin(body));
                    }
                    Body::new(SharedBody(shared.clone()))
                }
                None => Body::new(body),
            };
            if upload {
                body
            } else {
                Body::new(http_body_util::Limited::new(body, limits.max_request_bytes))
            }
        });
        CallFuture {
            inner: self.app.call(request),
            in_flight: Some(in_flight),
            unread: shared,
            draining: None,
        }
    }
}

/// A request body as it came, timed.
type Timed = Pin<Box<TimeoutBody<Incoming>>>;

/// A request body the app reads and the connection can take back (see [`CallFuture`]).
type Shared = Arc<Mutex<Option<Timed>>>;

/// How much of an unread request body is read (and dropped) before a refusal is sent, so
/// that the client, still sending, sees the answer instead of a reset connection.
const DRAIN_LIMIT: usize = 8 << 20;

/// The app's side of a [`Shared`] body.
struct SharedBody(Shared);

impl http_body::Body for SharedBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let Ok(mut slot) = self.0.lock() else {
            return Poll::Ready(None);
        };
        match slot.as_mut() {
            Some(body) => body.as_mut().poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
}

pin_project_lite::pin_project! {
    /// The app's answer, its body carrying the call's [`InFlight`]. An error answered over
    /// HTTP/1.1 before the request body was read waits until the body is read (up to
    /// [`DRAIN_LIMIT`]; past that the connection is closed after the answer): a client that
    /// sends its whole body before reading, as most do, then always gets the answer.
    struct CallFuture<A: App> {
        #[pin]
        inner: A::Answering,
        in_flight: Option<InFlight>,
        unread: Option<Shared>,
        draining: Option<Box<(axum::http::Response<A::Body>, Timed, usize)>>,
    }
}

impl<A: App> Future for CallFuture<A> {
    type Output = Result<axum::http::Response<Answer<A::Body>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some((_, body, read)) = this.draining.as_deref_mut() {
                let done = match std::task::ready!(body.as_mut().poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        *read += frame.data_ref().map_or(0, bytes::Bytes::len);
                        *read > DRAIN_LIMIT
                    }
                    None => true,
                    Some(Err(_)) => true,
                };
                if !done {
                    continue;
                }
                let Some((mut response, body, read)) = this.draining.take().map(|d| *d) else {
                    continue;
                };
                if read > DRAIN_LIMIT || !body.is_end_stream() {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                return Poll::Ready(Ok(answer(response, this.in_flight.take())));
            }
            let response = match std::task::ready!(this.inner.as_mut().poll(cx)) {
                Ok(response) => response,
                Err(never) => match never {},
            };
            let unread = this
                .unread
                .take()
                .filter(|_| {
                    response.status().is_client_error() || response.status().is_server_error()
                })
                .and_then(|shared| shared.lock().ok().and_then(|mut slot| slot.take()))
                .filter(|body| !body.is_end_stream());
            match unread {
                Some(body) => *this.draining = Some(Box::new((response, body, 0))),
                None => return Poll::Ready(Ok(answer(response, this.in_flight.take()))),
            }
        }
    }
}

/// `response` with its body holding the call in flight until it is sent (a body type of its
/// own, not boxed again).
fn answer<B>(
    response: axum::http::Response<B>,
    in_flight: Option<InFlight>,
) -> axum::http::Response<Answer<B>> {
    response.map(|body| Answer {
        body,
        _in_flight: in_flight,
    })
}

pin_project_lite::pin_project! {
    /// An answer's body, holding its call in flight until it is sent or dropped.
    pub(crate) struct Answer<B> {
        #[pin]
        body: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B: http_body::Body<Data = bytes::Bytes, Error = axum::Error>> http_body::Body for Answer<B> {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A gRPC call's request body: no message larger than `max_request_bytes` (refused from
    /// its length prefix, before it is read), and every failure a `tonic::Status` the call
    /// ends with (`RESOURCE_EXHAUSTED` for a message too large, `DEADLINE_EXCEEDED` for a body
    /// that stopped).
    struct GrpcBody {
        #[pin]
        body: TimeoutBody<Incoming>,
        frames: Frames,
        limits: Limits,
    }
}

/// Where a gRPC body is in its length-prefixed messages: 1 byte of flags and 4 of length,
/// then the message.
#[derive(Debug, Default)]
struct Frames {
    prefix: [u8; 5],
    prefix_read: usize,
    message_left: usize,
}

impl Frames {
    /// Follows `data`; the declared length of the first message larger than `max`, if any.
    fn scan(&mut self, mut data: &[u8], max: usize) -> Result<(), u64> {
        while !data.is_empty() {
            if self.message_left > 0 {
                let take = self.message_left.min(data.len());
                self.message_left -= take;
                data = &data[take..];
                continue;
            }
            let take = (5 - self.prefix_read).min(data.len());
            self.prefix[self.prefix_read..self.prefix_read + take].copy_from_slice(&data[..take]);
            self.prefix_read += take;
            data = &data[take..];
            if self.prefix_read == 5 {
                self.prefix_read = 0;
                let length = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]);
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if length > max {
                    return Err(length as u64);
                }
                self.message_left = length;
            }
        }
        Ok(())
    }
}

impl http_body::Body for GrpcBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = match std::task::ready!(this.body.poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                let status = if e.is::<BodyStalled>() {
                    tonic::Status::deadline_exceeded(format!(
                        "the request body stopped: no byte for {} s",
                        this.limits.body_timeout.as_secs_f64()
                    ))
                } else {
                    tonic::Status::cancelled(format!("the request body could not be read: {e}"))
                };
                return Poll::Ready(Some(Err(status)));
            }
        };
        if let Some(data) = frame.data_ref()
            && let Err(length) = this.frames.scan(data, this.limits.max_request_bytes)
        {
            return Poll::Ready(Some(Err(tonic::Status::resource_exhausted(format!(
                "The request message is {length} bytes; at most {} are taken",
                this.limits.max_request_bytes
            )))));
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::Frames;

    /// Length prefixes are found however the body is split, and a message over the limit is
    /// refused from its prefix.
    #[test]
    fn grpc_frames_are_followed_across_chunks() {
        let mut body = Vec::new();
        for length in [3u32, 0, 10] {
            body.push(0);
            body.extend_from_slice(&length.to_be_bytes());
            body.extend(std::iter::repeat_n(7u8, length as usize));
        }
        for split in 1..body.len() {
            let mut frames = Frames::default();
            for chunk in body.chunks(split) {
                assert_eq!(frames.scan(chunk, 10), Ok(()), "split {split}");
            }
            let mut frames = Frames::default();
            let refused = body
                .chunks(split)
                .map(|c| frames.scan(c, 9))
                .find(Result::is_err);
            assert_eq!(refused, Some(Err(10)), "split {split}");
        }
        let mut huge = vec![0u8];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            Frames::default().scan(&huge, 4 << 20),
            Err(u64::from(u32::MAX))
        );
    }
    proptest::proptest! {
        /// Messages of any lengths, split anywhere: the first one over the limit is found, or
        /// none is.
        #[test]
        fn fuzz_grpc_frames(
            lengths in proptest::collection::vec(0u32..200, 0..6),
            split in 1usize..64,
            max in 0usize..200,
        ) {
            let mut body = Vec::new();
            for length in &lengths {
                body.push(0);
                body.extend_from_slice(&length.to_be_bytes());
                body.extend(std::iter::repeat_n(1u8, *length as usize));
            }
            let mut frames = Frames::default();
            let found = body.chunks(split).map(|c| frames.scan(c, max)).find(Result::is_err);
            let expected = lengths.iter().find(|l| **l as usize > max).map(|l| Err(u64::from(*l)));
            proptest::prop_assert_eq!(found, expected);
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body that went `body_timeout` without a byte.
#[derive(Debug)]
struct BodyStalled(Duration);

impl std::fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stopped: no byte for {} s",
            self.0.as_secs_f64()
        )
    }
}

impl std::error::Error for BodyStalled {}

pin_project_lite::pin_project! {
    /// A request body that fails with [`BodyStalled`] when it makes no progress for
    /// `timeout`. The timer runs only while the body is waited for: a body whose bytes are
    /// there when asked for (a small call's, mostly) costs no timer at all.
    struct TimeoutBody<B> {
        #[pin]
        body: B,
        timeout: Duration,
        #[pin]
        waiting: Option<tokio::time::Sleep>,
    }
}

impl<B> TimeoutBody<B> {
    fn new(body: B, timeout: Duration) -> Self {
        Self {
            body,
            timeout,
            waiting: None,
        }
    }
}

impl<B> http_body::Body for TimeoutBody<B>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            this.waiting.set(None);
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.waiting.is_none() {
            this.waiting.set(Some(tokio::time::sleep(*this.timeout)));
        }
        if let Some(waiting) = this.waiting.as_pin_mut()
            && waiting.poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(Box::new(BodyStalled(*this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
