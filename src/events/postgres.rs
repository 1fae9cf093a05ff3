//! The bus on PostgreSQL: `LISTEN` on one connection of its own (outside
//! the pool: a pooled connection would be handed to a request), its
//! notifications handed to the bus as they arrive; `NOTIFY` on a second
//! connection of its own, after the write an event announces committed.
//!
//! PostgreSQL makes the commits of transactions that notify wait for one
//! another (measured here: 4,138 inserts a second that each notify, against
//! 17,291 that do not). So events are not sent from inside the writing
//! transaction, one commit each: whatever is waiting to go out when the
//! connection is free goes in one statement.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::StreamExt as _;

use super::liveness::{Backoff, reconnect, silent};
use super::{CHANNEL, Event, Events, PublishError, StartError};

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

/// The sending side: a task with a connection of its own (heartbeats every
/// 500 ms would otherwise hold a pooled connection, and show in the pool's
/// statement count), opened when first needed and again after it failed.
/// Whatever was queued while a statement was on its way goes out in the
/// next one, so batches grow with the load by themselves.
pub(super) struct Publisher {
    queue: tokio::sync::mpsc::UnboundedSender<(String, Option<Sent>)>,
}

/// Told whether its payload went out (and if not, why).
type Sent = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Most payloads sent in one statement (each under 8,000 bytes).
const MOST_PER_STATEMENT: usize = 512;

impl Publisher {
    /// Starts the sending task (it ends with the last handle to this).
    pub(super) fn new(url: &str) -> Self {
        let (queue, queued) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(send_queued(url.to_owned(), queued));
        Self { queue }
    }

    /// Notifies every instance, in one statement with whatever else is
    /// waiting to go out; once it went out.
    pub(super) async fn publish(&self, payload: String) -> Result<(), PublishError> {
        let (sent, outcome) = tokio::sync::oneshot::channel();
        let stopped = || PublishError::Postgres("the publisher stopped".into());
        self.queue
            .send((payload, Some(sent)))
            .map_err(|_| stopped())?;
        outcome
            .await
            .map_err(|_| stopped())?
            .map_err(PublishError::Postgres)
    }

    /// Queues a notification and does not wait for it (a heartbeat: one
    /// that never comes back is what it measures).
    pub(super) fn publish_without_waiting(&self, payload: String) {
        let _ = self.queue.send((payload, None));
    }
}

/// Sends what is queued, as it is queued, until the publisher is dropped.
async fn send_queued(
    url: String,
    mut queued: tokio::sync::mpsc::UnboundedReceiver<(String, Option<Sent>)>,
) {
    let mut conn = None;
    let mut batch = Vec::new();
    while queued.recv_many(&mut batch, MOST_PER_STATEMENT).await > 0 {
        let payloads: Vec<&str> = batch.iter().map(|(payload, _)| payload.as_str()).collect();
        let result = send(&url, &mut conn, &payloads).await;
        for (_, sent) in batch.drain(..) {
            if let Some(sent) = sent {
                let _ = sent.send(result.clone());
            }
        }
    }
}

/// Sends `payloads` on `conn`, connecting it first if it is not.
async fn send(
    url: &str,
    slot: &mut Option<AsyncPgConnection>,
    payloads: &[&str],
) -> Result<(), String> {
    let conn = match slot {
        Some(conn) => conn,
        None => {
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(url))
                .await
                .map_err(|_| "no answer in time".to_owned())?
                .map_err(|err| err.to_string())?;
            slot.insert(conn)
        }
    };
    let sent = match tokio::time::timeout(CONNECT_TIMEOUT, notify(conn, payloads)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("no answer in time".to_owned()),
    };
    if sent.is_err() {
        // Opened afresh next time.
        *slot = None;
    }
    sent
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
