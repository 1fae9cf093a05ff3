//! The connections the accept loop serves: each one's state (idle since,
//! request head started, requests in flight), the registry that finds the
//! longest-idle one at the cap, and the sweeper that closes the overdue.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::ConnectionLimits;

/// The clock of connection times: milliseconds since the first reading,
/// never 0 (atomics hold them, and 0 means "never").
pub(super) struct Clock;

impl Clock {
    pub(super) fn now(&self) -> u64 {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let start = START.get_or_init(Instant::now);
        u64::try_from(start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// One connection's state, shared by its task, its socket and the sweeper.
pub(super) struct Conn {
    pub(super) id: u64,
    /// When it last became idle (accepted, or answered a request).
    pub(super) idle_since: AtomicU64,
    /// When the first byte of a request head arrived while idle; 0: none.
    pub(super) head_started: AtomicU64,
    /// Requests being answered.
    pub(super) in_flight: AtomicUsize,
    /// Requests whose body is still arriving.
    pub(super) uploading: AtomicUsize,
    /// Requests answered so far.
    pub(super) answered: AtomicU64,
    /// Told to close (idle too long, or shed at the cap).
    pub(super) close: Notify,
}

impl Conn {
    pub(super) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Whether the first bytes of a request head have arrived (and the
    /// request has not begun).
    pub(super) fn head_arriving(&self) -> bool {
        self.head_started.load(Ordering::Acquire) != 0
    }

    /// Idle, or only waiting for request bodies: nothing is lost by closing it.
    pub(super) fn is_sheddable(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) <= self.uploading.load(Ordering::Acquire)
    }

    pub(super) fn begin_request(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Release);
        Busy(self.clone())
    }

    /// Whether the sweeper should close it at `now`.
    pub(super) fn overdue(&self, now: u64, limits: &ConnectionLimits) -> bool {
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
pub(super) struct Busy(pub(super) Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::AcqRel);
        self.0.idle_since.store(Clock.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) next_id: AtomicU64,
    pub(super) open: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Notified whenever a connection closes.
    pub(super) closed: Notify,
}

impl Registry {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    pub(super) fn add(&self) -> Arc<Conn> {
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

    pub(super) fn remove(&self, id: u64) {
        self.lock().remove(&id);
        self.closed.notify_waiters();
    }

    /// Closes the connection idle the longest (or only uploading); `false`
    /// if every one is busy.
    pub(super) fn shed_longest_idle(&self) -> bool {
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

    pub(super) fn close_all(&self) {
        for conn in self.lock().values() {
            conn.close.notify_one();
        }
    }

    /// Completes once fewer than `count` connections are open.
    pub(super) async fn wait_below(&self, count: usize) {
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
    pub(super) async fn drained(&self) {
        self.wait_below(1).await;
    }
}

/// Closes overdue connections, a few times per head timeout.
pub(super) async fn sweep(registry: Arc<Registry>, limits: ConnectionLimits) {
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
pub(super) struct Tracked {
    pub(super) stream: TcpStream,
    pub(super) conn: Arc<Conn>,
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
