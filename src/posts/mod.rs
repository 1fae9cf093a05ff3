//! Posts and their cursor pagination.
//!
//! Pages are newest first and keyed by post id, which only grows: a cursor
//! names a post, and the next page is "older than that post", so posts added
//! between two pages neither repeat nor push others across the boundary.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::PrimitiveDateTime;

use crate::db::schema::posts;
use crate::db::{Db, DbError, now, with_conn};

/// A post as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = posts)]
pub struct Post {
    pub id: i64,
    pub author_id: i64,
    pub title: String,
    pub body: String,
    pub created_at: PrimitiveDateTime,
}

/// Which page to read.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    /// Page size, already validated (1..=100).
    pub first: i64,
    /// Only posts older than this one.
    pub after: Option<i64>,
}

/// One page, newest first.
#[derive(Debug, Clone)]
pub struct Page {
    pub posts: Vec<Post>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
}

const CURSOR_PREFIX: &str = "post:";

/// The opaque cursor of a post.
pub fn encode_cursor(post_id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{post_id}"))
}

/// The post id a cursor names, if it is one of ours.
pub fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix(CURSOR_PREFIX)?
        .parse()
        .ok()
}

impl Post {
    /// Stores a new post by `author_id`.
    pub async fn create(db: &Db, author_id: i64, title: &str, body: &str) -> Result<Post, DbError> {
        Ok(
            with_conn!(db, write conn => diesel::insert_into(posts::table)
            .values((
                posts::author_id.eq(author_id),
                posts::title.eq(title),
                posts::body.eq(body),
                posts::created_at.eq(now()),
            ))
            .returning(Post::as_returning())
            .get_result(conn)
            .await?),
        )
    }

    /// The post with this id, if any.
    pub async fn find(db: &Db, id: i64) -> Result<Option<Post>, DbError> {
        Ok(with_conn!(db, conn => posts::table
            .find(id)
            .select(Post::as_select())
            .first(conn)
            .await
            .optional()?))
    }

    /// A page of posts, of one author or of all; one query.
    pub async fn page(
        db: &Db,
        author_id: Option<i64>,
        request: PageRequest,
    ) -> Result<Page, DbError> {
        let mut posts: Vec<Post> = with_conn!(db, conn => {
            let mut query = posts::table
                .select(Post::as_select())
                .order(posts::id.desc())
                .limit(request.first + 1)
                .into_boxed();
            if let Some(author_id) = author_id {
                query = query.filter(posts::author_id.eq(author_id));
            }
            if let Some(after) = request.after {
                query = query.filter(posts::id.lt(after));
            }
            query.load(conn).await?
        });
        let has_next_page = posts.len() as i64 > request.first;
        posts.truncate(request.first as usize);
        Ok(Page {
            posts,
            has_next_page,
            has_previous_page: request.after.is_some(),
        })
    }
}
