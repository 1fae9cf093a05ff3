//! The bus on Redis pub/sub: one RESP3 connection of its own, named so that
//! an operator (or a test) can find it in `CLIENT LIST`, whose pushes are
//! handed to the bus as they arrive (never queued); events are published
//! on the shared command connection.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::Notify;

use super::liveness::{Backoff, reconnect, silent};
use super::{Event, Events, StartError};
use crate::redis::{Redis, RedisError};

/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A subscribed connection, and a signal that it was lost.
pub(super) struct Listener {
    /// Kept open: dropping it closes the subscription.
    _conn: MultiplexedConnection,
    lost: Arc<Notify>,
}

/// The channel of this deployment (its key prefix).
fn channel(redis: &Redis) -> String {
    redis.key("ev", "all")
}

/// Subscribes, handing each event to `events` as it arrives.
pub(super) async fn listen(redis: &Redis, events: &Events) -> Result<Listener, StartError> {
    let failed = |err: &dyn std::fmt::Display| StartError {
        setting: "REDIS_URL",
        message: err.to_string(),
    };
    let info = redis.client().get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client =
        ::redis::Client::open(info.set_redis_settings(settings)).map_err(|e| failed(&e))?;
    let lost = Arc::new(Notify::new());
    let (to_bus, to_loop) = (events.clone(), lost.clone());
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(CONNECT_TIMEOUT))
        .set_push_sender(move |push: PushInfo| {
            on_push(&to_bus, &to_loop, push);
            Ok::<(), std::convert::Infallible>(())
        });
    let subscribed = async {
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        ::redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(connection_name(redis))
            .exec_async(&mut conn)
            .await?;
        conn.subscribe(channel(redis)).await?;
        Ok::<_, ::redis::RedisError>(conn)
    };
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, subscribed)
        .await
        .map_err(|_| failed(&"no answer in time"))?
        .map_err(|e| failed(&e))?;
    Ok(Listener { _conn: conn, lost })
}

/// `blogql-bus-<prefix>`, as `CLIENT LIST` shows it (a name has no spaces).
pub fn connection_name(redis: &Redis) -> String {
    let prefix: String = redis
        .prefix()
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect();
    format!("blogql-bus-{prefix}")
}

fn on_push(events: &Events, lost: &Notify, push: PushInfo) {
    match push.kind {
        PushKind::Message => {
            if let Some(Value::BulkString(payload)) = push.data.get(1)
                && let Some(event) = Event::decode(payload)
            {
                events.deliver(event);
            }
        }
        PushKind::Disconnection => lost.notify_one(),
        _ => {}
    }
}

/// Keeps the bus subscribed: when the connection is lost or goes silent,
/// marks the gap and subscribes again, with backoff.
pub(super) async fn run(events: Events, redis: Redis, mut listener: Listener) {
    let mut backoff = Backoff::new();
    loop {
        let connected = tokio::time::Instant::now();
        tokio::select! {
            () = listener.lost.notified() => {
                tracing::warn!("event bus: the Redis subscription was lost");
            }
            () = silent(&events) => {
                tracing::warn!("event bus: no heartbeat through Redis; reconnecting");
            }
        }
        listener = reconnect(&events, &mut backoff, connected.elapsed(), || {
            listen(&redis, &events)
        })
        .await;
    }
}

/// Publishes `payload` to every instance.
pub(super) async fn publish(redis: &Redis, payload: &str) -> Result<(), RedisError> {
    let _: i64 = ::redis::cmd("PUBLISH")
        .arg(channel(redis))
        .arg(payload)
        .query_async(&mut redis.connection())
        .await?;
    Ok(())
}
