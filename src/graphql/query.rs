//! The root `Query` type.

use async_graphql::{Context, ID, Object};

use super::error::ApiError;
use super::guard::LoggedIn;
use super::types::{
    DEFAULT_PAGE_SIZE, PostConnection, PostObject, SessionObject, UserObject, page_complexity,
    post_page,
};
use super::{services, session};
use crate::accounts::User;
use crate::posts::Post;

/// Reads.
pub struct Query;

#[Object]
impl Query {
    /// The signed-in user; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<UserObject>, ApiError> {
        let session = session(ctx);
        if let Some(user) = session.user().await? {
            return Ok(Some(UserObject(user)));
        }
        // Anonymous, or signed in during this very request.
        let Some(user_id) = session.user_id().await? else {
            return Ok(None);
        };
        Ok(User::find(&services(ctx).db, user_id)
            .await?
            .map(UserObject))
    }

    /// The caller's own live sessions, newest first.
    #[graphql(guard = "LoggedIn")]
    async fn sessions(&self, ctx: &Context<'_>) -> Result<Vec<SessionObject>, ApiError> {
        let session = session(ctx);
        let user_id = session.user_id().await?.ok_or(ApiError::Unauthenticated)?;
        Ok(session
            .list(user_id)
            .await?
            .into_iter()
            .map(SessionObject)
            .collect())
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
        Ok(Post::find(&services(ctx).db, id)
            .await?
            .map(PostObject::from))
    }
}
