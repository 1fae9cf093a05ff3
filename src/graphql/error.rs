//! The one mapping from failures to what a client sees: `extensions.code`.
//!
//! Domain modules return their own error enums (`AccountError`, `DbError`,
//! `SessionError`, `validate::Invalid`); resolvers turn them into
//! [`ApiError`] with `?`. Internal failures are logged here with a
//! correlation id and reach the client only as `INTERNAL_SERVER_ERROR` with
//! that id, never the detail.

use std::fmt::Display;

use async_graphql::{ErrorExtensions, ServerError};

use crate::accounts::AccountError;
use crate::accounts::passwords::HashError;
use crate::db::DbError;
use crate::sessions::SessionError;
use crate::validate::Invalid;

/// An error as a client sees it.
#[derive(Debug, Clone)]
pub enum ApiError {
    Unauthenticated,
    Forbidden,
    BadUserInput(Invalid),
    UsernameTaken,
    InvalidCredentials,
    RateLimited {
        retry_after: u64,
    },
    /// Already logged; carries only the correlation id.
    Internal {
        correlation_id: String,
    },
}

/// The code for errors the GraphQL engine itself reports before execution.
pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
/// The code for a query that does not parse.
pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";

impl ApiError {
    /// Logs `err` under a fresh correlation id and hides it from the client.
    pub fn internal(err: impl Display) -> Self {
        let correlation_id = format!("{:016x}", rand::random::<u64>());
        tracing::error!(%correlation_id, error = %err, "internal error");
        Self::Internal { correlation_id }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::Unauthenticated => async_graphql::Error::new("you must be signed in")
                .extend_with(|_, e| e.set("code", "UNAUTHENTICATED")),
            ApiError::Forbidden => async_graphql::Error::new("you are not allowed to do that")
                .extend_with(|_, e| e.set("code", "FORBIDDEN")),
            ApiError::BadUserInput(invalid) => async_graphql::Error::new(invalid.message)
                .extend_with(|_, e| {
                    e.set("code", "BAD_USER_INPUT");
                    e.set("field", invalid.field);
                }),
            ApiError::UsernameTaken => async_graphql::Error::new("that username is taken")
                .extend_with(|_, e| e.set("code", "USERNAME_TAKEN")),
            ApiError::InvalidCredentials => {
                async_graphql::Error::new("invalid username or password")
                    .extend_with(|_, e| e.set("code", "INVALID_CREDENTIALS"))
            }
            ApiError::RateLimited { retry_after } => async_graphql::Error::new(format!(
                "too many failed logins; try again in {retry_after} s"
            ))
            .extend_with(|_, e| {
                e.set("code", "RATE_LIMITED");
                e.set("retryAfter", retry_after);
            }),
            ApiError::Internal { correlation_id } => {
                async_graphql::Error::new("internal server error").extend_with(|_, e| {
                    e.set("code", "INTERNAL_SERVER_ERROR");
                    e.set("correlationId", correlation_id);
                })
            }
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::BadUserInput(invalid)
    }
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        Self::internal(err)
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        Self::internal(err)
    }
}

impl From<HashError> for ApiError {
    fn from(err: HashError) -> Self {
        Self::internal(err)
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::Invalid(invalid) => Self::BadUserInput(invalid),
            AccountError::UsernameTaken => Self::UsernameTaken,
            AccountError::InvalidCredentials => Self::InvalidCredentials,
            AccountError::RateLimited { retry_after } => Self::RateLimited { retry_after },
            AccountError::Db(err) => err.into(),
            AccountError::Hash(err) => err.into(),
        }
    }
}

/// Gives every error the engine reported without a code one: errors before
/// execution (no path) failed validation, errors in a field are about its
/// arguments. Resolver errors always carry their own code.
pub fn ensure_codes(errors: &mut [ServerError]) {
    for error in errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            let code = if error.path.is_empty() {
                VALIDATION_FAILED
            } else {
                "BAD_USER_INPUT"
            };
            extensions.set("code", code);
        }
    }
}
