//! The one mapping from failures to what a client sees: `extensions.code`.
//!
//! Domain modules return their own error enums (`AccountError`, `PostError`,
//! `DbError`, `SessionError`, `validate::Invalid`); resolvers turn them into
//! [`ApiError`] with `?`. Ownership is a domain rule (`PostError::NotOwner`)
//! and becomes `FORBIDDEN` here, like the guards' refusals. Internal failures are logged here with a
//! correlation id and reach the client only as `INTERNAL_SERVER_ERROR` with
//! that id, never the detail.

use std::fmt::Display;

use async_graphql::{ErrorExtensions, ServerError};

use crate::accounts::AccountError;
use crate::accounts::passwords::HashError;
use crate::auth::changes::ChangeError;
pub use crate::codes::ErrorCode;
use crate::db::DbError;
use crate::posts::PostError;
use crate::sessions::SessionError;
use crate::telemetry::{self, Store};
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
        /// What was limited, as the client is told.
        what: &'static str,
    },
    /// Already logged; carries only the correlation id.
    Internal {
        correlation_id: String,
    },
}

/// A body in the GraphQL error shape: `{"errors":[{message, extensions}]}`,
/// with `code` and any `extra` extensions.
pub fn error_body(
    code: ErrorCode,
    message: &str,
    extra: &[(&str, serde_json::Value)],
) -> serde_json::Value {
    let mut extensions = serde_json::Map::new();
    extensions.insert("code".into(), code.as_str().into());
    for (name, value) in extra {
        extensions.insert((*name).into(), value.clone());
    }
    serde_json::json!({ "errors": [{ "message": message, "extensions": extensions }] })
}

impl ApiError {
    /// Logs `err` under a fresh correlation id and hides it from the client.
    pub fn internal(err: impl Display) -> Self {
        Self::Internal {
            correlation_id: log_internal(err),
        }
    }
}

/// Logs `err` under the request's correlation ID (its access log line's),
/// which the client gets instead.
pub fn log_internal(err: impl Display) -> String {
    let correlation_id = telemetry::correlation_id();
    tracing::error!(%correlation_id, error = %err, "internal error");
    correlation_id.to_string()
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::Unauthenticated => async_graphql::Error::new("you must be signed in")
                .extend_with(|_, e| e.set("code", ErrorCode::Unauthenticated.as_str())),
            ApiError::Forbidden => async_graphql::Error::new("you are not allowed to do that")
                .extend_with(|_, e| e.set("code", ErrorCode::Forbidden.as_str())),
            ApiError::BadUserInput(invalid) => async_graphql::Error::new(invalid.message)
                .extend_with(|_, e| {
                    e.set("code", ErrorCode::BadUserInput.as_str());
                    e.set("field", invalid.field);
                }),
            ApiError::UsernameTaken => async_graphql::Error::new("that username is taken")
                .extend_with(|_, e| e.set("code", ErrorCode::UsernameTaken.as_str())),
            ApiError::InvalidCredentials => {
                async_graphql::Error::new("invalid username or password")
                    .extend_with(|_, e| e.set("code", ErrorCode::InvalidCredentials.as_str()))
            }
            ApiError::RateLimited { retry_after, what } => {
                async_graphql::Error::new(format!("{what}; try again in {retry_after} s"))
                    .extend_with(|_, e| {
                        e.set("code", ErrorCode::RateLimited.as_str());
                        e.set("retryAfter", retry_after);
                    })
            }
            ApiError::Internal { correlation_id } => {
                async_graphql::Error::new("internal server error").extend_with(|_, e| {
                    e.set("code", ErrorCode::InternalServerError.as_str());
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
        telemetry::store_failed(Store::Database);
        Self::internal(err)
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        telemetry::store_failed(err.store());
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
            AccountError::RateLimited { retry_after, limit } => Self::RateLimited {
                retry_after,
                what: limit.message(),
            },
            AccountError::LastAdmin => Self::Forbidden,
            AccountError::Db(err) => err.into(),
            AccountError::Hash(err) => err.into(),
            AccountError::Redis(err) => {
                telemetry::store_failed(Store::Redis);
                Self::internal(err)
            }
            AccountError::NoSuchUser => Self::BadUserInput(Invalid {
                field: "userId",
                message: AccountError::NoSuchUser.to_string(),
            }),
            AccountError::TooManyTokens => Self::BadUserInput(Invalid {
                field: "name",
                message: AccountError::TooManyTokens.to_string(),
            }),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(err: ChangeError) -> Self {
        match err {
            ChangeError::Account(err) => err.into(),
            ChangeError::Session(err) => err.into(),
        }
    }
}

impl From<PostError> for ApiError {
    fn from(err: PostError) -> Self {
        match err {
            PostError::NotFound => Self::BadUserInput(Invalid {
                field: "id",
                message: PostError::NotFound.to_string(),
            }),
            PostError::NotOwner => Self::Forbidden,
            PostError::Db(err) => err.into(),
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
                ErrorCode::GraphqlValidationFailed
            } else {
                ErrorCode::BadUserInput
            };
            extensions.set("code", code.as_str());
        }
    }
}
