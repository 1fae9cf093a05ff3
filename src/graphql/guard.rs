//! Field guards.

use async_graphql::{Context, Guard};

use super::error::ApiError;
use super::session;

/// Lets the field run only for a signed-in session (else `UNAUTHENTICATED`).
pub struct LoggedIn;

impl Guard for LoggedIn {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        match session(ctx).user_id().await.map_err(ApiError::from)? {
            Some(_) => Ok(()),
            None => Err(ApiError::Unauthenticated.into()),
        }
    }
}
