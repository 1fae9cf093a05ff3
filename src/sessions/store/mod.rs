//! Where sessions live: the SQL database, or Redis when `REDIS_URL` is set,
//! chosen once at start-up. Both arms do the same operations; what is the
//! same on both (drawing a new ID on a collision, revoking by handle) is
//! written once here, above them.
//!
//! Every store keeps a session under its [`StoredKey`] with its expiry, and
//! an index by user (an indexed column; a sorted set) so that a user's
//! sessions can be listed and ended. Both enforce the same rules: creating
//! never overwrites, updating never brings back a session deleted meanwhile
//! (an in-flight request must not resurrect a revoked session), and a user
//! keeps at most [`MAX_SESSIONS_PER_USER`] (signing in once more ends the
//! oldest).

mod redis;
mod sql;

use super::keys::{Handle, SessionId, StoredKey};
use super::record::Stored;
use crate::accounts::User;
use crate::db::{Db, DbError};
use crate::redis::{Redis, RedisError};
pub use redis::RedisStore;
pub use sql::SqlStore;

/// Most live sessions one user may have: a script that logs in without a
/// cookie jar cannot pile them up, and listing or ending them stays cheap.
pub const MAX_SESSIONS_PER_USER: usize = 100;

/// A session store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session store: {0}")]
    Db(#[from] DbError),
    #[error("session store: {0}")]
    Redis(#[from] RedisError),
    /// The server stopped before an ending finished.
    #[error("the server stopped before the session ended")]
    Stopped,
    /// The session's user could not be read.
    #[error("reading a session's user: {0}")]
    Users(std::sync::Arc<DbError>),
}

/// The session store this instance uses.
#[derive(Debug, Clone)]
pub enum SessionStore {
    Sql(SqlStore),
    Redis(RedisStore),
}

/// Runs the same operation on whichever store this is.
macro_rules! on_store {
    ($store:expr, $arm:ident => $call:expr) => {
        match $store {
            SessionStore::Sql($arm) => Ok($call.await?),
            SessionStore::Redis($arm) => Ok($call.await?),
        }
    };
}

impl SessionStore {
    /// The store the settings name: Redis when there is one, else `db`.
    pub fn new(db: &Db, redis: Option<&Redis>) -> Self {
        match redis {
            Some(redis) => Self::Redis(RedisStore::new(redis.clone())),
            None => Self::Sql(SqlStore::new(db.clone())),
        }
    }

    /// What the operator is told this store is.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Sql(_) => "the SQL database",
            Self::Redis(_) => "Redis",
        }
    }

    /// Stores a new session under a new ID, drawing another on the
    /// (astronomically unlikely) collision; never overwrites.
    pub async fn create(&self, stored: &Stored) -> Result<SessionId, StoreError> {
        loop {
            let id = SessionId::random();
            if self.insert(&id.stored_key(), stored).await? {
                return Ok(id);
            }
        }
    }

    async fn insert(&self, key: &StoredKey, stored: &Stored) -> Result<bool, StoreError> {
        on_store!(self, store => store.insert(key, stored))
    }

    /// Rewrites a session that still exists; one deleted meanwhile stays
    /// deleted (`false`).
    pub async fn update(&self, key: &StoredKey, stored: &Stored) -> Result<bool, StoreError> {
        on_store!(self, store => store.update(key, stored))
    }

    /// The first of `keys` (in their order) whose session is live, with
    /// its user when the store reads it in the same round trip: one round
    /// trip however many keys there are.
    pub async fn load_first(
        &self,
        keys: &[StoredKey],
    ) -> Result<Option<(usize, Stored, Option<User>)>, StoreError> {
        if keys.is_empty() {
            return Ok(None);
        }
        on_store!(self, store => store.load_first(keys))
    }

    /// Deletes the session under `key`; whether there was one.
    pub async fn delete(&self, key: &StoredKey) -> Result<bool, StoreError> {
        on_store!(self, store => store.delete(key, None))
    }

    /// `user_id`'s live sessions, with their keys, in no particular order.
    pub async fn list(&self, user_id: i64) -> Result<Vec<(StoredKey, Stored)>, StoreError> {
        on_store!(self, store => store.list(user_id))
    }

    /// Deletes `user_id`'s session with this handle; `false` when the user
    /// has no live session with it (nobody else's is ever touched).
    pub async fn revoke(&self, user_id: i64, handle: &Handle) -> Result<bool, StoreError> {
        let sessions = self.list(user_id).await?;
        let Some((key, _)) = sessions.iter().find(|(key, _)| key.handle() == *handle) else {
            return Ok(false);
        };
        on_store!(self, store => store.delete(key, Some(user_id)))
    }

    /// Deletes every session of `user_id` but the one under `except`; how
    /// many live ones there were.
    pub async fn delete_of_user(
        &self,
        user_id: i64,
        except: Option<&StoredKey>,
    ) -> Result<usize, StoreError> {
        on_store!(self, store => store.delete_of_user(user_id, except))
    }

    /// Deletes expired sessions (Redis expires its keys itself).
    pub async fn delete_expired(&self) -> Result<usize, StoreError> {
        match self {
            Self::Sql(store) => Ok(store.delete_expired().await?),
            Self::Redis(_) => Ok(0),
        }
    }

    /// Answers when a separate session store does (the SQL one is the
    /// database, probed by itself).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sql(_) => Ok(()),
            Self::Redis(store) => Ok(store.ping().await?),
        }
    }
}
