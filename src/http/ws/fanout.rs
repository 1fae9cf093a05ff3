//! Subscriptions shared by every socket that runs the same one: a new post
//! reaches ten thousand `postCreated` subscribers as one execution, one
//! serialization, and one frame written per socket.
//!
//! A subscription whose answer is the same for every caller
//! ([`crate::graphql::live::same_for_every_caller`]) runs once per instance for each
//! distinct operation (its text, operation name and variables); its
//! results are serialized once and broadcast, and each socket wraps the
//! same bytes in a `next` message of its own id. It runs without a caller,
//! so nothing under it can answer with one socket's view to another.
//!
//! A run starts with its first subscriber and stops with its last. Joining
//! and a run's end are ordered by one lock, so a subscriber never joins a
//! run that has already said its last word.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Instant;

use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt as _};
use tokio::sync::broadcast;

use crate::graphql::BlogSchema;
use crate::graphql::error::ensure_codes;
use crate::graphql::live::LiveSocket;
use crate::http::respond::is_request_error;
use crate::telemetry::Metrics;

/// Results kept for a socket that is slow to take them; one further behind
/// is closed (1013), as it would be behind the post feed.
const BACKLOG: usize = 256;

/// What a shared run tells each of its sockets.
#[derive(Clone)]
pub(super) enum Shared {
    /// A result: the `payload` of a `next` message, serialized once.
    Next(Arc<Payload>),
    /// Refused before it ran (it did not validate): the `payload` of an
    /// `error` message. Nothing follows.
    Refused(Arc<str>),
}

/// A result serialized once, held by each socket until its frame is
/// written: when the last lets go, the fan-out's time is recorded.
pub(super) struct Payload {
    json: Box<str>,
    ready_at: Instant,
    metrics: Metrics,
}

impl std::ops::Deref for Payload {
    type Target = str;

    fn deref(&self) -> &str {
        &self.json
    }
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.metrics.fanned_out(self.ready_at.elapsed());
    }
}

/// What a run broadcasts: its results, then how it ended.
#[derive(Clone)]
enum Said {
    Result(Shared),
    /// Completed: each socket sends `complete`.
    Completed,
    /// The run fell behind the post feed: its sockets close (1013) and
    /// their clients subscribe again.
    FellBehind,
}

/// What makes two subscriptions the same: nothing else reaches a result
/// that is the same for every caller.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    query: String,
    operation_name: Option<String>,
    variables: String,
}

/// The shared runs of one server, by operation.
#[derive(Clone)]
pub struct Fanout {
    schema: BlogSchema,
    metrics: Metrics,
    runs: Runs,
}

/// The runs by operation, each held by its subscribers.
type Runs = Arc<Mutex<HashMap<Key, Weak<Run>>>>;

/// One shared operation running; it stops when its last subscriber leaves.
struct Run {
    key: Key,
    said: broadcast::Sender<Said>,
    runs: Runs,
    task: tokio::task::AbortHandle,
}

impl Fanout {
    /// Shared runs of `schema` (the live one, with its limits), timed
    /// into `metrics`.
    pub fn new(schema: BlogSchema, metrics: Metrics) -> Self {
        Self {
            schema,
            metrics,
            runs: Arc::default(),
        }
    }

    /// Joins the run of `request` (parsed, bounded, and the same for every
    /// caller), starting it if none runs: its results from now on. When the
    /// run or this socket falls behind, `live` is told and the stream waits
    /// for the socket to close.
    pub(super) fn join(
        &self,
        request: async_graphql::Request,
        live: Arc<LiveSocket>,
    ) -> BoxStream<'static, Shared> {
        let key = Key {
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            // One form for equal values: `Variables` is an ordered map.
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
        };
        let mut runs = lock(&self.runs);
        let run = match runs.entry(key) {
            Entry::Occupied(mut found) => match found.get().upgrade() {
                Some(run) => run,
                None => {
                    let run = self.start(found.key().clone(), request);
                    found.insert(Arc::downgrade(&run));
                    run
                }
            },
            Entry::Vacant(vacant) => {
                let run = self.start(vacant.key().clone(), request);
                vacant.insert(Arc::downgrade(&run));
                run
            }
        };
        // Under the lock: the run cannot end between this and its last word.
        let said = run.said.subscribe();
        drop(runs);
        member(run, said, live).boxed()
    }

    /// Starts `request`'s run under `key`; called with the runs locked.
    fn start(&self, key: Key, request: async_graphql::Request) -> Arc<Run> {
        let said = broadcast::channel(BACKLOG).0;
        // The run's own socket, as far as the post feed knows.
        let live = Arc::new(LiveSocket::default());
        let results = self.schema.execute_stream(request.data(live.clone()));
        Arc::new_cyclic(|me| {
            let task = tokio::spawn(run(
                results,
                live,
                self.metrics.clone(),
                said.clone(),
                self.runs.clone(),
                me.clone(),
            ));
            Run {
                key,
                said,
                runs: self.runs.clone(),
                task: task.abort_handle(),
            }
        })
    }
}

fn lock(runs: &Runs) -> MutexGuard<'_, HashMap<Key, Weak<Run>>> {
    runs.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Executes one shared operation: serializes each result once and tells
/// every subscriber; says how it ended, under the lock that joining takes.
async fn run(
    mut results: BoxStream<'static, async_graphql::Response>,
    live: Arc<LiveSocket>,
    metrics: Metrics,
    said: broadcast::Sender<Said>,
    runs: Runs,
    me: Weak<Run>,
) {
    let last = loop {
        let result = tokio::select! {
            result = results.next() => result,
            () = live.fell_behind() => break Said::FellBehind,
        };
        let Some(mut response) = result else {
            break Said::Completed;
        };
        ensure_codes(&mut response.errors);
        if is_request_error(&response) {
            let errors = serde_json::to_string(&response.errors).unwrap_or_default();
            break Said::Result(Shared::Refused(errors.into()));
        }
        // Nobody listening: the run is about to be stopped.
        if said.receiver_count() == 0 {
            continue;
        }
        let payload = Payload {
            json: serde_json::to_string(&response).unwrap_or_default().into(),
            ready_at: Instant::now(),
            metrics: metrics.clone(),
        };
        let _ = said.send(Said::Result(Shared::Next(Arc::new(payload))));
    };
    let mut runs = lock(&runs);
    // `me` still runs: its subscribers are waiting for this.
    if let Some(run) = me.upgrade() {
        if runs.get(&run.key).is_some_and(|entry| entry.ptr_eq(&me)) {
            runs.remove(&run.key);
        }
        let _ = said.send(last);
        // Its last reference may be this one: dropped unlocked.
        drop(runs);
        drop(run);
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.task.abort();
        let mut runs = lock(&self.runs);
        // Unless a new run took its place.
        if runs
            .get(&self.key)
            .is_some_and(|entry| std::ptr::eq(entry.as_ptr(), self))
        {
            runs.remove(&self.key);
        }
    }
}

/// One socket's share of `run`: its results until it ends; on falling
/// behind, `live` is told and the stream waits for the socket to close.
fn member(
    run: Arc<Run>,
    said: broadcast::Receiver<Said>,
    live: Arc<LiveSocket>,
) -> impl Stream<Item = Shared> + Send + 'static {
    stream::unfold(Some((run, said, live)), |state| async move {
        let (run, mut said, live) = state?;
        let fell_behind = match said.recv().await {
            Ok(Said::Result(Shared::Refused(errors))) => {
                return Some((Shared::Refused(errors), None));
            }
            Ok(Said::Result(next)) => return Some((next, Some((run, said, live)))),
            Ok(Said::Completed) => return None,
            Ok(Said::FellBehind)
            | Err(broadcast::error::RecvError::Lagged(_))
            | Err(broadcast::error::RecvError::Closed) => live,
        };
        // Not completed: the client would not subscribe again. The
        // socket closes (1013) and it reconnects.
        drop(run);
        fell_behind.mark_behind();
        std::future::pending().await
    })
}
