//! Sessions in the schema: `Session`, `sessions`, `logout`,
//! `revokeSession`, `logoutOtherSessions`, `changePassword`.

use async_graphql::{Context, ID, InputObject, Object};
use time::OffsetDateTime;

use super::accounts::PASSWORD_FIELD_COMPLEXITY;
use super::context::RequestContext;
use super::error::ApiError;
use super::guard::{ByCookie, LoggedIn};
use crate::accounts::PasswordChange;
use crate::auth::{Via, changes};
use crate::sessions::keys::Handle;
use crate::sessions::{EndReason, MAX_SESSIONS_PER_USER, SessionInfo};

/// One of the caller's live sessions (a device signed in).
pub struct SessionObject(pub SessionInfo);

#[Object(name = "Session")]
impl SessionObject {
    /// A handle for revoking; never the cookie value, and no way to recover it.
    async fn id(&self) -> ID {
        ID(self.0.handle.as_str().to_owned())
    }

    /// The session making this request.
    async fn current(&self) -> bool {
        self.0.current
    }

    /// When it signed in.
    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }

    /// Lags the last use by at most a minute; never before `createdAt`.
    async fn last_seen_at(&self) -> OffsetDateTime {
        self.0.last_seen_at
    }

    /// As sent at sign-in, at most 256 characters.
    async fn user_agent(&self) -> Option<&str> {
        self.0.user_agent.as_deref()
    }

    /// The client address at sign-in (after trusted proxies).
    async fn ip_address(&self) -> Option<&str> {
        self.0.ip_address.as_deref()
    }
}

/// `changePassword`'s input.
#[derive(InputObject)]
pub struct ChangePasswordInput {
    #[graphql(secret)]
    pub current_password: String,
    #[graphql(secret)]
    pub new_password: String,
    /// Whoever learned the old password may have made a token.
    #[graphql(default = true)]
    pub revoke_api_tokens: bool,
}

/// Reads about sessions.
#[derive(Default)]
pub struct SessionQuery;

#[Object]
impl SessionQuery {
    /// The caller's own live sessions, newest first.
    #[graphql(
        guard = "ByCookie",
        complexity = "MAX_SESSIONS_PER_USER * child_complexity.max(1)"
    )]
    async fn sessions(&self, ctx: &Context<'_>) -> Result<Vec<SessionObject>, ApiError> {
        let caller = ctx.signed_in().await?;
        let current = ctx.session().stored_key().await;
        Ok(ctx
            .services()
            .sessions
            .list(caller.user_id(), current.as_ref())
            .await?
            .into_iter()
            .map(SessionObject)
            .collect())
    }
}

/// Writes to sessions.
#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// Ends this session. A request authenticated by an API token has no
    /// session: nothing ends (revoke the token instead), and the answer is
    /// `false`.
    #[graphql(guard = "LoggedIn")]
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool, ApiError> {
        if ctx.signed_in().await?.via == Via::Token {
            return Ok(false);
        }
        ctx.session().sign_out().await?;
        Ok(true)
    }

    /// Ends one of the caller's own sessions; `false` for a handle that is
    /// not one of them (nobody else's session is ever ended).
    #[graphql(guard = "ByCookie")]
    async fn revoke_session(&self, ctx: &Context<'_>, id: ID) -> Result<bool, ApiError> {
        let caller = ctx.signed_in().await?;
        let handle = Handle::from_client(id.as_str());
        let ended = ctx
            .services()
            .sessions
            .revoke(caller.user_id(), &handle)
            .await?;
        let own = ctx.session().stored_key().await.map(|key| key.handle());
        if ended && own == Some(handle) {
            ctx.session().mark_ended();
        }
        Ok(ended)
    }

    /// Ends every other session of the caller; how many were ended.
    #[graphql(guard = "ByCookie")]
    async fn logout_other_sessions(&self, ctx: &Context<'_>) -> Result<i32, ApiError> {
        let caller = ctx.signed_in().await?;
        let sessions = &ctx.services().sessions;
        // Signed in by this very request (not stored yet): every stored
        // session is another one.
        let ended = match ctx.session().stored_key().await {
            Some(keep) => {
                sessions
                    .end_others_of(caller.user_id(), &keep, EndReason::Revoked)
                    .await?
            }
            None => {
                sessions
                    .end_all_of(caller.user_id(), EndReason::Revoked)
                    .await?
            }
        };
        Ok(i32::try_from(ended).unwrap_or(i32::MAX))
    }

    /// Changes the caller's password (the current one checked like a
    /// login), ends every other session of theirs, revokes their API tokens
    /// unless `revokeApiTokens: false`, and gives this session a new ID.
    #[graphql(
        guard = "ByCookie",
        complexity = "PASSWORD_FIELD_COMPLEXITY + child_complexity"
    )]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        input: ChangePasswordInput,
    ) -> Result<bool, ApiError> {
        let caller = ctx.signed_in().await?;
        let services = ctx.services();
        changes::change_password(
            &services.changes(),
            ctx.session(),
            &caller.user,
            PasswordChange {
                current: &input.current_password,
                new: &input.new_password,
            },
            input.revoke_api_tokens,
            ctx.client(),
        )
        .await?;
        Ok(true)
    }
}
