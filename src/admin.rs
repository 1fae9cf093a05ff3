//! `blogql create-admin USERNAME`: how an operator makes the first admin.
//!
//! It creates the user as `ADMIN` with a password read from standard input
//! (without echo on a terminal, asked twice; one line from a pipe), or
//! promotes the user who exists, leaving their password alone and ending
//! their sessions (which carry the old role). Run again, it changes
//! nothing. It applies pending migrations first and prints one line.

use std::io::{BufRead as _, IsTerminal as _, Read as _};

use crate::accounts::passwords::Passwords;
use crate::accounts::{self, AccountError, Role, User};
use crate::auth::changes::{self, ChangeError};
use crate::config::Config;
use crate::db::Db;
use crate::redis::Redis;
use crate::sessions::{SessionPolicy, SessionStore, Sessions};
use crate::validate;

/// Longest password line read from a pipe, in bytes: far over the
/// 128-character rule, so an overlong one is refused by the rule.
const MAX_PASSWORD_LINE: u64 = 4096;

/// Why `create-admin` failed; its `Display` is the one line printed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("USERNAME: {0}")]
    Username(String),
    #[error("password: {0}")]
    Password(String),
    #[error("DATABASE_URL: {0}")]
    Database(String),
    #[error("REDIS_URL: cannot connect: {0}")]
    Redis(#[from] crate::redis::RedisError),
    #[error("{0}")]
    Failed(String),
}

impl From<AccountError> for AdminError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Invalid(invalid) if invalid.field == "password" => {
                Self::Password(invalid.message)
            }
            AccountError::Invalid(invalid) => Self::Username(invalid.message),
            AccountError::UsernameTaken => {
                Self::Username("that username was taken meanwhile; run again".into())
            }
            AccountError::Db(err) => Self::Database(err.to_string()),
            other => Self::Failed(other.to_string()),
        }
    }
}

/// The password for the new admin `username`, from standard input: the
/// terminal without echo (asked twice), or one line from a pipe.
pub fn read_password(username: &str) -> Result<String, AdminError> {
    let unreadable = |err: std::io::Error| AdminError::Password(format!("cannot read: {err}"));
    if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password(format!("Password for {username}: ")).map_err(unreadable)?;
        let again = rpassword::prompt_password("Repeat it: ").map_err(unreadable)?;
        if first != again {
            return Err(AdminError::Password("the two entries differ".into()));
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_PASSWORD_LINE)
        .read_line(&mut line)
        .map_err(unreadable)?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// Makes `username` an admin; the line to print. `password` is asked for
/// only when the user does not exist yet.
pub async fn create_admin(
    config: &Config,
    username: &str,
    password: impl FnOnce(&str) -> Result<String, AdminError>,
) -> Result<String, AdminError> {
    validate::username(username).map_err(|invalid| AdminError::Username(invalid.message))?;
    let db = Db::connect(&config.database_url)
        .await
        .map_err(|err| AdminError::Database(err.to_string()))?;
    db.migrate()
        .await
        .map_err(|err| AdminError::Database(err.to_string()))?;
    if let Some(user) = User::find_by_username(&db, username)
        .await
        .map_err(|err| AdminError::Database(err.to_string()))?
    {
        if user.role == Role::Admin {
            return Ok(format!(
                "{} is already an admin; nothing changed",
                user.username
            ));
        }
        // The same change as `setUserRole`, on the store `serve` uses
        // with these settings (`.env` included).
        let redis = match &config.redis {
            Some(redis) => Some(Redis::connect(redis).await?),
            None => None,
        };
        let store = SessionStore::new(&db, redis.as_ref());
        let described = store.describe();
        let policy = SessionPolicy {
            idle_timeout: config.session_idle_timeout,
            absolute_timeout: config.session_absolute_timeout,
        };
        let users = accounts::loader::users(db.clone());
        // Running servers learn of the sessions it ends through the bus.
        let events = crate::events::Events::publisher(&db, redis.as_ref());
        let sessions = Sessions::new(
            store,
            policy,
            config.cookie_secure,
            users,
            events,
            crate::telemetry::Metrics::off(),
        );
        let (user, ended) = changes::change_role(&db, &sessions, user.id, Role::Admin)
            .await
            .map_err(|err| match err {
                ChangeError::Account(err) => AdminError::from(err),
                ChangeError::Session(err) => {
                    AdminError::Failed(format!("cannot end the sessions: {err}"))
                }
            })?;
        let ended = ended.unwrap_or(0);
        return Ok(format!(
            "promoted {} to admin (signed out of {ended} session{} in {described})",
            user.username,
            if ended == 1 { "" } else { "s" }
        ));
    }
    let password = password(username)?;
    validate::password(&password).map_err(|invalid| AdminError::Password(invalid.message))?;
    let passwords = Passwords::new()
        .await
        .map_err(|err| AdminError::Failed(err.to_string()))?;
    let user = accounts::create_admin(&db, &passwords, username, &password).await?;
    Ok(format!("created admin {}", user.username))
}
