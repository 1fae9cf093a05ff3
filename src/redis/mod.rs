//! The one Redis home: the connection (supervised, with timeouts), the key
//! prefix and the key builder, and scripts run on Redis' own clock. The
//! session store and the login throttle take their Redis from here.
//!
//! Every key is `{P}:<kind>:<rest>`, `P` being `BLOGQL_REDIS_KEY_PREFIX`: one
//! hash tag, so that scripts touching several keys also run on Redis Cluster,
//! and one prefix per deployment (or per test) sharing a Redis.

use std::fmt;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;

/// How long one Redis command (or a connection attempt) may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Redis' clock as `now` (Unix milliseconds), put in front of every script.
const NOW: &str = include_str!("now.lua");

/// A Redis command or connection failed.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct RedisError(#[from] ::redis::RedisError);

/// A connection to Redis and the prefix of our keys; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    client: ::redis::Client,
    conn: ConnectionManager,
    prefix: String,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redis {{ prefix: {:?} }}", self.prefix)
    }
}

impl Redis {
    /// Connects (and checks that Redis answers).
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        let client = ::redis::Client::open(config.url.as_str())?;
        let settings = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            2 * TIMEOUT,
            ConnectionManager::new_with_config(client.clone(), settings),
        )
        .await
        .map_err(|_| ::redis::RedisError::from((::redis::ErrorKind::Io, "no answer in time")))??;
        let redis = Self {
            client,
            conn,
            prefix: config.key_prefix.clone(),
        };
        redis.ping().await?;
        Ok(redis)
    }

    /// Answers when Redis does: the readiness probe.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let _: String = ::redis::cmd("PING")
            .query_async(&mut self.connection())
            .await?;
        Ok(())
    }

    /// A connection to send commands on (a clone of the one multiplexed
    /// connection).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The client, for a connection of one's own (the event bus's).
    pub fn client(&self) -> &::redis::Client {
        &self.client
    }

    /// `BLOGQL_REDIS_KEY_PREFIX`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key `{P}:<kind>:<rest>`.
    pub fn key(&self, kind: &str, rest: impl fmt::Display) -> String {
        format!("{}{rest}", self.key_prefix(kind))
    }

    /// What every key of `kind` starts with, for scripts that build keys.
    pub fn key_prefix(&self, kind: &str) -> String {
        format!("{{{}}}:{kind}:", self.prefix)
    }
}

/// A Lua script with Redis' clock (`now`, Unix milliseconds) in front of
/// `body`; `redis::Script` sends it by hash and reloads it when Redis has
/// forgotten it.
pub fn script(body: &str) -> ::redis::Script {
    ::redis::Script::new(&format!("{NOW}\n{body}"))
}
