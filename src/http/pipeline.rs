//! GraphQL over HTTP, from the request to the answer: the API token, if
//! any; read the operation (bounded), the method and CSRF rules, the document's bounds, execution,
//! and the session write — each refusal through [`super::respond`], and the
//! whole of it within the request time limit.

use std::net::SocketAddr;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::Deserialize;

use super::respond::{ResponseFormat, is_request_error, refusal};
use super::{AppState, csrf};
use crate::auth::{self, BearerError};
use crate::graphql::documents::{MAX_QUERY_BYTES, ParseFailure};
use crate::graphql::error::{ErrorCode, ensure_codes, log_internal};
use crate::graphql::shape;
use crate::graphql::{ClientAddr, TokenCaller};

/// Largest request body: a 50,000-character post fits several times over.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Runs one request within the time limit; past it, 503.
pub async fn handle(state: AppState, peer: SocketAddr, request: Request, is_get: bool) -> Response {
    let limit = state.request_timeout;
    match tokio::time::timeout(limit, run(state, peer, request, is_get)).await {
        Ok(response) => response,
        Err(_) => {
            let correlation_id = log_internal(format!(
                "the request was still running after {}",
                humantime::format_duration(limit)
            ));
            super::respond::internal(
                StatusCode::SERVICE_UNAVAILABLE,
                ResponseFormat::Json,
                &correlation_id,
            )
        }
    }
}

async fn run(state: AppState, peer: SocketAddr, request: Request, is_get: bool) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    // A token is checked first: one that does not authenticate refuses the
    // request whatever else it is; one that does carries no cookie
    // authority, so the CSRF rule (which guards the cookie) is not for it.
    let token_caller = match auth::from_bearer(&state.db, headers).await {
        Ok(caller) => caller,
        Err(BearerError::Invalid) => return super::respond::invalid_token(),
        Err(BearerError::Db(err)) => {
            return ResponseFormat::negotiate(headers).failed(&log_internal(err));
        }
    };
    let passes_csrf_rule = token_caller.is_some() || csrf::allows(headers);
    // A POST is refused before its body is read; a GET only after it is
    // known not to be a mutation, which gets 405 whatever its headers.
    if !is_get && !passes_csrf_rule {
        return csrf::refusal();
    }
    let format = ResponseFormat::negotiate(headers);
    let client = state.proxies.client(peer.ip(), headers);
    let operation = if is_get {
        from_query_string(parts.uri.query().unwrap_or_default())
            .map_err(|message| refusal(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &message))
    } else {
        read_body(headers, body).await
    };
    let mut operation = match operation {
        Ok(operation) => operation,
        Err(response) => return response,
    };
    let parsed = match state.documents.parse(&operation.query) {
        Ok(parsed) => parsed,
        Err(ParseFailure::TooLong) => {
            let message = format!(
                "Query is too complex: its text is over {} KiB.",
                MAX_QUERY_BYTES / 1024
            );
            return format.request_error(ErrorCode::GraphqlValidationFailed, &message);
        }
        // The parser's own nesting guard fires before the depth limit can.
        Err(ParseFailure::TooDeep) => {
            return format.request_error(
                ErrorCode::GraphqlValidationFailed,
                "Query is nested too deep.",
            );
        }
        Err(ParseFailure::Exceeded(message)) => {
            return format.request_error(ErrorCode::GraphqlValidationFailed, &message);
        }
        Err(ParseFailure::Syntax(message)) => {
            return format.request_error(ErrorCode::GraphqlParseFailed, &message);
        }
    };
    if is_get && !only_queries(&parsed.document, operation.operation_name.as_deref()) {
        let mut response = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if !passes_csrf_rule {
        return csrf::refusal();
    }
    if let Some(name) = shape::missing_variable(
        &parsed.document,
        operation.operation_name.as_deref(),
        &operation.variables,
    ) {
        return missing_variable(format, name);
    }
    let remember = parsed
        .remember
        .then(|| (operation.query.clone(), parsed.document.clone()));
    operation.set_parsed_query(parsed.document);
    // With a token, the cookie is ignored: the session starts empty.
    let session = match &token_caller {
        None => state.sessions.resolve(headers, client).await,
        Some(_) => state.sessions.without_cookie(headers, client),
    };
    let session = std::sync::Arc::new(session);
    let mut operation = operation.data(session.clone()).data(ClientAddr(client));
    if let Some(caller) = token_caller {
        operation = operation.data(TokenCaller(caller));
    }
    let mut response = state.schema.execute(operation).await;
    if let Some((query, document)) = remember
        && !is_request_error(&response)
    {
        state.documents.remember(query, document);
    }
    ensure_codes(&mut response.errors);
    let cookie = match session.finish().await {
        Ok(cookie) => cookie,
        Err(err) => return format.failed(&log_internal(err)),
    };
    let mut answer = format.respond(&response);
    if let Some(cookie) = cookie {
        answer.headers_mut().append(header::SET_COOKIE, cookie);
    }
    answer
}

/// The operation in a POST body, read up to [`MAX_BODY_BYTES`] whether or
/// not the body declared its length.
async fn read_body(
    headers: &axum::http::HeaderMap,
    body: Body,
) -> Result<async_graphql::Request, Response> {
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BadRequest,
            &format!(
                "the request body is over {} MiB",
                MAX_BODY_BYTES / (1024 * 1024)
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(err) => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                &format!("the body could not be read: {err}"),
            ));
        }
    };
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "batched requests are not supported: send one operation per request",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|err| {
        refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            &format!("the body is not a GraphQL request: {err}"),
        )
    })
}

/// A required variable the request did not give, answered as the
/// specification's variable coercion error (Apollo's code for it).
fn missing_variable(format: ResponseFormat, name: &str) -> Response {
    let body = crate::graphql::error::error_body(
        ErrorCode::BadUserInput,
        &format!("Variable \"${name}\" is required and was not provided."),
        &[("field", name.into())],
    );
    format.request_error_body(body)
}

/// The parameters of a GET request, named as the GraphQL-over-HTTP
/// specification names them. (async-graphql's own GET parser expects
/// `operation_name`, which no client sends.)
#[derive(Debug, Deserialize)]
struct GetParams {
    #[serde(default)]
    query: String,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
}

/// A GET request's operation; what is wrong with it, if anything.
fn from_query_string(query_string: &str) -> Result<async_graphql::Request, String> {
    let params: GetParams = serde_urlencoded::from_str(query_string)
        .map_err(|err| format!("invalid query string: {err}"))?;
    let mut request = async_graphql::Request::new(params.query);
    if let Some(name) = params.operation_name.filter(|name| !name.is_empty()) {
        request = request.operation_name(name);
    }
    if let Some(variables) = params.variables.filter(|variables| !variables.is_empty()) {
        let variables = serde_json::from_str(&variables)
            .map_err(|err| format!("variables are not a JSON object: {err}"))?;
        request = request.variables(async_graphql::Variables::from_json(variables));
    }
    Ok(request)
}

/// Whether the operation that would run is a query. When the document does
/// not say which one runs, every operation in it must be a query.
fn only_queries(document: &ExecutableDocument, name: Option<&str>) -> bool {
    let is_query = |ty: OperationType| ty == OperationType::Query;
    match (&document.operations, name) {
        (DocumentOperations::Single(operation), _) => is_query(operation.node.ty),
        (DocumentOperations::Multiple(operations), Some(name)) => match operations.get(name) {
            Some(operation) => is_query(operation.node.ty),
            None => operations
                .values()
                .all(|operation| is_query(operation.node.ty)),
        },
        (DocumentOperations::Multiple(operations), None) => operations
            .values()
            .all(|operation| is_query(operation.node.ty)),
    }
}
