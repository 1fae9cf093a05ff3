//! Changes to an account that end its sessions, each with its reason, so
//! that every path that makes one (a resolver, `blogql create-admin`) ends
//! the same sessions the same way.

use crate::accounts::passwords::Passwords;
use crate::accounts::throttle::Throttle;
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
    } = services;
    let new_password =
        accounts::check_password_change(db, passwords, throttle, user, change, client).await?;
    let previous = accounts::set_password(db, user.id, new_password, revoke_tokens).await?;
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
    session.renew().await?;
    Ok(())
}

/// Gives user `user_id` the role `role`; the user as it is now, and how
/// many sessions ended (`ROLE_CHANGED`). The role the user already has
/// changes nothing; demoting the last admin is `LastAdmin`.
///
/// The sessions end before the role changes (a store that fails then
/// changes nothing, and a retry does it all) and again after it (for a
/// sign-in that read the old role in between).
pub async fn change_role(
    db: &Db,
    sessions: &Sessions,
    user_id: i64,
    role: Role,
) -> Result<(User, usize), ChangeError> {
    let user = User::find(db, user_id)
        .await
        .map_err(AccountError::from)?
        .ok_or(AccountError::NoSuchUser)?;
    if user.role == role {
        return Ok((user, 0));
    }
    if user.role == Role::Admin && User::count_admins(db).await.map_err(AccountError::from)? <= 1 {
        return Err(AccountError::LastAdmin.into());
    }
    let before = sessions.end_all_of(user_id, EndReason::RoleChanged).await?;
    let user = User::set_role(db, user_id, role).await?;
    let after = sessions.end_all_of(user_id, EndReason::RoleChanged).await?;
    Ok((user, before + after))
}
