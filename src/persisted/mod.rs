//! Automatic persisted queries (Apollo's protocol): query texts remembered
//! under the lowercase hex SHA-256 of their text, so that a client may send
//! the hash alone. Kept per instance in memory, or shared by every instance
//! in Redis when `REDIS_URL` is set; chosen once at start-up. Bounded in
//! count and bytes either way: the oldest go first.
//!
//! Only the HTTP pipeline writes here, and only once a query has passed
//! validation.

use std::num::NonZeroUsize;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use lru::LruCache;
use sha2::{Digest, Sha256};

use crate::clock::millis_of;
use crate::redis::{Redis, RedisError, script};

/// Most queries remembered.
pub const MAX_ENTRIES: usize = 10_000;
/// Most bytes of query text remembered in memory.
pub const MAX_BYTES: usize = 32 * 1024 * 1024;
/// How long Redis keeps a query nobody sent again.
const TIME_TO_LIVE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The lowercase hex SHA-256 of `query`, as Apollo's clients compute it.
pub fn hash_of(query: &str) -> String {
    Sha256::digest(query.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `hash` has the form of one (64 hex digits).
pub fn is_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// The id a request's `extensions.persistedQuery { version: 1,
/// sha256Hash }` names, if it has one; what is wrong with it otherwise.
/// (Automatic persisted queries also need the id to be a hash; a trusted
/// document's id may be any the manifest lists.)
pub fn named_id(request: &async_graphql::Request) -> Result<Option<&str>, &'static str> {
    let Some(persisted) = request.extensions.get("persistedQuery") else {
        return Ok(None);
    };
    let async_graphql::Value::Object(fields) = persisted else {
        return Err("extensions.persistedQuery must be an object");
    };
    match fields.get("version") {
        Some(async_graphql::Value::Number(version)) if version.as_u64() == Some(1) => {}
        _ => return Err("unsupported persisted query version: send version 1"),
    }
    match fields.get("sha256Hash") {
        Some(async_graphql::Value::String(id)) if !id.is_empty() => Ok(Some(id)),
        _ => Err("extensions.persistedQuery.sha256Hash must be a string"),
    }
}

/// Where persisted queries are remembered.
#[derive(Clone)]
pub enum PersistedQueries {
    Memory(Arc<Memory>),
    Redis(Redis),
}

impl PersistedQueries {
    /// In Redis when there is one, else in this instance's memory.
    pub fn new(redis: Option<&Redis>) -> Self {
        match redis {
            Some(redis) => Self::Redis(redis.clone()),
            None => Self::Memory(Arc::new(Memory::default())),
        }
    }

    /// The query remembered under `hash`, if any.
    pub async fn get(&self, hash: &str) -> Result<Option<String>, RedisError> {
        let hash = hash.to_ascii_lowercase();
        match self {
            Self::Memory(memory) => Ok(memory.get(&hash)),
            Self::Redis(redis) => {
                let query: Option<String> = ::redis::cmd("GET")
                    .arg(redis.key("q", &hash))
                    .query_async(&mut redis.connection())
                    .await?;
                Ok(query)
            }
        }
    }

    /// Remembers `query` under its hash (the caller checked it).
    pub async fn remember(&self, hash: &str, query: &str) -> Result<(), RedisError> {
        let hash = hash.to_ascii_lowercase();
        match self {
            Self::Memory(memory) => {
                memory.put(hash, query);
                Ok(())
            }
            Self::Redis(redis) => {
                let _: i64 = REMEMBER
                    .key(redis.key("q", &hash))
                    .key(redis.key("qi", "all"))
                    .arg(&hash)
                    .arg(query)
                    .arg(millis_of(TIME_TO_LIVE))
                    .arg(MAX_ENTRIES)
                    .arg(redis.key_prefix("q"))
                    .invoke_async(&mut redis.connection())
                    .await?;
                Ok(())
            }
        }
    }
}

static REMEMBER: LazyLock<::redis::Script> = LazyLock::new(|| script(include_str!("remember.lua")));

/// Queries in this instance's memory, least recently used first out.
pub struct Memory {
    entries: Mutex<(LruCache<String, Arc<str>>, usize)>,
}

impl Default for Memory {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(MAX_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Self {
            entries: Mutex::new((LruCache::new(capacity), 0)),
        }
    }
}

impl Memory {
    fn get(&self, hash: &str) -> Option<String> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.0.get(hash).map(|query| query.to_string())
    }

    fn put(&self, hash: String, query: &str) {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let (entries, bytes) = &mut *guard;
        if entries.contains(&hash) {
            entries.promote(&hash);
            return;
        }
        *bytes += query.len();
        if let Some((_, evicted)) = entries.push(hash, Arc::from(query)) {
            *bytes -= evicted.len();
        }
        while *bytes > MAX_BYTES {
            match entries.pop_lru() {
                Some((_, evicted)) => *bytes -= evicted.len(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_apollos_and_memory_keeps_what_fits() {
        assert_eq!(
            hash_of("{ me { id } }"),
            hash_of("{ me { id } }").to_ascii_lowercase()
        );
        assert!(is_hash(&hash_of("x")));
        assert!(!is_hash("abc"));
        let memory = Memory::default();
        memory.put(hash_of("a"), "a");
        assert_eq!(memory.get(&hash_of("a")).as_deref(), Some("a"));
        let big = "x".repeat(MAX_BYTES / 2 + 1);
        memory.put(hash_of(&big), &big);
        memory.put(hash_of("y"), &big.replace('x', "y"));
        assert_eq!(memory.get(&hash_of(&big)), None, "the oldest went");
        assert!(memory.entries.lock().unwrap().1 <= MAX_BYTES);
    }
}
