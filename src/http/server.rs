//! The accept loop and every connection it serves, with the bounds that keep
//! idle or half-sent sockets from making the server unreachable.
//!
//! `axum::serve` gives hyper no timer, so a connection that never finishes
//! its request head stays open for ever; enough of them exhaust the
//! process's open files and `accept` fails for everyone. Here each
//! connection is tracked, and a sweeper closes one that
//! - has not sent a complete request head within the head timeout (counted
//!   from the connection, or from the first byte of a later request),
//! - or has been idle between requests for the keep-alive timeout.
//!
//! The number of connections is capped below the open-file limit (raised as
//! far as the system allows at start-up). At the cap a new connection
//! takes the place of the longest-idle one, as nginx does, so silent
//! sockets cannot crowd out clients that talk; only when every connection
//! is busy is the new one closed. On shutdown idle connections close at
//! once, busy ones finish their request within the grace period, and then
//! whatever is left is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt as _;

/// File descriptors kept free of connections: database pools, the log,
/// SQLite's files, and accepts that race the cap.
const RESERVED_FILES: u64 = 128;
/// Requests one HTTP/2 connection may have in flight at once.
const MAX_STREAMS: u32 = 16;
/// How long a new connection waits at the cap for a shed one to close.
const SHED_WAIT: Duration = Duration::from_secs(1);

pub use crate::config::ConnectionLimits;

/// Raises the soft open-file limit to the hard one; the limit in force.
pub fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let open_files = raise_open_file_limit();
    let cap = usize::try_from(open_files.saturating_sub(RESERVED_FILES).max(16))
        .unwrap_or(usize::MAX)
        .min(limits.max_connections);
    if cap < limits.max_connections {
        tracing::warn!(
            cap,
            open_files,
            "BLOGQL_MAX_CONNECTIONS lowered to fit the open-file limit"
        );
    }
    let registry = Arc::new(Registry::default());
    let sweeper = tokio::spawn(sweep(registry.clone(), limits));
    let (stopping, stop_signal) = watch::channel(false);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // hyper's default is 200 concurrent streams per HTTP/2 connection.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of files or memory: back off instead of spinning.
                    tracing::error!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if registry.len() >= cap {
            // Make room first: accepting faster than shed connections close
            // would run out of files after all.
            let made_room = registry.shed_longest_idle()
                && tokio::time::timeout(SHED_WAIT, registry.wait_below(cap))
                    .await
                    .is_ok();
            if !made_room {
                tracing::warn!(cap, "every connection is busy: closing a new one");
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let conn = registry.add();
        tokio::spawn(serve_connection(
            builder.clone(),
            stream,
            peer,
            router.clone(),
            conn,
            registry.clone(),
            stop_signal.clone(),
        ));
    }
    drop(listener);
    let _ = stopping.send(true);
    if tokio::time::timeout(limits.shutdown_grace, registry.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            left = registry.len(),
            "grace period over: dropping the requests still running"
        );
        registry.close_all();
    }
    sweeper.abort();
    Ok(())
}

async fn serve_connection(
    builder: hyper_util::server::conn::auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
    mut stopping: watch::Receiver<bool>,
) {
    // Leaves the registry however the task ends (a handler may panic).
    let _registered = Registered {
        registry: registry.clone(),
        id: conn.id,
    };
    let tracked = conn.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = tracked.begin_request();
        let request = request.map(|body| axum::body::Body::new(Upload::new(body, &tracked)));
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await;
            drop(busy);
            response
        }
    });
    let io = TokioIo::new(Tracked {
        stream,
        conn: conn.clone(),
    });
    let connection = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    tokio::pin!(connection);
    let mut draining = *stopping.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                break;
            }
            () = conn.close.notified() => break,
            changed = stopping.changed(), if !draining => {
                draining = true;
                if changed.is_err() || conn.is_idle() {
                    break;
                }
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// A connection's place in the registry, given up when its task ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// A request body still arriving: while every request of a connection is
/// still uploading, the connection can be shed like an idle one (a slow
/// upload must not hold a place under the cap for the whole time limit).
struct Upload {
    body: Incoming,
    conn: Option<Arc<Conn>>,
}

impl Upload {
    fn new(body: Incoming, conn: &Arc<Conn>) -> Self {
        use hyper::body::Body as _;
        let conn = (!body.is_end_stream()).then(|| {
            conn.uploading.fetch_add(1, Ordering::AcqRel);
            conn.clone()
        });
        Self { body, conn }
    }

    fn done(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.uploading.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.done();
    }
}

impl hyper::body::Body for Upload {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || self.body.is_end_stream() {
            self.done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// The clock of connection times: milliseconds since the first reading,
/// never 0 (atomics hold them, and 0 means "never").
struct Clock;

impl Clock {
    fn now(&self) -> u64 {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let start = START.get_or_init(Instant::now);
        u64::try_from(start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// One connection's state, shared by its task, its socket and the sweeper.
struct Conn {
    id: u64,
    /// When it last became idle (accepted, or answered a request).
    idle_since: AtomicU64,
    /// When the first byte of a request head arrived while idle; 0: none.
    head_started: AtomicU64,
    /// Requests being answered.
    in_flight: AtomicUsize,
    /// Requests whose body is still arriving.
    uploading: AtomicUsize,
    /// Requests answered so far.
    answered: AtomicU64,
    /// Told to close (idle too long, or shed at the cap).
    close: Notify,
}

impl Conn {
    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Idle, or only waiting for request bodies: nothing is lost by closing it.
    fn is_sheddable(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) <= self.uploading.load(Ordering::Acquire)
    }

    fn begin_request(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        Busy(self.clone())
    }

    /// Whether the sweeper should close it at `now`.
    fn overdue(&self, now: u64, limits: &ConnectionLimits) -> bool {
        if !self.is_idle() {
            return false;
        }
        let since = |at: u64| Duration::from_millis(now.saturating_sub(at));
        let head_started = self.head_started.load(Ordering::Acquire);
        let idle_since = self.idle_since.load(Ordering::Acquire);
        if head_started != 0 && since(head_started) >= limits.head_timeout {
            return true;
        }
        if self.answered.load(Ordering::Acquire) == 0 {
            since(idle_since) >= limits.head_timeout
        } else {
            since(idle_since) >= limits.idle_timeout
        }
    }
}

/// A request being answered: the connection is busy until this drops.
struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::AcqRel);
        self.0.idle_since.store(Clock.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections.
#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Notified whenever a connection closes.
    closed: Notify,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn add(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            idle_since: AtomicU64::new(Clock.now()),
            head_started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            uploading: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            close: Notify::new(),
        });
        self.lock().insert(conn.id, conn.clone());
        conn
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.closed.notify_waiters();
    }

    /// Closes the connection idle the longest (or only uploading); `false`
    /// if every one is busy.
    fn shed_longest_idle(&self) -> bool {
        let open = self.lock();
        let longest = open
            .values()
            .filter(|conn| conn.is_sheddable())
            .min_by_key(|conn| conn.idle_since.load(Ordering::Acquire));
        match longest {
            Some(conn) => {
                conn.close.notify_one();
                true
            }
            None => false,
        }
    }

    fn close_all(&self) {
        for conn in self.lock().values() {
            conn.close.notify_one();
        }
    }

    /// Completes once fewer than `count` connections are open.
    async fn wait_below(&self, count: usize) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.len() < count {
                return;
            }
            closed.await;
        }
    }

    /// Completes once no connection is open.
    async fn drained(&self) {
        self.wait_below(1).await;
    }
}

/// Closes overdue connections, a few times per head timeout.
async fn sweep(registry: Arc<Registry>, limits: ConnectionLimits) {
    let every = (limits.head_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now = Clock.now();
        for conn in registry.lock().values() {
            if conn.overdue(now, &limits) {
                conn.close.notify_one();
            }
        }
    }
}

/// The socket, noting when a request head starts to arrive.
struct Tracked {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before
            && self.conn.is_idle()
            && self.conn.head_started.load(Ordering::Acquire) == 0
        {
            self.conn.head_started.store(Clock.now(), Ordering::Release);
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
