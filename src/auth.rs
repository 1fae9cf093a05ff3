//! The request's identity: who is asking, and by what means. Resolvers and
//! guards ask for the [`Principal`] (`graphql::principal` and
//! `graphql::signed_in`), never for the cookie session's contents.
//!
//! There are two ways in: the `sid` session cookie (browsers), and an API
//! token in `Authorization: Bearer` (scripts, apps). A request with a token
//! is authenticated by it alone: its cookie is ignored, and a token that
//! does not authenticate refuses the whole request rather than letting it
//! run anonymous.

use axum::http::{HeaderMap, header};

use crate::accounts::tokens::ApiToken;
use crate::accounts::{Role, User};
use crate::db::{Db, DbError};

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
    /// The user: by cookie, as of sign-in (a role change ends sessions;
    /// usernames never change); by token, as of this request.
    pub user: User,
    pub via: Via,
}

impl Principal {
    /// The caller's user id.
    pub fn user_id(&self) -> i64 {
        self.user.id
    }

    /// What the caller may do, as the request knows it: by cookie, from
    /// the session (on Redis, a snapshot taken at sign-in); by token, read
    /// with the token in this request. Shown to the caller (`me.role`);
    /// authority comes from [`Principal::role_now`].
    pub fn role(&self) -> Role {
        self.user.role
    }

    /// What the caller may do, as the database says now. A role change
    /// ends the user's sessions, but a sign-in racing it could keep the old
    /// role in a Redis snapshot: an admin's powers are therefore checked
    /// here, never against the snapshot (one query, on admin paths only).
    pub async fn role_now(&self, db: &Db) -> Result<Role, DbError> {
        if self.via == Via::Token {
            return Ok(self.user.role);
        }
        Ok(User::find(db, self.user.id)
            .await?
            .map_or(Role::User, |user| user.role))
    }
}

/// Why a request's bearer token was refused.
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("the API token is malformed, unknown or revoked")]
    Invalid,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The caller named by the request's `Authorization: Bearer` token;
/// `Ok(None)` when it sends none. Other schemes (a proxy's Basic
/// credentials) are not ours and are left alone.
pub async fn from_bearer(db: &Db, headers: &HeaderMap) -> Result<Option<Principal>, BearerError> {
    let Some(token) = bearer_token(headers) else {
        return Ok(None);
    };
    let user = ApiToken::authenticate(db, token)
        .await?
        .ok_or(BearerError::Invalid)?;
    Ok(Some(Principal {
        user,
        via: Via::Token,
    }))
}

/// The request's bearer token, if it sends one; `Some("")` (which no token
/// matches) when it sends a Bearer credential that is not one readable
/// token: empty, not text, or several.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let mut found = None;
    for value in headers.get_all(header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        // The scheme, in any case, then whitespace (or nothing) before the token.
        let is_bearer = bytes.len() >= 6
            && bytes[..6].eq_ignore_ascii_case(b"bearer")
            && bytes.get(6).is_none_or(u8::is_ascii_whitespace);
        if !is_bearer {
            continue;
        }
        if found.is_some() {
            return Some("");
        }
        found = Some(value.to_str().map_or("", |text| text[6..].trim()));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn a_bearer_credential_is_read_and_other_schemes_are_left_alone() {
        assert_eq!(bearer_token(&headers(&[])), None);
        assert_eq!(bearer_token(&headers(&["Basic dXNlcjpwdw=="])), None);
        assert_eq!(
            bearer_token(&headers(&["Bearer blogql_x"])),
            Some("blogql_x")
        );
        assert_eq!(
            bearer_token(&headers(&["bearer  blogql_x "])),
            Some("blogql_x")
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer\tblogql_x"])),
            Some("blogql_x")
        );
        assert_eq!(bearer_token(&headers(&["Bearer"])), Some(""));
        assert_eq!(bearer_token(&headers(&["Bearerish x"])), None);
        assert_eq!(bearer_token(&headers(&["Bearer a", "Bearer b"])), Some(""));
    }
}
