//! The request's identity: who is asking, and by what means. Resolvers and
//! guards ask for the [`Principal`] (`graphql::principal` and
//! `graphql::signed_in`), never for the cookie session's contents; the
//! cookie is today's one way in, and API tokens will be a second.

use crate::accounts::{Role, User};

/// How the request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The `sid` session cookie.
    Cookie,
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user, as of sign-in (a role change ends sessions; usernames
    /// never change).
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
