//! Throttling: failed logins counted per username + client address and per
//! client address, and registrations per client address — in the SQL
//! database or in Redis (`sql.rs`, `redis.rs`; chosen once at start-up),
//! so every instance sees the same counts.
//!
//! **Logins.** An attempt takes a slot before its password is checked: the
//! key's attempts in progress plus its failures on record must stay under
//! the threshold (past it, after a lock ends, one attempt at a time). Taking
//! the slot is one conditional statement, so the attempts in progress on
//! every instance are counted together and a burst of concurrent guesses gets
//! no more checks than a sequence would; an attempt that cannot take its slot
//! (the database refuses the write) is refused whatever its password, so an
//! outage never lifts the throttle. An attempt that finds the slots taken
//! waits for one to free (correct logins of one account still run side by
//! side). A slot left by an instance that died counts for
//! `IN_PROGRESS_STALE` only.
//!
//! Past a threshold a key is locked, for one second after the failure that
//! reached it and twice as long after each further one, up to `MAX_LOCK`;
//! the lock follows from the count and the last failure. While a key is
//! locked, logins are refused before any password is checked. A success
//! clears its username + address count (not the address's: an attacker
//! could otherwise reset it by logging in to an account of their own).
//!
//! **Registrations.** At most [`REGISTRATIONS_PER_WINDOW`] per client
//! address in any [`REGISTRATION_WINDOW`], counted before any hashing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use time::PrimitiveDateTime;
use tokio::sync::Notify;

use super::{AccountError, Limit};
use crate::db::{Db, now};
use crate::redis::Redis;
use redis::RedisCounts;
use sql::SqlCounts;

mod redis;
mod sql;

/// Failures in a row for one username from one address before locking.
const USER_THRESHOLD: i32 = 5;
/// Failures from one address, whatever the usernames, before locking.
const ADDRESS_THRESHOLD: i32 = 100;
/// The longest lock.
const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A count with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
/// Attempts in progress older than this were left by an instance that died.
const IN_PROGRESS_STALE: Duration = Duration::from_secs(60);
/// How long an attempt waits for a slot before it is refused.
const WAIT_FOR_SLOT: Duration = Duration::from_secs(10);
/// How often a waiting attempt looks again, when the attempts in progress
/// run on another instance (this one's wake it as they finish).
const RECHECK_EVERY: Duration = Duration::from_secs(1);
/// Registrations one client address may make per window.
pub const REGISTRATIONS_PER_WINDOW: i32 = 30;
/// The registration window.
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(10 * 60);

/// A client address as counted: IPv6 clients per /64, the block one
/// subscriber typically holds.
fn address_key(client: IpAddr) -> String {
    match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            format!(
                "{:x}:{:x}:{:x}:{:x}::/64",
                segments[0], segments[1], segments[2], segments[3]
            )
        }
    }
}

/// The name of one count, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CounterKey(String);

impl CounterKey {
    /// As stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Registrations from `client`.
    fn registrations(client: IpAddr) -> Self {
        Self(format!("register:{}", address_key(client)))
    }
}

/// The two counters one login attempt touches.
#[derive(Debug, Clone)]
pub struct ThrottleKeys {
    /// Failures for one username (in any case) from one address.
    user: CounterKey,
    /// Failures from one address, whatever the usernames.
    address: CounterKey,
}

impl ThrottleKeys {
    /// The keys for `username` (in any case) from `client`.
    pub fn new(username: &str, client: IpAddr) -> Self {
        let address = address_key(client);
        Self {
            user: CounterKey(format!("user:{}@{address}", username.to_ascii_lowercase())),
            address: CounterKey(format!("ip:{address}")),
        }
    }
}

/// When a key with `failures`, the last at `last_failed_at`, is locked until.
fn locked_until(
    failures: i32,
    threshold: i32,
    last_failed_at: PrimitiveDateTime,
) -> Option<PrimitiveDateTime> {
    let doublings = u32::try_from(failures - threshold).ok()?.min(20);
    Some(last_failed_at + Duration::from_secs(1u64 << doublings).min(MAX_LOCK))
}

/// Whole seconds from `now` until `until`, at least one.
fn seconds_until(until: PrimitiveDateTime, now: PrimitiveDateTime) -> u64 {
    (until - now).as_seconds_f64().ceil().max(1.0) as u64
}

/// Where the counts live: the SQL database, or Redis when there is one;
/// chosen once at start-up. Every instance sharing it sees the same counts.
#[derive(Clone)]
enum Counts {
    Sql(SqlCounts),
    Redis(RedisCounts),
}

/// Runs the same operation on whichever backend this is.
macro_rules! on_counts {
    ($counts:expr, $arm:ident => $call:expr) => {
        match $counts {
            Counts::Sql($arm) => Ok($call.await?),
            Counts::Redis($arm) => Ok($call.await?),
        }
    };
}

impl Counts {
    /// Takes a slot of `key` when its fresh attempts in progress plus its
    /// failures stay under `threshold`, or when none is in progress (one at
    /// a time once past it). Taken, the key's failures and last failure,
    /// to tell whether it is locked; `None` when no slot is free.
    async fn take_slot(
        &self,
        key: &CounterKey,
        threshold: i32,
    ) -> Result<Option<(i32, PrimitiveDateTime)>, AccountError> {
        on_counts!(self, counts => counts.take_slot(key, threshold))
    }

    /// Frees a slot of each of `keys`, recording how the attempt ended.
    async fn finish(&self, keys: &[&CounterKey], outcome: Outcome<'_>) -> Result<(), AccountError> {
        on_counts!(self, counts => counts.finish(keys, outcome))
    }

    /// Counts a registration under `key`: this window's hits, the previous
    /// window's, and when this window started.
    async fn count_registration(
        &self,
        key: &CounterKey,
    ) -> Result<(i32, i32, PrimitiveDateTime), AccountError> {
        on_counts!(self, counts => counts.count_registration(key))
    }
}

/// Counts logins and registrations, and refuses them while limited.
#[derive(Clone)]
pub struct Throttle {
    counts: Counts,
    /// Woken when an attempt on this instance finishes, per username + address.
    finished: Arc<Mutex<HashMap<CounterKey, Weak<Notify>>>>,
}

/// A login attempt holding its slots; [`Throttle::succeeded`] or
/// [`Throttle::failed`] records how it ended. Dropped unrecorded (the request
/// was cancelled before its password was checked), it gives them back.
#[must_use]
pub struct Attempt {
    throttle: Throttle,
    keys: ThrottleKeys,
    finished: Arc<Notify>,
    recorded: bool,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.recorded {
            let throttle = self.throttle.clone();
            let keys = self.keys.clone();
            let finished = self.finished.clone();
            tokio::spawn(async move {
                if let Err(err) = throttle.finish(&keys, Outcome::Cancelled).await {
                    tracing::warn!(error = %err, "cannot free a cancelled login's slot");
                }
                finished.notify_one();
            });
        }
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome<'a> {
    /// Its password was right: the failures of `clears` (the username +
    /// address key) are forgotten.
    Succeeded {
        clears: &'a CounterKey,
    },
    Failed,
    Cancelled,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Throttle {
    /// Throttling counted in Redis when there is one, else in `db`.
    pub fn new(db: &Db, redis: Option<&Redis>) -> Self {
        Self {
            counts: match redis {
                Some(redis) => Counts::Redis(RedisCounts::new(redis.clone())),
                None => Counts::Sql(SqlCounts::new(db.clone())),
            },
            finished: Arc::default(),
        }
    }

    /// Lets a login attempt through once it holds a slot of both keys;
    /// `RateLimited` while either key is locked, or when no slot frees in
    /// `WAIT_FOR_SLOT`. A database error refuses the attempt.
    pub async fn admit(&self, keys: &ThrottleKeys) -> Result<Attempt, AccountError> {
        let finished = self.finished_notify(&keys.user);
        let deadline = tokio::time::Instant::now() + WAIT_FOR_SLOT;
        loop {
            let wake = finished.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            match self.take_slots(keys).await {
                Ok(true) => {
                    return Ok(Attempt {
                        throttle: self.clone(),
                        keys: keys.clone(),
                        finished: finished.clone(),
                        recorded: false,
                    });
                }
                Ok(false) if tokio::time::Instant::now() < deadline => {}
                Ok(false) => {
                    return Err(AccountError::RateLimited {
                        retry_after: 1,
                        limit: Limit::FailedLogins,
                    });
                }
                Err(refused) => {
                    // Leaving without the slot this wake-up offered: pass it on.
                    finished.notify_one();
                    return Err(refused);
                }
            }
            tokio::select! {
                () = &mut wake => {}
                () = tokio::time::sleep(RECHECK_EVERY) => {}
            }
        }
    }

    /// Records a successful attempt: clears its username + address count.
    pub async fn succeeded(&self, attempt: Attempt) -> Result<(), AccountError> {
        let clears = attempt.keys.user.clone();
        self.record(attempt, Outcome::Succeeded { clears: &clears })
            .await
    }

    /// Records a failed attempt against both keys.
    pub async fn failed(&self, attempt: Attempt) -> Result<(), AccountError> {
        self.record(attempt, Outcome::Failed).await
    }

    async fn record(&self, mut attempt: Attempt, outcome: Outcome<'_>) -> Result<(), AccountError> {
        attempt.recorded = true;
        let recorded = self.finish(&attempt.keys, outcome).await;
        attempt.finished.notify_one();
        recorded
    }

    fn finished_notify(&self, key: &CounterKey) -> Arc<Notify> {
        let mut all = lock(&self.finished);
        all.retain(|_, notify| notify.strong_count() > 0);
        if let Some(notify) = all.get(key).and_then(Weak::upgrade) {
            return notify;
        }
        let notify = Arc::new(Notify::new());
        all.insert(key.clone(), Arc::downgrade(&notify));
        notify
    }

    /// Takes a slot of both keys; `false` (holding none) when either has
    /// none free, `RateLimited` (holding none) when either is locked.
    async fn take_slots(&self, keys: &ThrottleKeys) -> Result<bool, AccountError> {
        let Some(user) = self.take_slot(&keys.user, USER_THRESHOLD).await? else {
            return Ok(false);
        };
        let Some(address) = self.take_slot(&keys.address, ADDRESS_THRESHOLD).await? else {
            self.counts
                .finish(&[&keys.user], Outcome::Cancelled)
                .await?;
            return Ok(false);
        };
        let now = now();
        let locked = [(user, USER_THRESHOLD), (address, ADDRESS_THRESHOLD)]
            .into_iter()
            .filter_map(|((failures, last), threshold)| locked_until(failures, threshold, last))
            .filter(|until| *until > now)
            .max();
        if let Some(until) = locked {
            self.finish(keys, Outcome::Cancelled).await?;
            return Err(AccountError::RateLimited {
                retry_after: seconds_until(until, now),
                limit: Limit::FailedLogins,
            });
        }
        Ok(true)
    }

    async fn take_slot(
        &self,
        key: &CounterKey,
        threshold: i32,
    ) -> Result<Option<(i32, PrimitiveDateTime)>, AccountError> {
        self.counts.take_slot(key, threshold).await
    }

    /// Frees an attempt's slots, recording how it ended: a failure counts
    /// against both keys, a success clears the username + address's
    /// failures (and leaves the address's as they are).
    async fn finish(&self, keys: &ThrottleKeys, outcome: Outcome<'_>) -> Result<(), AccountError> {
        self.counts
            .finish(&[&keys.user, &keys.address], outcome)
            .await
    }

    /// Counts a registration from `client`; `RateLimited` once this window
    /// and the one before hold more than [`REGISTRATIONS_PER_WINDOW`] (any
    /// span of one window overlaps at most those two). A database error
    /// refuses the registration.
    pub async fn admit_registration(&self, client: IpAddr) -> Result<(), AccountError> {
        let key = CounterKey::registrations(client);
        let (hits, previous, started_at) = self.counts.count_registration(&key).await?;
        if hits + previous > REGISTRATIONS_PER_WINDOW {
            return Err(AccountError::RateLimited {
                retry_after: seconds_until(started_at + REGISTRATION_WINDOW, now()),
                limit: Limit::Registrations,
            });
        }
        Ok(())
    }

    /// Deletes counts nobody needs any more; run by the housekeeping task
    /// (Redis expires its counts itself).
    pub async fn forget_stale(&self) -> Result<usize, AccountError> {
        match &self.counts {
            Counts::Sql(counts) => Ok(counts.forget_stale().await?),
            Counts::Redis(_) => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_starts_at_the_threshold_and_doubles_up_to_the_maximum() {
        let at = time::macros::datetime!(2026-12-01 00:00:00);
        assert_eq!(locked_until(4, 5, at), None);
        assert_eq!(locked_until(5, 5, at), Some(at + Duration::from_secs(1)));
        assert_eq!(locked_until(7, 5, at), Some(at + Duration::from_secs(4)));
        assert_eq!(locked_until(500, 5, at), Some(at + MAX_LOCK));
    }
}
