//! Where log lines go: a bounded buffer in memory that a thread of its own
//! writes to stderr every [`FLUSH_EVERY`], so that logging a line never
//! waits for stderr (a full pipe, a slow journald) and never wakes another
//! thread. When the buffer is full, a line is dropped and counted
//! (`blogql_log_lines_dropped_total`) instead.
//!
//! `format`: [`LineFormat`] lays each line out, as text for people or one
//! JSON object for log shippers, in one pass with no intermediate values.
//! `access`: the access log's line, laid out the same way without
//! tracing's field visitors.
//!
//! (Measured first, on `me_anon` with the access log on against off:
//! tracing-subscriber's own formatters with tracing-appender's
//! non-blocking writer cost 7% of its throughput, the formatters alone
//! about as much: they quote every string through `Debug`, style text
//! through `nu_ansi_term` even without colours, and visit JSON fields
//! through `serde_json` values.)

mod access;
mod format;

pub use access::{ACCESS_TARGET, AccessLine, install_access_log};
pub use format::LineFormat;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How often the lines logged since are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Most bytes of lines waiting to be written; beyond it lines are dropped.
pub const MAX_PENDING_BYTES: usize = 1024 * 1024;

/// Hands log lines to the writing thread (a `tracing-subscriber` writer).
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the writing thread when dropped: keep it
/// until the program ends.
pub struct LogFlusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pending: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    /// Set (and signalled) when the program ends.
    stopping: Mutex<bool>,
    stop: Condvar,
}

impl LogWriter {
    /// A writer to stderr, and the guard of its thread.
    pub fn to_stderr() -> (Self, LogFlusher) {
        Self::to(io::stderr())
    }

    /// A writer to `out`, and the guard of its thread.
    pub fn to(mut out: impl io::Write + Send + 'static) -> (Self, LogFlusher) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            dropped: AtomicU64::new(0),
            stopping: Mutex::new(false),
            stop: Condvar::new(),
        });
        let flusher = shared.clone();
        let thread = std::thread::Builder::new()
            .name("blogql-logs".into())
            .spawn(move || flusher.write_every(FLUSH_EVERY, &mut out))
            .ok();
        let writer = Self {
            shared: shared.clone(),
        };
        (writer, LogFlusher { shared, thread })
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Shared {
    /// The writing thread: every `every`, writes what is pending; at the
    /// end, what is left.
    fn write_every(&self, every: Duration, out: &mut impl io::Write) {
        let mut spare = Vec::with_capacity(64 * 1024);
        loop {
            let stopping = {
                let stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
                let (stopping, _) = self
                    .stop
                    .wait_timeout_while(stopping, every, |stopping| !*stopping)
                    .unwrap_or_else(PoisonError::into_inner);
                *stopping
            };
            std::mem::swap(
                &mut spare,
                &mut self.pending.lock().unwrap_or_else(PoisonError::into_inner),
            );
            if !spare.is_empty() && out.write_all(&spare).and_then(|()| out.flush()).is_err() {
                let lines = spare.iter().filter(|byte| **byte == b'\n').count();
                self.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            }
            spare.clear();
            if stopping {
                return;
            }
        }
    }
}

impl Drop for LogFlusher {
    fn drop(&mut self) {
        *self
            .shared
            .stopping
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.stop.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line's writer: appends to the pending lines.
pub struct Line<'a>(&'a Shared);

impl Shared {
    /// Queues `line`, or drops and counts it when the buffer is full.
    fn push(&self, line: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.len() + line.len() > MAX_PENDING_BYTES {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            pending.extend_from_slice(line);
        }
    }
}

impl io::Write for Line<'_> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.0.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A destination that keeps what it was given.
    #[derive(Clone, Default)]
    pub(super) struct Kept(pub(super) Arc<Mutex<Vec<u8>>>);

    impl io::Write for Kept {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What one event looks like in `format`.
    pub(super) fn line(json: bool, log: impl FnOnce()) -> String {
        let kept = Kept::default();
        let (writer, flusher) = LogWriter::to(kept.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .event_format(LineFormat { json, ansi: false })
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        drop(flusher);
        String::from_utf8(kept.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_are_written_in_order_and_all_of_them_at_the_end() {
        let kept = Kept::default();
        let (writer, flusher) = LogWriter::to(kept.clone());
        for n in 0..1000 {
            writeln!(writer.make_writer(), "line {n}").unwrap();
        }
        drop(flusher);
        let text = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..1000).map(|n| format!("line {n}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(writer.dropped_lines(), 0);
    }

    #[test]
    fn past_the_bound_lines_are_dropped_and_counted() {
        /// A destination that never takes anything (a pipe nobody reads).
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl io::Write for Stuck {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                let _ = self.0.recv();
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel();
        let (writer, flusher) = LogWriter::to(Stuck(stuck));
        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        let lines = 3 * MAX_PENDING_BYTES / line.len();
        for _ in 0..lines {
            writer.make_writer().write_all(&line).unwrap();
        }
        // Never more than the bound waits, however long the writer is stuck.
        let pending = writer.shared.pending.lock().unwrap().len();
        assert!(pending <= MAX_PENDING_BYTES, "{pending} bytes pending");
        // At most two buffers' worth were taken: the rest was dropped.
        let dropped = writer.dropped_lines();
        assert!(dropped >= lines as u64 / 3, "{dropped} of {lines} dropped");
        drop(release);
        drop(flusher);
    }
}
