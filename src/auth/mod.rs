//! Who is asking, and what changes to an account end its sessions.
//!
//! A request proves who it is in one of two ways: the `sid` session cookie
//! (browsers), or an API token in `Authorization: Bearer` (scripts, apps).
//! `http` reads the headers and builds the request's [`Caller`](crate::auth::Caller) once, the
//! same way for a GraphQL request and a WebSocket upgrade; guards and
//! resolvers read its [`Principal`](crate::auth::Principal). A request with a token is
//! authenticated by it alone: its cookie is ignored.
//!
//! The user a principal carries is read from the database in the request
//! itself (with the session or the token, or batched with other requests'
//! users), so its role is current and a deleted user is nobody.

pub mod changes;

use std::sync::Arc;

use crate::accounts::tokens::Tokens;
use crate::accounts::{Role, User};
use crate::db::DbError;
use crate::sessions::{RequestSession, SessionError};

/// How the request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The `sid` session cookie.
    Cookie,
    /// An API token.
    Token,
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user, as the database says in this request.
    pub user: User,
    pub via: Via,
}

impl Principal {
    /// The caller's user id.
    pub fn user_id(&self) -> i64 {
        self.user.id
    }

    /// What the caller may do.
    pub fn role(&self) -> Role {
        self.user.role
    }
}

/// The request's identity: its API token's owner, or else its cookie
/// session (which signing in and out during the request changes).
pub struct Caller {
    token: Option<Principal>,
    session: Arc<RequestSession>,
}

/// A bearer token that does not authenticate: the request is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the API token is malformed, unknown or revoked")]
    Invalid,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Caller {
    /// A caller by its cookie session.
    pub fn by_cookie(session: RequestSession) -> Self {
        Self {
            token: None,
            session: Arc::new(session),
        }
    }

    /// A caller by the API token `token`; `session` is an empty one (a
    /// token carries no cookie authority, but may sign in anew).
    pub async fn by_token(
        tokens: &Tokens,
        token: &str,
        session: RequestSession,
    ) -> Result<Self, TokenError> {
        let user = tokens
            .authenticate(token)
            .await?
            .ok_or(TokenError::Invalid)?;
        Ok(Self {
            token: Some(Principal {
                user,
                via: Via::Token,
            }),
            session: Arc::new(session),
        })
    }

    /// Whether an API token authenticated the request.
    pub fn by_api_token(&self) -> bool {
        self.token.is_some()
    }

    /// How the request identified itself, for the access log (never who).
    pub fn identified_by(&self) -> Option<Via> {
        if self.token.is_some() {
            Some(Via::Token)
        } else if self.session.named_by_cookie() {
            Some(Via::Cookie)
        } else {
            None
        }
    }

    /// The signed-in caller, if any; the session store's failure if the
    /// cookie's session could not be read.
    pub async fn principal(&self) -> Result<Option<Principal>, SessionError> {
        if let Some(principal) = &self.token {
            return Ok(Some(principal.clone()));
        }
        Ok(self.session.user().await?.map(|user| Principal {
            user,
            via: Via::Cookie,
        }))
    }

    /// The request's cookie session (empty for a token's request).
    pub fn session(&self) -> &RequestSession {
        &self.session
    }
}
