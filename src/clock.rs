//! Time as blogql stores and compares it: [`Millis`](crate::clock::Millis), Unix milliseconds in
//! UTC. Redis keeps times as such numbers (and its scripts use Redis' own
//! clock); the SQL tables keep them as timestamps without an offset, which
//! [`Millis::stored`](crate::clock::Millis::stored) and [`Millis::from_stored`](crate::clock::Millis::from_stored) convert to and from.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, PrimitiveDateTime};

/// A point in time, in Unix milliseconds (UTC).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// This instance's clock, now.
    pub fn now() -> Self {
        Self::from(OffsetDateTime::now_utc())
    }

    /// A stored SQL timestamp (UTC by convention).
    pub fn from_stored(at: PrimitiveDateTime) -> Self {
        Self::from(at.assume_utc())
    }

    /// As the SQL tables store it: UTC, without an offset.
    pub fn stored(self) -> PrimitiveDateTime {
        let at = self.date_time();
        PrimitiveDateTime::new(at.date(), at.time())
    }

    /// As a date and time (the epoch for a time out of range).
    pub fn date_time(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// `duration` later (saturating).
    pub fn plus(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(millis_of(duration)))
    }

    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl From<OffsetDateTime> for Millis {
    fn from(at: OffsetDateTime) -> Self {
        Self(i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX))
    }
}

/// A duration in whole milliseconds, as Redis scripts take it (saturating).
pub fn millis_of(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The current time as the SQL tables store it: UTC without an offset.
pub fn stored_now() -> PrimitiveDateTime {
    let now = OffsetDateTime::now_utc();
    PrimitiveDateTime::new(now.date(), now.time())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_time_reads_back_to_the_millisecond() {
        let at = Millis(1_796_000_000_123);
        assert_eq!(Millis::from_stored(at.stored()), at);
        assert_eq!(
            at.plus(Duration::from_secs(2)).since(at),
            Duration::from_secs(2)
        );
        assert_eq!(at.since(at.plus(Duration::from_secs(2))), Duration::ZERO);
    }
}
