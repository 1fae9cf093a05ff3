//! Every answer of `/graphql`: its media type and status, per the
//! GraphQL-over-HTTP specification, and one path for every refusal — JSON in
//! the GraphQL error shape with `extensions.code`, and `Cache-Control:
//! no-store`, whatever refused the request.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::graphql::error::{ErrorCode, error_body, log_internal};
use crate::trusted::Refusal;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// A refusal: the status, the code and a message for people.
pub fn refusal(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let body = error_body(code, message, &[]);
    build(
        status,
        HeaderValue::from_static("application/json"),
        body.to_string().into_bytes(),
        &[code],
    )
}

/// The refusal of a request whose `Authorization: Bearer` token is
/// malformed, unknown or revoked: HTTP 401 whatever the media type, never
/// an anonymous answer.
pub fn invalid_token() -> Response {
    let mut response = refusal(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
        "the API token is malformed, unknown or revoked",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

/// `response`, and the connection closed after it. For refusals sent
/// before the request's body was read: the unread body would otherwise be
/// taken for the next request on a kept-alive connection, and a pooled
/// client's next request would get no answer.
pub fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The answer to a failure that was logged under `correlation_id`.
pub fn internal(status: StatusCode, format: ResponseFormat, correlation_id: &str) -> Response {
    let body = error_body(
        ErrorCode::InternalServerError,
        "internal server error",
        &[("correlationId", correlation_id.into())],
    );
    build(
        status,
        format.content_type(),
        body.to_string().into_bytes(),
        &[ErrorCode::InternalServerError],
    )
}

/// The codes of the errors an answer carries, in order, kept with it (as
/// an extension) for the access log and the metrics.
#[derive(Debug, Clone)]
pub struct AnsweredCodes(pub Vec<ErrorCode>);

fn build(
    status: StatusCode,
    content_type: HeaderValue,
    body: Vec<u8>,
    codes: &[ErrorCode],
) -> Response {
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response();
    if !codes.is_empty() {
        response
            .extensions_mut()
            .insert(AnsweredCodes(codes.to_vec()));
    }
    response
}

/// The media type of the answer, per the GraphQL-over-HTTP specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `application/graphql-response+json`: request errors get HTTP 400.
    GraphQLResponse,
    /// `application/json`: always HTTP 200 once the request is well-formed.
    Json,
}

impl ResponseFormat {
    /// The format the request's `Accept` asks for.
    pub fn negotiate(headers: &HeaderMap) -> Self {
        let accepts = headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains(GRAPHQL_RESPONSE_JSON));
        if accepts {
            Self::GraphQLResponse
        } else {
            Self::Json
        }
    }

    fn content_type(self) -> HeaderValue {
        match self {
            Self::GraphQLResponse => HeaderValue::from_static(GRAPHQL_RESPONSE_JSON),
            Self::Json => HeaderValue::from_static("application/json"),
        }
    }

    /// The status of an answer: request errors are 400 only for
    /// `application/graphql-response+json`; failures of the server are
    /// 500 for it, 200 for `application/json`.
    fn status(self, outcome: Outcome) -> StatusCode {
        match (self, outcome) {
            (Self::GraphQLResponse, Outcome::RequestError) => StatusCode::BAD_REQUEST,
            (Self::GraphQLResponse, Outcome::Failed) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::OK,
        }
    }

    /// An executed response.
    pub fn respond(self, response: &async_graphql::Response) -> Response {
        let outcome = if is_request_error(response) {
            Outcome::RequestError
        } else {
            Outcome::Executed
        };
        let codes: Vec<ErrorCode> = response
            .errors
            .iter()
            .filter_map(|error| match error.extensions.as_ref()?.get("code")? {
                async_graphql::Value::String(code) => ErrorCode::parse(code),
                _ => None,
            })
            .collect();
        match serde_json::to_vec(response) {
            Ok(body) => build(self.status(outcome), self.content_type(), body, &codes),
            Err(err) => self.failed(&log_internal(err)),
        }
    }

    /// A request refused before execution (parse, validation, a bound).
    pub fn request_error(self, code: ErrorCode, message: &str) -> Response {
        self.request_error_body(code, error_body(code, message, &[]))
    }

    /// A request refused before execution, with a body of [`error_body`]'s
    /// shape whose code is `code`.
    pub fn request_error_body(self, code: ErrorCode, body: serde_json::Value) -> Response {
        build(
            self.status(Outcome::RequestError),
            self.content_type(),
            body.to_string().into_bytes(),
            &[code],
        )
    }

    /// An automatic persisted query whose hash is unknown: HTTP 200 in
    /// either format, as Apollo Server answers (its clients then retry
    /// with the text).
    pub fn persisted_query_not_found(self) -> Response {
        let body = error_body(
            ErrorCode::PersistedQueryNotFound,
            "PersistedQueryNotFound",
            &[],
        );
        build(
            StatusCode::OK,
            self.content_type(),
            body.to_string().into_bytes(),
            &[ErrorCode::PersistedQueryNotFound],
        )
    }

    /// A request that trusted documents refused: HTTP 400 in either format
    /// (the contract's status for both codes, and Apollo Router's).
    pub fn untrusted(self, refusal: &Refusal) -> Response {
        let body = error_body(refusal.code(), &refusal.to_string(), &[]);
        build(
            StatusCode::BAD_REQUEST,
            self.content_type(),
            body.to_string().into_bytes(),
            &[refusal.code()],
        )
    }

    /// A failure of the server, logged under `correlation_id`.
    pub fn failed(self, correlation_id: &str) -> Response {
        internal(self.status(Outcome::Failed), self, correlation_id)
    }
}

/// How a request ended, for its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Executed,
    RequestError,
    Failed,
}

/// Nothing executed: every error precedes execution (has no path).
pub fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}
