//! Sessions: the typed wrapper over `tower_sessions::Session`, and our store.
//!
//! There is no session middleware: tower-sessions' layer writes the session
//! after the response is built, and answers a failed write with an empty
//! HTTP 500, throwing the GraphQL answer away (a `register` whose account
//! exists would look failed). Instead the request's [`AuthSession`] comes
//! from [`Sessions::resolve`], and [`AuthSession::finish`] writes it while a
//! failure can still be answered as a GraphQL error. An unknown session ID
//! never clears the cookie: a cookie planted from a sibling subdomain must
//! not log the user out on every request; when the browser sends several
//! `sid` cookies, the one whose session exists is used.
//!
//! [`AuthSession`] is the only code that knows what a session holds (one
//! [`SignedIn`] entry under [`AUTH_KEY`]). Both timeouts are enforced here
//! and by the store's expiry date, which is always the earlier of the two
//! deadlines:
//! - idle: extended by use, but written lazily, at most once per
//!   [`SessionPolicy::touch_interval`] (the smaller of a minute and a tenth of
//!   the idle timeout), so a request costs no store write while the deadline
//!   can only lag that interval behind: a session used at least once per half
//!   of its idle timeout never expires from idleness;
//! - absolute: counted from sign-in, never extended.

pub mod redis;
pub mod store;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::cookie::{Cookie, SameSite};
use tower_sessions::session::{Id, Record};
use tower_sessions::{Expiry, Session, SessionStore};

use crate::accounts::User;
use store::Store;

/// The cookie's name, as the contract says.
pub const COOKIE_NAME: &str = "sid";
/// The one key a session stores.
const AUTH_KEY: &str = "auth";
/// The session's user: a snapshot kept with the session in Redis; in SQL
/// read from `users` with the session in one query and never stored (see
/// [`stored_data`]).
const USER_KEY: &str = "user";

/// Who signed in, and when; times are Unix milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SignedIn {
    user_id: i64,
    signed_in_at: i64,
    last_seen_at: i64,
    /// The `User-Agent` sent at sign-in, at most [`MAX_USER_AGENT`] characters.
    #[serde(default)]
    user_agent: Option<String>,
    /// The client's address at sign-in (after trusted proxies).
    #[serde(default)]
    ip_address: Option<String>,
}

/// Most live sessions one user may have: signing in once more ends the
/// oldest, so a script that logs in without a cookie jar cannot pile them
/// up (and listing or ending them stays cheap).
pub const MAX_SESSIONS_PER_USER: usize = 100;

/// Longest user agent kept with a session, in characters.
const MAX_USER_AGENT: usize = 256;

/// One of a user's live sessions, as the user may see it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Where the store keeps it (the SHA-256 of its ID); never shown.
    pub(crate) stored_key: String,
    /// A handle for revoking it: derived from the stored hash, so it neither
    /// is nor leads back to the cookie's value.
    pub handle: String,
    /// Whether it is the session of the request asking.
    pub current: bool,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub user_agent: Option<String>,
    pub ip_address: Option<String>,
}

impl SessionInfo {
    /// What a stored session shows of itself, if its data is ours.
    pub(crate) fn from_stored(id_hash: &str, data: &str, current: Option<&str>) -> Option<Self> {
        let data: HashMap<String, serde_json::Value> = serde_json::from_str(data).ok()?;
        let auth = SignedIn::deserialize(data.get(AUTH_KEY)?).ok()?;
        let at = |millis: i64| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
        };
        let created_at = at(auth.signed_in_at)?;
        Some(Self {
            stored_key: id_hash.to_owned(),
            handle: store::handle(id_hash),
            current: current == Some(id_hash),
            created_at,
            last_seen_at: at(auth.last_seen_at)?.max(created_at),
            user_agent: auth.user_agent,
            ip_address: auth.ip_address,
        })
    }
}

/// The user a stored session belongs to: the store keeps it in an indexed
/// column so that a user's sessions can be found.
pub(crate) fn user_id_of(record: &Record) -> Option<i64> {
    let value = record.data.get(AUTH_KEY)?;
    SignedIn::deserialize(value).ok().map(|auth| auth.user_id)
}

/// Adds the session's user, as just read from the database, to a loaded record.
pub(crate) fn attach_user(record: &mut Record, user: &User) {
    if let Ok(user) = serde_json::to_value(user) {
        record.data.insert(USER_KEY.to_owned(), user);
    }
}

/// What the store persists of a record: everything but the attached user.
pub(crate) fn stored_data(record: &Record) -> HashMap<&str, &serde_json::Value> {
    record
        .data
        .iter()
        .filter(|(key, _)| key.as_str() != USER_KEY)
        .map(|(key, value)| (key.as_str(), value))
        .collect()
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

    fn idle_deadline(&self, auth: &SignedIn) -> i64 {
        auth.last_seen_at.saturating_add(millis(self.idle_timeout))
    }

    fn absolute_deadline(&self, auth: &SignedIn) -> i64 {
        auth.signed_in_at
            .saturating_add(millis(self.absolute_timeout))
    }

    /// When the store should drop the session: the earlier deadline.
    fn expiry(&self, auth: &SignedIn) -> Expiry {
        let deadline = self.idle_deadline(auth).min(self.absolute_deadline(auth));
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(deadline) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        Expiry::AtDateTime(at)
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn now_millis() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The session store failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store: {0}")]
    Session(#[from] tower_sessions::session::Error),
    #[error("session store: {0}")]
    Store(#[from] crate::db::DbError),
    #[error("session store: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Most `sid` cookies of one request considered.
const MAX_SESSION_COOKIES: usize = 8;

/// Where sessions live and how their cookie is set.
#[derive(Clone)]
pub struct Sessions {
    store: Arc<Store>,
    policy: SessionPolicy,
    /// The cookie's `Secure` flag.
    secure: bool,
}

impl Sessions {
    /// Sessions in `store`, under `policy`.
    pub fn new(store: Store, policy: SessionPolicy, secure: bool) -> Self {
        Self {
            store: Arc::new(store),
            policy,
            secure,
        }
    }

    /// Answers when the session store does.
    pub async fn ping(&self) -> Result<(), SessionError> {
        self.store.ping().await
    }

    /// The request's session, from its `sid` cookie: loaded lazily when
    /// there is one; when there are several, the first whose session exists.
    pub async fn resolve(&self, headers: &HeaderMap, client: IpAddr) -> AuthSession {
        let ids = session_ids(headers);
        let id = match ids.as_slice() {
            [] => None,
            [id] => Some(*id),
            several => {
                let mut found = None;
                for id in several {
                    // A store failure here surfaces when the session is read.
                    if let Ok(Some(_)) = self.store.load(id).await {
                        found = Some(*id);
                        break;
                    }
                }
                found.or(several.first().copied())
            }
        };
        self.session(id, headers, client)
    }

    /// An empty session for a request whose cookie does not count (one
    /// authenticated by an API token): it can only sign in anew.
    pub fn without_cookie(&self, headers: &HeaderMap, client: IpAddr) -> AuthSession {
        self.session(None, headers, client)
    }

    fn session(&self, id: Option<Id>, headers: &HeaderMap, client: IpAddr) -> AuthSession {
        // A reference-counted copy: only a sign-in reads (and shortens) it.
        let user_agent = headers.get(header::USER_AGENT).cloned();
        AuthSession {
            session: Session::new(id, self.store.clone(), None),
            store: self.store.clone(),
            policy: self.policy,
            secure: self.secure,
            user: Mutex::new(None),
            ended: AtomicBool::new(false),
            user_agent,
            client,
        }
    }
}

/// The well-formed `sid` values of the request's cookies, in order, at most
/// [`MAX_SESSION_COOKIES`].
fn session_ids(headers: &HeaderMap) -> Vec<Id> {
    let mut ids = Vec::new();
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
        if let Ok(id) = value.trim().trim_matches('"').parse::<Id>()
            && !ids.contains(&id)
        {
            ids.push(id);
            if ids.len() == MAX_SESSION_COOKIES {
                break;
            }
        }
    }
    ids
}

/// One request's session, typed: sign in, who is signed in, sign out.
pub struct AuthSession {
    session: Session,
    store: Arc<Store>,
    policy: SessionPolicy,
    /// The request's `User-Agent` and client address, kept with a session
    /// signed in by this request.
    user_agent: Option<HeaderValue>,
    client: IpAddr,
    secure: bool,
    /// The user once looked up in this request (`Some(None)`: anonymous).
    user: Mutex<Option<Option<i64>>>,
    /// Ended in this request (signed out, or timed out): expire the cookie.
    ended: AtomicBool,
}

impl AuthSession {
    /// Writes what this request changed and says how the cookie changes:
    /// `Set-Cookie` for a new or extended session, an expired one for an
    /// ended session, nothing otherwise. An error here is the request's.
    pub async fn finish(&self) -> Result<Option<HeaderValue>, SessionError> {
        let cookie = if self.ended.load(Ordering::Acquire) {
            Cookie::build((COOKIE_NAME, ""))
                .max_age(time::Duration::ZERO)
                .expires(OffsetDateTime::UNIX_EPOCH)
        } else if self.session.is_modified() {
            self.session.save().await?;
            let Some(id) = self.session.id() else {
                return Ok(None);
            };
            let max_age = self.session.expiry_date() - OffsetDateTime::now_utc();
            Cookie::build((COOKIE_NAME, id.to_string())).max_age(max_age.max(time::Duration::ZERO))
        } else {
            return Ok(None);
        };
        let cookie = cookie
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(self.secure)
            .build();
        Ok(HeaderValue::from_str(&cookie.to_string()).ok())
    }

    /// Signs `user` in under a new session ID: the pre-login session, if
    /// any, is destroyed (no session fixation). The session keeps a snapshot
    /// of the user (a role change ends sessions; usernames never change), so
    /// a signed-in request on Redis needs no SQL.
    pub async fn sign_in(&self, user: &User) -> Result<(), SessionError> {
        let user_id = user.id;
        if self.session.id().is_some() {
            self.session.cycle_id().await?;
            // The previous user's, if the browser was signed in already.
            self.session.remove_value(USER_KEY).await?;
        }
        let now = now_millis();
        let auth = SignedIn {
            user_id,
            signed_in_at: now,
            last_seen_at: now,
            user_agent: self
                .user_agent
                .as_ref()
                .and_then(|value| value.to_str().ok())
                .map(|agent| agent.chars().take(MAX_USER_AGENT).collect()),
            ip_address: Some(self.client.to_string()),
        };
        self.session.insert(AUTH_KEY, &auth).await?;
        self.session.insert(USER_KEY, user).await?;
        self.session.set_expiry(Some(self.policy.expiry(&auth)));
        self.ended.store(false, Ordering::Release);
        self.remember(Some(user_id));
        Ok(())
    }

    /// The signed-in user's id, or `None` for an anonymous request. Ends the
    /// session if a timeout has passed, and extends the idle deadline lazily.
    pub async fn user_id(&self) -> Result<Option<i64>, SessionError> {
        if let Some(known) = *self.user.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(known);
        }
        let user_id = self.check().await?;
        self.remember(user_id);
        Ok(user_id)
    }

    /// The signed-in user as loaded with the session (no query of its own),
    /// or `None` when anonymous or when the user signed in during this
    /// request (then look them up by [`AuthSession::user_id`]).
    pub async fn user(&self) -> Result<Option<User>, SessionError> {
        let Some(user_id) = self.user_id().await? else {
            return Ok(None);
        };
        let user = self.session.get::<User>(USER_KEY).await?;
        Ok(user.filter(|user| user.id == user_id))
    }

    /// Deletes the session server-side; the response expires the cookie.
    pub async fn sign_out(&self) -> Result<(), SessionError> {
        self.end().await
    }

    async fn end(&self) -> Result<(), SessionError> {
        self.session.flush().await?;
        self.mark_ended();
        Ok(())
    }

    /// This request's session was deleted from the store: the request goes
    /// on anonymous, and its answer expires the cookie.
    fn mark_ended(&self) {
        self.ended.store(true, Ordering::Release);
        self.remember(None);
    }

    async fn check(&self) -> Result<Option<i64>, SessionError> {
        if self.session.id().is_none() {
            return Ok(None);
        }
        let Some(auth) = self.session.get::<SignedIn>(AUTH_KEY).await? else {
            return Ok(None);
        };
        let now = now_millis();
        if now >= self.policy.idle_deadline(&auth) || now >= self.policy.absolute_deadline(&auth) {
            self.end().await?;
            return Ok(None);
        }
        if now - auth.last_seen_at >= millis(self.policy.touch_interval()) {
            let auth = SignedIn {
                last_seen_at: now,
                ..auth.clone()
            };
            self.session.insert(AUTH_KEY, &auth).await?;
            self.session.set_expiry(Some(self.policy.expiry(&auth)));
        }
        Ok(Some(auth.user_id))
    }

    /// The store's key of this session, once it has one.
    pub fn stored_key(&self) -> Option<String> {
        self.session.id().map(|id| store::id_hash(&id))
    }

    /// The signed-in user's live sessions, newest first.
    pub async fn list(&self, user_id: i64) -> Result<Vec<SessionInfo>, SessionError> {
        let current = self.stored_key();
        let mut sessions = self.store.list(user_id, current.as_deref()).await?;
        sessions.sort_by_key(|session| std::cmp::Reverse(session.created_at));
        Ok(sessions)
    }

    /// Ends `user_id`'s session with this handle; `false` when it has none.
    pub async fn revoke(&self, user_id: i64, handle: &str) -> Result<bool, SessionError> {
        let ended = self.store.revoke(user_id, handle).await?;
        if ended
            && self
                .stored_key()
                .is_some_and(|own| store::handle(&own) == handle)
        {
            self.mark_ended();
        }
        Ok(ended)
    }

    /// Ends every other session of `user_id`; how many there were.
    pub async fn end_others(&self, user_id: i64) -> Result<usize, SessionError> {
        self.store
            .revoke_others(user_id, self.stored_key().as_deref())
            .await
    }

    /// Ends every session of `user_id` (this one too, when it is theirs);
    /// how many there were.
    pub async fn end_all_of(&self, user_id: i64) -> Result<usize, SessionError> {
        let ended = self.store.revoke_others(user_id, None).await?;
        let signed_in_as = *self.user.lock().unwrap_or_else(|p| p.into_inner());
        if signed_in_as == Some(Some(user_id)) {
            self.mark_ended();
        }
        Ok(ended)
    }

    /// Gives the signed-in session a new ID (the old one is deleted now,
    /// the new one written when the request finishes).
    pub async fn renew(&self) -> Result<(), SessionError> {
        self.session.cycle_id().await?;
        // The expiry is not part of the loaded record: set it again, or the
        // new record would get tower-sessions' default instead of ours.
        if let Some(auth) = self.session.get::<SignedIn>(AUTH_KEY).await? {
            self.session.set_expiry(Some(self.policy.expiry(&auth)));
        }
        Ok(())
    }

    fn remember(&self, user_id: Option<i64>) {
        *self.user.lock().unwrap_or_else(|p| p.into_inner()) = Some(user_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Role;

    #[test]
    fn an_attached_user_reads_back_and_is_never_stored() {
        let user = User {
            id: 7,
            username: "alice".into(),
            role: Role::User,
            created_at: time::macros::datetime!(2026-11-22 05:00:00.123456),
        };
        let mut record = Record {
            id: tower_sessions::session::Id::default(),
            data: HashMap::new(),
            expiry_date: OffsetDateTime::now_utc(),
        };
        record
            .data
            .insert(AUTH_KEY.into(), serde_json::json!({"user_id": 7}));
        attach_user(&mut record, &user);
        let back: User = serde_json::from_value(record.data[USER_KEY].clone()).unwrap();
        assert_eq!(
            (back.id, back.username.as_str(), back.created_at),
            (7, "alice", user.created_at)
        );
        assert_eq!(
            stored_data(&record).keys().copied().collect::<Vec<_>>(),
            [AUTH_KEY]
        );
    }
}
