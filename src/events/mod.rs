//! The bus between instances: what happened that other instances (and this
//! one's open WebSockets) must learn of at once — a session ended (with its
//! reason) or renewed, a post created, edited or deleted.
//!
//! One backend, chosen at start-up beside the session store:
//! - in-process on SQLite (one instance per database file);
//! - PostgreSQL `LISTEN/NOTIFY` on two dedicated connections outside the
//!   pool (one listens, one sends events in batches: see `postgres`);
//! - Redis pub/sub when `REDIS_URL` is set.
//!
//! A write publishes its event once it committed. An event lost between
//! the two (the instance died) costs little: the post feed catches up with
//! the database now and then, and remembered copies are trusted for
//! [`crate::cache::TRUSTED_FOR`] at most.
//!
//! The network backends lose what is published while they are cut off. So
//! each instance sends itself a heartbeat through the whole path every
//! `HEARTBEAT_EVERY`; the bus is healthy only while one came back within
//! `HEALTHY_WITHIN`. A connection that broke (or went silent) is
//! reconnected with backoff and resubscribed, and every change of health
//! bumps `Events::generation`, so that whatever depended on events
//! re-checks what it holds.
//!
//! Here: the bus and its rules. `event`: what travels on it. `liveness`:
//! heartbeats, silence, reconnection. `postgres`, `redis`: the backends.

mod event;
mod liveness;
mod postgres;
mod redis;

pub use event::{EndReason, Event};
use liveness::{Backoff, heartbeats};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::db::Db;

/// Healthy while a heartbeat came back within this.
const HEALTHY_WITHIN: Duration = Duration::from_secs(2);
/// Attempts to publish an event again after it failed.
const PUBLISH_RETRIES: usize = 16;
/// Events kept for local subscribers that are slow to read them.
const LOCAL_BACKLOG: usize = 4096;
/// The PostgreSQL channel (per database, so per deployment).
const CHANNEL: &str = "blogql_events";

/// Publishing an event failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error(transparent)]
    Redis(#[from] crate::redis::RedisError),
}

/// Why the bus could not start: the setting of its backend, and what failed.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: cannot subscribe to the event bus: {message}")]
pub struct StartError {
    setting: &'static str,
    message: String,
}

/// Called with every event the moment it arrives (on the listener's task:
/// it must not block).
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// How long [`Events::publish_heard`] waits to hear its event back.
const ECHO_WITHIN: Duration = Duration::from_millis(250);

/// The instance's bus; cheap to clone.
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    /// What arrived, for this instance's subscribers.
    local: broadcast::Sender<Arc<Event>>,
    /// This instance's heartbeats are recognised by it.
    instance: u64,
    /// When our last heartbeat came back (Unix ms; 0: not since the last gap).
    heard_at: AtomicU64,
    /// What `heard_at` counts from (a monotonic clock: a step of the wall
    /// clock must not make the bus look healthy).
    epoch: std::time::Instant,
    /// Bumped whenever events may have been missed, and when the bus is
    /// back after that.
    generation: watch::Sender<u64>,
    /// The same number, read without a lock on every cache hit.
    generation_now: AtomicU64,
    /// Told of every event as it arrives, before anything else runs: the
    /// caches that must forget what an event ended.
    observers: std::sync::RwLock<Vec<Observer>>,
    /// Events this instance published and waits to hear back.
    echoes: std::sync::Mutex<Vec<(Event, tokio::sync::oneshot::Sender<()>)>>,
    /// Times the listener was lost (and subscribed again, or trying to).
    reconnections: AtomicU64,
    /// The listener and the heartbeat, stopped with the server.
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

enum Backend {
    InProcess,
    Postgres {
        url: String,
        /// Sends what is not sent from inside a transaction (heartbeats,
        /// session ends), on a connection of its own.
        publisher: Box<postgres::Publisher>,
    },
    Redis(crate::redis::Redis),
}

impl Events {
    /// The bus of this deployment: Redis pub/sub when `redis` is given,
    /// else PostgreSQL's NOTIFY, else in-process; subscribed before it
    /// returns, and healthy once its first heartbeat came back.
    pub async fn start(db: &Db, redis: Option<&crate::redis::Redis>) -> Result<Self, StartError> {
        let events = Self::publisher(db, redis);
        match &events.inner.backend {
            Backend::InProcess => return Ok(events),
            Backend::Postgres { url, .. } => {
                let listener = postgres::listen(url).await?;
                events.spawn(postgres::run(events.clone(), url.clone(), listener));
            }
            Backend::Redis(redis) => {
                let listener = redis::listen(redis, &events).await?;
                events.spawn(redis::run(events.clone(), redis.clone(), listener));
            }
        }
        events.spawn(heartbeats(events.clone()));
        events.wait_healthy(HEALTHY_WITHIN).await;
        Ok(events)
    }

    /// Runs `task` (which follows the bus) until the server stops.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(handle);
    }

    /// Unsubscribes: the server is done.
    pub fn stop(&self) {
        let tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
        }
        // The observers hold caches that hold the bus: let both go.
        self.inner
            .observers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The same bus, to publish on only (a command such as `create-admin`
    /// tells the running servers; it hears nothing itself).
    pub fn publisher(db: &Db, redis: Option<&crate::redis::Redis>) -> Self {
        let backend = match (redis, db.postgres_url()) {
            (Some(redis), _) => Backend::Redis(redis.clone()),
            (None, Some(url)) => Backend::Postgres {
                url: url.to_owned(),
                publisher: Box::new(postgres::Publisher::new(url)),
            },
            (None, None) => Backend::InProcess,
        };
        Self {
            inner: Arc::new(Inner {
                backend,
                local: broadcast::channel(LOCAL_BACKLOG).0,
                instance: rand::random(),
                heard_at: AtomicU64::new(0),
                epoch: std::time::Instant::now(),
                generation: watch::channel(0).0,
                generation_now: AtomicU64::new(0),
                observers: std::sync::RwLock::default(),
                echoes: std::sync::Mutex::default(),
                reconnections: AtomicU64::new(0),
                tasks: std::sync::Mutex::default(),
            }),
        }
    }

    /// Which backend carries the events, for logs and `/readyz`.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::InProcess => "in-process",
            Backend::Postgres { .. } => "PostgreSQL LISTEN/NOTIFY",
            Backend::Redis(_) => "Redis pub/sub",
        }
    }

    /// Whether every event published anywhere reaches this instance now:
    /// our own heartbeat came back within `HEALTHY_WITHIN`.
    pub fn healthy(&self) -> bool {
        if matches!(self.inner.backend, Backend::InProcess) {
            return true;
        }
        self.heard_within(HEALTHY_WITHIN)
    }

    /// Times this instance's listener was lost and had to subscribe again.
    pub fn reconnections(&self) -> u64 {
        self.inner.reconnections.load(Ordering::Relaxed)
    }

    /// Bumped when events may have been missed and when the bus is back:
    /// at each change, re-check whatever depended on events.
    pub fn generation(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// The generation now (see [`Events::generation`]), without a lock.
    pub fn generation_now(&self) -> u64 {
        self.inner.generation_now.load(Ordering::Acquire)
    }

    /// Whether this bus carries what other processes publish: false for the
    /// in-process bus (a `blogql create-admin` beside a server on SQLite
    /// cannot reach it), so nothing may be served from memory over it.
    pub fn hears_other_processes(&self) -> bool {
        !matches!(self.inner.backend, Backend::InProcess)
    }

    /// Calls `observer` with every event that arrives from now on, the
    /// moment it does (this instance's own included).
    pub fn observe(&self, observer: Observer) {
        self.inner
            .observers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(observer);
    }

    /// The events that arrive from now on (this instance's own included).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.inner.local.subscribe()
    }

    /// Sends `event` to every instance, this one included. A bus that
    /// cannot send it is marked as having lost events (so nothing trusts
    /// what the event should have changed until it is back).
    /// It is sent again in the background until it goes out (events are
    /// idempotent): the other instances cannot see the gap, only this one.
    pub async fn publish(&self, event: Event) {
        // This instance's caches forget at once (forgetting twice, when the
        // event comes back, costs nothing).
        self.observe_locally(&event);
        if let Err(err) = self.try_publish(&event).await {
            tracing::warn!(error = %err, "cannot publish an event: the bus is marked unhealthy");
            self.gap();
            tokio::spawn(self.clone().publish_again(event));
        }
    }

    /// Publishes `event` and waits (at most `ECHO_WITHIN`) until this
    /// instance hears it back: by then the bus has handed it to every
    /// subscriber, so an ending announced this way is, in practice, known
    /// everywhere before its request is answered.
    pub async fn publish_heard(&self, event: Event) {
        if !self.hears_other_processes() || !self.healthy() {
            return self.publish(event).await;
        }
        let (heard, echo) = tokio::sync::oneshot::channel();
        self.echoes().push((event.clone(), heard));
        self.publish(event).await;
        if tokio::time::timeout(ECHO_WITHIN, echo).await.is_err() {
            tracing::debug!("an event was not heard back in time");
        }
        // Whatever was not heard back in time waits no more.
        self.echoes().retain(|(_, heard)| !heard.is_closed());
    }

    fn echoes(&self) -> std::sync::MutexGuard<'_, Vec<(Event, tokio::sync::oneshot::Sender<()>)>> {
        self.inner
            .echoes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Retries a publish that failed, with backoff, for about a minute.
    async fn publish_again(self, event: Event) {
        let mut backoff = Backoff::new();
        for _ in 0..PUBLISH_RETRIES {
            backoff.wait().await;
            if self.try_publish(&event).await.is_ok() {
                return;
            }
        }
        tracing::error!(
            "an event could not be published: other instances learn of it at their next re-check"
        );
    }

    async fn try_publish(&self, event: &Event) -> Result<(), PublishError> {
        match &self.inner.backend {
            Backend::InProcess => {
                self.deliver(event.clone());
                Ok(())
            }
            Backend::Postgres { publisher, .. } => publisher.publish(event.encode()).await,
            Backend::Redis(redis) => Ok(redis::publish(redis, &event.encode()).await?),
        }
    }

    /// An event arrived from the bus.
    fn deliver(&self, event: Event) {
        if let Event::Heartbeat { instance, .. } = event {
            if instance == self.inner.instance {
                let was_healthy = self.healthy();
                // The generation first: nothing loaded during the gap may
                // look current the moment the bus looks healthy.
                if !was_healthy {
                    self.next_generation();
                }
                self.inner
                    .heard_at
                    .store(self.since_epoch(), Ordering::Release);
                if !was_healthy {
                    tracing::info!(bus = self.backend_name(), "event bus healthy");
                }
            }
            return;
        }
        self.observe_locally(&event);
        {
            let mut echoes = self.echoes();
            if let Some(at) = echoes.iter().position(|(sent, _)| *sent == event) {
                let (_, heard) = echoes.swap_remove(at);
                let _ = heard.send(());
            }
        }
        // No local subscriber yet is not an error.
        let _ = self.inner.local.send(Arc::new(event));
    }

    /// Tells this instance's observers of `event`.
    fn observe_locally(&self, event: &Event) {
        for observer in self
            .inner
            .observers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            observer(event);
        }
    }

    /// Events may have been missed (a connection broke, a send failed).
    fn gap(&self) {
        self.inner.heard_at.store(0, Ordering::Release);
        self.next_generation();
    }

    /// Bumps the generation: what was loaded before is not trusted after.
    fn next_generation(&self) {
        self.inner.generation_now.fetch_add(1, Ordering::AcqRel);
        self.inner.generation.send_modify(|n| *n += 1);
    }

    /// Whether our heartbeat came back within `silence` (and since the
    /// last gap).
    fn heard_within(&self, silence: Duration) -> bool {
        let heard = self.inner.heard_at.load(Ordering::Acquire);
        heard != 0 && self.since_epoch().saturating_sub(heard) < silence.as_millis() as u64
    }

    /// Milliseconds since the bus started, from 1 (0 means "not heard").
    fn since_epoch(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    async fn wait_healthy(&self, at_most: Duration) {
        let mut generation = self.generation();
        let _ = tokio::time::timeout(at_most, async {
            while !self.healthy() {
                if generation.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}
