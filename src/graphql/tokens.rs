//! API tokens in the schema: `ApiToken`, `apiTokens`, `createApiToken`,
//! `revokeApiToken`.

use async_graphql::{Context, ID, Object, SimpleObject};
use time::OffsetDateTime;

use super::context::RequestContext;
use super::error::ApiError;
use super::guard::ByCookie;
use super::row_id;
use crate::accounts::tokens::{ApiToken, MAX_TOKENS_PER_USER};

/// One of the caller's API tokens; never the token itself.
pub struct ApiTokenObject(pub ApiToken);

#[Object(name = "ApiToken")]
impl ApiTokenObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at.assume_utc()
    }

    /// Lags the last use by at most a minute; null until first used.
    async fn last_used_at(&self) -> Option<OffsetDateTime> {
        self.0.last_used_at.map(|at| at.assume_utc())
    }
}

/// A token just created: `token` is shown this once, and stored only hashed.
#[derive(SimpleObject)]
#[graphql(name = "NewApiToken")]
pub struct NewApiTokenObject {
    pub token: String,
    pub api_token: ApiTokenObject,
}

/// Reads about API tokens.
#[derive(Default)]
pub struct TokenQuery;

#[Object]
impl TokenQuery {
    /// The caller's own API tokens, newest first (revoked ones are gone).
    #[graphql(
        guard = "ByCookie",
        complexity = "MAX_TOKENS_PER_USER as usize * child_complexity.max(1)"
    )]
    async fn api_tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiTokenObject>, ApiError> {
        let caller = ctx.signed_in().await?;
        Ok(ApiToken::list(&ctx.services().db, caller.user_id())
            .await?
            .into_iter()
            .map(ApiTokenObject)
            .collect())
    }
}

/// Writes to API tokens.
#[derive(Default)]
pub struct TokenMutation;

#[Object]
impl TokenMutation {
    /// Creates an API token for the caller: the token is in this answer
    /// only, and stored hashed.
    #[graphql(guard = "ByCookie")]
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<NewApiTokenObject, ApiError> {
        let caller = ctx.signed_in().await?;
        let (token, stored) = ApiToken::create(&ctx.services().db, caller.user_id(), &name).await?;
        Ok(NewApiTokenObject {
            token: token.reveal().to_owned(),
            api_token: ApiTokenObject(stored),
        })
    }

    /// Revokes one of the caller's API tokens; `false` for an id that is
    /// not one of them.
    #[graphql(guard = "ByCookie")]
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: ID) -> Result<bool, ApiError> {
        let caller = ctx.signed_in().await?;
        let Some(id) = row_id(&id) else {
            return Ok(false);
        };
        Ok(ctx.services().tokens.revoke(caller.user_id(), id).await?)
    }
}
