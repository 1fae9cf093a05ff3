//! Throttling: failed logins counted per username + client address and per
//! client address, and registrations per client address — in the database,
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
//! [`IN_PROGRESS_STALE`] only.
//!
//! Past a threshold a key is locked, for one second after the failure that
//! reached it and twice as long after each further one, up to [`MAX_LOCK`];
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

use diesel::prelude::*;
use diesel::sql_types::{Integer, Timestamp};
use diesel_async::RunQueryDsl;
use time::PrimitiveDateTime;
use tokio::sync::Notify;

use redis::aio::ConnectionManager;

use crate::sessions::redis::NOW;

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

/// The two counters one login attempt touches.
#[derive(Debug, Clone)]
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
    /// With Redis, the counts live there instead of in the database.
    redis: Option<RedisCounts>,
    /// Woken when an attempt on this instance finishes, per username + address.
    finished: Arc<Mutex<HashMap<String, Weak<Notify>>>>,
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
enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Throttle {
    /// Throttling backed by `db`, or by Redis when `redis` is given (the
    /// connection and key prefix of the session store).
    pub fn new(db: Db, redis: Option<(ConnectionManager, String)>) -> Self {
        Self {
            db,
            redis: redis.map(|(conn, prefix)| RedisCounts {
                conn,
                prefix,
                scripts: Arc::new(ThrottleScripts::new()),
            }),
            finished: Arc::default(),
        }
    }

    /// Lets a login attempt through once it holds a slot of both keys;
    /// `RateLimited` while either key is locked, or when no slot frees in
    /// [`WAIT_FOR_SLOT`]. A database error refuses the attempt.
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
                Ok(false) => return Err(AccountError::RateLimited { retry_after: 1 }),
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
        self.record(attempt, Outcome::Succeeded).await
    }

    /// Records a failed attempt against both keys.
    pub async fn failed(&self, attempt: Attempt) -> Result<(), AccountError> {
        self.record(attempt, Outcome::Failed).await
    }

    async fn record(&self, mut attempt: Attempt, outcome: Outcome) -> Result<(), AccountError> {
        attempt.recorded = true;
        let recorded = self.finish(&attempt.keys, outcome).await;
        attempt.finished.notify_one();
        recorded
    }

    fn finished_notify(&self, key: &str) -> Arc<Notify> {
        let mut all = lock(&self.finished);
        all.retain(|_, notify| notify.strong_count() > 0);
        if let Some(notify) = all.get(key).and_then(Weak::upgrade) {
            return notify;
        }
        let notify = Arc::new(Notify::new());
        all.insert(key.to_owned(), Arc::downgrade(&notify));
        notify
    }

    /// Takes a slot of both keys; `false` (holding none) when either has
    /// none free, `RateLimited` (holding none) when either is locked.
    async fn take_slots(&self, keys: &ThrottleKeys) -> Result<bool, AccountError> {
        let Some(user) = self.take_slot(&keys.user, USER_THRESHOLD).await? else {
            return Ok(false);
        };
        let Some(address) = self.take_slot(&keys.address, ADDRESS_THRESHOLD).await? else {
            self.finish_keys(&[&keys.user], Outcome::Cancelled).await?;
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
            });
        }
        Ok(true)
    }

    /// One statement: a slot of `key` is taken when its fresh attempts in
    /// progress plus its failures stay under `threshold`, or when none is in
    /// progress (one at a time once past it). Taken, the key's failures and
    /// last failure, to tell whether it is locked.
    async fn take_slot(
        &self,
        key: &str,
        threshold: i32,
    ) -> Result<Option<(i32, PrimitiveDateTime)>, AccountError> {
        if let Some(redis) = &self.redis {
            return Ok(redis.take_slot(key, threshold).await?);
        }
        Ok(self.take_slot_sql(key, threshold).await?)
    }

    async fn take_slot_sql(
        &self,
        key: &str,
        threshold: i32,
    ) -> Result<Option<(i32, PrimitiveDateTime)>, DbError> {
        let now = now();
        let fresh = lf::in_progress_at.gt(now - IN_PROGRESS_STALE);
        let in_progress =
            diesel::dsl::case_when::<_, _, Integer>(fresh, lf::in_progress).otherwise(0);
        let upsert = diesel::insert_into(lf::table)
            .values((
                lf::key.eq(key),
                lf::failures.eq(0),
                lf::last_failed_at.eq(now),
                lf::in_progress.eq(1),
                lf::in_progress_at.eq(now),
            ))
            .on_conflict(lf::key)
            .do_update()
            .set((
                lf::in_progress.eq(in_progress + 1),
                lf::in_progress_at.eq(now),
            ));
        // `ON CONFLICT … DO UPDATE … WHERE`: the update happens only then.
        let upsert = diesel::query_dsl::methods::FilterDsl::filter(
            upsert,
            in_progress
                .eq(0)
                .or((lf::failures + in_progress).lt(threshold)),
        )
        .returning((lf::failures, lf::last_failed_at));
        Ok(with_conn!(self.db, write conn => upsert.get_result(conn).await.optional()?))
    }

    /// Frees an attempt's slots in one statement, recording how it ended: a
    /// failure counts against both keys, a success clears the username +
    /// address's failures (and leaves the address's as they are).
    async fn finish(&self, keys: &ThrottleKeys, outcome: Outcome) -> Result<(), AccountError> {
        self.finish_keys(&[&keys.user, &keys.address], outcome)
            .await
    }

    async fn finish_keys(&self, keys: &[&str], outcome: Outcome) -> Result<(), AccountError> {
        if let Some(redis) = &self.redis {
            return Ok(redis.finish(keys, outcome).await?);
        }
        Ok(self.finish_keys_sql(keys, outcome).await?)
    }

    async fn finish_keys_sql(&self, keys: &[&str], outcome: Outcome) -> Result<(), DbError> {
        let now = now();
        let in_progress =
            diesel::dsl::case_when::<_, _, Integer>(lf::in_progress.gt(0), lf::in_progress - 1)
                .otherwise(0);
        let target = lf::table.filter(lf::key.eq_any(keys));
        with_conn!(self.db, write conn => match outcome {
            Outcome::Failed => diesel::update(target)
                .set((
                    lf::in_progress.eq(in_progress),
                    lf::failures.eq(lf::failures + 1),
                    lf::last_failed_at.eq(now),
                ))
                .execute(conn)
                .await?,
            Outcome::Succeeded => diesel::update(target)
                .set((
                    lf::in_progress.eq(in_progress),
                    // Only the username + address key (`user:…`) is cleared.
                    lf::failures.eq(diesel::dsl::case_when::<_, _, Integer>(
                        lf::key.like("user:%"),
                        0,
                    )
                    .otherwise(lf::failures)),
                ))
                .execute(conn)
                .await?,
            Outcome::Cancelled => diesel::update(target)
                .set(lf::in_progress.eq(in_progress))
                .execute(conn)
                .await?,
        });
        Ok(())
    }

    /// Counts a registration from `client`; `RateLimited` once this window
    /// and the one before hold more than [`REGISTRATIONS_PER_WINDOW`] (any
    /// span of one window overlaps at most those two). A database error
    /// refuses the registration.
    pub async fn admit_registration(&self, client: IpAddr) -> Result<(), AccountError> {
        let key = format!("register:{}", address_key(client));
        let (hits, previous, started_at) = match &self.redis {
            Some(redis) => redis.count_registration(&key).await?,
            None => self.count_registration_sql(&key).await?,
        };
        if hits + previous > REGISTRATIONS_PER_WINDOW {
            return Err(AccountError::RateLimited {
                retry_after: seconds_until(started_at + REGISTRATION_WINDOW, now()),
            });
        }
        Ok(())
    }

    /// Counts a registration under `key`: this window's hits, the previous
    /// window's, and when this window started.
    async fn count_registration_sql(
        &self,
        key: &str,
    ) -> Result<(i32, i32, PrimitiveDateTime), DbError> {
        let now = now();
        let window_over = rw::started_at.le(now - REGISTRATION_WINDOW);
        let two_over = rw::started_at.le(now - 2 * REGISTRATION_WINDOW);
        let (hits, previous, started_at): (i32, i32, PrimitiveDateTime) = with_conn!(self.db, write conn => diesel::insert_into(rw::table)
            .values((rw::key.eq(key), rw::hits.eq(1), rw::previous_hits.eq(0), rw::started_at.eq(now)))
            .on_conflict(rw::key)
            .do_update()
            .set((
                rw::previous_hits.eq(diesel::dsl::case_when::<_, _, Integer>(two_over, 0)
                    .when(window_over, rw::hits)
                    .otherwise(rw::previous_hits)),
                rw::hits.eq(diesel::dsl::case_when::<_, _, Integer>(window_over, 1).otherwise(rw::hits + 1)),
                rw::started_at.eq(diesel::dsl::case_when::<_, _, Timestamp>(window_over, now).otherwise(rw::started_at)),
            ))
            .returning((rw::hits, rw::previous_hits, rw::started_at))
            .get_result(conn)
            .await?);
        Ok((hits, previous, started_at))
    }

    /// Deletes counts nobody needs any more; run by the housekeeping task
    /// (Redis expires its counts itself).
    pub async fn forget_stale(&self) -> Result<usize, DbError> {
        if self.redis.is_some() {
            return Ok(0);
        }
        let cutoff = now() - FORGET_AFTER;
        let idle = lf::in_progress_at
            .is_null()
            .or(lf::in_progress_at.lt(now() - IN_PROGRESS_STALE));
        let failures = with_conn!(self.db, write conn => diesel::delete(lf::table
            .filter(lf::last_failed_at.lt(cutoff))
            .filter(idle))
            .execute(conn)
            .await?);
        let windows_cutoff = now() - 2 * REGISTRATION_WINDOW;
        let windows = with_conn!(self.db, write conn => diesel::delete(rw::table.filter(rw::started_at.lt(windows_cutoff)))
            .execute(conn)
            .await?);
        Ok(failures + windows)
    }
}
/// The counts in Redis: `{P}:t:<key>`, one hash per key, each expiring a
/// day after its last change; every change is one script on Redis' clock.
#[derive(Clone)]
struct RedisCounts {
    conn: ConnectionManager,
    prefix: String,
    scripts: Arc<ThrottleScripts>,
}

/// KEYS: the key's hash. ARGV: threshold, stale ms, forget ms.
/// {taken, failures, last failure ms}.
const TAKE_SLOT: &str = "local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0') \
    local p = tonumber(redis.call('HGET', KEYS[1], 'p') or '0') \
    local pat = tonumber(redis.call('HGET', KEYS[1], 'pat') or '0') \
    local l = tonumber(redis.call('HGET', KEYS[1], 'l') or '0') \
    if now - pat > tonumber(ARGV[2]) then p = 0 end \
    if p == 0 or f + p < tonumber(ARGV[1]) then \
      redis.call('HSET', KEYS[1], 'p', p + 1, 'pat', now) \
      redis.call('PEXPIRE', KEYS[1], ARGV[3]) \
      return {1, f, l} \
    end \
    return {0, f, l}";

/// KEYS: the keys' hashes. ARGV: outcome (failed, succeeded, cancelled),
/// forget ms, the hash whose failures a success clears.
const FINISH: &str = "for _, key in ipairs(KEYS) do \
      if redis.call('EXISTS', key) == 1 then \
        local p = tonumber(redis.call('HGET', key, 'p') or '0') \
        if p > 0 then redis.call('HSET', key, 'p', p - 1) end \
        if ARGV[1] == 'failed' then \
          redis.call('HINCRBY', key, 'f', 1) \
          redis.call('HSET', key, 'l', now) \
        elseif ARGV[1] == 'succeeded' and key == ARGV[3] then \
          redis.call('HSET', key, 'f', 0) \
        end \
        redis.call('PEXPIRE', key, ARGV[2]) \
      end \
    end \
    return 1";

/// KEYS: the window's hash. ARGV: window ms. {hits, previous hits, start ms}.
const REGISTER: &str = "local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0') \
    local h = tonumber(redis.call('HGET', KEYS[1], 'h') or '0') \
    local ph = tonumber(redis.call('HGET', KEYS[1], 'ph') or '0') \
    local w = tonumber(ARGV[1]) \
    if s <= now - 2 * w then ph = 0 h = 1 s = now \
    elseif s <= now - w then ph = h h = 1 s = now \
    else h = h + 1 end \
    redis.call('HSET', KEYS[1], 's', s, 'h', h, 'ph', ph) \
    redis.call('PEXPIRE', KEYS[1], 2 * w) \
    return {h, ph, s}";

struct ThrottleScripts {
    take_slot: redis::Script,
    finish: redis::Script,
    register: redis::Script,
}

impl ThrottleScripts {
    fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{NOW}{body}"));
        Self {
            take_slot: script(TAKE_SLOT),
            finish: script(FINISH),
            register: script(REGISTER),
        }
    }
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A Unix-milliseconds time from Redis as stored times are: UTC, no offset.
fn from_ms(at: i64) -> PrimitiveDateTime {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    PrimitiveDateTime::new(at.date(), at.time())
}

impl RedisCounts {
    fn key(&self, key: &str) -> String {
        format!("{{{}}}:t:{key}", self.prefix)
    }

    async fn take_slot(
        &self,
        key: &str,
        threshold: i32,
    ) -> Result<Option<(i32, PrimitiveDateTime)>, redis::RedisError> {
        let mut conn = self.conn.clone();
        let (taken, failures, last): (i64, i32, i64) = self
            .scripts
            .take_slot
            .key(self.key(key))
            .arg(threshold)
            .arg(ms(IN_PROGRESS_STALE))
            .arg(ms(FORGET_AFTER))
            .invoke_async(&mut conn)
            .await?;
        Ok((taken == 1).then(|| (failures, from_ms(last))))
    }

    async fn finish(&self, keys: &[&str], outcome: Outcome) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        let outcome = match outcome {
            Outcome::Failed => "failed",
            Outcome::Succeeded => "succeeded",
            Outcome::Cancelled => "cancelled",
        };
        let mut invocation = self.scripts.finish.prepare_invoke();
        for key in keys {
            invocation.key(self.key(key));
        }
        // Only the username + address key (`user:…`) is cleared.
        let cleared = keys
            .iter()
            .find(|key| key.starts_with("user:"))
            .map(|key| self.key(key))
            .unwrap_or_default();
        let _: i64 = invocation
            .arg(outcome)
            .arg(ms(FORGET_AFTER))
            .arg(cleared)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn count_registration(
        &self,
        key: &str,
    ) -> Result<(i32, i32, PrimitiveDateTime), redis::RedisError> {
        let mut conn = self.conn.clone();
        let (hits, previous, started): (i32, i32, i64) = self
            .scripts
            .register
            .key(self.key(key))
            .arg(ms(REGISTRATION_WINDOW))
            .invoke_async(&mut conn)
            .await?;
        Ok((hits, previous, from_ms(started)))
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
