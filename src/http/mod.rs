//! HTTP: the router, and everything between the socket and GraphQL — the
//! accept loop and its connection bounds, the GraphQL-over-HTTP pipeline,
//! GraphQL over WebSocket, the CSRF rule, CORS, health, the access log
//! and the request metrics, `GET /metrics` on its own listener.

pub mod access;
pub mod client_ip;
pub mod csrf;
pub mod graphiql;
pub mod identity;
pub mod persisted;
pub mod pipeline;
pub mod respond;
pub mod server;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::graphql::parsed::DocumentCache;
use crate::graphql::{BlogSchema, Services};
use crate::telemetry::{Metrics, Sampled};
use client_ip::TrustedProxies;

/// How long `/readyz` waits for the database before calling it unready.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers share: one handle, so that axum's clone for every
/// request is one reference count (not two vectors and ten counts).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl From<Shared> for AppState {
    fn from(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    pub schema: BlogSchema,
    /// The same, with the subscription limits, for WebSockets.
    pub live_schema: BlogSchema,
    /// The subscriptions every socket holding them shares.
    pub fanout: ws::Fanout,
    /// The services the schema's resolvers use, for the steps before them.
    pub services: Arc<Services>,
    pub proxies: TrustedProxies,
    /// Automatic persisted queries, by hash.
    pub persisted: crate::persisted::PersistedQueries,
    /// When set, only its documents run (and persisted queries are not
    /// remembered).
    pub trusted: Option<Arc<crate::trusted::TrustedDocuments>>,
    pub documents: Arc<DocumentCache>,
    /// A `/graphql` request still running after this is answered with 503.
    pub request_timeout: Duration,
    /// The open WebSockets.
    pub sockets: Arc<ws::Sockets>,
    /// Where a browser may open a WebSocket from.
    pub origins: ws::AllowedOrigins,
}

/// The whole HTTP surface; `cors_origins` may send credentialed requests;
/// every request passes through `access` (its log line, its metrics).
pub fn router(state: AppState, cors_origins: Vec<HeaderValue>, access: access::Access) -> Router {
    let mut router = Router::new()
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql_post)
                .fallback(graphql_other_method),
        )
        .route("/graphql/ws", get(ws::upgrade))
        .route("/graphiql/{file}", get(graphiql::asset))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    if !cors_origins.is_empty() {
        // An explicit list, never `*`, because credentials are allowed.
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(cors_origins))
                .allow_credentials(true)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::ACCEPT,
                    // API tokens, for apps on an allowed origin.
                    header::AUTHORIZATION,
                    header::HeaderName::from_static("apollo-require-preflight"),
                    header::HeaderName::from_static("x-apollo-operation-name"),
                ])
                .max_age(Duration::from_secs(600)),
        );
    }
    router.layer(axum::middleware::from_fn_with_state(access, access::layer))
}

/// What `GET /metrics` reads when Prometheus scrapes.
#[derive(Clone)]
pub struct Observed {
    pub metrics: Metrics,
    pub events: crate::events::Events,
    pub db: crate::db::Db,
}

/// The metrics listener's surface: `GET /metrics` only.
pub fn metrics_router(observed: Observed) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(observed)
}

/// The Prometheus text exposition, with what is sampled read just now.
async fn metrics(State(observed): State<Observed>) -> Response {
    let sampled = Sampled {
        bus_healthy: observed.events.healthy(),
        bus_reconnections: observed.events.reconnections(),
        pool: observed.db.pool_status(),
    };
    match observed.metrics.render(sampled) {
        Some(exposition) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            exposition,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Readiness: the session store answers and the database accepts writes,
/// each within [`READINESS_TIMEOUT`].
async fn readyz(State(state): State<AppState>) -> Response {
    let store = tokio::time::timeout(READINESS_TIMEOUT, state.services.sessions.ping()).await;
    if !matches!(store, Ok(Ok(()))) {
        if let Ok(Err(err)) = store {
            tracing::warn!(error = %err, "not ready: the session store");
        }
        return unready("session store (Redis) unavailable");
    }
    if !state.services.events.healthy() {
        tracing::warn!(
            bus = state.services.events.backend_name(),
            "not ready: the event bus"
        );
        return unready("event bus not subscribed (no heartbeat came back)");
    }
    let checked = tokio::time::timeout(READINESS_TIMEOUT, state.services.db.check_writable()).await;
    let reason = match checked {
        Ok(Ok(())) => return (StatusCode::OK, "ready").into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "not ready");
            "database unavailable or refusing writes"
        }
        Err(_) => {
            tracing::warn!("not ready: the database did not answer in time");
            "database did not answer in time"
        }
    };
    unready(reason)
}

fn unready(reason: &'static str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        reason,
    )
        .into_response()
}

/// `GET /graphql`: the playground for browsers, else a query (never a mutation).
async fn graphql_get(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if wants_html(request.headers()) {
        return graphiql::page();
    }
    pipeline::handle(state, peer, request, true).await
}

/// `POST /graphql`.
async fn graphql_post(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    pipeline::handle(state, peer, request, false).await
}

/// Any other method on `/graphql`: 405 in the GraphQL error shape.
async fn graphql_other_method() -> Response {
    let mut response = respond::refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        crate::graphql::error::ErrorCode::MethodNotAllowed,
        "/graphql answers GET and POST",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    let note = access::Note {
        graphql: Some(access::GraphqlOperation::UNKNOWN),
        identified_by: None,
    };
    note.attach(&mut response);
    response
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}
