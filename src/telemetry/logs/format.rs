//! How a line is laid out: text (`logfmt`) or one JSON object, written
//! into one string with no intermediate values.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

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
        event.record(&mut Fields {
            out: &mut *out,
            json: self.json,
        });
        self.tail(out, metadata.target());
    }

    /// What comes before a line's fields: the time, the level, and (as
    /// text) the target.
    pub(super) fn head(&self, out: &mut String, level: tracing::Level, target: &str) {
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
    pub(super) fn tail(&self, out: &mut String, target: &str) {
        if self.json {
            json_field(out, "target", target);
            out.push_str("}\n");
        } else {
            out.push('\n');
        }
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

/// An event's fields: as text, ` message key=value key="a value"`
/// (`logfmt`); as JSON, `,"key":value`.
struct Fields<'a> {
    out: &'a mut String,
    json: bool,
}

impl Fields<'_> {
    fn key(&mut self, field: &Field) {
        if self.json {
            json_key(self.out, field.name());
        } else {
            text_key(self.out, field.name());
        }
    }

    fn text(&mut self, field: &Field, text: &str) {
        if self.json {
            json_field(self.out, field.name(), text);
        } else {
            text_field(self.out, field.name(), text);
        }
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
pub(super) fn text_field(out: &mut String, name: &str, text: &str) {
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
pub(super) fn json_field(out: &mut String, name: &str, text: &str) {
    json_key(out, name);
    write_json_string(out, text);
}

/// `,"key":`.
fn json_key(out: &mut String, name: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
}

impl Visit for Fields<'_> {
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

    fn record_f64(&mut self, field: &Field, value: f64) {
        if !self.json {
            self.record_debug(field, &value);
            return;
        }
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
        if !self.json && field.name() == "message" {
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
    use super::super::tests::line;

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
}
