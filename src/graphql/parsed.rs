//! Parsed queries, remembered by their text: clients send the same few
//! operations again and again, and parsing is a visible share of a small
//! request's time.
//!
//! Parsing is also where a hostile query costs most (a parsed document
//! takes about a hundred times the memory of its text), so the text is
//! bounded before parsing, the parsed shape before anything walks it with
//! fragments expanded ([`super::bounds`]), and only short documents that
//! passed validation are remembered.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

use super::error::ErrorCode;

/// Longest query text parsed at all: 1,000 aliased pages fit (about 45 KiB),
/// so the complexity limit, not this one, is what refuses them.
pub const MAX_QUERY_BYTES: usize = 100 * 1024;
/// How many distinct query texts are remembered.
const CAPACITY: usize = 256;
/// Longer texts are parsed every time rather than remembered.
const MAX_CACHED_BYTES: usize = 2 * 1024;

/// Why a query could not be parsed.
pub enum ParseFailure {
    /// Longer than [`MAX_QUERY_BYTES`].
    TooLong,
    /// The parser's nesting guard fired.
    TooDeep,
    /// Not GraphQL; the parser's message.
    Syntax(String),
    /// Over a bound of its expanded shape; the message names it.
    Exceeded(String),
}

impl ParseFailure {
    /// The code a request refused for it gets.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Syntax(_) => ErrorCode::GraphqlParseFailed,
            Self::TooLong | Self::TooDeep | Self::Exceeded(_) => ErrorCode::GraphqlValidationFailed,
        }
    }

    /// What is wrong, for people.
    pub fn message(&self) -> String {
        match self {
            Self::TooLong => format!(
                "Query is too complex: its text is over {} KiB.",
                MAX_QUERY_BYTES / 1024
            ),
            // The parser's own nesting guard fires before the depth limit can.
            Self::TooDeep => "Query is nested too deep.".to_owned(),
            Self::Syntax(message) | Self::Exceeded(message) => message.clone(),
        }
    }
}

/// Parses `query` within the bounds every request meets: its length, the
/// parser's nesting guard, the shape with fragments expanded.
pub fn parse_bounded(query: &str) -> Result<ExecutableDocument, ParseFailure> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(ParseFailure::TooLong);
    }
    let document = async_graphql::parser::parse_query(query).map_err(|err| match err {
        async_graphql::parser::Error::RecursionLimitExceeded => ParseFailure::TooDeep,
        err => ParseFailure::Syntax(err.to_string()),
    })?;
    super::bounds::check(&document).map_err(|exceeded| ParseFailure::Exceeded(exceeded.0))?;
    Ok(document)
}

/// A parsed query, and whether to remember it once it has validated.
pub struct Parsed {
    pub document: ExecutableDocument,
    /// Worth remembering: new and short.
    pub remember: bool,
}

/// A bounded cache of parsed documents.
pub struct DocumentCache {
    documents: Mutex<LruCache<String, ExecutableDocument>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        let capacity = NonZeroUsize::new(CAPACITY).expect("a non-zero capacity");
        Self {
            documents: Mutex::new(LruCache::new(capacity)),
        }
    }
}

impl DocumentCache {
    /// The parsed document for `query`, from the cache when it is there.
    pub fn parse(&self, query: &str) -> Result<Parsed, ParseFailure> {
        if query.len() > MAX_QUERY_BYTES {
            return Err(ParseFailure::TooLong);
        }
        if let Some(document) = self.lock().get(query) {
            return Ok(Parsed {
                document: document.clone(),
                remember: false,
            });
        }
        let document = parse_bounded(query)?;
        Ok(Parsed {
            document,
            remember: query.len() <= MAX_CACHED_BYTES,
        })
    }

    /// Keeps a document that passed validation.
    pub fn remember(&self, query: String, document: ExecutableDocument) {
        self.lock().put(query, document);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, ExecutableDocument>> {
        self.documents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
