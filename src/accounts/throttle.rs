//! Throttling: failed logins counted per username + client address and per
//! client address, and registrations per client address — in the database,
//! so every instance sees the same counts.
//!
//! **Logins.** Each attempt is counted as a failure *before* its password is
//! checked, and a success takes the count back. So an attempt whose count
//! cannot be written is refused whatever its password (an outage never
//! lifts the throttle, and the answer never tells a right password from a
//! wrong one), and the attempts in progress on every instance are already
//! in the count that admits the next one: a burst of concurrent guesses gets
//! no more checks than a sequence would.
//!
//! Past a threshold a key is locked, for one second after the failure that
//! reached it and twice as long after each further one, up to [`MAX_LOCK`];
//! the lock follows from the count and the last failure, so it is never
//! stored apart from them. While a key is locked, logins are refused before
//! any password is checked. A success clears its username + address count
//! (and takes its own attempt off the address's count, which is not
//! cleared: an attacker could otherwise reset it by logging in to an
//! account of their own).
//!
//! **Registrations.** At most [`REGISTRATIONS_PER_WINDOW`] per client
//! address in [`REGISTRATION_WINDOW`], counted before any hashing.

use std::net::IpAddr;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{Integer, Timestamp};
use diesel_async::RunQueryDsl;
use time::PrimitiveDateTime;

use super::AccountError;
use crate::db::schema::{login_failures as lf, rate_windows as rw};
use crate::db::{Db, DbError, now, with_conn};

/// Failures in a row for one username from one address before locking.
const USER_THRESHOLD: i32 = 5;
/// Failures from one address, whatever the usernames, before locking.
const ADDRESS_THRESHOLD: i32 = 100;
/// The longest lock.
const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A count with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);
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

/// The two counters one login attempt touches.
pub struct ThrottleKeys {
    user: String,
    address: String,
}

impl ThrottleKeys {
    /// The keys for `username` (in any case) from `client`.
    pub fn new(username: &str, client: IpAddr) -> Self {
        let address = address_key(client);
        Self {
            user: format!("user:{}@{address}", username.to_ascii_lowercase()),
            address: format!("ip:{address}"),
        }
    }

    fn with_thresholds(&self) -> [(&str, i32); 2] {
        [
            (&self.user, USER_THRESHOLD),
            (&self.address, ADDRESS_THRESHOLD),
        ]
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

/// Counts logins and registrations, and refuses them while limited.
#[derive(Clone)]
pub struct Throttle {
    db: Db,
}

/// A login attempt, already counted as a failure; [`Throttle::succeeded`]
/// takes it back.
#[must_use]
pub struct Attempt<'a> {
    keys: &'a ThrottleKeys,
}

impl Throttle {
    /// Throttling backed by `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Lets a login attempt through, counted as a failure; `RateLimited`
    /// while either key is locked. A database error refuses the attempt.
    pub async fn admit<'a>(&self, keys: &'a ThrottleKeys) -> Result<Attempt<'a>, AccountError> {
        let seen = self.check(keys).await?;
        let counted = self.count_failure(keys).await?;
        // Attempts of the same key counted between the check and ours: as in
        // a sequence, the first THRESHOLD in a row are checked, and after a
        // lock ends, one.
        if counted > USER_THRESHOLD.max(seen + 1) {
            let now = now();
            self.uncount(keys).await?;
            let until = locked_until(counted - 1, USER_THRESHOLD, now).unwrap_or(now);
            return Err(AccountError::RateLimited {
                retry_after: seconds_until(until, now),
            });
        }
        Ok(Attempt { keys })
    }

    /// Takes a successful attempt back: clears its username + address count,
    /// and removes it from the address's count.
    pub async fn succeeded(&self, attempt: Attempt<'_>) -> Result<(), DbError> {
        let keys = attempt.keys;
        with_conn!(self.db, write conn => diesel::delete(lf::table.find(&keys.user))
            .execute(conn)
            .await?);
        self.uncount_one(&keys.address).await
    }

    /// `RateLimited` while either key is locked; otherwise the username +
    /// address's failures on record.
    async fn check(&self, keys: &ThrottleKeys) -> Result<i32, AccountError> {
        let now = now();
        let rows: Vec<(String, i32, PrimitiveDateTime)> = with_conn!(self.db, conn => lf::table
            .filter(lf::key.eq_any([&keys.user, &keys.address]))
            .select((lf::key, lf::failures, lf::last_failed_at))
            .load(conn)
            .await
            .map_err(DbError::from)?);
        let threshold = |key: &str| {
            if key == keys.user {
                USER_THRESHOLD
            } else {
                ADDRESS_THRESHOLD
            }
        };
        let locked = rows
            .iter()
            .filter_map(|(key, failures, last)| locked_until(*failures, threshold(key), *last))
            .filter(|until| *until > now)
            .max();
        if let Some(until) = locked {
            return Err(AccountError::RateLimited {
                retry_after: seconds_until(until, now),
            });
        }
        Ok(rows
            .iter()
            .find(|(key, _, _)| *key == keys.user)
            .map_or(0, |(_, failures, _)| *failures))
    }

    /// Counts a failure against both keys; the username + address's count.
    async fn count_failure(&self, keys: &ThrottleKeys) -> Result<i32, DbError> {
        let now = now();
        let mut user_failures = 0;
        for (key, _) in keys.with_thresholds() {
            let failures: i32 = with_conn!(self.db, write conn => diesel::insert_into(lf::table)
                .values((lf::key.eq(key), lf::failures.eq(1), lf::last_failed_at.eq(now)))
                .on_conflict(lf::key)
                .do_update()
                .set((lf::failures.eq(lf::failures + 1), lf::last_failed_at.eq(now)))
                .returning(lf::failures)
                .get_result(conn)
                .await?);
            if key == keys.user {
                user_failures = failures;
            }
        }
        Ok(user_failures)
    }

    /// Takes one counted failure back from both keys.
    async fn uncount(&self, keys: &ThrottleKeys) -> Result<(), DbError> {
        self.uncount_one(&keys.user).await?;
        self.uncount_one(&keys.address).await
    }

    async fn uncount_one(&self, key: &str) -> Result<(), DbError> {
        with_conn!(self.db, write conn => diesel::update(lf::table.find(key))
            .set(lf::failures.eq(lf::failures - 1))
            .execute(conn)
            .await?);
        Ok(())
    }

    /// Counts a registration from `client`; `RateLimited` past
    /// [`REGISTRATIONS_PER_WINDOW`] in the current window. A database error
    /// refuses the registration.
    pub async fn admit_registration(&self, client: IpAddr) -> Result<(), AccountError> {
        let key = format!("register:{}", address_key(client));
        let now = now();
        let window_over = rw::started_at.le(now - REGISTRATION_WINDOW);
        let (hits, started_at): (i32, PrimitiveDateTime) = with_conn!(self.db, write conn => diesel::insert_into(rw::table)
            .values((rw::key.eq(&key), rw::hits.eq(1), rw::started_at.eq(now)))
            .on_conflict(rw::key)
            .do_update()
            .set((
                rw::hits.eq(diesel::dsl::case_when::<_, _, Integer>(window_over, 1).otherwise(rw::hits + 1)),
                rw::started_at.eq(diesel::dsl::case_when::<_, _, Timestamp>(window_over, now).otherwise(rw::started_at)),
            ))
            .returning((rw::hits, rw::started_at))
            .get_result(conn)
            .await
            .map_err(DbError::from)?);
        if hits > REGISTRATIONS_PER_WINDOW {
            return Err(AccountError::RateLimited {
                retry_after: seconds_until(started_at + REGISTRATION_WINDOW, now),
            });
        }
        Ok(())
    }

    /// Deletes counts nobody needs any more; run by the housekeeping task.
    pub async fn forget_stale(&self) -> Result<usize, DbError> {
        let cutoff = now() - FORGET_AFTER;
        let failures = with_conn!(self.db, write conn => diesel::delete(lf::table.filter(lf::last_failed_at.lt(cutoff)))
            .execute(conn)
            .await?);
        let windows_cutoff = now() - REGISTRATION_WINDOW;
        let windows = with_conn!(self.db, write conn => diesel::delete(rw::table.filter(rw::started_at.lt(windows_cutoff)))
            .execute(conn)
            .await?);
        Ok(failures + windows)
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
