//! Where log lines go: a bounded buffer in memory that a thread of its own
//! writes to stderr every [`FLUSH_EVERY`], so that logging a line never
//! waits for stderr (a full pipe, a slow journald) and never wakes another
//! thread. When the buffer is full, a line is dropped and counted
//! (`blogql_log_lines_dropped_total`) instead.
//!
//! [`LineFormat`] lays each line out, as text for people or one JSON object
//! for log shippers, in one pass with no intermediate values.
//!
//! (Measured first, on `me_anon` with the access log on against off:
//! tracing-subscriber's own formatters with tracing-appender's
//! non-blocking writer cost 7% of its throughput, the formatters alone
//! about as much: they quote every string through `Debug`, style text
//! through `nu_ansi_term` even without colours, and visit JSON fields
//! through `serde_json` values.)

use std::fmt::{self, Write as _};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

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

/// How a line is laid out. Text, for people (`logfmt` fields):
///
/// ```text
/// 2026-12-06T16:41:04.715205Z  INFO blogql::access: request method=POST path=/graphql status=200
/// ```
///
/// JSON, one object per line, the event's fields beside its timestamp,
/// level, target and message:
///
/// ```text
/// {"timestamp":"2026-12-06T16:41:04.715205Z","level":"INFO","message":"request","method":"POST","target":"blogql::access"}
/// ```
///
/// Spans are not written (blogql opens none: a request's lines share its
/// `correlation_id` instead).
#[derive(Debug, Clone, Copy)]
pub struct LineFormat {
    pub json: bool,
    /// Colour the level (only when stderr is a terminal).
    pub ansi: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _context: &FmtContext<'_, S, N>,
        mut out: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        // Laid out in a string of this thread's (each piece a direct
        // append, not a call through `Writer`'s `dyn fmt::Write`), then
        // handed over whole.
        thread_local! {
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                self.lay_out(&mut line, event);
                out.write_str(&line)
            }
            // A value whose `Debug` logs: a string of its own.
            Err(_) => {
                let mut line = String::new();
                self.lay_out(&mut line, event);
                out.write_str(&line)
            }
        })
    }
}

impl LineFormat {
    fn lay_out(&self, out: &mut String, event: &tracing::Event<'_>) {
        let metadata = event.metadata();
        self.head(out, *metadata.level(), metadata.target());
        if self.json {
            event.record(&mut JsonFields { out: &mut *out });
        } else {
            event.record(&mut TextFields { out: &mut *out });
        }
        self.tail(out, metadata.target());
    }

    /// What comes before a line's fields: the time, the level, and (as
    /// text) the target.
    fn head(&self, out: &mut String, level: tracing::Level, target: &str) {
        // Right-aligned to five, as people read them in a column.
        let name = match level {
            tracing::Level::ERROR => "ERROR",
            tracing::Level::WARN => " WARN",
            tracing::Level::INFO => " INFO",
            tracing::Level::DEBUG => "DEBUG",
            tracing::Level::TRACE => "TRACE",
        };
        if self.json {
            out.push_str("{\"timestamp\":\"");
            write_timestamp(out);
            out.push_str("\",\"level\":\"");
            out.push_str(name.trim_start());
            out.push('"');
            return;
        }
        write_timestamp(out);
        out.push(' ');
        if self.ansi {
            let colour = match level {
                tracing::Level::ERROR => "31",
                tracing::Level::WARN => "33",
                tracing::Level::INFO => "32",
                _ => "34",
            };
            let _ = write!(out, "\x1b[{colour}m{name}\x1b[0m");
        } else {
            out.push_str(name);
        }
        out.push(' ');
        out.push_str(target);
        out.push(':');
    }

    /// What comes after a line's fields: (as JSON) the target, and the end.
    fn tail(&self, out: &mut String, target: &str) {
        if self.json {
            json_field(out, "target", target);
            out.push_str("}\n");
        } else {
            out.push('\n');
        }
    }
}

/// `took` in milliseconds with three decimals (`1.058`), written into
/// `buffer` without `fmt`.
fn millis(took: Duration, buffer: &mut [u8; 24]) -> &str {
    // At most 12 digits before the point (31 years).
    let micros = took.as_micros().min(999_999_999_999_999);
    let mut digits = itoa::Buffer::new();
    let whole_digits = digits.format(micros / 1000).as_bytes();
    let whole = whole_digits.len();
    buffer[..whole].copy_from_slice(whole_digits);
    buffer[whole] = b'.';
    let mut fraction = (micros % 1000) as u16;
    for at in (whole + 1..whole + 4).rev() {
        buffer[at] = b'0' + (fraction % 10) as u8;
        fraction /= 10;
    }
    std::str::from_utf8(&buffer[..whole + 4]).unwrap_or("0.000")
}

/// The access log's target.
pub const ACCESS_TARGET: &str = "blogql::access";

/// The access log's line for one request. Where the program installed its
/// writer ([`install_access_log`]), laid out here and handed to it
/// directly, as tracing would lay it out but without its field visitors
/// (at one line per request they cost more than the rest of the line);
/// elsewhere (blogql embedded, as the tests' in-process servers run it),
/// an ordinary tracing event.
#[derive(Debug)]
pub struct AccessLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub operation: Option<&'a str>,
    pub operation_name: Option<&'a str>,
    pub outcome: Option<&'a str>,
    /// Written in milliseconds (`duration_ms`).
    pub took: Duration,
    pub correlation_id: &'a str,
    pub caller: &'a str,
}

/// The program's writer and format, and whether `RUST_LOG` lets the
/// access log through (decided once: the filter does not change).
struct Direct {
    writer: LogWriter,
    format: LineFormat,
    enabled: bool,
}

static DIRECT: std::sync::OnceLock<Direct> = std::sync::OnceLock::new();

/// Writes access lines straight to `writer` in `format` (after the
/// global subscriber is set, whose filter decides once whether they are
/// written at all).
pub fn install_access_log(writer: LogWriter, format: LineFormat) {
    let enabled = tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO);
    let _ = DIRECT.set(Direct {
        writer,
        format,
        enabled,
    });
}

impl AccessLine<'_> {
    pub fn write(&self) {
        let Some(direct) = DIRECT.get() else {
            tracing::info!(
                target: ACCESS_TARGET,
                method = self.method,
                path = self.path,
                status = self.status,
                operation = self.operation,
                operation_name = self.operation_name,
                outcome = self.outcome,
                duration_ms = self.took.as_secs_f64() * 1000.0,
                correlation_id = self.correlation_id,
                caller = self.caller,
                "request"
            );
            return;
        };
        if !direct.enabled {
            return;
        }
        thread_local! {
            static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        LINE.with(|line| {
            let Ok(mut line) = line.try_borrow_mut() else {
                return;
            };
            line.clear();
            self.lay_out(direct.format, &mut line);
            direct.writer.shared.push(line.as_bytes());
        });
    }

    /// Every value but the path is a word that needs no quoting or
    /// escaping: ours (operation, outcome, caller, correlation ID,
    /// digits), an HTTP method (a token: no space, quote, `=` or `\\`) or
    /// a GraphQL name (letters, digits, `_`). So each separator is written
    /// with its key in one piece, and only the path is checked.
    fn lay_out(&self, format: LineFormat, out: &mut String) {
        let mut buffer = [0; 24];
        let milliseconds = millis(self.took, &mut buffer);
        let mut status = itoa::Buffer::new();
        let status = status.format(self.status);
        format.head(out, tracing::Level::INFO, ACCESS_TARGET);
        let optional = [
            (" operation=", ",\"operation\":\"", self.operation),
            (
                " operation_name=",
                ",\"operation_name\":\"",
                self.operation_name,
            ),
            (" outcome=", ",\"outcome\":\"", self.outcome),
        ];
        if format.json {
            out.push_str(",\"message\":\"request\",\"method\":\"");
            out.push_str(self.method);
            out.push('"');
            json_field(out, "path", self.path);
            out.push_str(",\"status\":");
            out.push_str(status);
            for (_, key, value) in optional {
                if let Some(value) = value {
                    out.push_str(key);
                    out.push_str(value);
                    out.push('"');
                }
            }
            // A number, as tracing writes an `f64`.
            out.push_str(",\"duration_ms\":");
            out.push_str(milliseconds);
            out.push_str(",\"correlation_id\":\"");
            out.push_str(self.correlation_id);
            out.push_str("\",\"caller\":\"");
            out.push_str(self.caller);
            out.push('"');
        } else {
            out.push_str(" request method=");
            out.push_str(self.method);
            text_field(out, "path", self.path);
            out.push_str(" status=");
            out.push_str(status);
            for (key, _, value) in optional {
                if let Some(value) = value {
                    out.push_str(key);
                    out.push_str(value);
                }
            }
            out.push_str(" duration_ms=");
            out.push_str(milliseconds);
            out.push_str(" correlation_id=");
            out.push_str(self.correlation_id);
            out.push_str(" caller=");
            out.push_str(self.caller);
        }
        format.tail(out, ACCESS_TARGET);
    }
}

/// Now, as RFC 3339 in UTC with microseconds. The date and time of day
/// are formatted once a second per thread.
fn write_timestamp(out: &mut String) {
    thread_local! {
        static SECOND: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = now.as_secs();
    SECOND.with(|second| {
        let mut second = second.borrow_mut();
        if second.0 != seconds {
            let at = i64::try_from(seconds)
                .ok()
                .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            second.1.clear();
            let _ = write!(
                second.1,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            );
            second.0 = seconds;
        }
        out.push_str(&second.1);
    });
    let mut micros = now.subsec_micros();
    let mut fraction = *b".000000Z";
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.push_str(std::str::from_utf8(&fraction).unwrap_or(".000000Z"));
}

/// Fields as ` message key=value key="a value"` (`logfmt`).
struct TextFields<'a> {
    out: &'a mut String,
}

impl TextFields<'_> {
    fn key(&mut self, field: &Field) {
        text_key(self.out, field.name());
    }

    fn text(&mut self, field: &Field, text: &str) {
        text_field(self.out, field.name(), text);
    }
}

/// ` key=`, or ` ` before the message.
fn text_key(out: &mut String, name: &str) {
    out.push(' ');
    if name != "message" {
        out.push_str(name);
        out.push('=');
    }
}

/// ` key=value`: the value bare when it is one word, else quoted and
/// escaped (the message always bare).
fn text_field(out: &mut String, name: &str, text: &str) {
    text_key(out, name);
    let bare = name == "message"
        || (!text.is_empty()
            && text
                .bytes()
                .all(|byte| matches!(byte, b'!'..=b'~') && byte != b'"' && byte != b'='));
    if bare {
        out.push_str(text);
    } else {
        let _ = write!(out, "{text:?}");
    }
}

/// `,"key":"value"`.
fn json_field(out: &mut String, name: &str, text: &str) {
    json_key(out, name);
    write_json_string(out, text);
}

/// `,"key":`.
fn json_key(out: &mut String, name: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            // Bare: written as it is formatted.
            self.key(field);
            let _ = write!(self.out, "{value:?}");
            return;
        }
        with_scratch(|scratch| {
            if write!(scratch, "{value:?}").is_ok() {
                self.text(field, scratch);
            }
        });
    }
}

/// Fields as `,"key":value`.
struct JsonFields<'a> {
    out: &'a mut String,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        json_key(self.out, field.name());
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        json_field(self.out, field.name(), value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.out.push_str(itoa::Buffer::new().format(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        if value.is_finite() {
            let _ = write!(self.out, "{value}");
        } else {
            self.out.push_str("null");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.out.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        with_scratch(|scratch| {
            if write!(scratch, "{value:?}").is_ok() {
                self.key(field);
                write_json_string(self.out, scratch);
            }
        });
    }
}

/// `text` as a JSON string.
fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 | 0x7f => "",
            _ => continue,
        };
        out.push_str(&text[plain..at]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        plain = at + 1;
    }
    out.push_str(&text[plain..]);
    out.push('"');
}

/// A cleared string of this thread's, to format a value into.
fn with_scratch(use_it: impl FnOnce(&mut String)) {
    thread_local! {
        static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            scratch.clear();
            use_it(&mut scratch);
        }
        // A value whose `Debug` logs: a string of its own.
        Err(_) => use_it(&mut String::new()),
    });
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A destination that keeps what it was given.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

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
    fn line(json: bool, log: impl FnOnce()) -> String {
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

    fn tricky() {
        let error = "a \"quoted\"\nsecond line\t\u{1}";
        tracing::warn!(
            target: "blogql::test",
            word = "POST",
            count = 3_u64,
            below = -2_i64,
            ms = 1.5,
            yes = true,
            error = %error,
            empty = "",
            "something happened"
        );
    }

    #[test]
    fn a_json_line_is_one_object_with_every_field_escaped() {
        let text = line(true, tricky);
        assert_eq!(text.lines().count(), 1, "{text}");
        let event: serde_json::Value = serde_json::from_str(&text).expect(&text);
        assert_eq!(event["level"], "WARN");
        assert_eq!(event["target"], "blogql::test");
        assert_eq!(event["message"], "something happened");
        assert_eq!(event["word"], "POST");
        assert_eq!(event["count"], 3);
        assert_eq!(event["below"], -2);
        assert_eq!(event["ms"], 1.5);
        assert_eq!(event["yes"], true);
        assert_eq!(event["error"], "a \"quoted\"\nsecond line\t\u{1}");
        assert_eq!(event["empty"], "");
        let at = event["timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
            "{at}"
        );
        assert!(at.ends_with('Z') && at.len() == 27, "{at}");
    }

    #[test]
    fn a_text_line_quotes_only_what_is_not_one_word() {
        let text = line(false, tricky);
        assert_eq!(
            text.lines().count(),
            1,
            "one line, newlines escaped: {text}"
        );
        let (at, rest) = text.split_once(' ').unwrap();
        assert!(at.ends_with('Z') && at.len() == 27, "{at}");
        assert_eq!(
            rest,
            " WARN blogql::test: something happened word=POST count=3 below=-2 ms=1.5 yes=true \
             error=\"a \\\"quoted\\\"\\nsecond line\\t\\u{1}\" empty=\"\"\n"
        );
    }

    #[test]
    fn durations_are_milliseconds_with_three_decimals() {
        let cases = [
            (Duration::ZERO, "0.000"),
            (Duration::from_micros(1), "0.001"),
            (Duration::from_micros(1058), "1.058"),
            (Duration::from_micros(30_000_500), "30000.500"),
            (Duration::MAX, "999999999999.999"),
        ];
        for (took, text) in cases {
            assert_eq!(millis(took, &mut [0; 24]), text);
        }
    }

    #[test]
    fn an_access_line_written_directly_reads_as_tracing_would_write_it() {
        let access = AccessLine {
            method: "POST",
            path: "/graphql/odd \"path\"",
            status: 200,
            operation: Some("query"),
            operation_name: None,
            outcome: Some("OK"),
            took: Duration::from_micros(1058),
            correlation_id: "0123456789abcdef",
            caller: "cookie",
        };
        for json in [false, true] {
            let format = LineFormat { json, ansi: false };
            let mut direct = String::new();
            access.lay_out(format, &mut direct);
            let traced = line(json, || {
                tracing::info!(
                    target: ACCESS_TARGET,
                    method = access.method,
                    path = access.path,
                    status = access.status,
                    operation = access.operation,
                    operation_name = access.operation_name,
                    outcome = access.outcome,
                    duration_ms = 1.058,
                    correlation_id = access.correlation_id,
                    caller = access.caller,
                    "request"
                );
            });
            // Apart from the time, the same line.
            let (direct_time, traced_time) = if json {
                (15..42, 15..42)
            } else {
                (0..27, 0..27)
            };
            assert_eq!(
                direct[direct_time.end..],
                traced[traced_time.end..],
                "json={json}"
            );
            assert_eq!(direct.len(), traced.len());
        }
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
