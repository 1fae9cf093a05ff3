//! How the bus knows it works: each instance's heartbeat through the whole
//! path, the silence that gives a listener up, and the backoff of its
//! reconnection.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Backend, Event, Events, StartError};

/// How often an instance sends itself a heartbeat through the bus.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(500);
/// A connected listener that heard no heartbeat for this long is
/// presumed dead, and replaced.
const SILENT_FOR: Duration = Duration::from_secs(5);
/// A connection lost after this long starts its reconnection backoff afresh.
const STAYED_UP: Duration = Duration::from_secs(30);

/// Sends this instance's heartbeat, for as long as the bus lives.
/// Also watches the heartbeats come back: the moment none did within
/// `HEALTHY_WITHIN`, the generation is bumped (events may be lost from
/// then on), before the listener gives up on its connection.
pub(super) async fn heartbeats(events: Events) {
    let mut ticks = tokio::time::interval(HEARTBEAT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_healthy = events.healthy();
    for seq in 0.. {
        ticks.tick().await;
        let healthy = events.healthy();
        if was_healthy && !healthy {
            tracing::warn!(
                bus = events.backend_name(),
                "event bus: no heartbeat came back"
            );
            events.next_generation();
        }
        was_healthy = healthy;
        let beat = Event::Heartbeat {
            instance: events.inner.instance,
            seq,
        };
        let sent = match &events.inner.backend {
            // A beat never waits behind a slow connect: one that is not
            // sent does not come back, which is what is measured.
            Backend::Postgres { publisher, .. } => {
                publisher.publish_without_waiting(beat.encode());
                Ok(())
            }
            _ => events.try_publish(&beat).await,
        };
        if let Err(err) = sent {
            tracing::debug!(error = %err, "cannot send a heartbeat");
        }
    }
}

/// Completes once no heartbeat came back for `SILENT_FOR` (and at least
/// that long after it was called): a listener that hears nothing is
/// presumed dead, whatever its connection says.
pub(super) async fn silent(events: &Events) {
    let since = tokio::time::Instant::now();
    let mut check = tokio::time::interval(SILENT_FOR / 5);
    loop {
        check.tick().await;
        if since.elapsed() > SILENT_FOR && !events.heard_within(SILENT_FOR) {
            return;
        }
    }
}

/// After a listener was lost (having been up `connected_for`): marks the
/// gap, then calls `connect` with backoff until it subscribes again.
pub(super) async fn reconnect<T, F, C>(
    events: &Events,
    backoff: &mut Backoff,
    connected_for: Duration,
    mut connect: C,
) -> T
where
    C: FnMut() -> F,
    F: Future<Output = Result<T, StartError>>,
{
    events.gap();
    events.inner.reconnections.fetch_add(1, Ordering::Relaxed);
    backoff.after(connected_for);
    loop {
        backoff.wait().await;
        match connect().await {
            Ok(listener) => {
                tracing::info!(bus = events.backend_name(), "event bus: subscribed again");
                return listener;
            }
            Err(err) => tracing::warn!(error = %err, "event bus: cannot subscribe again"),
        }
    }
}

/// Waits before the next attempt to reconnect: 100 ms, doubling to 5 s.
pub(super) struct Backoff(Duration);

impl Backoff {
    pub(super) fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    /// Starts afresh when the connection it waited for stayed up a while
    /// (one that dies at once keeps backing off).
    fn after(&mut self, connected_for: Duration) {
        if connected_for >= STAYED_UP {
            *self = Self::new();
        }
    }

    pub(super) async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}
