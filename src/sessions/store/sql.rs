//! Sessions in the SQL database: the `sessions` table, keyed by the stored
//! key, with the user's id in an indexed column (and a foreign key, so a
//! deleted user's sessions go with them).

use std::fmt;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::PrimitiveDateTime;

use super::MAX_SESSIONS_PER_USER;
use crate::accounts::User;
use crate::clock::Millis;
use crate::db::schema::{sessions, users};
use crate::db::{Db, DbError, now, with_conn};
use crate::sessions::keys::StoredKey;
use crate::sessions::record::Stored;

/// Sessions in the SQL database.
#[derive(Clone)]
pub struct SqlStore {
    db: Db,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqlStore")
    }
}

impl SqlStore {
    /// A store backed by `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Inserts unless the key exists (`false`), then ends the user's oldest
    /// sessions beyond the cap.
    pub async fn insert(&self, key: &StoredKey, stored: &Stored) -> Result<bool, DbError> {
        let user_id = stored.signed_in.user_id;
        let inserted = with_conn!(self.db, write conn => diesel::insert_into(sessions::table)
            .values((
                sessions::id_hash.eq(key.as_str()),
                sessions::user_id.eq(user_id),
                sessions::data.eq(stored.data()),
                sessions::created_at.eq(now()),
                sessions::expires_at.eq(stored.expires_at.stored()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?);
        if inserted == 1 {
            self.keep_newest(user_id).await?;
        }
        Ok(inserted == 1)
    }

    /// Ends a user's oldest sessions beyond [`MAX_SESSIONS_PER_USER`].
    async fn keep_newest(&self, user_id: i64) -> Result<(), DbError> {
        let oldest: Vec<String> = with_conn!(self.db, conn => sessions::table
            .filter(sessions::user_id.eq(user_id))
            .order((sessions::created_at.desc(), sessions::id_hash.desc()))
            .offset(MAX_SESSIONS_PER_USER as i64)
            .limit(1000)
            .select(sessions::id_hash)
            .load(conn)
            .await?);
        if !oldest.is_empty() {
            with_conn!(self.db, write conn => diesel::delete(sessions::table
                .filter(sessions::id_hash.eq_any(&oldest)))
                .execute(conn)
                .await?);
        }
        Ok(())
    }

    /// Updates the session if it still exists; whether it did.
    pub async fn update(&self, key: &StoredKey, stored: &Stored) -> Result<bool, DbError> {
        let updated = with_conn!(self.db, write conn => diesel::update(sessions::table.find(key.as_str()))
            .set((
                sessions::data.eq(stored.data()),
                sessions::expires_at.eq(stored.expires_at.stored()),
            ))
            .execute(conn)
            .await?);
        Ok(updated == 1)
    }

    /// The first live session of `keys`, with its user read in the same
    /// query (so a signed-in request costs one statement). One key, the
    /// usual case, is one prepared statement the connection keeps; several
    /// are one `IN` query.
    pub async fn load_first(
        &self,
        keys: &[StoredKey],
    ) -> Result<Option<(usize, Stored, Option<User>)>, DbError> {
        type Row = (String, String, PrimitiveDateTime, Option<User>);
        let rows: Vec<Row> = match keys {
            [key] => with_conn!(self.db, conn => sessions::table
                .left_join(users::table)
                .filter(sessions::id_hash.eq(key.as_str()))
                .filter(sessions::expires_at.gt(now()))
                .select((sessions::id_hash, sessions::data, sessions::expires_at, Option::<User>::as_select()))
                .first(conn)
                .await
                .optional()?)
            .into_iter()
            .collect(),
            _ => {
                let wanted: Vec<&str> = keys.iter().map(StoredKey::as_str).collect();
                with_conn!(self.db, conn => sessions::table
                    .left_join(users::table)
                    .filter(sessions::id_hash.eq_any(&wanted))
                    .filter(sessions::expires_at.gt(now()))
                    .select((sessions::id_hash, sessions::data, sessions::expires_at, Option::<User>::as_select()))
                    .load(conn)
                    .await?)
            }
        };
        let first = rows
            .into_iter()
            .filter_map(|(key, data, expires_at, user)| {
                let at = keys.iter().position(|wanted| wanted.as_str() == key)?;
                let stored = Stored::from_data(&data, Millis::from_stored(expires_at))?;
                Some((at, stored, user))
            })
            .min_by_key(|(at, _, _)| *at);
        Ok(first)
    }

    /// Deletes the session under `key` (only when it is `owner`'s, if given).
    pub async fn delete(&self, key: &StoredKey, owner: Option<i64>) -> Result<bool, DbError> {
        let deleted = with_conn!(self.db, write conn => match owner {
            Some(owner) => diesel::delete(sessions::table
                .filter(sessions::id_hash.eq(key.as_str()))
                .filter(sessions::user_id.eq(owner)))
                .execute(conn)
                .await?,
            None => diesel::delete(sessions::table.find(key.as_str()))
                .execute(conn)
                .await?,
        });
        Ok(deleted == 1)
    }

    /// `user_id`'s live sessions.
    pub async fn list(&self, user_id: i64) -> Result<Vec<(StoredKey, Stored)>, DbError> {
        let rows: Vec<(String, String, PrimitiveDateTime)> = with_conn!(self.db, conn => sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::expires_at.gt(now()))
            .select((sessions::id_hash, sessions::data, sessions::expires_at))
            .load(conn)
            .await?);
        Ok(rows
            .into_iter()
            .filter_map(|(key, data, expires_at)| {
                let stored = Stored::from_data(&data, Millis::from_stored(expires_at))?;
                Some((StoredKey::from_stored(key), stored))
            })
            .collect())
    }

    /// Deletes every session of `user_id` but `except`; how many live ones
    /// there were (the expired ones go too).
    pub async fn delete_of_user(
        &self,
        user_id: i64,
        except: Option<&StoredKey>,
    ) -> Result<usize, DbError> {
        let except = except.map_or("", StoredKey::as_str);
        let live = with_conn!(self.db, write conn => diesel::delete(sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::id_hash.ne(except))
            .filter(sessions::expires_at.gt(now())))
            .execute(conn)
            .await?);
        with_conn!(self.db, write conn => diesel::delete(sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::id_hash.ne(except)))
            .execute(conn)
            .await?);
        Ok(live)
    }

    /// Deletes every expired session; run by the housekeeping task.
    pub async fn delete_expired(&self) -> Result<usize, DbError> {
        let now = now();
        Ok(
            with_conn!(self.db, write conn => diesel::delete(sessions::table
            .filter(sessions::expires_at.le(now)))
            .execute(conn)
            .await?),
        )
    }
}
