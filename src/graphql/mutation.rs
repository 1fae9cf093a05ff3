//! The root `Mutation` type.

use async_graphql::{Context, ID, Object};

use super::error::ApiError;
use super::guard::{ByCookie, HasRole, LoggedIn};
use super::types::{
    ApiTokenObject, ChangePasswordInput, CreatePostInput, LoginInput, NewApiTokenObject,
    PostObject, RegisterInput, RoleValue, UpdatePostInput, UserObject,
};
use super::{RequestContext, signed_in};
use crate::accounts::tokens::ApiToken;
use crate::accounts::{self, Role, User};
use crate::auth::Via;
use crate::posts::Post;
use crate::validate;

/// The numeric id an `ID` names; `None` for one this server never issued
/// (which then names nothing).
fn row_id(id: &ID) -> Option<i64> {
    id.parse().ok()
}

/// What a field that hashes a password costs: over half the complexity
/// limit, so one operation runs at most one argon2 hash (aliases would
/// otherwise buy thousands of them with one request).
const PASSWORD_FIELD_COMPLEXITY: usize = super::MAX_COMPLEXITY / 2 + 1;

/// Writes.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Creates an account and signs it in.
    #[graphql(complexity = "PASSWORD_FIELD_COMPLEXITY + child_complexity")]
    async fn register(
        &self,
        ctx: &Context<'_>,
        input: RegisterInput,
    ) -> Result<UserObject, ApiError> {
        let services = ctx.services();
        let user = accounts::register(
            &services.db,
            &services.passwords,
            &services.throttle,
            &input.username,
            &input.password,
            ctx.client(),
        )
        .await?;
        ctx.session().sign_in(&user).await?;
        Ok(UserObject(user))
    }

    /// Signs in under a new session.
    #[graphql(complexity = "PASSWORD_FIELD_COMPLEXITY + child_complexity")]
    async fn login(&self, ctx: &Context<'_>, input: LoginInput) -> Result<UserObject, ApiError> {
        let services = ctx.services();
        let user = accounts::authenticate(
            &services.db,
            &services.passwords,
            &services.throttle,
            &input.username,
            &input.password,
            ctx.client(),
        )
        .await?;
        ctx.session().sign_in(&user).await?;
        Ok(UserObject(user))
    }

    /// Ends this session. A request authenticated by an API token has no
    /// session: nothing ends (revoke the token instead), and the answer is
    /// `false`.
    #[graphql(guard = "LoggedIn")]
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool, ApiError> {
        if signed_in(ctx).await?.via == Via::Token {
            return Ok(false);
        }
        ctx.session().sign_out().await?;
        Ok(true)
    }

    /// Ends one of the caller's own sessions; `false` for a handle that is
    /// not one of them (nobody else's session is ever ended).
    #[graphql(guard = "ByCookie")]
    async fn revoke_session(&self, ctx: &Context<'_>, id: ID) -> Result<bool, ApiError> {
        let caller = signed_in(ctx).await?;
        Ok(ctx.session().revoke(caller.user_id(), id.as_str()).await?)
    }

    /// Ends every other session of the caller; how many were ended.
    #[graphql(guard = "ByCookie")]
    async fn logout_other_sessions(&self, ctx: &Context<'_>) -> Result<i32, ApiError> {
        let caller = signed_in(ctx).await?;
        let ended = ctx.session().end_others(caller.user_id()).await?;
        Ok(i32::try_from(ended).unwrap_or(i32::MAX))
    }

    /// Changes the caller's password (the current one checked like a login),
    /// ends every other session of theirs and gives this one a new ID.
    #[graphql(
        guard = "ByCookie",
        complexity = "PASSWORD_FIELD_COMPLEXITY + child_complexity"
    )]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        input: ChangePasswordInput,
    ) -> Result<bool, ApiError> {
        let services = ctx.services();
        let session = ctx.session();
        let caller = signed_in(ctx).await?;
        let user_id = caller.user_id();
        let new_password = accounts::check_password_change(
            &services.db,
            &services.passwords,
            &services.throttle,
            &caller.user,
            accounts::PasswordChange {
                current: &input.current_password,
                new: &input.new_password,
            },
            ctx.client(),
        )
        .await?;
        // A session store apart from the database (Redis) is outside its
        // transaction: the other sessions end first (a failure then changes
        // nothing), and again once the new hash is in (for a sign-in with
        // the old password in between).
        session.end_others(user_id).await?;
        let keep = session.stored_key();
        accounts::set_password(&services.db, user_id, new_password, keep.as_deref()).await?;
        session.end_others(user_id).await?;
        session.renew().await?;
        Ok(true)
    }

    /// Publishes a post by the signed-in user.
    #[graphql(guard = "LoggedIn")]
    async fn create_post(
        &self,
        ctx: &Context<'_>,
        input: CreatePostInput,
    ) -> Result<PostObject, ApiError> {
        let title = validate::title(&input.title)?;
        validate::body(&input.body)?;
        let author_id = signed_in(ctx).await?.user_id();
        let post = Post::create(&ctx.services().db, author_id, title, &input.body).await?;
        Ok(PostObject::from(post))
    }

    /// Edits a post: its author's or, for an admin, any.
    #[graphql(guard = "LoggedIn")]
    async fn update_post(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdatePostInput,
    ) -> Result<PostObject, ApiError> {
        let edit = input.edit()?;
        let caller = signed_in(ctx).await?;
        let id = row_id(&id).ok_or(crate::posts::PostError::NotFound)?;
        let post = Post::update(&ctx.services().db, &caller, id, edit).await?;
        Ok(PostObject::from(post))
    }

    /// Deletes a post: its author's or, for an admin, any; `false` when
    /// there is no such post.
    #[graphql(guard = "LoggedIn")]
    async fn delete_post(&self, ctx: &Context<'_>, id: ID) -> Result<bool, ApiError> {
        let caller = signed_in(ctx).await?;
        let Some(id) = row_id(&id) else {
            return Ok(false);
        };
        Ok(Post::delete(&ctx.services().db, &caller, id).await?)
    }

    /// Gives a user a role, and ends every session of theirs so that none
    /// goes on with the old one; for admins. The role the user already has
    /// changes nothing.
    #[graphql(guard = "HasRole(Role::Admin)")]
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: RoleValue,
    ) -> Result<UserObject, ApiError> {
        let db = &ctx.services().db;
        let id = row_id(&user_id).ok_or(accounts::AccountError::NoSuchUser)?;
        let role = Role::from(role);
        let user = User::find(db, id)
            .await?
            .ok_or(accounts::AccountError::NoSuchUser)?;
        if user.role == role {
            return Ok(UserObject(user));
        }
        // The sessions end before the role changes (a store that fails then
        // changes nothing, and a retry does it all) and again after it (for
        // a sign-in in between), as for a password change.
        let session = ctx.session();
        session.end_all_of(id).await?;
        let user = User::set_role(db, id, role).await?;
        session.end_all_of(id).await?;
        Ok(UserObject(user))
    }

    /// Creates an API token for the caller: the token is in this answer
    /// only, and stored hashed.
    #[graphql(guard = "ByCookie")]
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Result<NewApiTokenObject, ApiError> {
        let caller = signed_in(ctx).await?;
        let (token, stored) = ApiToken::create(&ctx.services().db, caller.user_id(), &name).await?;
        Ok(NewApiTokenObject {
            token,
            api_token: ApiTokenObject(stored),
        })
    }

    /// Revokes one of the caller's API tokens; `false` for an id that is
    /// not one of them.
    #[graphql(guard = "ByCookie")]
    async fn revoke_api_token(&self, ctx: &Context<'_>, id: ID) -> Result<bool, ApiError> {
        let caller = signed_in(ctx).await?;
        let Some(id) = row_id(&id) else {
            return Ok(false);
        };
        Ok(ApiToken::revoke(&ctx.services().db, caller.user_id(), id).await?)
    }
}
