//! One request's session: loaded once when the request arrives, changed by
//! signing in and out, written (and its cookie set) when the request
//! finishes, while a failure can still be answered as a GraphQL error.
//!
//! An unknown session ID never clears the cookie: a cookie planted from a
//! sibling subdomain must not log the user out on every request.

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::OnceCell;

use axum::http::{HeaderMap, HeaderValue, header};
use time::OffsetDateTime;
use tower_sessions::cookie::{Cookie, SameSite};

use super::keys::{SessionId, StoredKey};
use super::record::{MAX_USER_AGENT, SignedIn};
use super::{COOKIE_NAME, EndReason, Found, SessionError, Sessions};
use crate::accounts::User;
use crate::clock::Millis;
use crate::events::Event;

/// One request's session, typed: who is signed in, sign in, sign out.
pub struct RequestSession {
    sessions: Sessions,
    /// The request's `User-Agent` and client address, kept with a session
    /// signed in by this request.
    user_agent: Option<HeaderValue>,
    client: IpAddr,
    /// The IDs its cookies name, in order; looked up at most once, when
    /// the request first asks who is signed in.
    ids: Vec<SessionId>,
    loaded: OnceCell<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The signed-in session, if any.
    current: Option<Current>,
    /// What the end of the request writes.
    write: Write,
    /// The request's cookie named a session that ended: expire it.
    ended: bool,
    /// Loading the session failed: the request cannot know who it is.
    failed: Option<SessionError>,
    /// The session's key before [`RequestSession::renew`] gave it a new
    /// one, announced with the new one once it is stored.
    renewed_from: Option<StoredKey>,
}

struct Current {
    /// Its ID; `None` until a session signed in by this request is stored.
    id: Option<SessionId>,
    session: SignedIn,
    user: User,
}

#[derive(Default, PartialEq, Eq)]
enum Write {
    #[default]
    Nothing,
    /// Store it under a new ID and send the cookie.
    Create,
    /// Rewrite it (its idle deadline moved) and refresh the cookie.
    Update,
}

impl RequestSession {
    pub(super) fn new(
        sessions: Sessions,
        headers: &HeaderMap,
        client: IpAddr,
        ids: Vec<SessionId>,
    ) -> Self {
        Self {
            sessions,
            // A reference-counted copy: only a sign-in reads (and shortens) it.
            user_agent: headers.get(header::USER_AGENT).cloned(),
            client,
            ids,
            loaded: OnceCell::new(),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Looks up the first live session its cookies name, however many
    /// planted ones come before it, in one store round trip, the first time
    /// it is called (later calls wait for that one): ends it if a timeout
    /// has passed, extends its idle deadline lazily, and reads its user. A
    /// request that never asks who is signed in (or is refused before it
    /// runs) costs no round trip; a store that fails is the request's error
    /// only when it asks.
    async fn load(&self) {
        self.loaded.get_or_init(|| self.look_up()).await;
    }

    async fn look_up(&self) {
        if self.ids.is_empty() {
            return;
        }
        let loaded = self.try_load(&self.ids).await;
        tracing::trace!(
            cookies = self.ids.len(),
            signed_in = matches!(loaded, Ok(true)),
            "session looked up"
        );
        if let Err(err) = loaded {
            self.state().failed = Some(err);
        }
    }

    /// Whether a live session was found.
    async fn try_load(&self, ids: &[SessionId]) -> Result<bool, SessionError> {
        let inner = &self.sessions.inner;
        let keys: Vec<StoredKey> = ids.iter().map(SessionId::stored_key).collect();
        let (at, mut session, user) = match self.sessions.find(&keys).await? {
            Found::Live { at, session, user } => (at, session, user),
            Found::Expired | Found::Ended => {
                self.state().ended = true;
                return Ok(false);
            }
            Found::Nothing => return Ok(false),
        };
        let now = Millis::now();
        let mut state = self.state();
        if now.since(session.last_seen_at) >= inner.policy.touch_interval() {
            session.last_seen_at = now;
            state.write = Write::Update;
        }
        state.current = Some(Current {
            id: Some(ids[at]),
            session,
            user,
        });
        Ok(true)
    }

    /// The signed-in user, or `None` for an anonymous request; the store's
    /// failure if the session could not be loaded.
    pub async fn user(&self) -> Result<Option<User>, SessionError> {
        self.load().await;
        let state = self.state();
        if let Some(err) = &state.failed {
            return Err(err.clone());
        }
        Ok(state.current.as_ref().map(|current| current.user.clone()))
    }

    /// Where this session is stored, once it is.
    pub async fn stored_key(&self) -> Option<StoredKey> {
        self.load().await;
        self.state()
            .current
            .as_ref()
            .and_then(|current| current.id.map(|id| id.stored_key()))
    }

    /// Where this session is stored, once it is; the store's failure if it
    /// could not be looked up (then nothing may act as if it had none).
    async fn loaded_key(&self) -> Result<Option<StoredKey>, SessionError> {
        self.load().await;
        if let Some(err) = &self.state().failed {
            return Err(err.clone());
        }
        Ok(self.stored_key().await)
    }

    /// Signs `user` in under a new session ID: the session the request came
    /// with, if any, ends (no session fixation; a store that cannot say
    /// which session that is refuses the sign-in).
    pub async fn sign_in(&self, user: &User) -> Result<(), SessionError> {
        if let Some(key) = self.loaded_key().await? {
            self.sessions.end(&key, EndReason::LoggedOut).await?;
        }
        let now = Millis::now();
        let session = SignedIn {
            user_id: user.id,
            signed_in_at: now,
            last_seen_at: now,
            user_agent: self
                .user_agent
                .as_ref()
                .and_then(|value| value.to_str().ok())
                .map(|agent| agent.chars().take(MAX_USER_AGENT).collect()),
            ip_address: Some(self.client.to_string()),
            credential_version: user.credential_version,
        };
        let mut state = self.state();
        state.current = Some(Current {
            id: None,
            session,
            user: user.clone(),
        });
        state.write = Write::Create;
        state.ended = false;
        state.failed = None;
        Ok(())
    }

    /// Ends this session; the answer expires the cookie.
    pub async fn sign_out(&self) -> Result<(), SessionError> {
        if let Some(key) = self.loaded_key().await? {
            self.sessions.end(&key, EndReason::LoggedOut).await?;
        }
        self.mark_ended();
        Ok(())
    }

    /// Whether the request named a session in a cookie (live or not): how
    /// the access log says it was identified.
    pub fn named_by_cookie(&self) -> bool {
        !self.ids.is_empty()
    }

    /// This session was ended by something else in this request (every
    /// session of its user): the request goes on anonymous, and its answer
    /// expires the cookie.
    pub fn mark_ended(&self) {
        // Looked up or not, its session is gone.
        let _ = self.loaded.set(());
        let mut state = self.state();
        state.current = None;
        state.write = Write::Nothing;
        state.ended = true;
    }

    /// Gives the signed-in session a new ID under the user's new credential
    /// version, keeping what else it holds: the old one is deleted now, the
    /// new one stored when the request finishes. A session that something
    /// else ended meanwhile stays ended.
    pub async fn renew(&self, credential_version: i64) -> Result<(), SessionError> {
        let Some(key) = self.loaded_key().await? else {
            return Ok(());
        };
        if !self.sessions.inner.store.delete(&key).await? {
            self.mark_ended();
            return Ok(());
        }
        // Other instances forget it when the renewal is announced.
        self.sessions.inner.remembered.forget(key.as_str());
        let mut state = self.state();
        if let Some(current) = &mut state.current {
            current.id = None;
            current.session.credential_version = credential_version;
            current.user.credential_version = credential_version;
            state.write = Write::Create;
            state.renewed_from = Some(key);
        }
        Ok(())
    }

    /// Writes what this request changed and says how the cookie changes:
    /// `Set-Cookie` for a new or extended session, an expired one for an
    /// ended session, nothing otherwise. An error here is the request's.
    pub async fn finish(&self) -> Result<Option<HeaderValue>, SessionError> {
        let inner = &self.sessions.inner;
        let (write, ended, current, renewed_from) = {
            let mut state = self.state();
            let current = state
                .current
                .as_ref()
                .map(|current| (current.id, current.session.clone()));
            let renewed_from = state.renewed_from.take();
            (
                std::mem::take(&mut state.write),
                state.ended,
                current,
                renewed_from,
            )
        };
        let cookie = match (write, current) {
            (Write::Create, Some((_, session))) => {
                let stored = inner.policy.stored(session);
                let id = inner.store.create(&stored).await?;
                if let Some(current) = &mut self.state().current {
                    current.id = Some(id);
                }
                match renewed_from {
                    // Its open WebSockets follow it to the new ID.
                    Some(from) => {
                        self.sessions
                            .announce(Event::SessionRenewed {
                                from: from.as_str().to_owned(),
                                to: id.stored_key().as_str().to_owned(),
                            })
                            .await;
                    }
                    None => inner.metrics.session_started(),
                }
                live_cookie(&id, stored.expires_at)
            }
            (Write::Update, Some((Some(id), session))) => {
                let key = id.stored_key();
                let stored = inner.policy.stored(session);
                // Ended meanwhile (a logout in another tab): no cookie, so
                // as not to overwrite the expired one that logout sent.
                if !inner.store.update(&key, &stored).await? {
                    return Ok(None);
                }
                // The copy is read again at the next request (else every
                // request would write). Not replaced by this request's
                // copy: that may be as old as the copy it came from.
                inner.remembered.forget(key.as_str());
                live_cookie(&id, stored.expires_at)
            }
            _ if ended => Cookie::build((COOKIE_NAME, ""))
                .max_age(time::Duration::ZERO)
                .expires(OffsetDateTime::UNIX_EPOCH),
            _ => return Ok(None),
        };
        let cookie = cookie
            .http_only(true)
            .same_site(SameSite::Lax)
            .path("/")
            .secure(inner.secure)
            .build();
        Ok(HeaderValue::from_str(&cookie.to_string()).ok())
    }
}

/// The cookie of a live session, kept by the browser until it expires.
fn live_cookie(
    id: &SessionId,
    expires_at: Millis,
) -> tower_sessions::cookie::CookieBuilder<'static> {
    let max_age = expires_at.date_time() - OffsetDateTime::now_utc();
    Cookie::build((COOKIE_NAME, id.cookie_value())).max_age(max_age.max(time::Duration::ZERO))
}
