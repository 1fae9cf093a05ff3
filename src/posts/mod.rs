//! Posts: writing, editing and deleting them (by whom: [`Post::may_be_changed_by`](crate::posts::Post::may_be_changed_by)),
//! and reading them a page at a time, newest first (see [`crate::pages`]);
//! pages are remembered per instance ([`Pages`](crate::posts::Pages)), and every write publishes
//! its event once it committed.

mod remembered;

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use time::PrimitiveDateTime;

use crate::accounts::Role;
use crate::auth::Principal;
use crate::db::schema::posts;
use crate::db::{Db, DbError, now, with_conn};
use crate::events::{Event, Events};
use crate::pages::{Page, PageRequest};
pub use remembered::{Pages, PostPage};

/// A post as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = posts)]
pub struct Post {
    pub id: i64,
    pub author_id: i64,
    pub title: String,
    pub body: String,
    pub created_at: PrimitiveDateTime,
    /// `None` until the post is first edited.
    pub updated_at: Option<PrimitiveDateTime>,
}

/// Why a post could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum PostError {
    #[error("there is no post with this id")]
    NotFound,
    /// Only its author or an admin may edit or delete a post.
    #[error("only the post's author or an admin may change it")]
    NotOwner,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// An edit, already validated: the fields to replace (at least one).
#[derive(Debug, Clone, Copy, AsChangeset)]
#[diesel(table_name = posts)]
pub struct PostEdit<'a> {
    pub title: Option<&'a str>,
    pub body: Option<&'a str>,
}

impl Post {
    /// Stores a new post by `author_id`, and announces it.
    pub async fn create(
        db: &Db,
        events: &Events,
        author_id: i64,
        title: &str,
        body: &str,
    ) -> Result<Post, DbError> {
        // One statement, one round trip; the event leaves once it committed.
        let post: Post = with_conn!(db, write conn => diesel::insert_into(posts::table)
            .values((
                posts::author_id.eq(author_id),
                posts::title.eq(title),
                posts::body.eq(body),
                posts::created_at.eq(now()),
            ))
            .returning(Post::as_returning())
            .get_result(conn)
            .await?);
        events.publish(Event::PostCreated { id: post.id }).await;
        Ok(post)
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

    /// The newest `limit` posts after `id`, oldest first (what a
    /// subscriber missed while the bus was cut; a longer gap loses the
    /// older ones).
    pub async fn newest_after(db: &Db, id: i64, limit: i64) -> Result<Vec<Post>, DbError> {
        let mut posts: Vec<Post> = with_conn!(db, conn => posts::table
            .filter(posts::id.gt(id))
            .order(posts::id.desc())
            .limit(limit)
            .select(Post::as_select())
            .load(conn)
            .await?);
        posts.reverse();
        Ok(posts)
    }

    /// The newest post's id; 0 when there is none.
    pub async fn newest_id(db: &Db) -> Result<i64, DbError> {
        let newest: Option<i64> = with_conn!(db, conn => posts::table
            .select(diesel::dsl::max(posts::id))
            .first(conn)
            .await?);
        Ok(newest.unwrap_or(0))
    }

    /// The rule for editing and deleting: the author, or an admin.
    pub fn may_be_changed_by(&self, caller: &Principal) -> bool {
        self.author_id == caller.user_id() || caller.role() == Role::Admin
    }

    /// Applies `edit` to post `id` for `caller`, marks it edited now, and
    /// announces it.
    pub async fn update(
        db: &Db,
        events: &Events,
        caller: &Principal,
        id: i64,
        edit: PostEdit<'_>,
    ) -> Result<Post, PostError> {
        // A post's author never changes, so the check cannot go stale.
        let post = Self::find(db, id).await?.ok_or(PostError::NotFound)?;
        if !post.may_be_changed_by(caller) {
            return Err(PostError::NotOwner);
        }
        let updated: Option<Post> = with_conn!(db, write conn => diesel::update(posts::table.find(id))
            .set((edit, posts::updated_at.eq(now())))
            .returning(Post::as_returning())
            .get_result(conn)
            .await
            .optional()
            .map_err(DbError::from)?);
        // Deleted while it was checked.
        let updated = updated.ok_or(PostError::NotFound)?;
        events.publish(Event::PostUpdated { id }).await;
        Ok(updated)
    }

    /// Deletes post `id` for `caller`, and announces it; `false` when there
    /// is no such post.
    pub async fn delete(
        db: &Db,
        events: &Events,
        caller: &Principal,
        id: i64,
    ) -> Result<bool, PostError> {
        let Some(post) = Self::find(db, id).await? else {
            return Ok(false);
        };
        if !post.may_be_changed_by(caller) {
            return Err(PostError::NotOwner);
        }
        let deleted = with_conn!(db, write conn => diesel::delete(posts::table.find(id))
            .execute(conn)
            .await
            .map_err(DbError::from)?)
            == 1;
        if deleted {
            events.publish(Event::PostDeleted { id }).await;
        }
        Ok(deleted)
    }

    /// A page of posts, newest first, of one author or of all; one query.
    pub async fn page(
        db: &Db,
        author_id: Option<i64>,
        request: PageRequest,
    ) -> Result<Page<Post>, DbError> {
        let rows: Vec<Post> = with_conn!(db, conn => {
            let mut query = posts::table
                .select(Post::as_select())
                .order(posts::id.desc())
                .limit(request.limit())
                .into_boxed();
            if let Some(author_id) = author_id {
                query = query.filter(posts::author_id.eq(author_id));
            }
            if let Some(after) = request.after {
                query = query.filter(posts::id.lt(after));
            }
            query.load(conn).await?
        });
        Ok(Page::from_rows(rows, request))
    }
}
