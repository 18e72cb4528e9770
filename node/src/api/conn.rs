//! The API's listener: at most `api_max_connections` connections, each with a header-read
//! timeout, an idle timeout and a stalled-reader timeout, enforced on its socket.
//!
//! `axum::serve` gives no hold on hyper's timers, so the rules live in the connection's IO
//! ([`ApiIo`]), told by the router ([`track`]) when a request is being answered:
//!
//! - **Headers.** A connection's first request must arrive whole within `api_header_timeout`
//!   (10 s) of its start; a later one within that time of its first byte. Slowloris clients
//!   (a header byte every few seconds) and connections that send nothing are closed.
//! - **Idle.** Between requests, a connection that sends nothing for `api_idle_timeout` (60 s)
//!   is closed.
//! - **While answering** there is no read deadline (an event stream lasts as long as it is
//!   read); a request body must arrive, and the handler answer, within [`REQUEST_TIMEOUT`]
//!   (408). A reader that takes no bytes for `api_idle_timeout` is closed (the event stream
//!   writes a keep-alive every 15 s, so a live reader always takes some).
//! - **Cap.** At `api_max_connections`, a new connection closes the connection that has been
//!   waiting longest for a request (oldest idle or slowest headers first), so a well-formed
//!   request is served at once even while slow clients hold every place; with none waiting
//!   (all are answering), the new one is answered 503 and closed.
//!
//! Every close and refusal counts in `vecino_api_rejected_total{reason=…}`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::extract::connect_info::Connected;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use super::access::{Access, Reason, conn_of, refuse};
use crate::config::Config;

/// A request's body must arrive, and its handler answer, within this (408 otherwise). An
/// event stream's handler answers at once; its stream is not timed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a new connection over the cap waits for an idle one to close before it is refused.
const EVICTION_WAIT: Duration = Duration::from_secs(1);
/// The answer to a connection over the cap when none can be closed for it.
const FULL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 5\r\nconnection: close\r\ncontent-length: 36\r\n\r\n{\"error\":\"too many API connections\"}";

/// The API's timeouts and cap.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at most.
    pub max_connections: usize,
    /// Time to receive a request's headers.
    pub header_timeout: Duration,
    /// Time a connection may wait between requests, or a reader take no bytes.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The limits of `cfg`.
    pub fn of(cfg: &Config) -> Limits {
        Limits {
            max_connections: cfg.api_max_connections,
            header_timeout: cfg.api_header_timeout,
            idle_timeout: cfg.api_idle_timeout,
        }
    }
}

/// The open connections.
#[derive(Debug)]
struct Conns {
    /// At most `max_connections` (a connection is added only below it).
    live: Mutex<Vec<Arc<ConnState>>>,
    /// Told when a connection closes.
    released: Notify,
    max: usize,
    /// Times in the states are milliseconds since this.
    epoch: Instant,
}

impl Conns {
    fn ms(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ConnState>>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds `state` when there is room, making room by closing the connection waiting longest
    /// for a request; `false` when none is waiting, or it did not close in time.
    async fn admit(&self, state: &Arc<ConnState>) -> bool {
        let deadline = Instant::now() + EVICTION_WAIT;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut live = self.lock();
                if live.len() < self.max {
                    live.push(state.clone());
                    return true;
                }
                if !live.iter().any(|c| c.evict.load(Ordering::Acquire)) {
                    let victim = live
                        .iter()
                        .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
                        .min_by_key(|c| c.waiting_since_ms.load(Ordering::Acquire));
                    let Some(victim) = victim else { return false };
                    victim.evict.store(true, Ordering::Release);
                    victim.waker.wake();
                    Reason::Evicted.count();
                }
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return false;
            }
        }
    }

    fn release(&self, id: u64) {
        self.lock().retain(|c| c.id != id);
        self.released.notify_waiters();
    }
}

/// One connection's state, shared by its IO and the requests on it.
#[derive(Debug)]
pub struct ConnState {
    id: u64,
    local: SocketAddr,
    access: Arc<Access>,
    /// Requests being answered (their response bodies not finished).
    in_flight: AtomicUsize,
    /// Responses finished.
    done: AtomicU64,
    /// Since when it has waited for a request (ms since the epoch): its start, or its last
    /// response's end.
    waiting_since_ms: AtomicU64,
    /// Close it (to make room).
    evict: AtomicBool,
    /// Its task, woken to close it.
    waker: AtomicWaker,
}

/// A request's connection: its rules and the address the client connected to.
#[derive(Debug, Clone)]
pub struct Conn(Arc<ConnState>, Arc<Conns>);

impl Conn {
    /// The API's access rules.
    pub fn access(&self) -> &Arc<Access> {
        &self.0.access
    }

    /// The address the client connected to.
    pub fn local(&self) -> SocketAddr {
        self.0.local
    }
}

impl Connected<IncomingStream<'_, ApiListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, ApiListener>) -> Self {
        let io = stream.io();
        Conn(io.state.clone(), io.conns.clone())
    }
}

/// The API's listener (see the module's documentation).
#[derive(Debug)]
pub struct ApiListener {
    tcp: TcpListener,
    access: Arc<Access>,
    conns: Arc<Conns>,
    limits: Limits,
    next_id: u64,
}

impl ApiListener {
    /// Binds `cfg.api` and sets up the access rules (creating the token files when needed).
    pub async fn bind(cfg: &Config) -> anyhow::Result<ApiListener> {
        let tcp = TcpListener::bind(cfg.api)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the API on {}: {e}", cfg.api))?;
        let bound = tcp.local_addr()?;
        let access = Arc::new(Access::setup(cfg, bound)?);
        Ok(ApiListener::new(tcp, access, Limits::of(cfg)))
    }

    /// A listener on `tcp` with these rules.
    pub fn new(tcp: TcpListener, access: Arc<Access>, limits: Limits) -> ApiListener {
        let conns = Arc::new(Conns {
            live: Mutex::new(Vec::with_capacity(limits.max_connections)),
            released: Notify::new(),
            max: limits.max_connections,
            epoch: Instant::now(),
        });
        ApiListener { tcp, access, conns, limits, next_id: 0 }
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Its access rules.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.conns.lock().len()
    }
}

impl axum::serve::Listener for ApiListener {
    type Io = ApiIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (ApiIo, SocketAddr) {
        loop {
            let (stream, remote) = match self.tcp.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // As axum's own listener: per-connection errors are passed over; others
                    // (out of file descriptors) wait a little.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        tracing::warn!("API accept: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            };
            let Ok(local) = stream.local_addr() else { continue };
            self.next_id += 1;
            let now = Instant::now();
            let state = Arc::new(ConnState {
                id: self.next_id,
                local,
                access: self.access.clone(),
                in_flight: AtomicUsize::new(0),
                done: AtomicU64::new(0),
                waiting_since_ms: AtomicU64::new(self.conns.ms(now)),
                evict: AtomicBool::new(false),
                waker: AtomicWaker::new(),
            });
            if !self.conns.admit(&state).await {
                Reason::TooManyConnections.count();
                // Best effort, never blocking: the socket's buffer takes this much.
                let _ = stream.try_write(FULL);
                continue;
            }
            let io = ApiIo {
                inner: stream,
                state,
                conns: self.conns.clone(),
                limits: self.limits,
                heading_since: Some(now),
                seen_done: 0,
                read_timer: Box::pin(tokio::time::sleep_until(now + self.limits.header_timeout)),
                read_deadline: None,
                write_timer: Box::pin(tokio::time::sleep_until(now)),
                stalled_since: None,
            };
            return (io, remote);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// An API connection's socket, with its timeouts (see the module's documentation).
#[derive(Debug)]
pub struct ApiIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    conns: Arc<Conns>,
    limits: Limits,
    /// While waiting for a request: since when its headers have been coming (the connection's
    /// start for the first one, else the first byte); `None` while idle.
    heading_since: Option<Instant>,
    /// Responses finished, as last seen.
    seen_done: u64,
    read_timer: Pin<Box<Sleep>>,
    read_deadline: Option<(Instant, Reason)>,
    write_timer: Pin<Box<Sleep>>,
    /// Since when the socket has taken no bytes.
    stalled_since: Option<Instant>,
}

fn closed(reason: Reason) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, reason.label())
}

impl ApiIo {
    /// The read deadline while no request is being answered.
    fn read_deadline(&mut self) -> Option<(Instant, Reason)> {
        let s = &self.state;
        if s.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let done = s.done.load(Ordering::Acquire);
        if done != self.seen_done {
            // A response finished since: the connection is idle until the next byte.
            self.seen_done = done;
            self.heading_since = None;
        }
        Some(match self.heading_since {
            Some(t) => (t + self.limits.header_timeout, Reason::HeaderTimeout),
            None => {
                let idle = self.conns.at(s.waiting_since_ms.load(Ordering::Acquire));
                (idle + self.limits.idle_timeout, Reason::IdleTimeout)
            }
        })
    }

    /// `Err` when the connection is to be closed: evicted, or past its deadline.
    fn check_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.state.waker.register(cx.waker());
        if self.state.evict.load(Ordering::Acquire) {
            return Err(closed(Reason::Evicted));
        }
        let deadline = self.read_deadline();
        if deadline != self.read_deadline {
            if let Some((at, _)) = deadline {
                self.read_timer.as_mut().reset(at);
            }
            self.read_deadline = deadline;
        }
        if let Some((_, reason)) = deadline
            && self.read_timer.as_mut().poll(cx).is_ready()
        {
            reason.count();
            return Err(closed(reason));
        }
        Ok(())
    }

    /// Notes a write's outcome; `Err` when the reader has taken nothing for too long.
    fn check_write<T>(&mut self, cx: &mut Context<'_>, r: &Poll<T>) -> io::Result<()> {
        if r.is_ready() {
            self.stalled_since = None;
            return Ok(());
        }
        let now = Instant::now();
        if self.stalled_since.is_none() {
            self.stalled_since = Some(now);
            self.write_timer.as_mut().reset(now + self.limits.idle_timeout);
        }
        if self.write_timer.as_mut().poll(cx).is_ready() {
            Reason::WriteStalled.count();
            return Err(closed(Reason::WriteStalled));
        }
        Ok(())
    }
}

impl AsyncRead for ApiIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check_read(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let idle = this.state.in_flight.load(Ordering::Acquire) == 0;
            if idle && this.heading_since.is_none() {
                this.heading_since = Some(Instant::now());
            }
        }
        r
    }
}

impl AsyncWrite for ApiIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state.evict.load(Ordering::Acquire) {
            return Poll::Ready(Err(closed(Reason::Evicted)));
        }
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        match this.check_write(cx, &r) {
            Ok(()) => r,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.state.evict.load(Ordering::Acquire) {
            return Poll::Ready(Err(closed(Reason::Evicted)));
        }
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        match this.check_write(cx, &r) {
            Ok(()) => r,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl Drop for ApiIo {
    fn drop(&mut self) {
        self.conns.release(self.state.id);
    }
}

/// A request being answered, until its response body is finished (or dropped).
#[derive(Debug)]
struct Answering(Conn);

impl Answering {
    fn new(conn: Conn) -> Answering {
        conn.0.in_flight.fetch_add(1, Ordering::AcqRel);
        Answering(conn)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        let Conn(state, conns) = &self.0;
        state.waiting_since_ms.store(conns.ms(Instant::now()), Ordering::Release);
        state.done.fetch_add(1, Ordering::AcqRel);
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
        // Its task re-reads the deadlines.
        state.waker.wake();
    }
}

/// A response body that holds its request's [`Answering`] until it ends.
#[derive(Debug)]
struct Tracked {
    inner: Body,
    _answering: Answering,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Marks a request as being answered (no read deadline) until its response body ends, and
/// answers 408 when the handler (reading the body included) takes over [`REQUEST_TIMEOUT`].
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let Some(conn) = conn_of(&req) else { return next.run(req).await };
    let answering = Answering::new(conn);
    let response = match tokio::time::timeout(REQUEST_TIMEOUT, next.run(req)).await {
        Ok(r) => r,
        Err(_) => refuse(
            Reason::RequestTimeout,
            StatusCode::REQUEST_TIMEOUT,
            "the request was not received and answered in time",
        ),
    };
    response.map(|inner| Body::new(Tracked { inner, _answering: answering }))
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener as _;
    use tokio::io::AsyncReadExt as _;

    use super::*;
    use crate::config::Settings;

    async fn listener(max: usize) -> (ApiListener, SocketAddr) {
        let cfg = Config::resolve(Settings {
            data_dir: Some("/tmp/vecino-conn-test".into()),
            ..Settings::default()
        })
        .unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let access = Arc::new(Access::with_tokens(&cfg, addr.port(), None));
        let limits = Limits {
            max_connections: max,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        };
        (ApiListener::new(tcp, access, limits), addr)
    }

    #[test]
    fn the_full_answer_is_well_formed() {
        let text = std::str::from_utf8(FULL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        let len = head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), body.len());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].is_string());
    }

    #[tokio::test]
    async fn at_the_cap_an_idle_connection_makes_room_and_a_busy_one_does_not() {
        let (mut l, addr) = listener(1).await;
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let (io1, _) = l.accept().await;
        assert_eq!(l.connections(), 1);

        // The only connection is answering a request: a new one is answered 503 and closed.
        let busy = Answering::new(Conn(io1.state.clone(), io1.conns.clone()));
        let mut c2 = TcpStream::connect(addr).await.unwrap();
        let wait = Duration::from_millis(1500);
        assert!(tokio::time::timeout(wait, l.accept()).await.is_err(), "c2 was not admitted");
        let mut got = Vec::new();
        tokio::time::timeout(wait, c2.read_to_end(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, FULL);
        assert!(!io1.state.evict.load(Ordering::Acquire), "a busy connection is never closed");

        // Once it is idle, the next connection closes it and takes its place.
        drop(busy);
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let state1 = io1.state.clone();
        let closer = async move {
            while !state1.evict.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            drop(io1); // as hyper does once its read fails
        };
        let (accepted, ()) = tokio::join!(tokio::time::timeout(wait, l.accept()), closer);
        let (io3, _) = accepted.expect("c3 admitted once c1 made room");
        assert_eq!(l.connections(), 1);
        drop(io3);
        assert_eq!(l.connections(), 0);
    }
}
