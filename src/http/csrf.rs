//! The CSRF rule: cookie authentication means a cross-site form or "simple"
//! request must never execute an operation.
//!
//! A request passes only if it could not have been sent without a CORS
//! preflight: its `Content-Type` is none of the three a plain HTML form can
//! send, or it carries a non-empty `X-Apollo-Operation-Name` or
//! `Apollo-Require-Preflight` header (the rule Apollo Server applies, so
//! Apollo Client and urql work unchanged). A GET has no `Content-Type`, so it
//! needs one of the headers.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::graphql::error::ErrorCode;

/// Media types a browser sends cross-site without asking first.
const SIMPLE_CONTENT_TYPES: [&str; 3] = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
];

const PREFLIGHT_HEADERS: [&str; 2] = ["x-apollo-operation-name", "apollo-require-preflight"];

/// Whether the request satisfies the rule.
pub fn allows(headers: &HeaderMap) -> bool {
    if PREFLIGHT_HEADERS
        .iter()
        .any(|name| headers.get(*name).is_some_and(|value| !value.is_empty()))
    {
        return true;
    }
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(content_type) = content_type.to_str() else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    !essence.is_empty() && !SIMPLE_CONTENT_TYPES.contains(&essence.as_str())
}

/// The answer to a request the rule refuses: 400, naming the rule.
pub fn refusal() -> Response {
    super::respond::refusal(
        StatusCode::BAD_REQUEST,
        ErrorCode::BadRequest,
        "This request has been blocked by the CSRF rule: send it with Content-Type: application/json \
         (not text/plain, application/x-www-form-urlencoded or multipart/form-data), or with a \
         non-empty X-Apollo-Operation-Name or Apollo-Require-Preflight header.",
    )
}
