//! The bus on PostgreSQL: `LISTEN` on one connection of its own (outside
//! the pool: a pooled connection would be handed to a request), its
//! notifications handed to the bus as they arrive; `NOTIFY` on a second
//! connection of its own, after the write an event announces committed.
//!
//! PostgreSQL makes the commits of transactions that notify wait for one
//! another (measured here: 4,138 inserts a second that each notify, against
//! 17,291 that do not). So events are not sent from inside the writing
//! transaction, one commit each: whatever is waiting to go out when the
//! connection is free goes in one statement (flat combining: each caller
//! either finds its event sent by the one before, or sends every waiting
//! one itself).

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt as _;

use super::{Backoff, CHANNEL, Event, Events, PublishError, StartError, reconnect, silent};

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
    /// Payloads waiting for the connection, each with whoever waits for it.
    waiting: std::sync::Mutex<Vec<(String, Sent)>>,
}

/// Told whether its payload went out (and if not, why).
type Sent = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Most payloads sent in one statement (each under 8,000 bytes).
const MOST_PER_STATEMENT: usize = 512;

impl Publisher {
    pub(super) fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            conn: tokio::sync::Mutex::new(None),
            waiting: std::sync::Mutex::default(),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Vec<(String, Sent)>> {
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notifies every instance, in one statement with whatever else is
    /// waiting for the connection.
    pub(super) async fn publish(&self, payload: String) -> Result<(), PublishError> {
        let (sent, mut outcome) = tokio::sync::oneshot::channel();
        self.waiting().push((payload, sent));
        loop {
            let slot = self.conn.lock().await;
            // Sent by a caller that held the connection before.
            if let Ok(outcome) = outcome.try_recv() {
                return outcome.map_err(PublishError::Postgres);
            }
            let batch: Vec<(String, Sent)> = {
                let mut waiting = self.waiting();
                let at = waiting.len().min(MOST_PER_STATEMENT);
                let rest = waiting.split_off(at);
                std::mem::replace(&mut *waiting, rest)
            };
            let payloads: Vec<&str> = batch.iter().map(|(payload, _)| payload.as_str()).collect();
            let result = Self::send(&self.url, slot, &payloads)
                .await
                .map_err(|err| match err {
                    PublishError::Postgres(message) => message,
                    err => err.to_string(),
                });
            for (_, sent) in batch {
                let _ = sent.send(result.clone());
            }
        }
    }

    /// Notifies now, unless another notification is using the connection
    /// (or connecting it): a heartbeat skips rather than queues.
    pub(super) async fn publish_unless_busy(&self, payload: &str) -> Result<(), PublishError> {
        match self.conn.try_lock() {
            Ok(slot) => Self::send(&self.url, slot, &[payload]).await,
            Err(_) => Err(PublishError::Postgres("the connection is busy".into())),
        }
    }

    async fn send(
        url: &str,
        mut slot: tokio::sync::MutexGuard<'_, Option<AsyncPgConnection>>,
        payloads: &[&str],
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
        let sent = match tokio::time::timeout(CONNECT_TIMEOUT, notify(conn, payloads)).await {
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

/// Sends `payloads` on [`CHANNEL`], in one statement (so one commit).
async fn notify(
    conn: &mut AsyncPgConnection,
    payloads: &[&str],
) -> Result<(), diesel::result::Error> {
    use diesel::sql_types::{Array, Text};
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SELECT pg_notify($1, payload)::text FROM unnest($2::text[]) AS payload")
        .bind::<Text, _>(CHANNEL)
        .bind::<Array<Text>, _>(payloads)
        .execute(conn)
        .await?;
    Ok(())
}
