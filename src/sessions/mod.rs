//! Sessions: the service every part of the server ends sessions through
//! ([`Sessions`](crate::sessions::Sessions), with the reason each ends for), and the request's own
//! session ([`RequestSession`](crate::sessions::RequestSession)): who it signed in, signing in and out, and
//! the cookie its answer sets.
//!
//! Both timeouts are enforced here and by the store's expiry date, which is
//! always the earlier of the two deadlines:
//! - idle: extended by use, but written lazily, at most once per
//!   [`SessionPolicy::touch_interval`] (the smaller of a minute and a tenth of
//!   the idle timeout), so a request costs no store write while the deadline
//!   can only lag that interval behind: a session used at least once per half
//!   of its idle timeout never expires from idleness;
//! - absolute: counted from sign-in, never extended.
//!
//! A live session and its user are remembered per instance (see
//! [`crate::cache`]): every ending is announced on the bus, and forgets the
//! copy everywhere; a copy that looks expired is reloaded from the store
//! before anything is deleted (another instance may have extended it).
//! How a session ends (deleted, counted, announced) is in `endings`.
//!
//! tower-sessions gives us the session ID (128 random bits, its text form)
//! and the cookie builder. Its `Session` and middleware are not used: they
//! load a session lazily (a second store round trip when the request's
//! identity was already resolved), write it after the response is built,
//! and answer a failed write with an empty HTTP 500, where the contract
//! wants a GraphQL error.

mod endings;
pub mod keys;
mod record;
mod request;
pub mod store;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, header};

use crate::accounts::User;
use crate::accounts::loader::Users;
use crate::cache::{Bounds, Cache, Weigh};
use crate::clock::Millis;
pub use crate::events::EndReason;
use crate::events::{Event, Events};
use crate::telemetry::Metrics;
use keys::SessionId;
pub use keys::StoredKey;
pub use record::SessionInfo;
use record::{SignedIn, Stored};
pub use request::RequestSession;
pub use store::{MAX_SESSIONS_PER_USER, SessionStore, StoreError};

/// The cookie's name, as the contract says.
pub const COOKIE_NAME: &str = "sid";

/// Most `sid` cookies of one request looked up (in one round trip): far
/// more than a browser keeps for one site (about 180), so planted cookies
/// cannot crowd out the real one, and a bounded cost for a hostile request.
const MAX_SESSION_COOKIES: usize = 1024;

/// Most sessions remembered per instance, and their bytes (a copy holds
/// the session and its user: about 300 bytes).
const REMEMBERED: Bounds = Bounds {
    entries: 50_000,
    bytes: 24 << 20,
    max_age: crate::cache::TRUSTED_FOR,
};

/// A live session and its user, as remembered.
pub(crate) struct Remembered {
    session: SignedIn,
    user: User,
}

impl Weigh for Arc<Remembered> {
    fn weight(&self) -> usize {
        let session = &self.session;
        std::mem::size_of::<Remembered>()
            + session.user_agent.as_ref().map_or(0, String::capacity)
            + session.ip_address.as_ref().map_or(0, String::capacity)
            + self.user.username.capacity()
    }
}

/// The session timeouts.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
}

impl SessionPolicy {
    /// How stale the stored last-seen time may get before a request rewrites it.
    pub fn touch_interval(&self) -> Duration {
        (self.idle_timeout / 10).min(Duration::from_secs(60))
    }

    /// When `session` ends unless it is used again: the earlier deadline.
    fn expiry(&self, session: &SignedIn) -> Millis {
        let idle = session.last_seen_at.plus(self.idle_timeout);
        let absolute = session.signed_in_at.plus(self.absolute_timeout);
        idle.min(absolute)
    }

    /// `session` as stored, with its expiry.
    fn stored(&self, session: SignedIn) -> Stored {
        Stored {
            expires_at: self.expiry(&session),
            signed_in: session,
        }
    }
}

/// The session store failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct SessionError(Arc<StoreError>);

impl SessionError {
    /// The store that failed, for the metrics.
    pub fn store(&self) -> crate::telemetry::Store {
        match *self.0 {
            StoreError::Redis(_) => crate::telemetry::Store::Redis,
            StoreError::Db(_) | StoreError::Users(_) | StoreError::Stopped => {
                crate::telemetry::Store::Database
            }
        }
    }
}

impl From<StoreError> for SessionError {
    fn from(err: StoreError) -> Self {
        Self(Arc::new(err))
    }
}

/// Where sessions live, their rules, and how their cookie is set; cheap to
/// clone.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    store: SessionStore,
    policy: SessionPolicy,
    /// The cookie's `Secure` flag.
    secure: bool,
    /// Reads a session's user when the store keeps none (Redis).
    users: Users,
    /// Where the sessions that end are announced.
    events: Events,
    /// Sessions started and ended.
    metrics: Metrics,
    /// Live sessions and their users, by stored key.
    remembered: Arc<Cache<StoredKey, Arc<Remembered>>>,
}

/// What the store holds under a request's session IDs.
pub(crate) enum Found {
    /// The first live one: which ID named it, the session, its user.
    Live {
        at: usize,
        session: SignedIn,
        user: User,
    },
    /// The first one found was past a timeout (and is now deleted).
    Expired,
    /// The first one found has ended: its user's password or role changed
    /// since it signed in.
    Ended,
    /// None.
    Nothing,
}

/// What the store says of a session someone holds open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Live; it ends at this time unless it is used again.
    Until(Millis),
    /// A timeout passed.
    Expired,
    /// Gone, for another reason.
    Ended,
}

impl Sessions {
    /// Sessions in `store`, under `policy`; users read through `users`.
    pub fn new(
        store: SessionStore,
        policy: SessionPolicy,
        secure: bool,
        users: Users,
        events: Events,
        metrics: Metrics,
    ) -> Self {
        let remembered = Arc::new(Cache::new(&events, REMEMBERED));
        let forget = remembered.clone();
        events.observe(Arc::new(move |event| forget_ended(&forget, event)));
        Self {
            inner: Arc::new(Inner {
                store,
                policy,
                secure,
                users,
                events,
                metrics,
                remembered,
            }),
        }
    }

    /// Looks up the first session that `keys` name: from memory when one
    /// key names a remembered copy that may answer and has not expired,
    /// else in one store round trip (which ends it if a timeout has
    /// passed, and reads its user).
    pub(crate) async fn find(&self, keys: &[StoredKey]) -> Result<Found, SessionError> {
        let remembered = &self.inner.remembered;
        if let [key] = keys
            && let Some(copy) = remembered.get(key)
            && Millis::now() < self.inner.policy.expiry(&copy.session)
        {
            return Ok(Found::Live {
                at: 0,
                session: copy.session.clone(),
                user: copy.user.clone(),
            });
        }
        let ticket = remembered.ticket();
        let found = self.find_in_store(keys).await?;
        if let Found::Live { at, session, user } = &found {
            self.remember(ticket, &keys[*at], session, user);
        }
        Ok(found)
    }

    /// Remembers a live session, loaded after `ticket` was taken.
    fn remember(
        &self,
        ticket: crate::cache::Ticket,
        key: &StoredKey,
        session: &SignedIn,
        user: &User,
    ) {
        let copy = Remembered {
            session: session.clone(),
            user: user.clone(),
        };
        self.inner
            .remembered
            .put(ticket, key.clone(), user.id, Arc::new(copy));
    }

    /// Looks up the first session that `keys` name in the store, in one
    /// round trip: ends it if a timeout has passed, and reads its user.
    async fn find_in_store(&self, keys: &[StoredKey]) -> Result<Found, SessionError> {
        let inner = &self.inner;
        let Some((at, stored, user)) = inner.store.load_first(keys).await? else {
            return Ok(Found::Nothing);
        };
        let session = stored.signed_in;
        if Millis::now() >= inner.policy.expiry(&session) {
            self.end(&keys[at], EndReason::Expired).await?;
            return Ok(Found::Expired);
        }
        let user = match user {
            Some(user) => Some(user),
            None => inner
                .users
                .load_one(session.user_id)
                .await
                .map_err(|err| SessionError::from(StoreError::Users(err)))?,
        };
        // A session whose user is gone is nobody's; so is one signed in
        // before its user's password or role changed (a login in flight
        // stores its session after the change ended the others).
        let Some(user) = user else {
            return Ok(Found::Nothing);
        };
        if user.credential_version != session.credential_version {
            return Ok(Found::Ended);
        }
        Ok(Found::Live { at, session, user })
    }

    /// Whether the session under `key` is still live, read from the store
    /// (a socket's re-check; it never extends the session).
    pub async fn liveness(&self, key: &StoredKey) -> Result<Liveness, SessionError> {
        Ok(match self.find_in_store(std::slice::from_ref(key)).await? {
            Found::Live { session, .. } => Liveness::Until(self.inner.policy.expiry(&session)),
            Found::Expired => Liveness::Expired,
            Found::Ended | Found::Nothing => Liveness::Ended,
        })
    }

    /// Answers when the session store does.
    pub async fn ping(&self) -> Result<(), SessionError> {
        Ok(self.inner.store.ping().await?)
    }

    /// The request's session, named by its `sid` cookies; looked up when
    /// the request first asks who is signed in (so that a request refused
    /// for its shape costs no store round trip).
    pub fn from_cookies(&self, headers: &HeaderMap, client: IpAddr) -> RequestSession {
        RequestSession::new(self.clone(), headers, client, session_ids(headers))
    }

    /// An empty session for a request whose cookie does not count (one
    /// authenticated by an API token): it can only sign in anew.
    pub fn without_cookie(&self, headers: &HeaderMap, client: IpAddr) -> RequestSession {
        RequestSession::new(self.clone(), headers, client, Vec::new())
    }

    /// `user_id`'s live sessions, newest first; `current` is the asking one.
    pub async fn list(
        &self,
        user_id: i64,
        current: Option<&StoredKey>,
    ) -> Result<Vec<SessionInfo>, SessionError> {
        let mut sessions: Vec<SessionInfo> = self
            .inner
            .store
            .list(user_id)
            .await?
            .into_iter()
            .map(|(key, stored)| SessionInfo::new(&key, stored, current))
            .collect();
        sessions.sort_by_key(|session| std::cmp::Reverse(session.created_at));
        Ok(sessions)
    }
}

/// Forgets the copies of the sessions `event` ended (all of a user's,
/// whichever one of them it names: a copy is cheap to load again).
fn forget_ended(remembered: &Cache<StoredKey, Arc<Remembered>>, event: &Event) {
    match event {
        Event::SessionEnded { key, .. } => remembered.forget(key.as_str()),
        Event::SessionRenewed { from, .. } => remembered.forget(from.as_str()),
        Event::UserSessionsEnded { user, .. } | Event::UserChanged { user } => {
            remembered.forget_owner(*user)
        }
        _ => {}
    }
}

/// The distinct well-formed `sid` values of the request's cookies, in
/// order, at most [`MAX_SESSION_COOKIES`].
fn session_ids(headers: &HeaderMap) -> Vec<SessionId> {
    let mut ids: Vec<SessionId> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let pairs = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'));
    for pair in pairs {
        let Some((name, value)) = pair.trim().split_once('=') else {
            continue;
        };
        if name.trim() != COOKIE_NAME {
            continue;
        }
        if let Some(id) = SessionId::parse(value.trim().trim_matches('"'))
            && seen.insert(id)
        {
            ids.push(id);
            if ids.len() == MAX_SESSION_COOKIES {
                break;
            }
        }
    }
    ids
}
