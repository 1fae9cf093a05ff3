//! Accounts in the schema: `User`, `Role`, `me`, `users`, `register`,
//! `login`, `setUserRole`.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use time::OffsetDateTime;

use super::context::RequestContext;
use super::error::ApiError;
use super::guard::{ByCookie, HasRole};
use super::pages::{DEFAULT_PAGE_SIZE, PageInfo, cursors, page_complexity, page_request};
use super::posts::{PostConnection, post_page};
use super::row_id;
use crate::accounts::{self, AccountError, Role, User};
use crate::auth::changes;
use crate::pages::CursorKind;
use crate::telemetry::LoginOutcome;

/// What a user may do: the GraphQL mirror of [`Role`], conversions generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "Role", remote = "crate::accounts::Role")]
pub enum RoleValue {
    User,
    Admin,
}

/// What a field that hashes a password costs: over half the complexity
/// limit, so one operation runs at most one argon2 hash (aliases would
/// otherwise buy thousands of them with one request).
pub(super) const PASSWORD_FIELD_COMPLEXITY: usize = super::MAX_COMPLEXITY / 2 + 1;

/// A registered user.
pub struct UserObject(pub User);

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn username(&self) -> &str {
        &self.0.username
    }

    async fn role(&self) -> RoleValue {
        self.0.role.into()
    }

    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at.assume_utc()
    }

    /// This user's posts, newest first.
    #[graphql(complexity = "page_complexity(first.unwrap_or(DEFAULT_PAGE_SIZE), child_complexity)")]
    async fn posts(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<PostConnection, ApiError> {
        post_page(
            ctx,
            Some(self.0.id),
            first.unwrap_or(DEFAULT_PAGE_SIZE),
            after,
        )
        .await
    }
}

/// A page of users, oldest account first.
#[derive(SimpleObject)]
pub struct UserConnection {
    pub edges: Vec<UserEdge>,
    pub page_info: PageInfo,
}

/// A user and its cursor.
#[derive(SimpleObject)]
pub struct UserEdge {
    pub cursor: String,
    pub node: UserObject,
}

/// `register`'s input.
#[derive(InputObject)]
pub struct RegisterInput {
    pub username: String,
    #[graphql(secret)]
    pub password: String,
}

/// `login`'s input.
#[derive(InputObject)]
pub struct LoginInput {
    pub username: String,
    #[graphql(secret)]
    pub password: String,
}

/// Reads about accounts.
#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in user; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<UserObject>, ApiError> {
        Ok(ctx
            .principal()
            .await?
            .map(|principal| UserObject(principal.user)))
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
        let request = page_request(CursorKind::User, first.unwrap_or(DEFAULT_PAGE_SIZE), after)?;
        let mut page = User::page(&ctx.services().db, request).await?;
        let cursors = cursors(CursorKind::User, &page, |user| user.id);
        let page_info = PageInfo::of(&page, &cursors);
        let edges = std::mem::take(&mut page.items)
            .into_iter()
            .zip(cursors)
            .map(|(user, cursor)| UserEdge {
                cursor,
                node: UserObject(user),
            })
            .collect();
        Ok(UserConnection { edges, page_info })
    }
}

/// Writes to accounts.
#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
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
        .await;
        let outcome = match &user {
            Ok(_) => Some(LoginOutcome::Succeeded),
            Err(AccountError::InvalidCredentials) => Some(LoginOutcome::Failed),
            Err(AccountError::RateLimited { .. }) => Some(LoginOutcome::Throttled),
            // Bad input or a failure of ours: not a login attempt that ended.
            Err(_) => None,
        };
        if let Some(outcome) = outcome {
            services.metrics.login(outcome);
        }
        let user = user?;
        ctx.session().sign_in(&user).await?;
        Ok(UserObject(user))
    }

    /// Gives a user a role, and ends every session of theirs so that none
    /// goes on with the old one; for admins signed in by cookie (a leaked
    /// token must not hand out roles). The role the user already has
    /// changes nothing; the last admin cannot be demoted.
    #[graphql(guard = "ByCookie.and(HasRole(Role::Admin))")]
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        role: RoleValue,
    ) -> Result<UserObject, ApiError> {
        let services = ctx.services();
        let id = row_id(&user_id).ok_or(AccountError::NoSuchUser)?;
        let (user, ended) =
            changes::change_role(&services.db, &services.sessions, id, role.into()).await?;
        if ended.is_some() && ctx.signed_in().await?.user_id() == id {
            ctx.session().mark_ended();
        }
        Ok(UserObject(user))
    }
}
