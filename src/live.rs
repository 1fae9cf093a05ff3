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
        let mut now_and_then = tokio::time::interval(CATCH_UP_EVERY);
        now_and_then.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                // An event lost between its post's commit and its
                // publishing (that instance died): found here.
                _ = now_and_then.tick() => {
                    if self.posts.receiver_count() > 0 {
                        self.catch_up(&db, &mut sent).await;
                    }
                }
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
        match Post::newest_after(db, sent.newest, CATCH_UP).await {
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
/// How often the feed looks for posts whose event was lost, while anyone
/// subscribes.
const CATCH_UP_EVERY: Duration = Duration::from_secs(5);

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
/// Listens from the moment it is called, before the future first runs.
pub fn session_end(
    sessions: Sessions,
    events: &Events,
    user: i64,
    key: StoredKey,
) -> impl Future<Output = EndReason> + Send + 'static {
    let watch = Watch {
        sessions,
        heard: events.subscribe(),
        generation: events.generation(),
        user,
        key,
        expires_at: None,
    };
    watch.run()
}

/// How long a session found gone without a reason may still turn out to
/// have been renewed: the old key is deleted before the new one is stored
/// and announced, in the same request.
const RENEWAL_GRACE: Duration = Duration::from_secs(1);
/// At most this long, at random, before a socket re-checks after a gap:
/// every socket of the instance re-checks at once otherwise.
const RECHECK_SPREAD_MS: u64 = 1000;

/// One socket's session, watched.
struct Watch {
    sessions: Sessions,
    heard: broadcast::Receiver<Arc<Event>>,
    generation: tokio::sync::watch::Receiver<u64>,
    user: i64,
    key: StoredKey,
    /// When it ends unless used again, as last read from the store.
    expires_at: Option<Millis>,
}

impl Watch {
    async fn run(mut self) -> EndReason {
        if let Err(reason) = self.check().await {
            return reason;
        }
        loop {
            let left = self.expires_at.map_or(0, |at| at.0 - Millis::now().0);
            let sleep = tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0)));
            let checked = tokio::select! {
                () = sleep => self.check().await,
                changed = self.generation.changed() => {
                    if changed.is_err() {
                        return EndReason::Revoked;
                    }
                    // Events may have been missed: the store says.
                    let spread = rand::random::<u64>() % RECHECK_SPREAD_MS;
                    tokio::time::sleep(Duration::from_millis(spread)).await;
                    self.check().await
                }
                event = self.heard.recv() => match event {
                    Ok(event) => self.on(&event).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => self.check().await,
                    Err(broadcast::error::RecvError::Closed) => Err(EndReason::Revoked),
                },
            };
            if let Err(reason) = checked {
                return reason;
            }
        }
    }

    /// What `event` means for this session: `Err` with the reason when it
    /// ended.
    async fn on(&mut self, event: &Event) -> Result<(), EndReason> {
        match event {
            Event::SessionEnded { key, reason } if *key == self.key.as_str() => Err(*reason),
            Event::UserSessionsEnded {
                user,
                except,
                reason,
            } if *user == self.user && except.as_deref() != Some(self.key.as_str()) => {
                // Which of the user's sessions ended, the store knows.
                match recheck(&self.sessions, &self.key, self.expires_at).await {
                    Check::Live(at) => {
                        self.expires_at = Some(at);
                        Ok(())
                    }
                    Check::Ended(expired) => Err(expired),
                    Check::Gone => Err(*reason),
                }
            }
            Event::SessionRenewed { from, to } if *from == self.key.as_str() => {
                self.key = StoredKey::from_stored(to.clone());
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Reads the session from the store: `Err` with the reason when it has
    /// ended.
    async fn check(&mut self) -> Result<(), EndReason> {
        let deadline = tokio::time::Instant::now() + RENEWAL_GRACE;
        loop {
            match recheck(&self.sessions, &self.key, self.expires_at).await {
                Check::Live(at) => {
                    self.expires_at = Some(at);
                    return Ok(());
                }
                Check::Ended(reason) => return Err(reason),
                Check::Gone => {}
            }
            // Gone, and no event said why: renewed (its new ID is on its
            // way), or ended by an event this socket did not hear.
            loop {
                let event = match tokio::time::timeout_at(deadline, self.heard.recv()).await {
                    Ok(Ok(event)) => event,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                    Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => {
                        return Err(EndReason::Revoked);
                    }
                };
                match &*event {
                    Event::SessionRenewed { from, to } if *from == self.key.as_str() => {
                        self.key = StoredKey::from_stored(to.clone());
                        break;
                    }
                    Event::SessionEnded { key, reason } if *key == self.key.as_str() => {
                        return Err(*reason);
                    }
                    Event::UserSessionsEnded {
                        user,
                        except,
                        reason,
                    } if *user == self.user && except.as_deref() != Some(self.key.as_str()) => {
                        return Err(*reason);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// What the store says of a watched session.
enum Check {
    /// Live; it ends then unless used again.
    Live(Millis),
    /// Ended, and why (a timeout).
    Ended(EndReason),
    /// Gone, for a reason the store does not keep.
    Gone,
}

/// Reads the session under `key` from the store (which ends it if it has
/// expired). `known`: when it was last known to expire. A store that fails
/// is asked again: the socket stays until the answer is known.
async fn recheck(sessions: &Sessions, key: &StoredKey, known: Option<Millis>) -> Check {
    loop {
        match sessions.liveness(key).await {
            Ok(Liveness::Until(at)) => return Check::Live(at),
            Ok(Liveness::Expired) => return Check::Ended(EndReason::Expired),
            // Gone past its time: the housekeeping deleted it.
            Ok(Liveness::Ended) if known.is_some_and(|at| Millis::now() >= at) => {
                return Check::Ended(EndReason::Expired);
            }
            Ok(Liveness::Ended) => return Check::Gone,
            Err(err) => {
                tracing::warn!(error = %err, "cannot re-check a socket's session");
                tokio::time::sleep(RECHECK_RETRY).await;
            }
        }
    }
}
