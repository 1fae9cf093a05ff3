//! The throttle's counts in Redis: `{P}:t:<key>`, one hash per key, each
//! expiring a day after its last change; every change is one script on
//! Redis' clock.

use std::sync::LazyLock;

use time::PrimitiveDateTime;

use super::{CounterKey, FORGET_AFTER, IN_PROGRESS_STALE, Outcome, REGISTRATION_WINDOW};
use crate::clock::{Millis, millis_of};
use crate::redis::{Redis, RedisError, script};

struct Scripts {
    take_slot: ::redis::Script,
    finish: ::redis::Script,
    register: ::redis::Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    take_slot: script(include_str!("take_slot.lua")),
    finish: script(include_str!("finish.lua")),
    register: script(include_str!("register.lua")),
});

/// Counts in Redis.
#[derive(Clone)]
pub struct RedisCounts {
    redis: Redis,
}

impl RedisCounts {
    /// Counts kept in `redis`.
    pub fn new(redis: Redis) -> Self {
        Self { redis }
    }

    fn key(&self, key: &CounterKey) -> String {
        self.redis.key("t", key.as_str())
    }

    /// See [`super::Counts::take_slot`].
    pub async fn take_slot(
        &self,
        key: &CounterKey,
        threshold: i32,
    ) -> Result<Option<(i32, PrimitiveDateTime)>, RedisError> {
        let (taken, failures, last): (i64, i32, i64) = SCRIPTS
            .take_slot
            .key(self.key(key))
            .arg(threshold)
            .arg(millis_of(IN_PROGRESS_STALE))
            .arg(millis_of(FORGET_AFTER))
            .invoke_async(&mut self.redis.connection())
            .await?;
        Ok((taken == 1).then(|| (failures, Millis(last).stored())))
    }

    /// See [`super::Counts::finish`].
    pub async fn finish(
        &self,
        keys: &[&CounterKey],
        outcome: Outcome<'_>,
    ) -> Result<(), RedisError> {
        let mut invocation = SCRIPTS.finish.prepare_invoke();
        for key in keys {
            invocation.key(self.key(key));
        }
        let (outcome, clears) = match outcome {
            Outcome::Failed => ("failed", String::new()),
            Outcome::Succeeded { clears } => ("succeeded", self.key(clears)),
            Outcome::Cancelled => ("cancelled", String::new()),
        };
        let _: i64 = invocation
            .arg(outcome)
            .arg(millis_of(FORGET_AFTER))
            .arg(clears)
            .invoke_async(&mut self.redis.connection())
            .await?;
        Ok(())
    }

    /// See [`super::Counts::count_registration`].
    pub async fn count_registration(
        &self,
        key: &CounterKey,
    ) -> Result<(i32, i32, PrimitiveDateTime), RedisError> {
        let (hits, previous, started): (i32, i32, i64) = SCRIPTS
            .register
            .key(self.key(key))
            .arg(millis_of(REGISTRATION_WINDOW))
            .invoke_async(&mut self.redis.connection())
            .await?;
        Ok((hits, previous, Millis(started).stored()))
    }
}
