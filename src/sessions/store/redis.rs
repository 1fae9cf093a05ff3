//! Sessions in Redis, for instances that scale out.
//!
//! Keys (see [`crate::redis`] for the prefix):
//! - `{P}:s:<stored key>` HASH — `d` the session data (JSON), `e` its expiry
//!   (Unix ms), `u` its user; `PEXPIREAT` is the expiry.
//! - `{P}:u:<user id>` ZSET — member the stored key, score its expiry; the
//!   key expires with its latest member. Pruned by score on every write and
//!   list (a member cannot expire by itself).
//!
//! Every change that touches both keys is one Lua script on Redis' clock.
//! The user is not kept here: it is read from the database with the session
//! (batched across requests), so a deleted user's sessions are anonymous
//! at once and a role is never stale.

use std::fmt;
use std::sync::LazyLock;

use super::MAX_SESSIONS_PER_USER;
use crate::accounts::User;
use crate::clock::Millis;
use crate::redis::{Redis, RedisError, script};
use crate::sessions::keys::StoredKey;
use crate::sessions::record::Stored;

/// The scripts, each with Redis' clock and the index helper in front.
struct Scripts {
    create: ::redis::Script,
    update: ::redis::Script,
    delete: ::redis::Script,
    list: ::redis::Script,
    delete_of_user: ::redis::Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| {
    let indexed = |body: &str| script(&format!("{}\n{body}", include_str!("index.lua")));
    Scripts {
        create: indexed(include_str!("create.lua")),
        update: indexed(include_str!("update.lua")),
        delete: script(include_str!("delete.lua")),
        list: indexed(include_str!("list.lua")),
        delete_of_user: indexed(include_str!("delete_of_user.lua")),
    }
});

/// Sessions in Redis.
#[derive(Clone)]
pub struct RedisStore {
    redis: Redis,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisStore")
    }
}

impl RedisStore {
    /// Sessions in `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.redis.ping().await
    }

    fn session_key(&self, key: &StoredKey) -> String {
        self.redis.key("s", key.as_str())
    }

    fn index_key(&self, user_id: i64) -> String {
        self.redis.key("u", user_id)
    }

    async fn write(
        &self,
        script: &::redis::Script,
        key: &StoredKey,
        stored: &Stored,
    ) -> Result<bool, RedisError> {
        let user_id = stored.signed_in.user_id;
        let written: i64 = script
            .key(self.session_key(key))
            .key(self.index_key(user_id))
            .arg(key.as_str())
            .arg(stored.data())
            .arg(stored.expires_at.0)
            .arg(user_id)
            .arg(MAX_SESSIONS_PER_USER)
            .arg(self.redis.key_prefix("s"))
            .invoke_async(&mut self.redis.connection())
            .await?;
        Ok(written == 1)
    }

    /// Creates unless the key exists (`false`).
    pub async fn insert(&self, key: &StoredKey, stored: &Stored) -> Result<bool, RedisError> {
        self.write(&SCRIPTS.create, key, stored).await
    }

    /// Updates a session that still exists; whether it did.
    pub async fn update(&self, key: &StoredKey, stored: &Stored) -> Result<bool, RedisError> {
        self.write(&SCRIPTS.update, key, stored).await
    }

    /// The first live session of `keys`: one pipelined round trip. The
    /// user is not kept here (`None`).
    pub async fn load_first(
        &self,
        keys: &[StoredKey],
    ) -> Result<Option<(usize, Stored, Option<User>)>, RedisError> {
        let mut pipe = ::redis::pipe();
        for key in keys {
            pipe.cmd("HMGET")
                .arg(self.session_key(key))
                .arg("d")
                .arg("e");
        }
        let found: Vec<(Option<String>, Option<i64>)> =
            pipe.query_async(&mut self.redis.connection()).await?;
        let now = Millis::now();
        Ok(found
            .into_iter()
            .enumerate()
            .find_map(|(at, (data, expires_at))| {
                let expires_at = Millis(expires_at?);
                if expires_at <= now {
                    return None;
                }
                Some((at, Stored::from_data(&data?, expires_at)?, None))
            }))
    }

    /// Deletes the session under `key` (only when it is `owner`'s, if given).
    pub async fn delete(&self, key: &StoredKey, owner: Option<i64>) -> Result<bool, RedisError> {
        let deleted: i64 = SCRIPTS
            .delete
            .key(self.session_key(key))
            .arg(key.as_str())
            .arg(self.redis.key_prefix("u"))
            .arg(owner.map(|id| id.to_string()).unwrap_or_default())
            .invoke_async(&mut self.redis.connection())
            .await?;
        Ok(deleted == 1)
    }

    /// `user_id`'s live sessions.
    pub async fn list(&self, user_id: i64) -> Result<Vec<(StoredKey, Stored)>, RedisError> {
        let flat: Vec<String> = SCRIPTS
            .list
            .key(self.index_key(user_id))
            .arg(self.redis.key_prefix("s"))
            .invoke_async(&mut self.redis.connection())
            .await?;
        Ok(flat
            .chunks(3)
            .filter_map(|found| match found {
                [key, data, expires_at] => {
                    let stored = Stored::from_data(data, Millis(expires_at.parse().ok()?))?;
                    Some((StoredKey::from_stored(key.clone()), stored))
                }
                _ => None,
            })
            .collect())
    }

    /// Deletes every session of `user_id` but `except`; how many there were.
    pub async fn delete_of_user(
        &self,
        user_id: i64,
        except: Option<&StoredKey>,
    ) -> Result<usize, RedisError> {
        let ended: i64 = SCRIPTS
            .delete_of_user
            .key(self.index_key(user_id))
            .arg(self.redis.key_prefix("s"))
            .arg(except.map_or("", StoredKey::as_str))
            .invoke_async(&mut self.redis.connection())
            .await?;
        Ok(usize::try_from(ended).unwrap_or(0))
    }
}
