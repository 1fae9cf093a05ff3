//! What every connection (a page of posts, of users) shares: `PageInfo`,
//! reading `first`/`after`, and what a page weighs.

use async_graphql::SimpleObject;

use super::error::ApiError;
use crate::pages::{self, CursorKind, Page, PageRequest};
use crate::validate;

/// The page size when `first` is omitted or null.
pub const DEFAULT_PAGE_SIZE: i32 = 20;

/// Where a page sits in the whole list.
#[derive(SimpleObject)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

impl PageInfo {
    /// Where `page` sits, with the cursors of its first and last items.
    pub fn of<T>(page: &Page<T>, cursors: &[String]) -> Self {
        Self {
            has_next_page: page.has_next_page,
            has_previous_page: page.has_previous_page,
            start_cursor: cursors.first().cloned(),
            end_cursor: cursors.last().cloned(),
        }
    }
}

/// The complexity of a page: its size times what each item asks for, so a
/// query's cost bounds the rows it can make the server read.
pub fn page_complexity(first: i32, child_complexity: usize) -> usize {
    (first.clamp(1, 100) as usize).saturating_mul(child_complexity.max(1))
}

/// The page a `first`/`after` pair asks for, checked: a cursor of another
/// kind (or none of ours) is `BAD_USER_INPUT` on `after`.
pub fn page_request(
    kind: CursorKind,
    first: i32,
    after: Option<String>,
) -> Result<PageRequest, ApiError> {
    let first = validate::first(first)?;
    let after = match after {
        None => None,
        Some(cursor) => {
            Some(
                pages::decode_cursor(kind, &cursor).ok_or_else(|| validate::Invalid {
                    field: "after",
                    message: "after is not a cursor this server issued".into(),
                })?,
            )
        }
    };
    Ok(PageRequest { first, after })
}

/// The cursors of a page's items.
pub fn cursors<T>(kind: CursorKind, page: &Page<T>, id: impl Fn(&T) -> i64) -> Vec<String> {
    page.items
        .iter()
        .map(|item| pages::encode_cursor(kind, id(item)))
        .collect()
}
