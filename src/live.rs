//! What open WebSockets are told, above the bus: the feed of new posts
//! (each read from the database once per instance, then shared by every
//! subscriber), and the watch that tells a socket its session ended, and
//! why, whichever instance or timeout ended it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::clock::Millis;
use crate::db::Db;
use crate::events::{EndReason, Event, Events};
use crate::posts::Post;
use crate::sessions::keys::StoredKey;
use crate::sessions::{Liveness, Sessions};

/// New posts kept for a subscriber that is slow to take them; one further
/// behind is disconnected rather than buffered without bound.
const FEED_BACKLOG: usize = 256;

/// Every new post, from any instance, read once per instance.
#[derive(Clone)]
pub struct PostFeed {
    posts: broadcast::Sender<Arc<Post>>,
}

impl PostFeed {
    /// Follows the bus for as long as the server runs.
    pub async fn start(db: Db, events: &Events) -> Self {
        let posts = broadcast::channel(FEED_BACKLOG).0;
        let feed = Self { posts };
        // Where a catch-up after a gap starts.
        let newest = match Post::newest_id(&db).await {
            Ok(id) => id,
            Err(err) => {
                tracing::warn!(error = %err, "the post feed cannot read the newest post");
                0
            }
        };
        let heard = events.subscribe();
        events.spawn(feed.clone().follow(db, events.clone(), heard, newest));
        feed
    }

    /// The posts created from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Post>> {
        self.posts.subscribe()
    }

    async fn follow(
        self,
        db: Db,
        events: Events,
        mut heard: broadcast::Receiver<Arc<Event>>,
        newest: i64,
    ) {
        let mut generation = events.generation();
        let mut sent = Sent {
            recent: std::collections::VecDeque::new(),
            newest,
        };
        loop {
            tokio::select! {
                event = heard.recv() => match event {
                    Ok(event) => {
                        if let Event::PostCreated { id } = *event
                            && !sent.contains(id)
                        {
                            self.announce(&db, &mut sent, id).await;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "the post feed fell behind the bus");
                        self.catch_up(&db, &mut sent).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                changed = generation.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // Back after a gap: what was created meanwhile.
                    if events.healthy() {
                        self.catch_up(&db, &mut sent).await;
                    }
                }
            }
        }
    }

    async fn announce(&self, db: &Db, sent: &mut Sent, id: i64) {
        // Nobody listening: nothing to read.
        if self.posts.receiver_count() == 0 {
            sent.record(id);
            return;
        }
        match Post::find(db, id).await {
            Ok(Some(post)) => {
                sent.record(id);
                let _ = self.posts.send(Arc::new(post));
            }
            // Deleted before it could be read: nothing to announce.
            Ok(None) => sent.record(id),
            Err(err) => tracing::warn!(error = %err, "cannot read a new post for its subscribers"),
        }
    }

    /// Announces the posts newer than the newest announced, which the bus
    /// may have lost.
    async fn catch_up(&self, db: &Db, sent: &mut Sent) {
        match Post::created_after(db, sent.newest, CATCH_UP).await {
            Ok(posts) => {
                for post in posts {
                    if !sent.contains(post.id) {
                        sent.record(post.id);
                        let _ = self.posts.send(Arc::new(post));
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "the post feed cannot catch up"),
        }
    }
}

/// Posts a catch-up announces at most (a longer gap loses the older).
const CATCH_UP: i64 = FEED_BACKLOG as i64;

/// The posts announced lately, so that one heard again (on the bus after
/// a catch-up found it) goes out once.
struct Sent {
    recent: std::collections::VecDeque<i64>,
    newest: i64,
}

impl Sent {
    fn contains(&self, id: i64) -> bool {
        self.recent.contains(&id)
    }

    fn record(&mut self, id: i64) {
        if self.recent.len() == 2 * FEED_BACKLOG {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
        self.newest = self.newest.max(id);
    }
}

/// How long a re-check of a session may wait for the store before trying
/// again.
const RECHECK_RETRY: Duration = Duration::from_secs(1);

/// Waits until the session under `key` (of `user`) ends, and says why: an
/// event for it from any instance, its expiry (reloaded first: another
/// instance may have extended it), or, after the bus lost events, a re-check
/// of the store. Follows the session to its new ID when it is renewed.
pub async fn session_end(
    sessions: &Sessions,
    events: &Events,
    user: i64,
    mut key: StoredKey,
) -> EndReason {
    let mut heard = events.subscribe();
    let mut generation = events.generation();
    let mut expires_at = match recheck(sessions, &key, None).await {
        Ok(at) => at,
        Err(reason) => return reason,
    };
    loop {
        let sleep = tokio::time::sleep(Duration::from_millis(
            u64::try_from(expires_at.0 - Millis::now().0).unwrap_or(0),
        ));
        tokio::select! {
            () = sleep => {
                expires_at = match recheck(sessions, &key, Some(expires_at)).await {
                    Ok(at) => at,
                    Err(reason) => return reason,
                };
            }
            changed = generation.changed() => {
                if changed.is_err() {
                    return EndReason::Revoked;
                }
                // Events may have been missed: the store says.
                expires_at = match recheck(sessions, &key, Some(expires_at)).await {
                    Ok(at) => at,
                    Err(reason) => return reason,
                };
            }
            event = heard.recv() => {
                let event = match event {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        expires_at = match recheck(sessions, &key, Some(expires_at)).await {
                            Ok(at) => at,
                            Err(reason) => return reason,
                        };
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return EndReason::Revoked,
                };
                match &*event {
                    Event::SessionEnded { key: ended, reason } if *ended == key.as_str() => {
                        return *reason;
                    }
                    Event::UserSessionsEnded { user: of, except, reason }
                        if *of == user && except.as_deref() != Some(key.as_str()) =>
                    {
                        // Which of the user's sessions ended, the store knows.
                        match recheck(sessions, &key, Some(expires_at)).await {
                            Ok(at) => expires_at = at,
                            Err(_) => return *reason,
                        }
                    }
                    Event::SessionRenewed { from, to } if *from == key.as_str() => {
                        key = StoredKey::from_stored(to.clone());
                    }
                    _ => {}
                }
            }
        }
    }
}

/// When the session under `key` expires, read from the store (which ends
/// it if it has expired); why it ended when it has. `known`: when it was
/// last known to expire. A store that fails is asked again: the socket
/// stays until the answer is known.
async fn recheck(
    sessions: &Sessions,
    key: &StoredKey,
    known: Option<Millis>,
) -> Result<Millis, EndReason> {
    loop {
        match sessions.liveness(key).await {
            Ok(Liveness::Until(at)) => return Ok(at),
            Ok(Liveness::Expired) => return Err(EndReason::Expired),
            // Gone past its time: the housekeeping deleted it.
            Ok(Liveness::Ended) if known.is_some_and(|at| Millis::now() >= at) => {
                return Err(EndReason::Expired);
            }
            // Ended by an event this socket did not hear (a gap in the bus).
            Ok(Liveness::Ended) => return Err(EndReason::Revoked),
            Err(err) => {
                tracing::warn!(error = %err, "cannot re-check a socket's session");
                tokio::time::sleep(RECHECK_RETRY).await;
            }
        }
    }
}
