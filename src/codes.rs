//! The contract's error codes (`extensions.code`): one closed set, written
//! by `graphql` and `http`, counted by `telemetry`.

/// Every `extensions.code` the server writes, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    UsernameTaken,
    InvalidCredentials,
    RateLimited,
    InternalServerError,
    /// The query does not parse.
    GraphqlParseFailed,
    /// The query is not valid, or exceeds a bound (errors before execution).
    GraphqlValidationFailed,
    /// The request is not one GraphQL request, or the CSRF rule refused it.
    BadRequest,
    /// A mutation over GET.
    MethodNotAllowed,
    /// An automatic persisted query whose hash the server does not know.
    PersistedQueryNotFound,
    /// Trusted documents are on, and the request names an id not listed.
    PersistedQueryNotInList,
    /// Trusted documents are on, and the query text is not a listed document.
    QueryNotInSafelist,
}

impl ErrorCode {
    /// Every code, in declaration order (`code as usize` is its index).
    pub const ALL: [Self; 14] = [
        Self::Unauthenticated,
        Self::Forbidden,
        Self::BadUserInput,
        Self::UsernameTaken,
        Self::InvalidCredentials,
        Self::RateLimited,
        Self::InternalServerError,
        Self::GraphqlParseFailed,
        Self::GraphqlValidationFailed,
        Self::BadRequest,
        Self::MethodNotAllowed,
        Self::PersistedQueryNotFound,
        Self::PersistedQueryNotInList,
        Self::QueryNotInSafelist,
    ];

    /// The code a client was sent as `text`, if it is one of ours.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == text)
    }

    /// The code as clients see it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "FORBIDDEN",
            Self::BadUserInput => "BAD_USER_INPUT",
            Self::UsernameTaken => "USERNAME_TAKEN",
            Self::InvalidCredentials => "INVALID_CREDENTIALS",
            Self::RateLimited => "RATE_LIMITED",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
            Self::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            Self::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Self::BadRequest => "BAD_REQUEST",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
            Self::PersistedQueryNotInList => "PERSISTED_QUERY_NOT_IN_LIST",
            Self::QueryNotInSafelist => "QUERY_NOT_IN_SAFELIST",
        }
    }
}
