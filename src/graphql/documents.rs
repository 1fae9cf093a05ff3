//! Parsed queries, remembered by their text: clients send the same few
//! operations again and again, and parsing is a visible share of a small
//! request's time. Only short texts are kept, so the cache stays small.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

/// How many distinct query texts are remembered.
const CAPACITY: usize = 512;
/// Longer texts are parsed every time rather than remembered.
const MAX_CACHED_LEN: usize = 8 * 1024;

/// Why a query could not be parsed.
pub enum ParseFailure {
    /// The parser's nesting guard fired.
    TooDeep,
    /// Not GraphQL; the parser's message.
    Syntax(String),
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
    pub fn parse(&self, query: &str) -> Result<ExecutableDocument, ParseFailure> {
        let cacheable = query.len() <= MAX_CACHED_LEN;
        if cacheable && let Some(document) = self.lock().get(query) {
            return Ok(document.clone());
        }
        let document = async_graphql::parser::parse_query(query).map_err(|err| match err {
            async_graphql::parser::Error::RecursionLimitExceeded => ParseFailure::TooDeep,
            err => ParseFailure::Syntax(err.to_string()),
        })?;
        if cacheable {
            self.lock().put(query.to_owned(), document.clone());
        }
        Ok(document)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, ExecutableDocument>> {
        self.documents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
