//! Cursor pagination, shared by every connection (posts, users).
//!
//! Pages are keyed by row id, which only grows: a cursor names a row, and
//! the next page is the rows past it. Rows added or deleted between two
//! pages neither repeat nor leave a gap, and a cursor whose row was deleted
//! still marks its place.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Which page to read.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Page size, already validated (1..=100).
    pub first: i64,
    /// Only rows past this id.
    pub after: Option<i64>,
}

impl PageRequest {
    /// How many rows to read: one more than the page, to learn whether
    /// another page follows.
    pub fn limit(&self) -> i64 {
        self.first + 1
    }
}

/// One page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

impl<T> Page<T> {
    /// The page among `rows`, read with [`PageRequest::limit`].
    pub fn from_rows(mut rows: Vec<T>, request: PageRequest) -> Self {
        let has_next_page = rows.len() as i64 > request.first;
        rows.truncate(request.first as usize);
        Self {
            items: rows,
            has_next_page,
            has_previous_page: request.after.is_some(),
        }
    }
}

/// What a cursor points into; a cursor of one kind is no cursor of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKind {
    Post,
    User,
}

impl CursorKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Post => "post:",
            Self::User => "user:",
        }
    }
}

/// The opaque cursor of row `id`.
pub fn encode_cursor(kind: CursorKind, id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}{id}", kind.prefix()))
}

/// The row id a cursor names, if it is one of ours of this kind.
pub fn decode_cursor(kind: CursorKind, cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix(kind.prefix())?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_only_as_its_own_kind() {
        let cursor = encode_cursor(CursorKind::Post, 42);
        assert_eq!(decode_cursor(CursorKind::Post, &cursor), Some(42));
        assert_eq!(decode_cursor(CursorKind::User, &cursor), None);
        assert_eq!(decode_cursor(CursorKind::Post, "not a cursor"), None);
    }
}
