//! The bus on PostgreSQL: `LISTEN` on one connection of its own (outside
//! the pool: a pooled connection would be handed to a request), its
//! notifications handed to the bus as they arrive; `NOTIFY` from the
//! transactions that write, or on a pooled connection. Notifications are
//! per database, so each deployment (and each test database) has its own.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt as _;

use super::{Backoff, CHANNEL, Event, Events, PublishError, StartError, reconnect, silent};
use crate::db::Notify;

/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection that listens on [`CHANNEL`].
pub(super) async fn listen(url: &str) -> Result<AsyncPgConnection, StartError> {
    let failed = |err: &dyn std::fmt::Display| StartError {
        setting: "DATABASE_URL",
        message: err.to_string(),
    };
    let subscribed = async {
        let mut conn = AsyncPgConnection::establish(url)
            .await
            .map_err(|e| failed(&e))?;
        conn.batch_execute(&format!(
            "SET application_name = 'blogql-bus'; LISTEN {CHANNEL}"
        ))
        .await
        .map_err(|e| failed(&e))?;
        Ok(conn)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, subscribed)
        .await
        .map_err(|_| failed(&"no answer in time"))?
}

/// Hands notifications to the bus; when the connection is lost or goes
/// silent, marks the gap and listens again, with backoff.
pub(super) async fn run(events: Events, url: String, mut conn: AsyncPgConnection) {
    let mut backoff = Backoff::new();
    loop {
        let connected = tokio::time::Instant::now();
        tokio::select! {
            () = hear(&events, &mut conn) => {}
            () = silent(&events) => {
                tracing::warn!("event bus: no heartbeat through PostgreSQL; reconnecting");
            }
        }
        conn = reconnect(&events, &mut backoff, connected.elapsed(), || listen(&url)).await;
    }
}

/// Delivers what arrives on `conn` until it breaks.
async fn hear(events: &Events, conn: &mut AsyncPgConnection) {
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    loop {
        match notifications.next().await {
            Some(Ok(notification)) => {
                if let Some(event) = Event::decode(notification.payload.as_bytes()) {
                    events.deliver(event);
                }
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, "event bus: the PostgreSQL listener failed");
                return;
            }
            None => {
                tracing::warn!("event bus: the PostgreSQL listener was closed");
                return;
            }
        }
    }
}

/// A connection of the bus's own for notifications sent outside a
/// transaction: heartbeats every 500 ms would otherwise hold a pooled
/// connection (and show in the pool's statement count). Opened when first
/// needed, and again after it failed.
pub(super) struct Publisher {
    url: String,
    conn: tokio::sync::Mutex<Option<AsyncPgConnection>>,
}

impl Publisher {
    pub(super) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// Notifies every instance now.
    pub(super) async fn publish(&self, payload: &str) -> Result<(), PublishError> {
        let slot = self.conn.lock().await;
        Self::send(&self.url, slot, payload).await
    }

    /// Notifies now, unless another notification is using the connection
    /// (or connecting it): a heartbeat skips rather than queues.
    pub(super) async fn publish_unless_busy(&self, payload: &str) -> Result<(), PublishError> {
        match self.conn.try_lock() {
            Ok(slot) => Self::send(&self.url, slot, payload).await,
            Err(_) => Err(PublishError::Postgres("the connection is busy".into())),
        }
    }

    async fn send(
        url: &str,
        mut slot: tokio::sync::MutexGuard<'_, Option<AsyncPgConnection>>,
        payload: &str,
    ) -> Result<(), PublishError> {
        let failed = |err: &dyn std::fmt::Display| PublishError::Postgres(err.to_string());
        let conn = match &mut *slot {
            Some(conn) => conn,
            None => {
                let conn = tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(url))
                    .await
                    .map_err(|_| failed(&"no answer in time"))?
                    .map_err(|e| failed(&e))?;
                slot.insert(conn)
            }
        };
        let sent = match tokio::time::timeout(CONNECT_TIMEOUT, conn.notify(CHANNEL, payload)).await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(failed(&err)),
            Err(_) => Err(failed(&"no answer in time")),
        };
        if sent.is_err() {
            // Opened afresh next time.
            *slot = None;
        }
        sent
    }
}
