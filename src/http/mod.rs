//! HTTP: the router, and everything between the socket and GraphQL — the
//! CSRF rule, GET-is-read-only, CORS, limits, health, tracing.

pub mod client_ip;
pub mod csrf;
pub mod graphiql;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType};
use async_graphql_axum::GraphQLRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_sessions::Session;
use tracing::Level;

use crate::db::Db;
use crate::graphql::documents::{DocumentCache, MAX_QUERY_BYTES, ParseFailure};
use crate::graphql::error::{PARSE_FAILED, VALIDATION_FAILED, ensure_codes};
use crate::graphql::{BlogSchema, ClientAddr};
use crate::sessions::store::SqlSessionStore;
use crate::sessions::{AuthSession, SessionPolicy};
use client_ip::TrustedProxies;

/// Largest request body: a 50,000-character post fits several times over.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// A request still running after this is answered with 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub schema: BlogSchema,
    pub db: Db,
    pub policy: SessionPolicy,
    pub proxies: TrustedProxies,
    pub documents: Arc<DocumentCache>,
}

/// How cookies and cross-origin access are configured.
pub struct WebSettings {
    pub store: SqlSessionStore,
    pub cookie_secure: bool,
    pub cors_origins: Vec<HeaderValue>,
}

/// The whole HTTP surface.
pub fn router(state: AppState, web: WebSettings) -> Router {
    let session_layer = state.policy.layer(web.store, web.cookie_secure);
    let graphql = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .layer(session_layer)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES));
    let mut router = Router::new()
        .merge(graphql)
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    if !web.cors_origins.is_empty() {
        // An explicit list, never `*`, because credentials are allowed.
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(web.cors_origins))
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::ACCEPT,
                    header::HeaderName::from_static("apollo-require-preflight"),
                    header::HeaderName::from_static("x-apollo-operation-name"),
                ])
                .max_age(Duration::from_secs(600)),
        );
    }
    router
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        // Method and path only: query strings, headers and bodies can carry
        // passwords and cookies, and are never logged.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
}

/// Readiness: the database (which also holds the sessions) answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// `GET /graphql`: the playground for browsers, else a query (never a mutation).
async fn graphql_get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    request: Request,
) -> Response {
    if wants_html(request.headers()) {
        return graphiql::page();
    }
    run(state, peer, session, request, true).await
}

/// `POST /graphql`.
async fn graphql_post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    request: Request,
) -> Response {
    run(state, peer, session, request, false).await
}

async fn run(
    state: AppState,
    peer: SocketAddr,
    session: Session,
    request: Request,
    is_get: bool,
) -> Response {
    let headers = request.headers();
    let passes_csrf_rule = csrf::allows(headers);
    // A POST is refused before its body is read; a GET only after it is
    // known not to be a mutation, which gets 405 whatever its headers.
    if !is_get && !passes_csrf_rule {
        return csrf::refusal();
    }
    let format = ResponseFormat::negotiate(headers);
    let client = state.proxies.client(peer.ip(), headers);
    let request = if is_get {
        from_query_string(request.uri().query().unwrap_or_default())
            .map_err(|message| json_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message))
    } else {
        GraphQLRequest::<GraphQLRejection>::from_request(request, &())
            .await
            .map(GraphQLRequest::into_inner)
            .map_err(|rejection| bad_body(&rejection.0))
    };
    let mut graphql_request = match request {
        Ok(request) => request,
        Err(response) => return response,
    };
    let parsed = match state.documents.parse(&graphql_request.query) {
        Ok(parsed) => parsed,
        Err(ParseFailure::TooLong) => {
            let message = format!(
                "Query is too complex: its text is over {} KiB.",
                MAX_QUERY_BYTES / 1024
            );
            return format.request_error(VALIDATION_FAILED, &message);
        }
        // The parser's own nesting guard fires before the depth limit can.
        Err(ParseFailure::TooDeep) => {
            return format.request_error(VALIDATION_FAILED, "Query is nested too deep.");
        }
        Err(ParseFailure::Syntax(message)) => return format.request_error(PARSE_FAILED, &message),
    };
    if is_get && !only_queries(&parsed.document, graphql_request.operation_name.as_deref()) {
        let mut response = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
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
    let remember = parsed
        .remember
        .then(|| (graphql_request.query.clone(), parsed.document.clone()));
    graphql_request.set_parsed_query(parsed.document);
    let graphql_request = graphql_request
        .data(AuthSession::new(session, state.policy))
        .data(ClientAddr(client));
    let mut response = state.schema.execute(graphql_request).await;
    if let Some((query, document)) = remember
        && !is_request_error(&response)
    {
        state.documents.remember(query, document);
    }
    ensure_codes(&mut response.errors);
    format.respond(&response)
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

/// Nothing executed: every error precedes execution (has no path).
fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// A body that is not one GraphQL request (malformed JSON, a batch, too
/// large), answered in the shape of a GraphQL error.
fn bad_body(error: &async_graphql::ParseRequestError) -> Response {
    match error {
        async_graphql::ParseRequestError::PayloadTooLarge => json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BAD_REQUEST",
            "the request body is too large",
        ),
        async_graphql::ParseRequestError::UnsupportedBatch => json_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "batched requests are not supported: send one operation per request",
        ),
        error => json_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("the body is not a GraphQL request: {error}"),
        ),
    }
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// A JSON error body shaped like a GraphQL response.
pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    (status, Json(body)).into_response()
}

/// The media type of the answer, per the GraphQL-over-HTTP specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseFormat {
    /// `application/graphql-response+json`: request errors get HTTP 400.
    GraphQLResponse,
    /// `application/json`: always HTTP 200 once the request is well-formed.
    Json,
}

impl ResponseFormat {
    fn negotiate(headers: &HeaderMap) -> Self {
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

    fn status(self, request_error: bool) -> StatusCode {
        match self {
            Self::GraphQLResponse if request_error => StatusCode::BAD_REQUEST,
            _ => StatusCode::OK,
        }
    }

    fn respond(self, response: &async_graphql::Response) -> Response {
        let request_error = is_request_error(response);
        let body = match serde_json::to_vec(response) {
            Ok(body) => body,
            Err(err) => {
                tracing::error!(error = %err, "cannot serialize a response");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
        self.build(self.status(request_error), body)
    }

    fn request_error(self, code: &str, message: &str) -> Response {
        let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
        self.build(self.status(true), body.to_string().into_bytes())
    }

    fn build(self, status: StatusCode, body: Vec<u8>) -> Response {
        (
            status,
            [
                (header::CONTENT_TYPE, self.content_type()),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body,
        )
            .into_response()
    }
}
