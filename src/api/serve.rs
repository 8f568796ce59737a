//! Serving the API over HTTP/1.1: our own accept loop around hyper's connection builder, so
//! that no client can starve it by opening connections and never finishing a request.
//!
//! - At most `[mesos] api_max_connections` connections are open. When a new one arrives at the
//!   limit, the connection that has been waiting longest without a request in progress (one
//!   that never finished its request head, or an idle keep-alive connection) is closed to make
//!   room; only when every open connection has a request in progress does the new one wait. So
//!   a flood of half-open connections churns through the limit instead of holding it, and a
//!   client that sends its request at once (a health check) is served.
//! - A request head must arrive whole within `[mesos] api_header_timeout` of the connection
//!   being accepted, or of its first byte on a kept-alive connection.
//! - A request's body must arrive whole within `[mesos] api_body_timeout` of the end of its
//!   head, so that bodies sent byte by byte cannot hold the connections.
//! - A kept-alive connection with no request in progress and no bytes moving for
//!   `[mesos] api_idle_timeout` is closed.
//!
//! hyper's own `header_read_timeout` is not used: it restarts for every wait on a kept-alive
//! connection, which would close idle keep-alive connections after the header timeout.

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// `[mesos] api_max_connections`, `api_header_timeout`, `api_body_timeout` and
/// `api_idle_timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Waiting for (or reading) a request head.
const HEAD: u8 = 0;
/// A request is being handled.
const BUSY: u8 = 1;
/// Between requests on a kept-alive connection.
const IDLE: u8 = 2;
/// A request head arrived and its body is still coming.
const BODY: u8 = 3;

/// What the accept loop and the reaper know of one open connection.
struct Conn {
    phase: AtomicU8,
    /// Milliseconds since the server's epoch when the current phase began (for `IDLE`: when
    /// bytes last moved).
    since: AtomicU64,
    close: CancellationToken,
}

struct Shared {
    epoch: Instant,
    limits: Limits,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Closes the connection waiting longest without a request in progress; false when every
    /// open connection has one.
    fn evict_oldest_waiting(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = open
            .iter()
            .filter(|(_, c)| c.phase.load(Ordering::Acquire) != BUSY)
            .min_by_key(|(_, c)| c.since.load(Ordering::Acquire))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| open.remove(&id)) {
            Some(c) => {
                c.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Closes the connections whose request head or idle time ran out.
    fn reap(&self) -> usize {
        let now = self.now();
        let head = self.limits.header_timeout.as_millis() as u64;
        let body = self.limits.body_timeout.as_millis() as u64;
        let idle = self.limits.idle_timeout.as_millis() as u64;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let before = open.len();
        open.retain(|_, c| {
            let since = c.since.load(Ordering::Acquire);
            let limit = match c.phase.load(Ordering::Acquire) {
                HEAD => head,
                BODY => body,
                IDLE => idle,
                _ => return true,
            };
            if now.saturating_sub(since) >= limit {
                c.close.cancel();
                false
            } else {
                true
            }
        });
        before - open.len()
    }
}

/// Connections the kernel completes before the accept loop takes them (the most Linux allows
/// by default, `net.core.somaxconn`): under a flood a client's connection waits in this queue
/// instead of having its SYN dropped and retried a second later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`] (`SO_REUSEADDR` set, as
/// `TcpListener::bind` does).
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then lets the requests in
/// progress finish (the caller bounds how long it waits for this future).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        limits,
        open: Mutex::new(HashMap::new()),
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // The reaper runs until every connection has ended (after a shutdown too: a half-open
    // connection is still closed when its head times out).
    let reaper = {
        let shared = shared.clone();
        let step = (limits.header_timeout.min(limits.idle_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(step);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let n = shared.reap();
                if n > 0 {
                    tracing::debug!(
                        closed = n,
                        "API connections timed out (request head or idle)"
                    );
                }
            }
        })
    };
    let tasks = tokio_util::task::TaskTracker::new();
    let mut next_id: u64 = 0;
    let mut evicted: u64 = 0;
    let mut last_note = Instant::now();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or memory, or a connection reset before it was accepted:
                // pause briefly instead of spinning.
                tracing::warn!(error = %e, "API: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if shared.evict_oldest_waiting() {
                    evicted += 1;
                    if last_note.elapsed() >= Duration::from_secs(10) {
                        tracing::warn!(
                            max = limits.max_connections,
                            closed = evicted,
                            "API connection limit ([mesos] api_max_connections) reached: closed \
                             the connections waiting longest without a request"
                        );
                        last_note = Instant::now();
                        evicted = 0;
                    }
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(Conn {
            phase: AtomicU8::new(HEAD),
            since: AtomicU64::new(shared.now()),
            close: CancellationToken::new(),
        });
        shared
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, conn.clone());
        let shared = shared.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            serve_one(stream, app, &shared, conn, shutdown).await;
            shared
                .open
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            drop(permit);
        });
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    reaper.abort();
}

async fn serve_one(
    stream: TcpStream,
    app: Router,
    shared: &Arc<Shared>,
    conn: Arc<Conn>,
    shutdown: CancellationToken,
) {
    let io = TokioIo::new(Tracked {
        io: stream,
        conn: conn.clone(),
        shared: shared.clone(),
    });
    let router = TowerToHyperService::new(app);
    let svc_conn = conn.clone();
    let svc_shared = shared.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        use hyper::body::Body as _;
        let phase = if req.body().is_end_stream() {
            BUSY
        } else {
            BODY
        };
        svc_conn.since.store(svc_shared.now(), Ordering::Release);
        svc_conn.phase.store(phase, Ordering::Release);
        let conn = svc_conn.clone();
        let req = req.map(move |inner| WatchedBody { inner, conn });
        let answer = hyper::service::Service::call(&router, req);
        let (conn, shared) = (svc_conn.clone(), svc_shared.clone());
        async move {
            let r = answer.await;
            conn.since.store(shared.now(), Ordering::Release);
            conn.phase.store(IDLE, Ordering::Release);
            r
        }
    });
    let http = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // The timeouts are ours (see the module's doc), not hyper's.
        .header_read_timeout(None::<Duration>)
        .serve_connection(io, service);
    tokio::pin!(http);
    let mut draining = false;
    loop {
        tokio::select! {
            r = http.as_mut() => {
                if let Err(e) = r {
                    tracing::trace!(error = %e, "API connection ended");
                }
                return;
            }
            _ = conn.close.cancelled() => return,
            _ = shutdown.cancelled(), if !draining => {
                http.as_mut().graceful_shutdown();
                draining = true;
            }
        }
    }
}

/// A request body that notes on its connection when it has been read whole (the end of the
/// `BODY` phase and its timeout).
struct WatchedBody {
    inner: Incoming,
    conn: Arc<Conn>,
}

impl hyper::body::Body for WatchedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.inner.is_end_stream() {
            let _ =
                self.conn
                    .phase
                    .compare_exchange(BODY, BUSY, Ordering::AcqRel, Ordering::Acquire);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, noting when bytes move: the first byte of a request head on an
/// idle connection starts that head's timeout; bytes written keep an idle connection (a
/// response still being sent) from being reaped.
struct Tracked {
    io: TcpStream,
    conn: Arc<Conn>,
    shared: Arc<Shared>,
}

impl Tracked {
    fn moved(&self, reading: bool) {
        if self.conn.phase.load(Ordering::Acquire) == IDLE {
            self.conn.since.store(self.shared.now(), Ordering::Release);
            if reading {
                self.conn.phase.store(HEAD, Ordering::Release);
            }
        }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.moved(true);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved(false);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved(false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
