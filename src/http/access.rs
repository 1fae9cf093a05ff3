//! Around every request: its correlation ID, the metrics of a GraphQL
//! request, and the access log line.
//!
//! The line names how the caller was identified, never who: no user, no
//! address, no cookie or token, no query string, header or body. The
//! steps of a request say what they learnt through a [`Note`] on the
//! response (one allocation, read here), so nothing is parsed twice.

use std::time::Instant;

use async_graphql::Name;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::respond::AnsweredCodes;
use crate::auth::Via;
use crate::telemetry::logs::AccessLine;
use crate::telemetry::{self, CorrelationId, Metrics, Operation};

/// The longest path and operation name a line carries, in characters.
const MAX_LOGGED_CHARS: usize = 128;

/// What the access layer needs.
#[derive(Clone)]
pub struct Access {
    pub metrics: Metrics,
    /// `BLOGQL_ACCESS_LOG`.
    pub log: bool,
}

/// What the steps of a request learnt, for its line and its metrics.
#[derive(Debug, Clone, Default)]
pub struct Note {
    /// The GraphQL operation, when the request was one (`/graphql`).
    pub graphql: Option<GraphqlOperation>,
    /// How the caller proved who it is, if it did.
    pub identified_by: Option<Via>,
}

/// A GraphQL request's operation, as far as it was known.
#[derive(Debug, Clone)]
pub struct GraphqlOperation {
    pub kind: Operation,
    /// The operation's name, from the parsed document (so a GraphQL name:
    /// letters, digits and `_`).
    pub name: Option<Name>,
}

impl GraphqlOperation {
    /// A GraphQL request refused before its operation was known.
    pub const UNKNOWN: Self = Self {
        kind: Operation::Unknown,
        name: None,
    };
}

impl Note {
    /// Keeps the note with `response`, for [`layer`].
    pub fn attach(self, response: &mut Response) {
        response.extensions_mut().insert(self);
    }
}

/// The middleware: runs the request in its scope (correlation ID,
/// metrics), then records and logs it.
pub async fn layer(State(access): State<Access>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = CorrelationId::new();
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = telemetry::in_scope(id, access.metrics.clone(), next.run(request)).await;
    let took = started.elapsed();
    let note = response.extensions().get::<Note>();
    let codes = response
        .extensions()
        .get::<AnsweredCodes>()
        .map_or(&[][..], |codes| &codes.0[..]);
    let graphql = note.and_then(|note| note.graphql.as_ref());
    if let Some(operation) = graphql {
        access.metrics.request(operation.kind, codes, took);
    }
    if access.log {
        let caller = match note.and_then(|note| note.identified_by) {
            None => "anonymous",
            Some(Via::Cookie) => "cookie",
            Some(Via::Token) => "token",
        };
        let id = id.hex();
        AccessLine {
            method: method.as_str(),
            path: capped(uri.path()),
            status: response.status().as_u16(),
            operation: graphql.map(|operation| operation.kind.as_str()),
            operation_name: graphql
                .and_then(|operation| operation.name.as_ref())
                .map(|name| capped(name.as_str())),
            outcome: graphql.map(|_| codes.first().map_or("OK", |code| code.as_str())),
            took,
            correlation_id: id.as_str(),
            caller,
        }
        .write();
    }
    response
}

/// `text`, cut to [`MAX_LOGGED_CHARS`].
fn capped(text: &str) -> &str {
    match text.char_indices().nth(MAX_LOGGED_CHARS) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}
