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
//! is busy is the new one closed. On shutdown busy connections finish
//! their request within the grace period, its answer their last; idle ones
//! linger a moment (`IDLE_LINGER`) to answer a request already on its way,
//! then close; whatever is left at the end of the grace period is dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;

/// File descriptors kept free of connections: database pools, the log,
/// SQLite's files, and accepts that race the cap.
const RESERVED_FILES: u64 = 128;
/// Requests one HTTP/2 connection may have in flight at once.
const MAX_STREAMS: u32 = 16;
/// How long a new connection waits at the cap for a shed one to close.
const SHED_WAIT: Duration = Duration::from_secs(1);
/// At shutdown, how long an idle keep-alive connection stays open to
/// answer a request already sent on it (arrived, or on its way from a
/// proxy on the same network), before it closes.
const IDLE_LINGER: Duration = Duration::from_millis(100);

mod connections;

pub use crate::config::ConnectionLimits;
use connections::{Conn, Registry, Tracked, sweep};

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
    let stop_flag = stopping.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = tracked.begin_request();
        let http1 = request.version() < hyper::Version::HTTP_2;
        let request = request.map(|body| axum::body::Body::new(Upload::new(body, &tracked)));
        let router = router.clone();
        let stop_flag = stop_flag.clone();
        async move {
            let mut response = router.oneshot(request).await;
            // Stopping: this answer is the connection's last (HTTP/2 says
            // so with GOAWAY instead).
            if http1
                && *stop_flag.borrow()
                && let Ok(response) = &mut response
            {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
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
    // At shutdown a busy connection finishes its request, its answer the
    // last; an idle one lingers first, in case a request is already on
    // its way (closing with it unread would reset the connection, and a
    // proxy cannot safely send a POST again).
    let mut draining = *stopping.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    let linger = tokio::time::sleep(Duration::MAX);
    tokio::pin!(linger);
    let mut lingering = false;
    loop {
        tokio::select! {
            // The connection first: what it has read decides whether it is idle.
            biased;
            served = connection.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                break;
            }
            () = conn.close.notified() => break,
            changed = stopping.changed(), if !draining => {
                draining = true;
                if changed.is_err() {
                    break;
                }
                if conn.is_idle() {
                    lingering = true;
                    linger.as_mut().reset(tokio::time::Instant::now() + IDLE_LINGER);
                } else {
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = linger.as_mut(), if lingering => {
                lingering = false;
                if !conn.is_idle() {
                    // A request arrived meanwhile: its answer is the last.
                    connection.as_mut().graceful_shutdown();
                } else if !conn.head_arriving() {
                    break;
                }
                // A head still arriving becomes a request whose answer says
                // `Connection: close` (or the head timeout closes it).
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
