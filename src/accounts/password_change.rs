//! Changing a password: checked like a login, stored only if the password
//! is still the one checked, and put back if what must follow cannot.

use std::net::IpAddr;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::passwords::Passwords;
use super::throttle::{Throttle, ThrottleKeys};
use super::{AccountError, User};
use crate::db::schema::{api_tokens, users};
use crate::db::{Db, DbError, with_conn, with_tx};
use crate::validate::{self, Invalid};

/// A password change as asked for.
pub struct PasswordChange<'a> {
    pub current: &'a str,
    pub new: &'a str,
}

/// A new password's hash, once the change was allowed, and the hash it
/// replaces (the one the current password was checked against).
pub struct NewPassword {
    hash: String,
    replaces: String,
}

/// Allows a change of `user`'s password: the new one must follow the rules,
/// the current one is checked like a login (and throttled like one, from
/// `client`). The new password's hash, for [`set_password`].
pub async fn check_password_change(
    db: &Db,
    passwords: &Passwords,
    throttle: &Throttle,
    user: &User,
    change: PasswordChange<'_>,
    client: IpAddr,
) -> Result<NewPassword, AccountError> {
    let PasswordChange { current, new } = change;
    validate::password(new).map_err(|invalid| Invalid {
        field: "newPassword",
        message: invalid.message.replace("password", "newPassword"),
    })?;
    let keys = ThrottleKeys::new(&user.username, client);
    let attempt = throttle.admit(&keys).await?;
    let hash = User::password_hash(db, user.id).await?;
    let plausible = validate::password(current).is_ok();
    let permit = passwords.permit().await;
    let checked = if plausible { current } else { "" };
    let verified = passwords.verify(permit, checked, hash.as_deref()).await;
    let Some(replaces) = hash.filter(|_| verified) else {
        throttle.failed(attempt).await?;
        return Err(AccountError::InvalidCredentials);
    };
    throttle.succeeded(attempt).await?;
    Ok(NewPassword {
        hash: passwords.hash(new).await?,
        replaces,
    })
}

/// Stores `user_id`'s new password, unless the password changed since it
/// was checked: of two changes at once, the later one is
/// `InvalidCredentials` and changes nothing. The user's credential version
/// goes up with it (every session signed in before is nobody's, even one
/// a login in flight stores later); with `revoke_tokens`, the user's API
/// tokens are deleted in the same transaction. What it replaced, for
/// [`restore_password`], and the new credential version.
pub async fn set_password(
    db: &Db,
    user_id: i64,
    password: NewPassword,
    revoke_tokens: bool,
) -> Result<(NewPassword, i64), AccountError> {
    let NewPassword { hash, replaces } = password;
    let changed: Option<i64> = with_tx!(db, conn => {
        let changed = diesel::update(users::table
            .find(user_id)
            .filter(users::password_hash.eq(&replaces)))
            .set((
                users::password_hash.eq(&hash),
                users::credential_version.eq(users::credential_version + 1),
            ))
            .returning(users::credential_version)
            .get_result(conn)
            .await
            .optional()?;
        if changed.is_some() && revoke_tokens {
            diesel::delete(api_tokens::table.filter(api_tokens::user_id.eq(user_id)))
                .execute(conn)
                .await?;
        }
        Ok(changed)
    })?;
    let version = changed.ok_or(AccountError::InvalidCredentials)?;
    Ok((
        NewPassword {
            hash: replaces,
            replaces: hash,
        },
        version,
    ))
}

/// Puts back the password a [`set_password`] replaced (what it returned),
/// unless it changed again since. The credential version stays where the
/// change put it: the sessions it was to end stay ended.
pub async fn restore_password(
    db: &Db,
    user_id: i64,
    previous: NewPassword,
) -> Result<(), AccountError> {
    let NewPassword { hash, replaces } = previous;
    with_conn!(db, write conn => diesel::update(users::table
        .find(user_id)
        .filter(users::password_hash.eq(&replaces)))
        .set(users::password_hash.eq(&hash))
        .execute(conn)
        .await
        .map_err(DbError::from)?);
    Ok(())
}
