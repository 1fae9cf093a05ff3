//! Changes to an account that end its sessions, each with its reason, so
//! that every path that makes one (a resolver, `blogql create-admin`) ends
//! the same sessions the same way.

use crate::accounts::passwords::Passwords;
use crate::accounts::throttle::Throttle;
use crate::accounts::tokens::Tokens;
use crate::accounts::{self, AccountError, PasswordChange, Role, User};
use crate::db::Db;
use crate::sessions::{EndReason, RequestSession, SessionError, Sessions};

/// Why an account change failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// What resolvers need to change an account.
pub struct Services<'a> {
    pub db: &'a Db,
    pub passwords: &'a Passwords,
    pub throttle: &'a Throttle,
    pub sessions: &'a Sessions,
    pub tokens: &'a Tokens,
}

/// Changes `user`'s password from `session` after checking the current one
/// (throttled like a login from `client`): ends every other session of
/// the user (`PASSWORD_CHANGED`), revokes their API tokens when asked, and
/// gives `session` a new ID.
///
/// The new password is stored first, and only if the password is still
/// the one checked: of two changes at once, the loser changes nothing (it
/// ends no session and revokes no token). If the sessions then cannot be
/// ended, the old password is put back (revoked tokens stay revoked) and
/// the change fails as a whole.
pub async fn change_password(
    services: &Services<'_>,
    session: &RequestSession,
    user: &User,
    change: PasswordChange<'_>,
    revoke_tokens: bool,
    client: std::net::IpAddr,
) -> Result<(), ChangeError> {
    let Services {
        db,
        passwords,
        throttle,
        sessions,
        tokens,
    } = services;
    let new_password =
        accounts::check_password_change(db, passwords, throttle, user, change, client).await?;
    let (previous, version) =
        accounts::set_password(db, user.id, new_password, revoke_tokens).await?;
    if revoke_tokens {
        tokens.revoked(user.id).await;
    }
    let ended = match session.stored_key().await {
        Some(keep) => {
            sessions
                .end_others_of(user.id, &keep, EndReason::PasswordChanged)
                .await
        }
        None => {
            sessions
                .end_all_of(user.id, EndReason::PasswordChanged)
                .await
        }
    };
    if let Err(err) = ended {
        if let Err(restore) = accounts::restore_password(db, user.id, previous).await {
            tracing::error!(error = %restore, "cannot put back a password whose change failed");
        }
        return Err(err.into());
    }
    session.renew(version).await?;
    Ok(())
}

/// Gives user `user_id` the role `role`; the user as it is now, and how
/// many sessions ended (`None`: the user already had the role, and nothing
/// changed). Demoting the last admin is `LastAdmin` and changes nothing.
///
/// The role is written first (so a refused change ends no session), then
/// every session of the user ends (`ROLE_CHANGED`); if they cannot end,
/// the old role is put back and the change fails as a whole. A session
/// signed in meanwhile cannot keep the old role: every request reads its
/// user's role from the database.
pub async fn change_role(
    db: &Db,
    sessions: &Sessions,
    user_id: i64,
    role: Role,
) -> Result<(User, Option<usize>), ChangeError> {
    let user = User::find(db, user_id)
        .await
        .map_err(AccountError::from)?
        .ok_or(AccountError::NoSuchUser)?;
    if user.role == role {
        return Ok((user, None));
    }
    let changed = User::set_role(db, user_id, role).await?;
    match sessions.end_all_of(user_id, EndReason::RoleChanged).await {
        Ok(ended) => Ok((changed, Some(ended))),
        Err(err) => {
            if let Err(restore) = User::set_role(db, user_id, user.role).await {
                tracing::error!(error = %restore, "cannot put back a role whose change failed");
            }
            Err(err.into())
        }
    }
}
