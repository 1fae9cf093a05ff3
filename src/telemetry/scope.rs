//! The request a piece of work belongs to: its correlation ID (in the
//! access log line and in any error logged while serving it) and the
//! metrics it records into, carried in a task-local so that code deep in
//! the stores needs neither passed down.

use std::fmt;
use std::future::Future;

use super::{Metrics, Store};

/// Ties a request's log lines together: 16 hex digits, random, never
/// derived from anything the client sent or who the client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelationId(u64);

impl CorrelationId {
    pub fn new() -> Self {
        Self(rand::random())
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        Self::new()
    }
}

impl CorrelationId {
    /// The 16 hex digits, without `fmt` (the access log writes one per
    /// request).
    pub fn hex(self) -> Hex {
        let mut digits = [0; 16];
        for (at, digit) in digits.iter_mut().enumerate() {
            let nibble = (self.0 >> (60 - 4 * at)) & 0xf;
            *digit = b"0123456789abcdef"[nibble as usize];
        }
        Hex(digits)
    }
}

/// A correlation ID's digits.
pub struct Hex([u8; 16]);

impl Hex {
    pub fn as_str(&self) -> &str {
        // Only ASCII digits and letters were written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

struct Scope {
    correlation_id: CorrelationId,
    metrics: Metrics,
}

tokio::task_local! {
    static SCOPE: Scope;
}

/// Runs `work` as the request `id`, recording into `metrics`.
pub async fn in_scope<F: Future>(id: CorrelationId, metrics: Metrics, work: F) -> F::Output {
    let scope = Scope {
        correlation_id: id,
        metrics,
    };
    SCOPE.scope(scope, work).await
}

/// The correlation ID of the request being served; outside a request
/// (a background task), a fresh one, so a logged error still has one.
pub fn correlation_id() -> CorrelationId {
    SCOPE
        .try_with(|scope| scope.correlation_id)
        .unwrap_or_default()
}

/// Counts a store's failure against the request being served (outside a
/// request, nothing: background work logs its own).
pub fn store_failed(store: Store) {
    let _ = SCOPE.try_with(|scope| scope.metrics.store_failed(store));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correlation_id_is_16_hex_digits() {
        for value in [0, 1, 0xabc, u64::MAX, 0x0123_4567_89ab_cdef] {
            assert_eq!(CorrelationId(value).to_string(), format!("{value:016x}"));
        }
    }
}
