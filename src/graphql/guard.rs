//! Field guards.

use async_graphql::{Context, Guard};

use super::signed_in;

/// Lets the field run only for a signed-in caller (else `UNAUTHENTICATED`).
pub struct LoggedIn;

impl Guard for LoggedIn {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        signed_in(ctx).await?;
        Ok(())
    }
}
