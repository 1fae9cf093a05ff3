//! A tower-sessions store over our own database (no maintained one exists
//! for diesel): the `sessions` table, keyed by a SHA-256 of the session ID so
//! that a copy of the table cannot be replayed as cookies.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, PrimitiveDateTime};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use crate::accounts::User;
use crate::config::RedisConfig;
use crate::db::schema::{sessions, users};
use crate::db::{Db, DbError, now, with_conn};

/// Sessions in the SQL database.
#[derive(Clone)]
pub struct SqlSessionStore {
    db: Db,
}

impl fmt::Debug for SqlSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SqlSessionStore")
    }
}

/// The key a session is stored under: the SHA-256 of its ID.
pub(crate) fn id_hash(id: &Id) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(id.0.to_le_bytes()))
}

/// The handle a user sees for a session: a hash of its stored key, so that
/// neither the cookie's value nor the stored key can be recovered from it.
pub(crate) fn handle(id_hash: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"blogql session handle\0");
    digest.update(id_hash.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.finalize())
}

fn utc(at: OffsetDateTime) -> PrimitiveDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    PrimitiveDateTime::new(at.date(), at.time())
}

impl From<DbError> for session_store::Error {
    fn from(err: DbError) -> Self {
        Self::Backend(err.to_string())
    }
}

fn encode(record: &Record) -> session_store::Result<String> {
    serde_json::to_string(&super::stored_data(record))
        .map_err(|err| session_store::Error::Encode(err.to_string()))
}

impl SqlSessionStore {
    /// A store backed by `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Deletes every expired session; run by the housekeeping task.
    pub async fn delete_expired(&self) -> Result<usize, DbError> {
        let now = now();
        Ok(
            with_conn!(self.db, write conn => diesel::delete(sessions::table.filter(sessions::expires_at.le(now)))
            .execute(conn)
            .await?),
        )
    }

    /// `user_id`'s live sessions; `current` is the asking session's key.
    pub async fn list(
        &self,
        user_id: i64,
        current: Option<&str>,
    ) -> Result<Vec<super::SessionInfo>, DbError> {
        let rows: Vec<(String, String)> = with_conn!(self.db, conn => sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::expires_at.gt(now()))
            .select((sessions::id_hash, sessions::data))
            .load(conn)
            .await?);
        Ok(rows
            .iter()
            .filter_map(|(id_hash, data)| super::SessionInfo::from_stored(id_hash, data, current))
            .collect())
    }

    /// Deletes `user_id`'s session with this handle; `false` when the user
    /// has no live session with it.
    pub async fn revoke(&self, user_id: i64, handle: &str) -> Result<bool, DbError> {
        let keys: Vec<String> = with_conn!(self.db, conn => sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::expires_at.gt(now()))
            .select(sessions::id_hash)
            .load(conn)
            .await?);
        let Some(key) = keys.into_iter().find(|key| self::handle(key) == handle) else {
            return Ok(false);
        };
        let deleted = with_conn!(self.db, write conn => diesel::delete(sessions::table
            .filter(sessions::id_hash.eq(&key))
            .filter(sessions::user_id.eq(user_id)))
            .execute(conn)
            .await?);
        Ok(deleted == 1)
    }

    /// Deletes every session of `user_id` but the one stored under `keep`;
    /// how many live ones there were.
    pub async fn revoke_others(&self, user_id: i64, keep: Option<&str>) -> Result<usize, DbError> {
        let keep = keep.unwrap_or_default();
        let live = with_conn!(self.db, write conn => diesel::delete(sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::id_hash.ne(keep))
            .filter(sessions::expires_at.gt(now())))
            .execute(conn)
            .await?);
        // The expired ones go too; they were no longer anyone's.
        with_conn!(self.db, write conn => diesel::delete(sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::id_hash.ne(keep)))
            .execute(conn)
            .await?);
        Ok(live)
    }

    /// Inserts unless the ID exists; `false` on a collision.
    async fn insert_new(&self, record: &Record) -> session_store::Result<bool> {
        let data = encode(record)?;
        let inserted = with_conn!(self.db, write conn => diesel::insert_into(sessions::table)
            .values((
                sessions::id_hash.eq(id_hash(&record.id)),
                sessions::user_id.eq(super::user_id_of(record)),
                sessions::data.eq(&data),
                sessions::created_at.eq(now()),
                sessions::expires_at.eq(utc(record.expiry_date)),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await
            .map_err(DbError::from)?);
        if inserted == 1
            && let Some(user_id) = super::user_id_of(record)
        {
            self.keep_newest(user_id).await?;
        }
        Ok(inserted == 1)
    }

    /// Ends a user's oldest sessions beyond [`super::MAX_SESSIONS_PER_USER`].
    async fn keep_newest(&self, user_id: i64) -> Result<(), DbError> {
        let oldest: Vec<String> = with_conn!(self.db, conn => sessions::table
            .filter(sessions::user_id.eq(user_id))
            .order((sessions::created_at.desc(), sessions::id_hash.desc()))
            .offset(super::MAX_SESSIONS_PER_USER as i64)
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
}

#[async_trait::async_trait]
impl SessionStore for SqlSessionStore {
    /// Never overwrites: on the (astronomically unlikely) collision, draws a new ID.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        while !self.insert_new(record).await? {
            record.id = Id::default();
        }
        Ok(())
    }

    /// Updates an existing session only: a session deleted meanwhile (signed
    /// out elsewhere, expired) stays deleted.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = encode(record)?;
        with_conn!(self.db, write conn => diesel::update(sessions::table.find(id_hash(&record.id)))
            .set((
                sessions::user_id.eq(super::user_id_of(record)),
                sessions::data.eq(&data),
                sessions::expires_at.eq(utc(record.expiry_date)),
            ))
            .execute(conn)
            .await
            .map_err(DbError::from)?);
        Ok(())
    }

    /// The session, unless it is missing or expired, with its user read in
    /// the same query (so `me` costs one statement, not two).
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let row: Option<(String, PrimitiveDateTime, Option<User>)> = with_conn!(self.db, conn => sessions::table
            .left_join(users::table)
            .filter(sessions::id_hash.eq(id_hash(id)))
            .filter(sessions::expires_at.gt(now()))
            .select((sessions::data, sessions::expires_at, Option::<User>::as_select()))
            .first(conn)
            .await
            .optional()
            .map_err(DbError::from)?);
        let Some((data, expires_at, user)) = row else {
            return Ok(None);
        };
        let data = serde_json::from_str(&data)
            .map_err(|err| session_store::Error::Decode(err.to_string()))?;
        let mut record = Record {
            id: *id,
            data,
            expiry_date: expires_at.assume_utc(),
        };
        if let Some(user) = user {
            super::attach_user(&mut record, &user);
        }
        Ok(Some(record))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        with_conn!(self.db, write conn => diesel::delete(sessions::table.find(id_hash(id)))
            .execute(conn)
            .await
            .map_err(DbError::from)?);
        Ok(())
    }
}

/// Where sessions live: the SQL database, or Redis when `REDIS_URL` is set.
/// The same rules hold on both.
#[derive(Debug, Clone)]
pub enum Store {
    Sql(SqlSessionStore),
    Redis(super::redis::RedisSessionStore),
}

impl Store {
    /// The store the settings name: Redis when `redis` is set, else `db`.
    /// Why Redis cannot be reached, if it cannot.
    pub async fn open(db: &Db, redis: Option<&RedisConfig>) -> Result<Self, String> {
        Ok(match redis {
            Some(redis) => Self::Redis(
                super::redis::RedisSessionStore::connect(&redis.url, &redis.key_prefix).await?,
            ),
            None => Self::Sql(SqlSessionStore::new(db.clone())),
        })
    }

    /// `user_id`'s live sessions; `current` is the asking session's key.
    pub async fn list(
        &self,
        user_id: i64,
        current: Option<&str>,
    ) -> Result<Vec<super::SessionInfo>, super::SessionError> {
        Ok(match self {
            Self::Sql(store) => store.list(user_id, current).await?,
            Self::Redis(store) => store.list(user_id, current).await?,
        })
    }

    /// Ends `user_id`'s session with this handle; `false` if it has none.
    pub async fn revoke(&self, user_id: i64, handle: &str) -> Result<bool, super::SessionError> {
        Ok(match self {
            Self::Sql(store) => store.revoke(user_id, handle).await?,
            Self::Redis(store) => store.revoke(user_id, handle).await?,
        })
    }

    /// Ends every session of `user_id` but the one stored under `keep`.
    pub async fn revoke_others(
        &self,
        user_id: i64,
        keep: Option<&str>,
    ) -> Result<usize, super::SessionError> {
        Ok(match self {
            Self::Sql(store) => store.revoke_others(user_id, keep).await?,
            Self::Redis(store) => store.revoke_others(user_id, keep).await?,
        })
    }

    /// Deletes expired sessions (Redis expires its keys itself).
    pub async fn delete_expired(&self) -> Result<usize, super::SessionError> {
        Ok(match self {
            Self::Sql(store) => store.delete_expired().await?,
            Self::Redis(_) => 0,
        })
    }

    /// Answers when a separate session store does (the SQL one is the
    /// database, probed by itself).
    pub async fn ping(&self) -> Result<(), super::SessionError> {
        match self {
            Self::Sql(_) => Ok(()),
            Self::Redis(store) => Ok(store.ping().await?),
        }
    }
}

#[async_trait::async_trait]
impl SessionStore for Store {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Self::Sql(store) => store.create(record).await,
            Self::Redis(store) => {
                while !store.create(record).await? {
                    record.id = Id::default();
                }
                Ok(())
            }
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Self::Sql(store) => store.save(record).await,
            Self::Redis(store) => Ok(store.save(record).await?),
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Self::Sql(store) => SessionStore::load(store, id).await,
            Self::Redis(store) => store.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Self::Sql(store) => store.delete(id).await,
            Self::Redis(store) => {
                store.delete_hash(&id_hash(id), None).await?;
                Ok(())
            }
        }
    }
}
