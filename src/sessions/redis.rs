//! Sessions in Redis, for instances that scale out.
//!
//! Key layout (one hash tag, so multi-key scripts also run on Redis
//! Cluster; `P` is `BLOGQL_REDIS_KEY_PREFIX`):
//! - `{P}:s:<h>` HASH — `d` the session data (JSON, the user snapshot
//!   included, so a signed-in request needs no SQL), `e` its expiry (Unix
//!   ms), `u` its user; `PEXPIREAT` is the expiry. `h` is the SHA-256 of the
//!   session ID, as in the SQL store: never the ID itself.
//! - `{P}:u:<user id>` ZSET — member `h`, score its expiry; the key expires
//!   with its latest member. Pruned by score on every write and list.
//!
//! Every change that touches both keys is one Lua script, run with Redis'
//! own clock: `create` never overwrites (a collision draws a new ID),
//! `save` only updates a session that still exists (a request in flight
//! never brings back a session revoked meanwhile), and every key has a TTL.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use super::SessionInfo;
use super::store::id_hash;

/// How long one Redis command (or a connection attempt) may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Redis' clock, in Unix milliseconds, as `now` inside a script (every
/// script that compares times puts this first; the throttle's too).
pub(crate) const NOW: &str = "local t = redis.call('TIME') \
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";

/// Keeps a user's index pruned, and expiring with its latest session.
const INDEX: &str = "local function index(u, h, expiry) \
      redis.call('ZREMRANGEBYSCORE', u, '-inf', now) \
      if h then redis.call('ZADD', u, expiry, h) end \
      local last = redis.call('ZRANGE', u, -1, -1, 'WITHSCORES') \
      if last[2] then redis.call('PEXPIREAT', u, last[2]) end \
    end ";

/// KEYS: session, index. ARGV: hash, data, expiry, user id, the most
/// sessions a user keeps, session prefix. 0 if it exists. Beyond the most,
/// the sessions that expire first end.
const CREATE: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end \
    redis.call('HSET', KEYS[1], 'd', ARGV[2], 'e', ARGV[3], 'u', ARGV[4]) \
    redis.call('PEXPIREAT', KEYS[1], ARGV[3]) \
    if ARGV[4] ~= '' then \
      index(KEYS[2], ARGV[1], ARGV[3]) \
      local extra = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[5]) \
      if extra > 0 then \
        for _, h in ipairs(redis.call('ZRANGE', KEYS[2], 0, extra - 1)) do \
          redis.call('DEL', ARGV[6] .. h) \
          redis.call('ZREM', KEYS[2], h) \
        end \
      end \
    end \
    return 1";

/// KEYS: session, index. ARGV: hash, data, expiry, user id. 0 if it is gone.
const SAVE: &str = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
    redis.call('HSET', KEYS[1], 'd', ARGV[2], 'e', ARGV[3], 'u', ARGV[4]) \
    redis.call('PEXPIREAT', KEYS[1], ARGV[3]) \
    if ARGV[4] ~= '' then index(KEYS[2], ARGV[1], ARGV[3]) end \
    return 1";

/// KEYS: session. ARGV: hash, index prefix, the user it must belong to
/// (or ''). 1 if a session was deleted.
const DELETE: &str = "local uid = redis.call('HGET', KEYS[1], 'u') \
    if not uid then return 0 end \
    if ARGV[3] ~= '' and uid ~= ARGV[3] then return 0 end \
    local deleted = redis.call('DEL', KEYS[1]) \
    if uid ~= '' then redis.call('ZREM', ARGV[2] .. uid, ARGV[1]) end \
    return deleted";

/// KEYS: index. ARGV: session prefix. Flat list of hash, data.
const LIST: &str = "index(KEYS[1], nil, nil) \
    local out = {} \
    for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do \
      local d = redis.call('HGET', ARGV[1] .. h, 'd') \
      if d then table.insert(out, h) table.insert(out, d) \
      else redis.call('ZREM', KEYS[1], h) end \
    end \
    return out";

/// KEYS: index. ARGV: session prefix, the hash to keep. How many ended.
const REVOKE_OTHERS: &str = "index(KEYS[1], nil, nil) \
    local ended = 0 \
    for _, h in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do \
      if h ~= ARGV[2] then \
        ended = ended + redis.call('DEL', ARGV[1] .. h) \
        redis.call('ZREM', KEYS[1], h) \
      end \
    end \
    return ended";

/// The scripts, each with Redis' clock and the index helper in front.
struct Scripts {
    create: redis::Script,
    save: redis::Script,
    delete: redis::Script,
    list: redis::Script,
    revoke_others: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{NOW}{INDEX}{body}"));
        Self {
            create: script(CREATE),
            save: script(SAVE),
            delete: script(DELETE),
            list: script(LIST),
            revoke_others: script(REVOKE_OTHERS),
        }
    }
}

/// Sessions in Redis.
#[derive(Clone)]
pub struct RedisSessionStore {
    conn: ConnectionManager,
    prefix: String,
    scripts: std::sync::Arc<Scripts>,
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisSessionStore")
    }
}

/// A failed Redis operation.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] redis::RedisError);

impl From<RedisError> for session_store::Error {
    fn from(err: RedisError) -> Self {
        Self::Backend(err.to_string())
    }
}

fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl RedisSessionStore {
    /// Connects to `url` (and checks it answers); keys start with `{prefix}`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|err| err.to_string())?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let connected = tokio::time::timeout(
            2 * REDIS_TIMEOUT,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|err| err.to_string())?;
        let store = Self {
            conn: connected,
            prefix: prefix.to_owned(),
            scripts: std::sync::Arc::new(Scripts::new()),
        };
        store.ping().await.map_err(|err| err.to_string())?;
        Ok(store)
    }

    fn session_prefix(&self) -> String {
        format!("{{{}}}:s:", self.prefix)
    }

    fn index_prefix(&self) -> String {
        format!("{{{}}}:u:", self.prefix)
    }

    fn index_key(&self, user_id: Option<i64>) -> String {
        match user_id {
            Some(user_id) => format!("{}{user_id}", self.index_prefix()),
            None => format!("{}-", self.index_prefix()),
        }
    }

    /// The connection and key prefix, for the throttle's counts.
    pub fn connection(&self) -> (ConnectionManager, String) {
        (self.conn.clone(), self.prefix.clone())
    }

    /// Answers when Redis does: the readiness probe.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    async fn write(&self, script: &redis::Script, record: &Record) -> Result<bool, RedisError> {
        let hash = id_hash(&record.id);
        let user_id = super::user_id_of(record);
        let data = serde_json::to_string(&record.data).unwrap_or_else(|_| "{}".to_owned());
        let mut conn = self.conn.clone();
        let written: i64 = script
            .key(format!("{}{hash}", self.session_prefix()))
            .key(self.index_key(user_id))
            .arg(&hash)
            .arg(data)
            .arg(millis(record.expiry_date))
            .arg(user_id.map(|id| id.to_string()).unwrap_or_default())
            .arg(super::MAX_SESSIONS_PER_USER)
            .arg(self.session_prefix())
            .invoke_async(&mut conn)
            .await?;
        Ok(written == 1)
    }

    /// Creates unless the ID exists; `false` on a collision.
    pub async fn create(&self, record: &Record) -> Result<bool, RedisError> {
        self.write(&self.scripts.create, record).await
    }

    /// Updates a session that still exists.
    pub async fn save(&self, record: &Record) -> Result<(), RedisError> {
        self.write(&self.scripts.save, record).await.map(|_| ())
    }

    /// The session, unless it is missing or expired: one round trip.
    pub async fn load(&self, id: &Id) -> Result<Option<Record>, session_store::Error> {
        let mut conn = self.conn.clone();
        let key = format!("{}{}", self.session_prefix(), id_hash(id));
        let (data, expiry): (Option<String>, Option<i64>) = redis::cmd("HMGET")
            .arg(&key)
            .arg("d")
            .arg("e")
            .query_async(&mut conn)
            .await
            .map_err(RedisError::from)?;
        let (Some(data), Some(expiry)) = (data, expiry) else {
            return Ok(None);
        };
        let expiry_date = OffsetDateTime::from_unix_timestamp_nanos(i128::from(expiry) * 1_000_000)
            .map_err(|err| session_store::Error::Decode(err.to_string()))?;
        if expiry_date <= OffsetDateTime::now_utc() {
            return Ok(None);
        }
        let data = serde_json::from_str(&data)
            .map_err(|err| session_store::Error::Decode(err.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    /// Deletes the session stored under `hash` (only if it is `user_id`'s,
    /// when given); whether one was deleted.
    pub async fn delete_hash(&self, hash: &str, user_id: Option<i64>) -> Result<bool, RedisError> {
        let mut conn = self.conn.clone();
        let deleted: i64 = self
            .scripts
            .delete
            .key(format!("{}{hash}", self.session_prefix()))
            .arg(hash)
            .arg(self.index_prefix())
            .arg(user_id.map(|id| id.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }

    /// `user_id`'s live sessions.
    pub async fn list(
        &self,
        user_id: i64,
        current: Option<&str>,
    ) -> Result<Vec<SessionInfo>, RedisError> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self
            .scripts
            .list
            .key(self.index_key(Some(user_id)))
            .arg(self.session_prefix())
            .invoke_async(&mut conn)
            .await?;
        Ok(flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [hash, data] => SessionInfo::from_stored(hash, data, current),
                _ => None,
            })
            .collect())
    }

    /// Deletes `user_id`'s session with this handle; `false` if none.
    pub async fn revoke(&self, user_id: i64, handle: &str) -> Result<bool, RedisError> {
        let sessions = self.list(user_id, None).await?;
        let Some(found) = sessions.into_iter().find(|s| s.handle == handle) else {
            return Ok(false);
        };
        self.delete_hash(&found.stored_key, Some(user_id)).await
    }

    /// Deletes every session of `user_id` but `keep`; how many there were.
    pub async fn revoke_others(
        &self,
        user_id: i64,
        keep: Option<&str>,
    ) -> Result<usize, RedisError> {
        let mut conn = self.conn.clone();
        let ended: i64 = self
            .scripts
            .revoke_others
            .key(self.index_key(Some(user_id)))
            .arg(self.session_prefix())
            .arg(keep.unwrap_or_default())
            .invoke_async(&mut conn)
            .await?;
        Ok(usize::try_from(ended).unwrap_or(0))
    }
}
