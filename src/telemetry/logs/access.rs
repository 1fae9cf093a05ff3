//! The access log's line, one per request: laid out as [`LineFormat`]
//! lays out any line, but written straight to the log writer.

use std::time::Duration;

use super::LogWriter;
use super::format::{LineFormat, json_field, text_field};

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

#[cfg(test)]
mod tests {
    use super::super::tests::line;
    use super::*;

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
}
