//! Users: registration, lookup, checking a login, and the throttle on both;
//! roles and the first admin; changing a password; API tokens. Nothing here
//! knows sessions: what ends them when an account changes is `auth`'s.

pub mod loader;
mod password_change;
pub mod passwords;
pub mod throttle;
pub mod tokens;

use std::net::IpAddr;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::PrimitiveDateTime;

use crate::db::schema::users;
use crate::db::{Db, DbError, now, with_conn, with_tx};
use crate::pages::{Page, PageRequest};
use crate::validate::{self, Invalid};
pub use password_change::{
    NewPassword, PasswordChange, check_password_change, restore_password, set_password,
};
use passwords::{HashError, Passwords};
use throttle::{Throttle, ThrottleKeys};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    /// The role as stored (and as GraphQL names it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "USER",
            Self::Admin => "ADMIN",
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "USER" => Ok(Self::User),
            "ADMIN" => Ok(Self::Admin),
            _ => Err(format!("unknown role {value:?}")),
        }
    }
}

/// A registered user, without the password hash.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
    #[diesel(deserialize_as = String)]
    pub role: Role,
    pub created_at: PrimitiveDateTime,
    /// Bumped by every change of the password or the role: a session
    /// signed in under an older version is nobody's.
    pub credential_version: i64,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("that username is taken")]
    UsernameTaken,
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("{}; retry in {retry_after} s", limit.message())]
    RateLimited { retry_after: u64, limit: Limit },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Redis(#[from] crate::redis::RedisError),
    /// Demoting the last admin would leave nobody to manage the others.
    #[error("the last admin cannot be demoted")]
    LastAdmin,
    /// `setUserRole` for a user that does not exist.
    #[error("there is no user with this id")]
    NoSuchUser,
    #[error(
        "you have {} API tokens; revoke one before creating another",
        tokens::MAX_TOKENS_PER_USER
    )]
    TooManyTokens,
}

/// What a throttle refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Failed logins (or password checks) for a username or from an address.
    FailedLogins,
    /// Registrations from an address.
    Registrations,
}

impl Limit {
    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Self::FailedLogins => "too many failed logins",
            Self::Registrations => "too many registrations from this address",
        }
    }
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

impl User {
    /// The user with this id, if any.
    pub async fn find(db: &Db, id: i64) -> Result<Option<User>, DbError> {
        Ok(with_conn!(db, conn => users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?))
    }

    /// The user with this username, matched in any case.
    pub async fn find_by_username(db: &Db, username: &str) -> Result<Option<User>, DbError> {
        Ok(Self::find_credentials(db, username)
            .await?
            .map(|(user, _)| user))
    }

    /// The users with these ids (those that exist), in no particular order.
    pub async fn find_many(db: &Db, ids: &[i64]) -> Result<Vec<User>, DbError> {
        Ok(with_conn!(db, conn => users::table
            .filter(users::id.eq_any(ids))
            .select(User::as_select())
            .load(conn)
            .await?))
    }

    /// The user and password hash for a username, matched in any case.
    async fn find_credentials(db: &Db, username: &str) -> Result<Option<(User, String)>, DbError> {
        let key = username.to_ascii_lowercase();
        Ok(with_conn!(db, conn => users::table
            .filter(lower(users::username).eq(&key))
            .select((User::as_select(), users::password_hash))
            .first(conn)
            .await
            .optional()?))
    }

    /// The user with this id and their password hash.
    async fn find_with_hash(db: &Db, id: i64) -> Result<Option<(User, String)>, DbError> {
        Ok(with_conn!(db, conn => users::table
            .find(id)
            .select((User::as_select(), users::password_hash))
            .first(conn)
            .await
            .optional()?))
    }

    /// A page of users, oldest account first; one query.
    pub async fn page(db: &Db, request: PageRequest) -> Result<Page<User>, DbError> {
        let rows = with_conn!(db, conn => {
            let mut query = users::table
                .select(User::as_select())
                .order(users::id.asc())
                .limit(request.limit())
                .into_boxed();
            if let Some(after) = request.after {
                query = query.filter(users::id.gt(after));
            }
            query.load(conn).await?
        });
        Ok(Page::from_rows(rows, request))
    }

    /// Gives user `id` the role `role`; the user as it is now. Demoting the
    /// last admin is refused (`LastAdmin`), also when two admins demote each
    /// other at once: every role change first writes every admin's row,
    /// so they take turns (PostgreSQL's row locks; SQLite's one writer).
    /// Ending the user's sessions is the caller's part.
    pub async fn set_role(db: &Db, id: i64, role: Role) -> Result<User, AccountError> {
        enum Written {
            Done(User),
            NoSuchUser,
            LastAdmin,
        }
        let written = with_tx!(db, conn => {
            diesel::update(users::table.filter(users::role.eq(Role::Admin.as_str())))
                .set(users::role.eq(users::role))
                .execute(conn)
                .await?;
            if role != Role::Admin {
                let other_admins: i64 = users::table
                    .filter(users::role.eq(Role::Admin.as_str()))
                    .filter(users::id.ne(id))
                    .count()
                    .get_result(conn)
                    .await?;
                if other_admins == 0 {
                    return Ok(Written::LastAdmin);
                }
            }
            let user = diesel::update(users::table.find(id))
                .set((
                    users::role.eq(role.as_str()),
                    users::credential_version.eq(users::credential_version + 1),
                ))
                .returning(User::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            Ok(user.map_or(Written::NoSuchUser, Written::Done))
        })?;
        match written {
            Written::Done(user) => Ok(user),
            Written::NoSuchUser => Err(AccountError::NoSuchUser),
            // The last admin is the only admin: one that is not an admin
            // is not demoted by this (its role is already `role`).
            Written::LastAdmin => match Self::find(db, id).await? {
                Some(user) if user.role == role => Ok(user),
                Some(_) => Err(AccountError::LastAdmin),
                None => Err(AccountError::NoSuchUser),
            },
        }
    }

    /// The password hash of the user with this id.
    async fn password_hash(db: &Db, id: i64) -> Result<Option<String>, DbError> {
        Ok(with_conn!(db, conn => users::table
            .find(id)
            .select(users::password_hash)
            .first(conn)
            .await
            .optional()?))
    }

    async fn username_exists(db: &Db, username: &str) -> Result<bool, DbError> {
        let key = username.to_ascii_lowercase();
        Ok(with_conn!(db, conn => diesel::select(diesel::dsl::exists(
            users::table.filter(lower(users::username).eq(&key)),
        ))
        .get_result(conn)
        .await?))
    }
}

/// Creates an account after checking the contract's rules, counted against
/// `client`'s registrations before any work is spent on it.
pub async fn register(
    db: &Db,
    passwords: &Passwords,
    throttle: &Throttle,
    username: &str,
    password: &str,
    client: IpAddr,
) -> Result<User, AccountError> {
    validate::username(username)?;
    validate::password(password)?;
    throttle.admit_registration(client).await?;
    // Checked before hashing so a taken name costs no argon2 work; the unique
    // index still decides a race between two registrations.
    if User::username_exists(db, username).await? {
        return Err(AccountError::UsernameTaken);
    }
    let password_hash = passwords.hash(password).await?;
    insert_user(db, username, &password_hash, Role::User).await
}

/// Creates `username` as an admin (`blogql create-admin`, for the first
/// one): the contract's rules, but no throttle (an operator runs it).
pub async fn create_admin(
    db: &Db,
    passwords: &Passwords,
    username: &str,
    password: &str,
) -> Result<User, AccountError> {
    validate::username(username)?;
    validate::password(password)?;
    let password_hash = passwords.hash(password).await?;
    insert_user(db, username, &password_hash, Role::Admin).await
}

async fn insert_user(
    db: &Db,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, AccountError> {
    let inserted = with_conn!(db, write conn => diesel::insert_into(users::table)
        .values((
            users::username.eq(username),
            users::password_hash.eq(password_hash),
            users::role.eq(role.as_str()),
            users::created_at.eq(now()),
        ))
        .returning(User::as_returning())
        .get_result(conn)
        .await);
    match inserted {
        Ok(user) => Ok(user),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(AccountError::UsernameTaken),
        Err(err) => Err(DbError::from(err).into()),
    }
}

/// Checks a login: throttled per username and client address, and the same
/// answer and about the same time for an unknown user as for a wrong password.
pub async fn authenticate(
    db: &Db,
    passwords: &Passwords,
    throttle: &Throttle,
    username: &str,
    password: &str,
    client: IpAddr,
) -> Result<User, AccountError> {
    // Input outside the rules cannot match any account; it is checked (and
    // counted) like any wrong password, without saying why. Usernames that
    // cannot exist share one counter, so their text is never stored.
    let valid_username = validate::username(username).is_ok();
    let plausible = valid_username && validate::password(password).is_ok();
    let keys = ThrottleKeys::new(if valid_username { username } else { "-" }, client);
    // Refused here while locked, before any password work; the slot it
    // takes counts it on every instance, so concurrent guesses count like
    // sequential ones, and a slot that cannot be written refuses it.
    let attempt = throttle.admit(&keys).await?;
    let found = if plausible {
        User::find_credentials(db, username).await?
    } else {
        None
    };
    let permit = passwords.permit().await;
    let hash = found.as_ref().map(|(_, hash)| hash.as_str());
    let password = if plausible { password } else { "" };
    if passwords.verify(permit, password, hash).await
        && let Some((user, verified)) = found
    {
        throttle.succeeded(attempt).await?;
        // A password change may have landed while the hash was checked (it
        // takes tens of milliseconds): the old password must not open a
        // session after the change has ended the others. The session is
        // stored when the request finishes, possibly after a change ended
        // the others: it keeps the credential version read here, so it is
        // nobody's once the change has bumped it.
        return match User::find_with_hash(db, user.id).await? {
            Some((user, hash)) if hash == verified => Ok(user),
            _ => Err(AccountError::InvalidCredentials),
        };
    }
    throttle.failed(attempt).await?;
    Err(AccountError::InvalidCredentials)
}
