//! Field guards: who may run a field, declared on the field. The anonymous
//! get `UNAUTHENTICATED`; the signed-in who may not get `FORBIDDEN`.

use async_graphql::{Context, Guard};

use super::context::RequestContext;
use super::error::ApiError;
use crate::accounts::Role;
use crate::auth::Via;

/// Lets the field run only for a signed-in caller.
pub struct LoggedIn;

impl Guard for LoggedIn {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        ctx.signed_in().await?;
        Ok(())
    }
}

/// Lets the field run only for a caller signed in by the session cookie:
/// the fields that manage accounts, so that a leaked API token can neither
/// lock its owner out, nor mint more tokens, nor hand out roles.
pub struct ByCookie;

impl Guard for ByCookie {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        match ctx.signed_in().await?.via {
            Via::Cookie => Ok(()),
            Via::Token => Err(ApiError::Forbidden.into()),
        }
    }
}

/// Lets the field run only for a caller with this role (as the database
/// says in this request).
pub struct HasRole(pub Role);

impl Guard for HasRole {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        if ctx.signed_in().await?.role() == self.0 {
            Ok(())
        } else {
            Err(ApiError::Forbidden.into())
        }
    }
}
