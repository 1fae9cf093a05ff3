//! Sessions: the typed wrapper over `tower_sessions::Session`, our store, and
//! login throttling.
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

pub mod store;
pub mod throttle;

use std::sync::Mutex;
use std::time::Duration;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tower_sessions::cookie::SameSite;
use tower_sessions::session::Record;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::accounts::User;
use store::SqlSessionStore;

/// The cookie's name, as the contract says.
pub const COOKIE_NAME: &str = "sid";
/// The one key a session stores.
const AUTH_KEY: &str = "auth";
/// Where the store puts the session's user, read from `users` with the
/// session in one query; never stored (see [`stored_data`]).
const USER_KEY: &str = "user";

/// Who signed in, and when; times are Unix milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SignedIn {
    user_id: i64,
    signed_in_at: i64,
    last_seen_at: i64,
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

    /// The session layer: cookie `sid`, `HttpOnly`, `SameSite=Lax`, `Path=/`.
    pub fn layer(
        &self,
        store: SqlSessionStore,
        secure: bool,
    ) -> SessionManagerLayer<SqlSessionStore> {
        SessionManagerLayer::new(store)
            .with_name(COOKIE_NAME)
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_path("/")
            .with_secure(secure)
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
#[error("session store: {0}")]
pub struct SessionError(#[from] tower_sessions::session::Error);

/// One request's session, typed: sign in, who is signed in, sign out.
pub struct AuthSession {
    session: Session,
    policy: SessionPolicy,
    /// The user once looked up in this request (`Some(None)`: anonymous).
    user: Mutex<Option<Option<i64>>>,
}

impl AuthSession {
    /// Wraps the request's session.
    pub fn new(session: Session, policy: SessionPolicy) -> Self {
        Self {
            session,
            policy,
            user: Mutex::new(None),
        }
    }

    /// Signs `user_id` in under a new session ID: the pre-login session, if
    /// any, is destroyed (no session fixation).
    pub async fn sign_in(&self, user_id: i64) -> Result<(), SessionError> {
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
        };
        self.session.insert(AUTH_KEY, auth).await?;
        self.session.set_expiry(Some(self.policy.expiry(&auth)));
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
        self.session.flush().await?;
        self.remember(None);
        Ok(())
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
            self.session.flush().await?;
            return Ok(None);
        }
        if now - auth.last_seen_at >= millis(self.policy.touch_interval()) {
            let auth = SignedIn {
                last_seen_at: now,
                ..auth
            };
            self.session.insert(AUTH_KEY, auth).await?;
            self.session.set_expiry(Some(self.policy.expiry(&auth)));
        }
        Ok(Some(auth.user_id))
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
