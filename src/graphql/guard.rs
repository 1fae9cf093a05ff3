//! Field guards: who may run a field, declared on the field. The anonymous
//! get `UNAUTHENTICATED`; the signed-in who may not get `FORBIDDEN`.

use async_graphql::{Context, Guard};

use super::error::ApiError;
use super::{RequestContext, signed_in};
use crate::accounts::Role;
use crate::auth::Via;

/// Lets the field run only for a signed-in caller.
pub struct LoggedIn;

impl Guard for LoggedIn {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        signed_in(ctx).await?;
        Ok(())
    }
}

/// Lets the field run only for a caller signed in by the session cookie:
/// the fields that manage the account itself, so that a leaked API token
/// cannot lock its owner out (or mint more tokens).
pub struct ByCookie;

impl Guard for ByCookie {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        match signed_in(ctx).await?.via {
            Via::Cookie => Ok(()),
            Via::Token => Err(ApiError::Forbidden.into()),
        }
    }
}

/// Lets the field run only for a caller with this role, as the database
/// says now (see `Principal::role_now`).
pub struct HasRole(pub Role);

impl Guard for HasRole {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let caller = signed_in(ctx).await?;
        let role = caller
            .role_now(&ctx.services().db)
            .await
            .map_err(ApiError::from)?;
        if role == self.0 {
            Ok(())
        } else {
            Err(ApiError::Forbidden.into())
        }
    }
}
