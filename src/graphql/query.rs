//! The root `Query` type.

use async_graphql::{Context, ID, Object};

use super::error::ApiError;
use super::guard::{ByCookie, HasRole};
use super::types::{
    ApiTokenObject, DEFAULT_PAGE_SIZE, PostConnection, PostObject, SessionObject, UserConnection,
    UserObject, page_complexity, post_page, user_page,
};
use super::{RequestContext, principal, signed_in};
use crate::accounts::Role;
use crate::accounts::tokens::{ApiToken, MAX_TOKENS_PER_USER};
use crate::posts::Post;
use crate::sessions::MAX_SESSIONS_PER_USER;

/// Reads.
pub struct Query;

#[Object]
impl Query {
    /// The signed-in user; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<UserObject>, ApiError> {
        Ok(principal(ctx)
            .await?
            .map(|principal| UserObject(principal.user)))
    }

    /// The caller's own live sessions, newest first.
    #[graphql(
        guard = "ByCookie",
        complexity = "MAX_SESSIONS_PER_USER * child_complexity.max(1)"
    )]
    async fn sessions(&self, ctx: &Context<'_>) -> Result<Vec<SessionObject>, ApiError> {
        let caller = signed_in(ctx).await?;
        Ok(ctx
            .session()
            .list(caller.user_id())
            .await?
            .into_iter()
            .map(SessionObject)
            .collect())
    }

    /// The caller's own API tokens, newest first (revoked ones are gone).
    #[graphql(
        guard = "ByCookie",
        complexity = "MAX_TOKENS_PER_USER as usize * child_complexity.max(1)"
    )]
    async fn api_tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiTokenObject>, ApiError> {
        let caller = signed_in(ctx).await?;
        Ok(ApiToken::list(&ctx.services().db, caller.user_id())
            .await?
            .into_iter()
            .map(ApiTokenObject)
            .collect())
    }

    /// Every account, oldest first; for admins.
    #[graphql(
        guard = "HasRole(Role::Admin)",
        complexity = "page_complexity(first.unwrap_or(DEFAULT_PAGE_SIZE), child_complexity)"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection, ApiError> {
        user_page(ctx, first.unwrap_or(DEFAULT_PAGE_SIZE), after).await
    }

    /// All posts, newest first.
    #[graphql(complexity = "page_complexity(first.unwrap_or(DEFAULT_PAGE_SIZE), child_complexity)")]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<PostConnection, ApiError> {
        post_page(ctx, None, first.unwrap_or(DEFAULT_PAGE_SIZE), after).await
    }

    /// The post with this id; null when there is none.
    async fn post(&self, ctx: &Context<'_>, id: ID) -> Result<Option<PostObject>, ApiError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        Ok(Post::find(&ctx.services().db, id)
            .await?
            .map(PostObject::from))
    }
}
