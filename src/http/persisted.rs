//! Automatic persisted queries in the pipeline, before parsing: a request
//! may name its query by `extensions.persistedQuery { version: 1,
//! sha256Hash }`, with or without the text. Without it, the text the hash
//! stands for is looked up (unknown: `PERSISTED_QUERY_NOT_FOUND`, and the
//! client sends it again with the text); with it, the hash must be the
//! text's (else `BAD_REQUEST`), and the text is remembered once it has
//! passed validation. Every later rule (GET, CSRF, bounds) applies to the
//! text the hash stands for.

use axum::http::StatusCode;
use axum::response::Response;

use super::respond::{ResponseFormat, refusal};
use crate::graphql::error::ErrorCode;
use crate::persisted::{PersistedQueries, hash_of, is_hash, named_id};

/// Resolves a persisted query into `operation`'s text; the hash to
/// remember the text under once it validates, when the client sent both.
pub async fn resolve(
    queries: &PersistedQueries,
    format: ResponseFormat,
    operation: &mut async_graphql::Request,
) -> Result<Option<String>, Response> {
    let bad = |message: &str| refusal(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message);
    let hash = match named_id(operation) {
        Ok(None) => return Ok(None),
        Ok(Some(hash)) if is_hash(hash) => hash.to_ascii_lowercase(),
        Ok(Some(_)) => {
            return Err(bad(
                "extensions.persistedQuery.sha256Hash must be 64 hex digits",
            ));
        }
        Err(message) => return Err(bad(message)),
    };
    if !operation.query.is_empty() {
        if hash_of(&operation.query) != hash {
            return Err(bad("provided sha does not match query"));
        }
        return Ok(Some(hash));
    }
    match queries.get(&hash).await {
        Ok(Some(query)) => {
            operation.query = query;
            Ok(None)
        }
        Ok(None) => Err(format.persisted_query_not_found()),
        // Not known is the answer a client recovers from: it sends the text.
        Err(err) => {
            tracing::warn!(error = %err, "cannot look up a persisted query");
            Err(format.persisted_query_not_found())
        }
    }
}
