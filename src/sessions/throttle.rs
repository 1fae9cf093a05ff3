//! Login throttling: failed logins counted per username + client address and
//! per client address, in the database so every instance sees them.
//!
//! Past a threshold, each further failure locks the key for twice as long as
//! the one before, from one second up to [`MAX_LOCK`]. While a key is locked,
//! logins are refused before any password is checked. A success clears its
//! username + address count (not the address's: an attacker could otherwise
//! reset it by logging in to an account of their own).
//!
//! Failures are recorded after the password check, so on each instance the
//! attempts still in progress for a username + address count as failures
//! when deciding whether another may start ([`LoginThrottle::admit`]): a
//! burst of concurrent guesses gets no more checks than a sequence would.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};

use std::time::Duration;
use tokio::sync::Notify;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::PrimitiveDateTime;

use crate::accounts::{AccountError, now};
use crate::db::schema::login_failures as lf;
use crate::db::{Db, DbError, with_conn};

/// Failures in a row for one username from one address before locking.
const USER_THRESHOLD: i32 = 5;
/// Failures from one address, whatever the usernames, before locking.
const ADDRESS_THRESHOLD: i32 = 100;
/// The longest lock.
const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// A count with no failure for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// The two counters one login attempt touches.
pub struct ThrottleKeys {
    user: String,
    address: String,
}

impl ThrottleKeys {
    /// The keys for `username` (in any case) from `client`. IPv6 clients are
    /// counted per /64, the block one subscriber typically holds.
    pub fn new(username: &str, client: IpAddr) -> Self {
        let address = match client {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let segments = v6.segments();
                format!(
                    "{:x}:{:x}:{:x}:{:x}::/64",
                    segments[0], segments[1], segments[2], segments[3]
                )
            }
        };
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

/// What [`LoginThrottle::check`] found when it let an attempt through.
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    /// Failures on record for the username + address.
    user_failures: i32,
}

/// Counts failed logins and refuses logins while locked.
#[derive(Clone)]
pub struct LoginThrottle {
    db: Db,
    in_flight: Arc<Mutex<HashMap<String, Weak<InFlight>>>>,
}

/// Attempts in progress on this instance for one username + address.
#[derive(Default)]
struct InFlight {
    count: Mutex<i32>,
    finished: Notify,
}

/// One attempt in progress; its outcome is to be recorded before it drops.
pub struct Attempt {
    in_flight: Arc<InFlight>,
    /// What the throttle knew when it let the attempt through.
    pub standing: Standing,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        *lock(&self.in_flight.count) -= 1;
        // One slot freed: wake one waiter (in arrival order).
        self.in_flight.finished.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LoginThrottle {
    /// Throttling backed by `db`.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            in_flight: Arc::default(),
        }
    }

    /// Lets an attempt through once the failures on record plus the
    /// attempts in progress for its username + address stay under the
    /// threshold; `RateLimited` while locked. Attempts in progress count as
    /// failures until they are recorded, so a burst of concurrent guesses
    /// gets no more checks than a sequence would, while correct logins of
    /// one account still run side by side.
    pub async fn admit(&self, keys: &ThrottleKeys) -> Result<Attempt, AccountError> {
        let in_flight = {
            let mut all = lock(&self.in_flight);
            all.retain(|_, state| state.strong_count() > 0);
            match all.get(&keys.user).and_then(Weak::upgrade) {
                Some(state) => state,
                None => {
                    let state = Arc::new(InFlight::default());
                    all.insert(keys.user.clone(), Arc::downgrade(&state));
                    state
                }
            }
        };
        loop {
            let finished = in_flight.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let standing = match self.check(keys).await {
                Ok(standing) => standing,
                Err(refused) => {
                    // Leaving without the slot this wake-up offered: pass it on.
                    in_flight.finished.notify_one();
                    return Err(refused);
                }
            };
            {
                let mut count = lock(&in_flight.count);
                // Past the threshold (a lock has just expired), one at a time.
                if *count == 0 || standing.user_failures + *count < USER_THRESHOLD {
                    *count += 1;
                    return Ok(Attempt {
                        in_flight: in_flight.clone(),
                        standing,
                    });
                }
            }
            finished.await;
        }
    }

    /// `RateLimited` while either key is locked; otherwise whether the
    /// username + address has failures on record (for [`Self::succeeded`]).
    async fn check(&self, keys: &ThrottleKeys) -> Result<Standing, AccountError> {
        let now = now();
        let rows: Vec<(String, i32, Option<PrimitiveDateTime>)> = with_conn!(self.db, conn => lf::table
            .filter(lf::key.eq_any([&keys.user, &keys.address]))
            .select((lf::key, lf::failures, lf::locked_until))
            .load(conn)
            .await
            .map_err(DbError::from)?);
        let locked_until = rows
            .iter()
            .filter_map(|(_, _, until)| *until)
            .filter(|until| *until > now)
            .max();
        if let Some(until) = locked_until {
            let wait = (until - now).as_seconds_f64().ceil().max(1.0);
            return Err(AccountError::RateLimited {
                retry_after: wait as u64,
            });
        }
        Ok(Standing {
            user_failures: rows
                .iter()
                .find(|(key, _, _)| *key == keys.user)
                .map_or(0, |(_, failures, _)| *failures),
        })
    }

    /// Counts a failure against both keys, locking those past their threshold.
    pub async fn failed(&self, keys: &ThrottleKeys) -> Result<(), DbError> {
        let now = now();
        for (key, threshold) in keys.with_thresholds() {
            let failures: i32 = with_conn!(self.db, write conn => diesel::insert_into(lf::table)
                .values((lf::key.eq(key), lf::failures.eq(1), lf::last_failed_at.eq(now)))
                .on_conflict(lf::key)
                .do_update()
                .set((lf::failures.eq(lf::failures + 1), lf::last_failed_at.eq(now)))
                .returning(lf::failures)
                .get_result(conn)
                .await?);
            if failures >= threshold {
                let doublings = u32::try_from(failures - threshold)
                    .unwrap_or(u32::MAX)
                    .min(20);
                let lock = Duration::from_secs(1u64 << doublings).min(MAX_LOCK);
                with_conn!(self.db, write conn => diesel::update(lf::table.find(key))
                    .set(lf::locked_until.eq(now + lock))
                    .execute(conn)
                    .await?);
            }
        }
        Ok(())
    }

    /// Clears the username + address count after a successful login (no
    /// statement at all when there was none).
    pub async fn succeeded(&self, keys: &ThrottleKeys, standing: Standing) -> Result<(), DbError> {
        if standing.user_failures == 0 {
            return Ok(());
        }
        with_conn!(self.db, write conn => diesel::delete(lf::table.find(&keys.user))
            .execute(conn)
            .await?);
        Ok(())
    }

    /// Deletes counts with no recent failure; run by the housekeeping task.
    pub async fn forget_stale(&self) -> Result<usize, DbError> {
        let cutoff = now() - FORGET_AFTER;
        Ok(
            with_conn!(self.db, write conn => diesel::delete(lf::table.filter(lf::last_failed_at.lt(cutoff)))
            .execute(conn)
            .await?),
        )
    }
}
