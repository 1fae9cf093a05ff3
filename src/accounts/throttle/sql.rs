//! The throttle's counts in the SQL database: `login_failures` (one row per
//! key: failures, the last one, attempts in progress) and `rate_windows`
//! (registrations per address and window). Each change is one statement.

use diesel::prelude::*;
use diesel::sql_types::{Integer, Timestamp};
use diesel_async::RunQueryDsl;
use time::PrimitiveDateTime;

use super::{CounterKey, FORGET_AFTER, IN_PROGRESS_STALE, Outcome, REGISTRATION_WINDOW};
use crate::db::schema::{login_failures as lf, rate_windows as rw};
use crate::db::{Db, DbError, now, with_conn};

/// Counts in the database.
#[derive(Clone)]
pub struct SqlCounts {
    db: Db,
}

impl SqlCounts {
    /// Counts kept in `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// See [`super::Counts::take_slot`]: one conditional upsert.
    pub async fn take_slot(
        &self,
        key: &CounterKey,
        threshold: i32,
    ) -> Result<Option<(i32, PrimitiveDateTime)>, DbError> {
        let now = now();
        let fresh = lf::in_progress_at.gt(now - IN_PROGRESS_STALE);
        let in_progress =
            diesel::dsl::case_when::<_, _, Integer>(fresh, lf::in_progress).otherwise(0);
        let upsert = diesel::insert_into(lf::table)
            .values((
                lf::key.eq(key.as_str()),
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

    /// See [`super::Counts::finish`]: one statement.
    pub async fn finish(&self, keys: &[&CounterKey], outcome: Outcome<'_>) -> Result<(), DbError> {
        let now = now();
        let keys: Vec<&str> = keys.iter().map(|key| key.as_str()).collect();
        let in_progress =
            diesel::dsl::case_when::<_, _, Integer>(lf::in_progress.gt(0), lf::in_progress - 1)
                .otherwise(0);
        let target = lf::table.filter(lf::key.eq_any(&keys));
        with_conn!(self.db, write conn => match outcome {
            Outcome::Failed => diesel::update(target)
                .set((
                    lf::in_progress.eq(in_progress),
                    lf::failures.eq(lf::failures + 1),
                    lf::last_failed_at.eq(now),
                ))
                .execute(conn)
                .await?,
            Outcome::Succeeded { clears } => diesel::update(target)
                .set((
                    lf::in_progress.eq(in_progress),
                    lf::failures.eq(diesel::dsl::case_when::<_, _, Integer>(
                        lf::key.eq(clears.as_str()),
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

    /// See [`super::Counts::count_registration`]: one upsert.
    pub async fn count_registration(
        &self,
        key: &CounterKey,
    ) -> Result<(i32, i32, PrimitiveDateTime), DbError> {
        let now = now();
        let window_over = rw::started_at.le(now - REGISTRATION_WINDOW);
        let two_over = rw::started_at.le(now - 2 * REGISTRATION_WINDOW);
        let (hits, previous, started_at): (i32, i32, PrimitiveDateTime) = with_conn!(self.db, write conn => diesel::insert_into(rw::table)
            .values((rw::key.eq(key.as_str()), rw::hits.eq(1), rw::previous_hits.eq(0), rw::started_at.eq(now)))
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

    /// Deletes counts nobody needs any more.
    pub async fn forget_stale(&self) -> Result<usize, DbError> {
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
