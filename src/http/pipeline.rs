//! GraphQL over HTTP, from the request to the answer, as named steps:
//! identify the caller, admit (the CSRF rule), read the operation
//! (bounded), resolve the text it names (against the trusted documents
//! when they are on, else as an automatic persisted query), parse and
//! bound it, execute it and finish (the session write) — each refusal
//! through [`super::respond`], and the whole of it within the request
//! time limit.

// A step's refusal is the response itself, made at most once per request:
// boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::Deserialize;

use super::access::{GraphqlOperation, Note};
use super::respond::{self, ResponseFormat, is_request_error, refusal};
use super::{AppState, csrf, identity, persisted};
use crate::auth::{Caller, Via};
use crate::graphql::bounds;
use crate::graphql::context::ClientAddr;
use crate::graphql::error::{ErrorCode, ensure_codes, log_internal};
use crate::telemetry::{self, Operation};

/// Largest request body: a 50,000-character post fits several times over.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Runs one request within the time limit; past it, 503. The answer
/// carries a [`Note`] of what was learnt of the request.
pub async fn handle(state: AppState, peer: SocketAddr, request: Request, is_get: bool) -> Response {
    let limit = state.request_timeout;
    let mut note = Note {
        graphql: Some(GraphqlOperation::UNKNOWN),
        identified_by: None,
    };
    let mut response =
        match tokio::time::timeout(limit, run(state, peer, request, is_get, &mut note)).await {
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
        };
    note.attach(&mut response);
    response
}

/// The steps of one request, in order; each refusal is the answer. What
/// they learn of it goes in `note`.
async fn run(
    state: AppState,
    peer: SocketAddr,
    request: Request,
    is_get: bool,
    note: &mut Note,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let client = state.proxies.client(peer.ip(), headers);
    let steps = async {
        // Only a token that does not authenticate is refused here.
        note.identified_by = Some(Via::Token);
        let caller = identity::identify(&state, headers, client).await?;
        note.identified_by = caller.identified_by();
        let passes_csrf_rule = admit(&caller, headers, is_get)?;
        let format = ResponseFormat::negotiate(headers);
        let wants_id = state.trusted.is_some();
        let (mut operation, document_id) = read(&parts, body, is_get, wants_id).await?;
        let persist = match &state.trusted {
            Some(trusted) => {
                trusted
                    .resolve(&mut operation, document_id.as_deref())
                    .map_err(|refused| format.untrusted(&refused))?;
                None
            }
            None => persisted::resolve(&state.persisted, format, &mut operation).await?,
        };
        let (operation, remember) =
            parse_and_bound(&state, format, operation, is_get, passes_csrf_rule, note)?;
        let persist = persist.map(|hash| (hash, operation.query.clone()));
        // Boxed where it is made: executing is by far the largest future of
        // the request, and every layer above (axum's handler, the timeout,
        // the access middleware) would otherwise copy it as it moves it.
        let executed = Box::pin(execute(
            &state, format, caller, client, operation, remember, persist,
        ));
        Ok(executed.await)
    };
    match steps.await {
        Ok(response) | Err(response) => response,
    }
}

/// The CSRF rule, where it can be applied before the body is read: a
/// POST that breaks it is refused now (and its connection closed: the body
/// is never read); a GET only once it is known not to be a mutation, which
/// gets 405 whatever its headers. A request with an API token carries no
/// cookie authority, so the rule (which guards the cookie) is not for it.
/// Whether the request passes the rule.
fn admit(caller: &Caller, headers: &HeaderMap, is_get: bool) -> Result<bool, Response> {
    let passes = caller.by_api_token() || csrf::allows(headers);
    if !is_get && !passes {
        return Err(respond::closing(csrf::refusal()));
    }
    Ok(passes)
}

/// The operation and the `documentId` it names, if any: from the query
/// string of a GET, from the body of a POST (read there only when
/// `wants_id`: trusted documents are on).
async fn read(
    parts: &Parts,
    body: Body,
    is_get: bool,
    wants_id: bool,
) -> Result<(async_graphql::Request, Option<String>), Response> {
    if is_get {
        from_query_string(parts.uri.query().unwrap_or_default())
            .map_err(|message| refusal(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, &message))
    } else {
        read_body(&parts.headers, body, wants_id).await
    }
}

/// A parsed and bounded operation, and what to remember of it once it
/// validated (its text and document, when the cache should keep them).
type Bounded = (async_graphql::Request, Option<(String, ExecutableDocument)>);

/// Parses the operation (or finds it parsed), refuses what exceeds the
/// document bounds, a mutation over GET, a GET that breaks the CSRF rule,
/// and a missing required variable.
fn parse_and_bound(
    state: &AppState,
    format: ResponseFormat,
    mut operation: async_graphql::Request,
    is_get: bool,
    passes_csrf_rule: bool,
    note: &mut Note,
) -> Result<Bounded, Response> {
    let parsed = match state.documents.parse(&operation.query) {
        Ok(parsed) => parsed,
        Err(failure) => return Err(format.request_error(failure.code(), &failure.message())),
    };
    if let Some((name, selected)) =
        bounds::selected(&parsed.document, operation.operation_name.as_deref())
    {
        note.graphql = Some(GraphqlOperation {
            kind: match selected.ty {
                OperationType::Query => Operation::Query,
                OperationType::Mutation => Operation::Mutation,
                OperationType::Subscription => Operation::Subscription,
            },
            name: name.cloned(),
        });
    }
    if is_get
        && !bounds::only(
            OperationType::Query,
            &parsed.document,
            operation.operation_name.as_deref(),
        )
    {
        let mut response = refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "mutations must be sent with POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return Err(response);
    }
    if !passes_csrf_rule {
        return Err(csrf::refusal());
    }
    if let Some(name) = bounds::missing_variable(
        &parsed.document,
        operation.operation_name.as_deref(),
        &operation.variables,
    ) {
        return Err(missing_variable(format, name));
    }
    let remember = parsed
        .remember
        .then(|| (operation.query.clone(), parsed.document.clone()));
    operation.set_parsed_query(parsed.document);
    Ok((operation, remember))
}

/// Runs the operation as `caller`, remembers a document that validated
/// (parsed, and under its hash when the client asked: `persist`), and
/// writes the session (its failure is the request's).
async fn execute(
    state: &AppState,
    format: ResponseFormat,
    caller: Caller,
    client: IpAddr,
    operation: async_graphql::Request,
    remember: Option<(String, ExecutableDocument)>,
    persist: Option<(String, String)>,
) -> Response {
    let caller = Arc::new(caller);
    let operation = operation.data(caller.clone()).data(ClientAddr(client));
    let mut response = state.schema.execute(operation).await;
    if let Some((query, document)) = remember
        && !is_request_error(&response)
    {
        state.documents.remember(query, document);
    }
    if let Some((hash, query)) = persist
        && !is_request_error(&response)
        && let Err(err) = state.persisted.remember(&hash, &query).await
    {
        tracing::warn!(error = %err, "cannot remember a persisted query");
    }
    ensure_codes(&mut response.errors);
    let cookie = match caller.session().finish().await {
        Ok(cookie) => cookie,
        Err(err) => {
            telemetry::store_failed(err.store());
            return format.failed(&log_internal(err));
        }
    };
    let mut answer = format.respond(&response);
    if let Some(cookie) = cookie {
        answer.headers_mut().append(header::SET_COOKIE, cookie);
    }
    answer
}

/// The operation in a POST body (and its `documentId` when `wants_id`),
/// read up to [`MAX_BODY_BYTES`] whether or not the body declared its
/// length.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    wants_id: bool,
) -> Result<(async_graphql::Request, Option<String>), Response> {
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
    let not_a_request = |err: serde_json::Error| {
        refusal(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            &format!("the body is not a GraphQL request: {err}"),
        )
    };
    let operation = serde_json::from_slice(&bytes).map_err(not_a_request)?;
    if !wants_id {
        return Ok((operation, None));
    }
    let named: DocumentId = serde_json::from_slice(&bytes).map_err(not_a_request)?;
    Ok((operation, named.document_id.filter(|id| !id.is_empty())))
}

/// The `documentId` of a POST body (read apart from the operation, and
/// only when trusted documents are on: async-graphql's request has no
/// place for it).
#[derive(Debug, Deserialize)]
struct DocumentId {
    #[serde(rename = "documentId")]
    document_id: Option<String>,
}

/// A required variable the request did not give, answered as the
/// specification's variable coercion error (Apollo's code for it).
fn missing_variable(format: ResponseFormat, name: &str) -> Response {
    let body = crate::graphql::error::error_body(
        ErrorCode::BadUserInput,
        &format!("Variable \"${name}\" is required and was not provided."),
        &[("field", name.into())],
    );
    format.request_error_body(ErrorCode::BadUserInput, body)
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
    /// JSON, as in a POST body (`persistedQuery` for hashed GETs).
    extensions: Option<String>,
    /// A trusted document's id.
    #[serde(rename = "documentId")]
    document_id: Option<String>,
}

/// A GET request's operation and `documentId`; what is wrong with it, if
/// anything.
fn from_query_string(
    query_string: &str,
) -> Result<(async_graphql::Request, Option<String>), String> {
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
    if let Some(extensions) = params
        .extensions
        .filter(|extensions| !extensions.is_empty())
    {
        request.extensions = serde_json::from_str(&extensions)
            .map_err(|err| format!("extensions are not a JSON object: {err}"))?;
    }
    Ok((request, params.document_id.filter(|id| !id.is_empty())))
}
